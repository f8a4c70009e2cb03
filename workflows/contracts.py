"""The interface of Grantflow's workflows: ids, update and signal names, and their payloads.

Services and consumers talk to the workflows only through these names and models, so this module
imports nothing from the workflow code itself.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from services.common.vocabulary import Decision, ErrorType

GRANT_WORKFLOW = "GrantWorkflow"
FUNDING_PLAN_WORKFLOW = "FundingPlanWorkflow"
# A plan's lines are paid by child workflows of at most a few hundred lines each (funding-plan-v4).
FUNDING_PLAN_CHUNK_WORKFLOW = "FundingPlanChunkWorkflow"
NOTICE_BATCH_WORKFLOW = "NoticeBatchWorkflow"
CLAWBACK_WORKFLOW = "ClawbackWorkflow"
# The credit list a clawback (追回) puts the enterprise on, barring new applications.
CLAWBACK_CREDIT_LIST = "财政资金追回失信名单"

# Updates (the caller learns at once whether the workflow took it)
DECIDE_REVIEW_TASK = "decide_review_task"
WITHDRAW_APPLICATION = "withdraw_application"
# Repairs (workflows/repair.py): ops re-opens one department's review of the current round.
REOPEN_REVIEW = "reopen_review"
# Claims are judged by the review service; grants of the second generation still accept this.
CLAIM_REVIEW_TASK = "claim_review_task"
# The review service tells the grant (fourth generation) what its experts, auditor and objection
# handlers concluded. Each is an Update sent before the service commits (as decisions are), with
# a deterministic update id, so a retried call is answered once and nothing is lost.
EXPERT_REVIEW_DONE = "expert_review_done"  # update id: f"experts-{panel_id}"
AUDIT_DONE = "audit_done"  # update id: f"audit-{task_id}"
OBJECTION_LODGED = "objection_lodged"  # update id: f"objection-{objection_id}"
OBJECTION_DECIDED = "objection_decided"  # update id: f"objection-decided-{objection_id}"

# An award paid in instalments: a milestone (项目验收, 专项审计) confirmed releases the next
# instalment (the applications service's ConfirmMilestone; update id milestone-<n>-<uuid>).
CONFIRM_MILESTONE = "confirm_milestone"

# Signals (no answer needed)
# A withdrawal filed before the grant's workflow started reaches it as this signal.
WITHDRAW = "withdraw"
SUPPLEMENT = "supplement"
PAYMENT_SETTLED = "payment_settled"
# The detail of a pay_line_v3 GATEWAY_FAILED answer for a payment accepted and settling.
SETTLING = "settling"
PAYMENT_FAILED = "payment_failed"
FUNDING_PLAN_ASSIGNED = "funding_plan_assigned"
# Between a grant and its program's notice batcher (workflows/notice_batch.py).
JOIN_NOTICE_BATCH = "join"  # grant -> batcher: a decided award to notice
LEAVE_NOTICE_BATCH = "leave"  # grant -> batcher: withdrawn before its batch was published
CLOSE_NOTICE_BATCH = "close_batch"  # an officer: publish the collected batch now
NOTICE_PUBLISHED = "notice_published"  # batcher -> grant: what its batch gave it
# Chunk -> its plan: the chunk's running counts (ChunkProgress), sent every few settled lines.
CHUNK_PROGRESS = "chunk_progress"

# Queries
GRANT_STATUS = "status"
PLAN_PROGRESS = "progress"  # a plan's (FundingPlanOutcome) and a chunk's (ChunkProgress)

# ApplicationError types raised by update validators: the ErrorType (gRPC status code name) the
# services answer with, the same spelling activities use for a service's final answers.
ERR_NOT_FOUND = ErrorType.NOT_FOUND
ERR_PERMISSION_DENIED = ErrorType.PERMISSION_DENIED
ERR_FAILED_PRECONDITION = ErrorType.FAILED_PRECONDITION

# Search attributes every grant carries (registered on the Temporal namespace by `stack up`).
SA_STAGE = "GrantStage"
SA_PROGRAM = "GrantProgram"
SA_APPLICANT = "ApplicantCreditCode"
SA_PENDING_DEPARTMENTS = "PendingDepartments"
SEARCH_ATTRIBUTES = {
    SA_STAGE: "Keyword",
    SA_PROGRAM: "Keyword",
    SA_APPLICANT: "Keyword",
    SA_PENDING_DEPARTMENTS: "KeywordList",
}


def grant_workflow_id(application_id: str) -> str:
    return f"grant-{application_id}"


def plan_workflow_id(plan_id: str) -> str:
    return f"plan-{plan_id}"


def plan_chunk_workflow_id(plan_id: str, chunk: int) -> str:
    """The child workflow paying a plan's chunk `chunk` (0, 1, ...): the same chunk of the same
    plan always has the same id, so a retried start finds it instead of paying it twice."""
    return f"{plan_workflow_id(plan_id)}-chunk-{chunk}"


def clawback_workflow_id(clawback_id: str) -> str:
    return f"clawback-{clawback_id}"


def notice_batcher_id(program_code: str) -> str:
    return f"notice-{program_code}"


class ClaimReviewTask(BaseModel):
    task_id: str
    reviewer: str
    department: str  # a Department


class DecideReviewTask(BaseModel):
    task_id: str
    reviewer: str
    department: str
    decision: Decision
    reason: str = ""
    approved_amount_fen: int = Field(default=0, ge=0)


class ReviewTaskAck(BaseModel):
    """What an accepted claim or decision answers. For a decision it carries what the workflow
    recorded: a retried update (same update id) answers the first decision, whatever the retry
    asked, and the review service records that."""

    task_id: str
    round: int
    stage: str
    decision: str = ""
    reason: str = ""
    approved_amount_fen: int = 0


class ExpertReviewDone(BaseModel):
    """Every expert of the panel has scored: the scores aggregated by the program's rule."""

    panel_id: str
    score_centi: int = Field(ge=0, le=10_000)  # hundredths of a point, 0–100 points
    experts: int = Field(ge=1)


