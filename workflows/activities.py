"""Activities of the grant and funding-plan workflows: every side effect of a workflow goes
through one of these, and each calls a service over gRPC (or the registry at the edge).

Activities are retried by Temporal, so each is idempotent: creating calls carry deterministic
request ids, reports carry deterministic event ids, payments are idempotent per award. An answer
that retrying cannot change (bad input, wrong state, a value outside Grantflow's vocabulary)
becomes a non-retryable ApplicationError typed with an ErrorType; a service that cannot be
reached is retried until it can. A payment gateway's passing failure is GATEWAY_FAILED, so the
funding plan counts gateway answers, and only those, against a line's attempts.

Each activity takes one argument. Activities whose signature changed keep their old name and
signature under "second generation" below, for grants and plans started before; the third
generation's have a `_v3` name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import grpc
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from grantflow.v1 import (
    applications_pb2,
    calendar_pb2,
    common_pb2,
    disbursement_pb2,
    notice_pb2,
    review_pb2,
)
from services.common.clients import ServiceClients
from services.common.db import from_timestamp, to_timestamp
from services.common.errors import REASON_PAYMENT_GATEWAY, REASON_PAYMENT_SETTLING, error_reason
from services.common.vocabulary import (
    Department,
    ErrorType,
    GrantStage,
    Milestone,
    OverBudgetPolicy,
    VocabularyError,
)
from workflows import contracts
from workflows.contracts import SETTLING
from workflows.models import (
    AllocateBatchRequest,
    Allocation,
    Allocations,
    AuditRequest,
    AwardRef,
    CreateReviewTaskRequest,
    DeadlineRequest,
    EligibilityCheck,
    EligibilityRecord,
    EligibilityRequest,
    EligibilityVerdict,
    ExpertReviewRequest,
    InstalmentRelease,
    JoinNoticeBatch,
    OverdueReminder,
    PaymentFailure,
    PaymentRequest,
    PaymentResult,
    PlanRef,
    PublishNoticeRequest,
    ReservationRelease,
    ReserveRequest,
    ScheduledAward,
    StageReport,
    TasksToCancel,
)
from workflows.registry import EnterpriseRegistry

T = TypeVar("T")
MAX_CREDIT_REASON = 1000  # AddCreditListEntryRequest.reason (services/applications/api.py)

# Answers that no retry can change.
FINAL_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNAUTHENTICATED,
}


async def call(rpc: Awaitable[T]) -> T:
    """Awaits a service call; final answers become non-retryable ApplicationErrors typed with
    the status code's name (ErrorType), anything else propagates and is retried."""
    try:
        return await rpc
    except grpc.aio.AioRpcError as error:
        raise translated(error) from None


def translated(error: grpc.aio.AioRpcError) -> Exception:
    if error.code() in FINAL_CODES:
        return ApplicationError(
            error.details() or error.code().name,
            type=ErrorType.parse(error.code().name),
            non_retryable=True,
        )
    return error


@contextmanager
def unknown_terms_are_final() -> Iterator[None]:
    """A stage, department or state outside the vocabulary is a defect no retry can mend: fail
    the activity for good (the workflow sees it) instead of retrying it forever."""
    try:
        yield
    except VocabularyError as error:
        raise ApplicationError(
            str(error), type=ErrorType.UNKNOWN_TERM, non_retryable=True
        ) from None


