"""The interface of repairs (workflows/repair.py): the named actions, which of them need a second
ops person's approval, and the models the RepairWorkflow, its activities, the RepairService and
the CLI exchange. Imports nothing from workflow code."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.common.vocabulary import GrantRepairState, RepairAction, RepairState

__all__ = ["GrantRepairState", "RepairAction", "RepairState"]

REPAIR_WORKFLOW = "RepairWorkflow"
# Updates, signals and the query of a repair
APPROVE_REPAIR = "approve"
PAUSE_REPAIR = "pause"
RESUME_REPAIR = "resume"
REPAIR_PROGRESS = "progress"
# How long a repair waits for its second pair of eyes before it lapses.
APPROVAL_WINDOW_DAYS = 7


def repair_workflow_id(repair_id: str) -> str:
    return f"repair-{repair_id}"


# Anything that moves money or reverses a decision runs only after a second ops person approves.
FOUR_EYES = frozenset(
    {
        RepairAction.REOPEN_REVIEW,
        RepairAction.RETRY_PAYMENT,
        RepairAction.MOVE_TO_STAGE,
        RepairAction.CANCEL,
    }
)


class RepairParams(BaseModel):
    """What an action needs besides the grant: the department of a re-opened review, the stage a
    grant is moved back to."""

    department: str = ""
    stage: str = ""


class RepairInput(BaseModel):
    repair_id: str
    action: RepairAction
    reason: str
    requested_by: str  # the ops user of the token that asked
    application_ids: list[str] = Field(default_factory=list)
    query: str = ""  # a Temporal visibility query over grants, for a batch
    params: RepairParams = RepairParams()
    dry_run: bool = False


class RepairStep(BaseModel):
    """One grant's part of a repair, as its activities see it."""

    repair_id: str
    action: RepairAction
    application_id: str
    reason: str
    params: RepairParams = RepairParams()


class GrantRepairResult(BaseModel):
    application_id: str
    state: GrantRepairState = GrantRepairState.PENDING
    detail: str = ""  # what was (or, in a preview, would be) done; why it failed


class Approval(BaseModel):
    approved_by: str


class RepairProgress(BaseModel):
    repair_id: str
    action: RepairAction
    reason: str
    state: RepairState
    requested_by: str
    approved_by: str = ""
    query: str = ""
    total: int = 0
    done: int = 0
    failed: int = 0
    results: list[GrantRepairResult] = Field(default_factory=list)


class AuditNote(BaseModel):
    """One audit record of a repair (audit-contract.md: action
    `repair.<action>.requested|approved|refused|executed|failed`)."""

    request_id: str
    action: str
    subject: str
    reason: str
    details: dict[str, str] = Field(default_factory=dict)


# The most grants one batch repairs: each costs its history about ten events, and a workflow's
# history must stay well under Temporal's 50,000. A query matching more is repaired in several
# batches (the grants repaired no longer match it, or the query is narrowed).
MAX_BATCH = 2_000


class TargetQuery(BaseModel):
    query: str
    limit: int = MAX_BATCH