class AuditDone(BaseModel):
    """The auditor confirmed the eligible figure (就低原则 is the grant's to apply)."""

    task_id: str
    figure: str
    audited_fen: int = Field(ge=0)
    auditor: str


class ObjectionLodged(BaseModel):
    """An objection (异议, 投诉 or 举报) against the grant's noticed award; the objector's identity
    stays with the handling department."""

    objection_id: str
    kind: str  # an ObjectionKind


class ObjectionDecided(BaseModel):
    objection_id: str
    upheld: bool
    # Upheld: "fall_away" (the award is withdrawn, its reservation released) or "re_review"
    # (back to review); dismissed: "" (the grant goes on).
    consequence: str = ""
    reason: str = ""
    handled_by: str = ""


class ConfirmMilestone(BaseModel):
    instalment: int = Field(ge=1)
    confirmed_by: str
    note: str = ""


class MilestoneConfirmed(BaseModel):
    """The confirmation the grant recorded (the first one, when confirmed again)."""

    instalment: int
    of: int
    milestone: str  # a Milestone
    confirmed_by: str
    note: str = ""
    confirmed_at: datetime
    due_at: datetime
    late: bool = False  # after its due date: accepted all the same
    repeated: bool = False  # answered again
    stage: str = ""


class Acknowledged(BaseModel):
    """What the grant answers an Update that needs no more than "taken"."""

    stage: str


class Withdraw(BaseModel):
    reason: str = ""
    withdrawn_by: str = ""


class WithdrawalAnswer(BaseModel):
    """What an honoured withdrawal answers (a refused one fails with FAILED_PRECONDITION and
    the reason, written for the applicant)."""

    stage: str
    released_fen: int = 0


class Supplement(BaseModel):
    figures: dict[str, int]
    supplement_count: int
    note: str = ""
    document_names: list[str] | None = None  # every document held after it; None: not sent


class FundingPlanAssigned(BaseModel):
    plan_id: str
    line_id: str


class PaymentSettled(BaseModel):
    plan_id: str
    line_id: str
    amount_fen: int
    gateway_reference: str
    instalment: int = 0  # the instalment the line paid; 0: not said (a plan of before)


class PaymentFailed(BaseModel):
    plan_id: str
    line_id: str
    reason: str


class FundingPlanInput(BaseModel):
    plan_id: str
    program_code: str
    line_ids: list[str]
    application_ids: list[str]
    # Lines per chunk workflow (funding-plan-v4); 0: the workflow's own CHUNK_LINES.
    chunk_lines: int = Field(default=0, ge=0)


class FundingPlanChunkInput(BaseModel):
    """One chunk of a plan's lines (its `chunk`-th slice, in the plan's order)."""

    plan_id: str
    chunk: int
    line_ids: list[str]
    application_ids: list[str]


class ChunkProgress(BaseModel):
    """What a chunk has settled so far (counts only grow): reported to its plan by signal and
    answered as the chunk's result."""

    chunk: int
    lines: int
    paid_lines: int = 0
    failed_lines: int = 0
    paid_fen: int = 0

    @property
    def settled(self) -> int:
        return self.paid_lines + self.failed_lines


class ClawbackInput(BaseModel):
    """A clawback opened by the disbursement service (its ClawbackOpened event): the enterprise
    is barred from opened_at until bar_until."""

    clawback_id: str
    application_id: str
    program_code: str
    applicant_credit_code: str
    applicant_name: str
    amount_fen: int
    reason: str
    opened_at: datetime
    bar_until: datetime


class ReopenReview(BaseModel):
    department: str  # a Department
    reason: str