class GrantActivities:
    def __init__(
        self,
        clients: ServiceClients,
        registry: EnterpriseRegistry,
        temporal: Client | None = None,
        task_queue: str = "",
    ) -> None:
        self.clients = clients
        self.registry = registry
        # The worker's Temporal client: a grant joins its program's notice batcher by
        # signal-with-start, which workflow code cannot do.
        self.temporal = temporal
        self.task_queue = task_queue

    # ------------------------------------------------------------------------- notice batches

    @activity.defn(name="join_notice_batch")
    async def join_notice_batch(self, join: JoinNoticeBatch) -> None:
        """Adds the award to its program's open batch, starting the batcher if none runs (the
        batcher ignores a second join of the same application)."""
        assert self.temporal is not None, "the worker gives grant activities a Temporal client"
        await self.temporal.start_workflow(
            contracts.NOTICE_BATCH_WORKFLOW,
            join.batcher,
            id=contracts.notice_batcher_id(join.batcher.program_code),
            task_queue=self.task_queue or activity.info().task_queue,
            start_signal=contracts.JOIN_NOTICE_BATCH,
            start_signal_args=[join.entry],
        )

    @activity.defn(name="check_eligibility")
    async def check_eligibility(self, request: EligibilityCheck) -> EligibilityVerdict:
        """资格审查 by the applications service, which keeps each check and its evidence."""
        answer = await call(
            self.clients.applications.CheckEligibility(
                applications_pb2.CheckEligibilityRequest(application_id=request.application_id)
            )
        )
        return EligibilityVerdict(
            passed=answer.passed,
            reasons=[c.reason_zh for c in answer.checks if not c.passed],
            remaining_year_cap_fen=answer.remaining_year_cap_fen,
        )

    @activity.defn(name="allocate_batch")
    async def allocate_batch(self, request: AllocateBatchRequest) -> Allocations:
        """Reserves a notice batch against the program's budget line (idempotent by batch)."""
        with unknown_terms_are_final():
            policy = OverBudgetPolicy.parse(request.policy).to_proto()
        answer = await call(
            self.clients.disbursement.AllocateBatch(
                disbursement_pb2.AllocateBatchRequest(
                    batch_id=request.batch_id,
                    program_code=request.program_code,
                    fiscal_year=request.fiscal_year,
                    policy=policy,  # type: ignore[arg-type]
                    entries=[
                        disbursement_pb2.AllocationEntry(
                            application_id=e.application_id,
                            amount_fen=e.amount_fen,
                            applicant_credit_code=e.applicant_credit_code,
                            applicant_name=e.applicant_name,
                        )
                        for e in request.entries
                    ],
                )
            )
        )
        return Allocations(
            allocations=[
                Allocation(
                    application_id=a.application_id,
                    reserved=a.state == disbursement_pb2.ALLOCATION_STATE_RESERVED,
                    amount_fen=a.amount_fen,
                    requested_fen=a.requested_fen,
                )
                for a in answer.allocations
            ]
        )

    @activity.defn(name="create_expert_review")
    async def create_expert_review(self, request: ExpertReviewRequest) -> str:
        """Draws the panel (the review service keeps conflicted experts out); the panel id."""
        review = request.review
        panel = await call(
            self.clients.review.CreateExpertReview(
                review_pb2.CreateExpertReviewRequest(
                    request_id=request.request_id,
                    application_id=request.application_id,
                    program_code=request.program_code,
                    applicant_credit_code=request.applicant_credit_code,
                    panel_size=review.panel_size,
                    field=review.field,
                    rubric=[
                        common_pb2.RubricCriterion(
                            code=c.code, name=c.name, max_points=c.max_points
                        )
                        for c in review.rubric
                    ],
                    aggregation=review.aggregation.to_proto(),  # type: ignore[arg-type]
                    pass_score_centi=review.pass_score_centi,
                    due_at=to_timestamp(request.due_at),
                    applicant_name=request.applicant_name,
                    project_title=request.project_title,
                )
            )
        )
        return panel.panel_id

    @activity.defn(name="create_audit_task")
    async def create_audit_task(self, request: AuditRequest) -> str:
        task = await call(
            self.clients.review.CreateAuditTask(
                review_pb2.CreateAuditTaskRequest(
                    request_id=request.request_id,
                    application_id=request.application_id,
                    program_code=request.program_code,
                    figure=request.figure,
                    declared_fen=request.declared_fen,
                    due_at=to_timestamp(request.due_at),
                    applicant_name=request.applicant_name,
                    project_title=request.project_title,
                )
            )
        )
        return task.task_id

    @activity.defn(name="publish_notice")
    async def publish_notice(self, request: PublishNoticeRequest) -> None:
        with unknown_terms_are_final():
            owner = Department.parse(request.owner_department).to_proto()
        await call(
            self.clients.notices.PublishNotice(
                notice_pb2.PublishNoticeRequest(
                    batch_id=request.batch_id,
                    program_code=request.program_code,
                    batch_number=request.batch_number,
                    owner_department=owner,  # type: ignore[arg-type]
                    entries=[
                        notice_pb2.NoticeEntryInput(
                            application_id=e.application_id,
                            applicant_name=e.applicant_name,
                            project_title=e.project_title,
                            amount_fen=e.amount_fen,
                            applicant_credit_code=e.applicant_credit_code,
                        )
                        for e in request.entries
                    ],
                    opens_at=to_timestamp(request.opens_at),
                    closes_at=to_timestamp(request.closes_at),
                )
            )
        )

    @activity.defn(name="leave_notice_batch")
    async def leave_notice_batch(self, join: JoinNoticeBatch) -> None:
        assert self.temporal is not None, "the worker gives grant activities a Temporal client"
        handle = self.temporal.get_workflow_handle(
            contracts.notice_batcher_id(join.batcher.program_code)
        )
        try:
            await handle.signal(contracts.LEAVE_NOTICE_BATCH, join.entry.application_id)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise

    # ------------------------------------------------------------------------------ grants

    @activity.defn(name="look_up_enterprise")
    async def look_up_enterprise(self, request: EligibilityRequest) -> EligibilityRecord:
        record = await self.registry.lookup(request.applicant_credit_code, request.applicant_name)
        return EligibilityRecord(enterprise=record)

    @activity.defn(name="working_days_deadline")
    async def working_days_deadline(self, request: DeadlineRequest) -> DeadlineRequest:
        """The end of a period of working days, from the applications service's calendar (the
        calendar is data that changes, so it is read in an activity and recorded in history,
        never in workflow code). A year without data counts Monday-Friday; the service raises
        the alert, and the grant goes on."""
        answer = await call(
            self.clients.calendar.WorkingDaysDeadline(
                calendar_pb2.WorkingDaysDeadlineRequest(
                    start=to_timestamp(request.start), working_days=request.working_days
                )
            )
        )
        if answer.fallback_years:
            activity.logger.warning(
                "deadline counted Monday-Friday for years without calendar data: %s",
                list(answer.fallback_years),
            )
        return DeadlineRequest(
            start=from_timestamp(answer.deadline), working_days=request.working_days
        )

    @activity.defn(name="create_review_task")
    async def create_review_task(self, request: CreateReviewTaskRequest) -> str:
        with unknown_terms_are_final():
            department = Department.parse(request.department).to_proto()
        task = await call(
            self.clients.review.CreateTask(
                review_pb2.CreateTaskRequest(
                    request_id=request.request_id,
                    application_id=request.application_id,
                    program_code=request.program_code,
                    department=department,  # type: ignore[arg-type]
                    round=request.round,
                    proposed_amount_fen=request.proposed_amount_fen,
                    due_at=to_timestamp(request.due_at),
                    applicant_name=request.applicant_name,
                    project_title=request.project_title,
                )
            )
        )
        return task.task_id

    @activity.defn(name="cancel_review_tasks_v3")
    async def cancel_review_tasks_v3(self, request: TasksToCancel) -> int:
        answer = await call(
            self.clients.review.CancelTasks(
                review_pb2.CancelTasksRequest(
                    application_id=request.application_id,
                    reason=request.reason,
                    task_ids=request.task_ids,
                )
            )
        )
        return answer.cancelled

    @activity.defn(name="remind_overdue_tasks_v3")
    async def remind_overdue_tasks_v3(self, request: OverdueReminder) -> int:
        answer = await call(
            self.clients.review.RemindOverdueTasks(
                review_pb2.RemindOverdueTasksRequest(
                    application_id=request.application_id,
                    task_ids=request.task_ids,
                    level=request.level,  # type: ignore[arg-type]
                )
            )
        )
        return answer.reminded

    @activity.defn(name="report_stage")
    async def report_stage(self, report: StageReport) -> None:
        with unknown_terms_are_final():
            stage = GrantStage.parse(report.stage).to_proto()
        await call(
            self.clients.applications.ReportGrantStage(
                applications_pb2.ReportGrantStageRequest(
                    event_id=report.event_id,
                    change=applications_pb2.GrantStageChanged(
                        application_id=report.application_id,
                        stage=stage,  # type: ignore[arg-type]
                        reason=report.reason,
                        award_amount_fen=report.award_amount_fen,
                        program_code=report.program_code,
                        plan_id=report.plan_id,
                        sequence=report.sequence,
                    ),
                )
            )
        )

    @activity.defn(name="reserve_budget")
    async def reserve_budget(self, request: ReserveRequest) -> int:
        reservation = await call(
            self.clients.disbursement.ReserveBudget(
                disbursement_pb2.ReserveBudgetRequest(
                    application_id=request.application_id,
                    program_code=request.program_code,
                    amount_fen=request.amount_fen,
                    applicant_credit_code=request.applicant_credit_code,
                    applicant_name=request.applicant_name,
                )
            )
        )
        return reservation.amount_fen

    @activity.defn(name="release_reservation_v3")
    async def release_reservation_v3(self, request: ReservationRelease) -> int:
        """Gives the award's money back to the budget; answers the amount released."""
        reservation = await call(
            self.clients.disbursement.ReleaseReservation(
                disbursement_pb2.ReleaseReservationRequest(
                    application_id=request.application_id, reason=request.reason
                )
            )
        )
        return reservation.amount_fen

    @activity.defn(name="confirm_award_v3")
    async def confirm_award_v3(self, award: AwardRef) -> None:
        await call(
            self.clients.disbursement.ConfirmAward(
                disbursement_pb2.ConfirmAwardRequest(application_id=award.application_id)
            )
        )

    @activity.defn(name="confirm_award_scheduled")
    async def confirm_award_scheduled(self, award: ScheduledAward) -> None:
        """The award final with its instalment schedule (instalment 1 released with it)."""
        await call(
            self.clients.disbursement.ConfirmAward(
                disbursement_pb2.ConfirmAwardRequest(
                    application_id=award.application_id,
                    schedule=[
                        disbursement_pb2.InstalmentItem(
                            number=part.number,
                            amount_fen=part.amount_fen,
                            milestone=Milestone.parse(part.milestone).to_proto(),
                            due_at=to_timestamp(part.due_at),
                        )
                        for part in award.schedule
                    ],
                )
            )
        )

    @activity.defn(name="release_instalment")
    async def release_instalment(self, release: InstalmentRelease) -> None:
        """A confirmed milestone releases its instalment: it awaits a funding plan."""
        await call(
            self.clients.disbursement.ReleaseInstalment(
                disbursement_pb2.ReleaseInstalmentRequest(
                    application_id=release.application_id,
                    instalment=release.instalment,
                    confirmed_by=release.confirmed_by,
                    note=release.note,
                )
            )
        )

    # ------------------------------------------------------------------------------ plans

    @activity.defn(name="pay_line_v3")
    async def pay_line_v3(self, request: PaymentRequest) -> PaymentResult:
        """Pays one line. A gateway failure that a later attempt may overcome is GATEWAY_FAILED
        (non-retryable here: the plan counts such answers); a disbursement service that cannot
        be reached is retried by Temporal until it answers, and costs the line nothing."""
        try:
            line = await self.clients.disbursement.ExecutePayment(
                disbursement_pb2.ExecutePaymentRequest(
                    plan_id=request.plan_id, line_id=request.line_id
                )
            )
        except grpc.aio.AioRpcError as error:
            reason = error_reason(error)
            if reason in (REASON_PAYMENT_GATEWAY, REASON_PAYMENT_SETTLING):
                # A settling payment is a gateway answer that passes too (so plans started
                # before settlement existed wait it out); its detail tells newer plans it is
                # accepted, to be polled, never counted against the line.
                raise ApplicationError(
                    error.details() or "payment gateway failure",
                    *((SETTLING,) if reason == REASON_PAYMENT_SETTLING else ()),
                    type=ErrorType.GATEWAY_FAILED,
                    non_retryable=True,
                ) from None
            raise translated(error) from None
        return PaymentResult(
            line_id=line.line_id,
            amount_fen=line.amount_fen,
            gateway_reference=line.gateway_reference,
            instalment=line.instalment,
        )

    @activity.defn(name="mark_payment_failed")
    async def mark_payment_failed(self, failure: PaymentFailure) -> None:
        await call(
            self.clients.disbursement.MarkPaymentFailed(
                disbursement_pb2.MarkPaymentFailedRequest(
                    plan_id=failure.plan_id, line_id=failure.line_id, reason=failure.reason
                )
            )
        )

    @activity.defn(name="complete_funding_plan_v3")
    async def complete_funding_plan_v3(self, plan: PlanRef) -> None:
        await call(
            self.clients.disbursement.CompleteFundingPlan(
                disbursement_pb2.CompleteFundingPlanRequest(plan_id=plan.plan_id)
            )
        )

    # --------------------------------------------- second generation (legacy signatures)

    @activity.defn(name="cancel_review_tasks")
    async def cancel_review_tasks(
        self, application_id: str, reason: str, task_ids: list[str]
    ) -> int:
        return await self.cancel_review_tasks_v3(
            TasksToCancel(application_id=application_id, reason=reason, task_ids=task_ids)
        )

    @activity.defn(name="remind_overdue_tasks")
    async def remind_overdue_tasks(
        self, application_id: str, task_ids: list[str], level: int
    ) -> int:
        return await self.remind_overdue_tasks_v3(
            OverdueReminder(application_id=application_id, task_ids=task_ids, level=level)
        )

    @activity.defn(name="release_reservation")
    async def release_reservation(self, application_id: str, reason: str) -> None:
        await self.release_reservation_v3(
            ReservationRelease(application_id=application_id, reason=reason)
        )

    @activity.defn(name="confirm_award")
    async def confirm_award(self, application_id: str) -> None:
        await self.confirm_award_v3(AwardRef(application_id=application_id))

    @activity.defn(name="execute_payment")
    async def execute_payment(self, request: PaymentRequest) -> PaymentResult:
        """The second generation's payment: every failure but a final answer is retried by the
        plan's bounded retry policy, as it was."""
        line = await call(
            self.clients.disbursement.ExecutePayment(
                disbursement_pb2.ExecutePaymentRequest(
                    plan_id=request.plan_id, line_id=request.line_id
                )
            )
        )
        return PaymentResult(
            line_id=line.line_id,
            amount_fen=line.amount_fen,
            gateway_reference=line.gateway_reference,
        )

    @activity.defn(name="complete_funding_plan")
    async def complete_funding_plan(self, plan_id: str) -> None:
        await self.complete_funding_plan_v3(PlanRef(plan_id=plan_id))

    # ------------------------------------------------------------------------------- clawbacks

    @activity.defn(name="bar_clawed_back_enterprise")
    async def bar_clawed_back_enterprise(self, clawback: contracts.ClawbackInput) -> str:
        """Puts a clawback's enterprise on the credit list (财政资金追回失信名单) for its bar;
        the clawback is the request id, so a retry adds nothing. Returns the entry id."""
        yuan = f"{clawback.amount_fen // 100}.{clawback.amount_fen % 100:02d}"
        reason = (
            f"追回财政资金{yuan}元（申请 {clawback.application_id}，项目 "
            f"{clawback.program_code}）：{clawback.reason}"
        )
        entry = await call(
            self.clients.applications.AddCreditListEntry(
                applications_pb2.AddCreditListEntryRequest(
                    request_id=contracts.clawback_workflow_id(clawback.clawback_id),
                    credit_code=clawback.applicant_credit_code,
                    list_name=contracts.CLAWBACK_CREDIT_LIST,
                    reason=reason[:MAX_CREDIT_REASON],
                    source=f"clawback {clawback.clawback_id}",
                    valid_from=to_timestamp(clawback.opened_at),
                    valid_until=to_timestamp(clawback.bar_until),
                )
            )
        )
        return entry.entry_id

    def all(self) -> list[object]:
        return [
            self.bar_clawed_back_enterprise,
            self.join_notice_batch,
            self.leave_notice_batch,
            self.check_eligibility,
            self.allocate_batch,
            self.create_expert_review,
            self.create_audit_task,
            self.publish_notice,
            self.look_up_enterprise,
            self.working_days_deadline,
            self.create_review_task,
            self.cancel_review_tasks_v3,
            self.remind_overdue_tasks_v3,
            self.report_stage,
            self.reserve_budget,
            self.release_reservation_v3,
            self.confirm_award_v3,
            self.confirm_award_scheduled,
            self.release_instalment,
            self.pay_line_v3,
            self.mark_payment_failed,
            self.complete_funding_plan_v3,
            # second generation
            self.cancel_review_tasks,
            self.remind_overdue_tasks,
            self.release_reservation,
            self.confirm_award,
            self.execute_payment,
            self.complete_funding_plan,
        ]
