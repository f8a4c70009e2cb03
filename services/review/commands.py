"""The review service's commands: one dataclass per use case (use_cases.py), holding input
already checked by the gRPC layer (api.py) or by whoever calls the use case directly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.auth import Principal
from services.common.vocabulary import Decision, Department


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
