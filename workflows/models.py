"""Inputs and outputs of Grantflow's workflows and activities (pydantic, via Temporal's pydantic
data converter). Changing a field of a live workflow's input is a workflow change: add fields with
defaults, never rename or remove them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from workflows.rules import EnterpriseRecord, ProgramRuleModel


class Timing(BaseModel):
    """Overrides of the program's working-day periods, in seconds (demos and tests)."""

    notice_seconds: float | None = None
    supplement_seconds: float | None = None
    review_seconds: float | None = None


class GrantInput(BaseModel):
    application_id: str
    rule: ProgramRuleModel
    applicant_credit_code: str
    applicant_name: str
    project_title: str
    figures: dict[str, int]
    requested_amount_fen: int = 0
    submitted_at: datetime
    timing: Timing = Timing()


class GrantOutcome(BaseModel):
    application_id: str
    stage: str
    reason: str = ""
    award_amount_fen: int = 0
    plan_id: str = ""
    gateway_reference: str = ""


class GrantStatus(BaseModel):
    """What the `status` query answers (for operators; applicants read the projection)."""

    application_id: str
    stage: str
    reason: str
    award_amount_fen: int
    review_round: int
    pending_departments: list[str]
    open_tasks: dict[str, str]  # task id -> department
    plan_id: str
    supplement_count: int
    # Plans whose payment of this grant failed (and was not paid since): plan id -> line id.
    failed_lines: dict[str, str] = {}


class EligibilityRequest(BaseModel):
    applicant_credit_code: str
    applicant_name: str


class EligibilityRecord(BaseModel):
    enterprise: EnterpriseRecord | None


class CreateReviewTaskRequest(BaseModel):
    request_id: str
    application_id: str
    program_code: str
    department: str
    round: int
    proposed_amount_fen: int
    due_at: datetime
    applicant_name: str
    project_title: str


class StageReport(BaseModel):
    event_id: str
    application_id: str
    stage: str  # GrantStage name without prefix, e.g. "IN_REVIEW"
    reason: str = ""
    award_amount_fen: int = 0
    program_code: str = ""
    plan_id: str = ""
    sequence: int


class ReserveRequest(BaseModel):
    application_id: str
    program_code: str
    amount_fen: int
    applicant_credit_code: str
    applicant_name: str


class DeadlineRequest(BaseModel):
    start: datetime
    working_days: int


class PaymentRequest(BaseModel):
    plan_id: str
    line_id: str


class PaymentResult(BaseModel):
    line_id: str
    amount_fen: int
    gateway_reference: str


class PaymentFailure(BaseModel):
    plan_id: str
    line_id: str
    reason: str


class FundingPlanOutcome(BaseModel):
    plan_id: str
    paid_lines: int
    failed_lines: int


# One argument per activity (third generation; the second's multi-argument activities remain
# registered under their old names for grants and plans started before).


class TasksToCancel(BaseModel):
    application_id: str
    reason: str
    task_ids: list[str]


class OverdueReminder(BaseModel):
    application_id: str
    task_ids: list[str]
    level: int  # review.proto EscalationLevel: 1 reminder, 2 escalation


class ReservationRelease(BaseModel):
    application_id: str
    reason: str


class AwardRef(BaseModel):
    application_id: str


class PlanRef(BaseModel):
    plan_id: str
