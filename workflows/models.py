"""Inputs and outputs of Grantflow's workflows and activities (pydantic, via Temporal's pydantic
data converter). Changing a field of a live workflow's input is a workflow change: add fields with
defaults, never rename or remove them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from workflows.contracts import MilestoneConfirmed
from workflows.rules import (
    EnterpriseRecord,
    ExpertReviewModel,
    ProgramRuleModel,
    ScheduledInstalment,
)


class Timing(BaseModel):
    """Overrides of the program's working-day periods, in seconds (demos and tests)."""

    notice_seconds: float | None = None
    supplement_seconds: float | None = None
    review_seconds: float | None = None
    # How long a program's notice batch collects decided awards after its first one (fourth
    # generation): awards decided within it are noticed together.
    batch_seconds: float = 24 * 3600.0


class InstalmentCarry(BaseModel):
    """What a grant paid in instalments carries into the run it continues as new with after an
    instalment was paid (each run then covers one instalment: its history stays short however
    many years the schedule spans)."""

    stage: str
    reason: str = ""
    amount_fen: int
    sequence: int  # of the stage reports (their event ids go on from it)
    v4: bool = False
    schedule: list[ScheduledInstalment]
    paid: int  # instalments paid so far
    paid_fen: int = 0
    milestones: dict[int, MilestoneConfirmed] = {}
    plan_id: str = ""  # of the last payment
    gateway_reference: str = ""


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
    # Which process the grant runs: 3 (department review, a notice per grant) or 4 (eligibility
    # with evidence, experts, audit, join policies, notices by batch with objections). Chosen by
    # the intake (GRANT_PROCESS_GENERATION) when the grant starts, kept for its whole life.
    process_generation: int = 3
    # The names of the documents filed with the application, checked against the rule's
    # required documents by the fourth process; None for grants started before they were sent.
    document_names: list[str] | None = None
    # Set only in a run a grant paid in instalments continued as new with (INSTALMENTS_PATCH).
    carried: InstalmentCarry | None = None


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
    # An award paid in instalments: how many are paid of how many ("1/3"); "" otherwise.
    instalments: str = ""


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
    instalment: int = 0  # which instalment of its award the line paid; 0: not said


class PaymentFailure(BaseModel):
    plan_id: str
    line_id: str
    reason: str


class FundingPlanOutcome(BaseModel):
    """A plan's result, and what its `progress` query answers while it runs (the line counts a
    plan paid in chunks knows from its chunks' reports: they lag by fewer than a report's lines
    per running chunk; the result is exact)."""

    plan_id: str
    paid_lines: int
    failed_lines: int
    total_lines: int = 0
    pending_lines: int = 0
    paid_fen: int = 0
    chunks: int = 0  # 0: a plan of an earlier generation, paid in one workflow
    chunks_done: int = 0
    chunks_running: int = 0


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


# Awards paid in instalments (INSTALMENTS_PATCH).


class ScheduledAward(BaseModel):
    """The award final, with the schedule that pays it (fixed now, shown by the disbursement
    service)."""

    application_id: str
    schedule: list[ScheduledInstalment]


class InstalmentRelease(BaseModel):
    application_id: str
    instalment: int
    confirmed_by: str
    note: str = ""


# Fourth generation: eligibility with evidence, expert review, special audit, notice batches.


class EligibilityCheck(BaseModel):
    application_id: str


class EligibilityVerdict(BaseModel):
    """What the applications service found (each check's evidence stays with the application)."""

    passed: bool
    reasons: list[str] = []  # why not, for the applicant (Chinese)
    remaining_year_cap_fen: int = -1  # what the enterprise's yearly cap leaves; -1: no cap


class ExpertReviewRequest(BaseModel):
    request_id: str
    application_id: str
    program_code: str
    applicant_credit_code: str
    applicant_name: str
    project_title: str
    review: ExpertReviewModel  # the program's panel size, field, rubric and aggregation
    due_at: datetime


class AuditRequest(BaseModel):
    request_id: str
    application_id: str
    program_code: str
    figure: str
    declared_fen: int
    due_at: datetime
    applicant_name: str = ""
    project_title: str = ""


class NoticeEntry(BaseModel):
    """One award in a notice batch."""

    application_id: str
    applicant_credit_code: str
    applicant_name: str
    project_title: str
    amount_fen: int
    # Noticed again (after a dismissed objection) with the money it already has: not allocated.
    renotice: bool = False


class NoticeBatcherInput(BaseModel):
    """The notice batcher of one program (`notice-<program>`), carried over continue-as-new."""

    program_code: str
    owner_department: str  # a Department: it handles the objections
    over_budget_policy: str  # an OverBudgetPolicy
    notice_working_days: int = 7
    notice_seconds: float | None = None  # demo override of the notice period
    batch_window_seconds: float = 24 * 3600.0
    batches: int = 0  # batches published so far
    pending: list[NoticeEntry] = []  # entries carried over (waitlisted, or arrived late)
    waitlisted: list[str] = []  # application ids among `pending` waiting for budget


class JoinNoticeBatch(BaseModel):
    entry: NoticeEntry
    batcher: NoticeBatcherInput  # how to start the batcher if it is not running


class Allocation(BaseModel):
    application_id: str
    reserved: bool  # False: waitlisted
    amount_fen: int  # reserved (possibly cut pro rata); 0 when waitlisted
    requested_fen: int


class AllocateBatchRequest(BaseModel):
    batch_id: str
    program_code: str
    fiscal_year: int
    policy: str  # an OverBudgetPolicy
    entries: list[NoticeEntry]


class Allocations(BaseModel):
    allocations: list[Allocation]


class PublishNoticeRequest(BaseModel):
    batch_id: str
    program_code: str
    owner_department: str
    batch_number: int
    entries: list[NoticeEntry]
    opens_at: datetime
    closes_at: datetime


class NoticePublished(BaseModel):
    """The batcher tells a grant what its batch gave it (signal contracts.NOTICE_PUBLISHED)."""

    batch_id: str
    reserved: bool  # False: waitlisted for a later batch
    amount_fen: int
    requested_fen: int
    closes_at: datetime
