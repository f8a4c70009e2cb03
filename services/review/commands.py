"""The review service's commands: one dataclass per use case (use_cases.py), holding input
already checked by the gRPC layer (api.py) or by whoever calls the use case directly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.auth import Principal
from services.common.vocabulary import Decision, Department, ReviewStage, ScoreAggregation


@dataclass(frozen=True)
class CreateTask:
    request_id: str
    application_id: str
    program_code: str
    department: Department
    round: int
    proposed_amount_fen: int
    due_at: datetime
    applicant_name: str = ""
    project_title: str = ""
    priority: int = 0
    stage: ReviewStage = ReviewStage.DEPARTMENT_REVIEW


@dataclass(frozen=True)
class CancelTasks:
    application_id: str
    reason: str = ""
    task_ids: frozenset[str] = frozenset()  # empty: every active task of the application


@dataclass(frozen=True)
class RemindOverdueTasks:
    application_id: str
    level: int  # review.proto EscalationLevel: REMINDER or ESCALATION
    task_ids: frozenset[str] = frozenset()  # empty: every active task of the application


@dataclass(frozen=True)
class Claim:
    caller: Principal
    task_id: str


@dataclass(frozen=True)
class Decide:
    caller: Principal
    task_id: str
    decision: Decision
    reason: str = ""
    approved_amount_fen: int = 0  # approvals only; 0 means the proposed amount


@dataclass(frozen=True)
class Release:
    caller: Principal
    task_id: str
    reason: str = ""


@dataclass(frozen=True)
class Reassign:
    caller: Principal  # a head of the task's department
    task_id: str
    assignee: str
    reason: str


# The expert pool and panels --------------------------------------------------------------------


@dataclass(frozen=True)
class AddExpert:
    caller: Principal
    expert_id: str
    name: str
    field: str
    employer_credit_code: str = ""
    declared_conflicts: tuple[str, ...] = ()
    person_id: str = ""
    active: bool = True


@dataclass(frozen=True)
class Criterion:
    code: str
    name: str
    max_points: int


@dataclass(frozen=True)
class CreateExpertReview:
    request_id: str
    application_id: str
    program_code: str
    applicant_credit_code: str
    panel_size: int
    field: str
    rubric: tuple[Criterion, ...]
    aggregation: ScoreAggregation
    pass_score_centi: int
    due_at: datetime
    applicant_name: str = ""
    project_title: str = ""


@dataclass(frozen=True)
class OpenExpertTask:
    caller: Principal  # an expert
    task_id: str = ""
    application_id: str = ""  # or the application whose file he asks for


@dataclass(frozen=True)
class SubmitScores:
    caller: Principal
    task_id: str
    scores: tuple[tuple[str, int], ...]  # (criterion code, hundredths of a point)
    comment: str = ""


# Special audits --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateAuditTask:
    request_id: str
    application_id: str
    program_code: str
    figure: str
    declared_fen: int
    due_at: datetime
    applicant_name: str = ""
    project_title: str = ""


@dataclass(frozen=True)
class ConfirmAudit:
    caller: Principal  # an auditor
    task_id: str
    audited_fen: int
    note: str = ""
