"""Stand-ins for the grant workflows' activities: they record what the workflow asked of the
services and answer as the services would (task ids, budget refusals, payment outcomes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from grantflow.sample import credit_code
from services.common.vocabulary import ErrorType, OverBudgetPolicy
from services.common.workdays import add_working_days, library_years
from workflows import contracts
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
from workflows.registry import LocalEnterpriseRegistry
from workflows.rules import ScheduledInstalment

BARRED = credit_code(999)


@dataclass
class FakeServices:
    budget_fen: int = 10**12
    cancel_delay_s: float = 0.0
    refuse_payment_lines: set[str] = field(default_factory=set)
    # line id -> how many more attempts the gateway times out (GATEWAY_FAILED), or the
    # disbursement service cannot be reached (a plain, retryable failure)
    gateway_timeouts: dict[str, int] = field(default_factory=dict)
    unreachable: dict[str, int] = field(default_factory=dict)
    # lines the gateway paid although every answer was lost: marking them failed is refused
    paid_despite_timeouts: set[str] = field(default_factory=set)
    # line id -> how many more attempts the gateway answers "accepted, settling"
    settling: dict[str, int] = field(default_factory=dict)
    payment_attempts: dict[str, int] = field(default_factory=dict)
    # line id -> payments the gateway answered as done (a line paid twice would count 2)
    payments_answered: dict[str, int] = field(default_factory=dict)
    # lines whose payment waits until `release` is set (a plan caught in the middle of its run)
    hold_lines: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    reports: list[StageReport] = field(default_factory=list)
    tasks: dict[str, CreateReviewTaskRequest] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    cancelled_tasks: list[str] = field(default_factory=list)
    reminders: list[tuple[str, int, list[str]]] = field(default_factory=list)
    reserved: dict[str, int] = field(default_factory=dict)
    in_plan: set[str] = field(default_factory=set)  # reservations a draft plan holds
    released: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    paid: dict[str, int] = field(default_factory=dict)
    failed_lines: list[str] = field(default_factory=list)
    completed_plans: list[str] = field(default_factory=list)
    line_amounts: dict[str, int] = field(default_factory=dict)
    # Fourth generation: eligibility, experts, audit, notice batches.
    client: Client | None = None  # the test server's client, for signal-with-start
    task_queue: str = ""
    ineligible: dict[str, list[str]] = field(default_factory=dict)  # application -> reasons
    year_cap_left: dict[str, int] = field(default_factory=dict)  # application -> fen left
    expert_reviews: dict[str, ExpertReviewRequest] = field(default_factory=dict)
    audits: dict[str, AuditRequest] = field(default_factory=dict)
    allocations: list[AllocateBatchRequest] = field(default_factory=list)
    notices: list[PublishNoticeRequest] = field(default_factory=list)
    left_batches: list[str] = field(default_factory=list)
    # Fifth generation: awards paid in instalments.
    schedules: dict[str, list[ScheduledInstalment]] = field(default_factory=dict)
    released_instalments: list[tuple[str, int, str]] = field(default_factory=list)
    line_instalments: dict[str, int] = field(default_factory=dict)  # line -> instalment it pays

    def stages(self, application_id: str) -> list[str]:
        return [r.stage for r in self.reports if r.application_id == application_id]

    def task_ids(self, application_id: str, round_: int) -> dict[str, str]:
        """department -> task id of that round."""
        return {
            t.department: tid
            for tid, t in self.tasks.items()
            if t.application_id == application_id and t.round == round_
        }

    def activities(self) -> list[object]:
        registry = LocalEnterpriseRegistry(barred={BARRED})

        @activity.defn(name="look_up_enterprise")
        async def look_up_enterprise(request: EligibilityRequest) -> EligibilityRecord:
            return EligibilityRecord(
                enterprise=await registry.lookup(
                    request.applicant_credit_code, request.applicant_name
                )
            )

        @activity.defn(name="working_days_deadline")
        async def working_days_deadline(request: DeadlineRequest) -> DeadlineRequest:
            return DeadlineRequest(
                start=add_working_days(
                    request.start, request.working_days, library_years().get
                ).end,
                working_days=request.working_days,
            )

        @activity.defn(name="create_review_task")
        async def create_review_task(request: CreateReviewTaskRequest) -> str:
            task_id = f"task-{request.request_id}"
            self.tasks[task_id] = request
            return task_id

        @activity.defn(name="cancel_review_tasks_v3")
        async def cancel_review_tasks(request: TasksToCancel) -> int:
            await asyncio.sleep(self.cancel_delay_s)
            self.cancelled.append(request.application_id)
            self.cancelled_tasks.extend(request.task_ids)
            return len(request.task_ids)

        @activity.defn(name="remind_overdue_tasks_v3")
        async def remind_overdue_tasks(request: OverdueReminder) -> int:
            self.reminders.append((request.application_id, request.level, request.task_ids))
            return len(request.task_ids)

        @activity.defn(name="report_stage")
        async def report_stage(report: StageReport) -> None:
            if len(report.reason) > 1000:  # as the applications service refuses it
                raise ApplicationError(
                    "reason too long", type="INVALID_ARGUMENT", non_retryable=True
                )
            if all(r.event_id != report.event_id for r in self.reports):
                self.reports.append(report)

        @activity.defn(name="reserve_budget")
        async def reserve_budget(request: ReserveRequest) -> int:
            if request.application_id not in self.reserved:
                if sum(self.reserved.values()) + request.amount_fen > self.budget_fen:
                    raise ApplicationError(
                        "budget exhausted", type="FAILED_PRECONDITION", non_retryable=True
                    )
                self.reserved[request.application_id] = request.amount_fen
            return self.reserved[request.application_id]

        @activity.defn(name="release_reservation_v3")
        async def release_reservation(request: ReservationRelease) -> int:
            if request.application_id in self.in_plan:
                raise ApplicationError(
                    "the reservation is in a funding plan",
                    type=ErrorType.FAILED_PRECONDITION,
                    non_retryable=True,
                )
            released = self.reserved.pop(request.application_id, 0)
            self.released.append(request.application_id)
            return released

        @activity.defn(name="confirm_award_v3")
        async def confirm_award(award: AwardRef) -> None:
            self.confirmed.append(award.application_id)

        @activity.defn(name="confirm_award_scheduled")
        async def confirm_award_scheduled(award: ScheduledAward) -> None:
            self.confirmed.append(award.application_id)
            self.schedules[award.application_id] = award.schedule

        @activity.defn(name="release_instalment")
        async def release_instalment(release: InstalmentRelease) -> None:
            self.released_instalments.append(
                (release.application_id, release.instalment, release.confirmed_by)
            )

        @activity.defn(name="pay_line_v3")
        async def pay_line(request: PaymentRequest) -> PaymentResult:
            line = request.line_id
            self.payment_attempts[line] = self.payment_attempts.get(line, 0) + 1
            if self.unreachable.get(line, 0) > 0:
                self.unreachable[line] -= 1
                raise ConnectionError("disbursement service unreachable")
            if self.gateway_timeouts.get(line, 0) > 0:
                self.gateway_timeouts[line] -= 1
                raise ApplicationError(
                    "payment gateway timed out", type=ErrorType.GATEWAY_FAILED, non_retryable=True
                )
            if self.settling.get(line, 0) > 0:
                self.settling[line] -= 1
                raise ApplicationError(
                    "payment accepted, settling",
                    contracts.SETTLING,
                    type=ErrorType.GATEWAY_FAILED,
                    non_retryable=True,
                )
            if line in self.refuse_payment_lines:
                raise ApplicationError(
                    "account closed", type=ErrorType.FAILED_PRECONDITION, non_retryable=True
                )
            if line in self.hold_lines:
                await self.release.wait()
            amount = self.line_amounts.get(line, 100)
            self.paid.setdefault(line, amount)
            self.payments_answered[line] = self.payments_answered.get(line, 0) + 1
            return PaymentResult(
                line_id=line,
                amount_fen=amount,
                gateway_reference=f"ref-{line}",
                instalment=self.line_instalments.get(line, 0),
            )

        @activity.defn(name="mark_payment_failed")
        async def mark_payment_failed(failure: PaymentFailure) -> None:
            if failure.line_id in self.paid_despite_timeouts:
                raise ApplicationError(
                    "the gateway paid the award: execute the line again",
                    type=ErrorType.FAILED_PRECONDITION,
                    non_retryable=True,
                )
            self.failed_lines.append(failure.line_id)

        @activity.defn(name="complete_funding_plan_v3")
        async def complete_funding_plan(plan: PlanRef) -> None:
            self.completed_plans.append(plan.plan_id)

        @activity.defn(name="check_eligibility")
        async def check_eligibility(request: EligibilityCheck) -> EligibilityVerdict:
            problems = self.ineligible.get(request.application_id, [])
            return EligibilityVerdict(
                passed=not problems,
                reasons=problems,
                remaining_year_cap_fen=self.year_cap_left.get(request.application_id, -1),
            )

        @activity.defn(name="create_expert_review")
        async def create_expert_review(request: ExpertReviewRequest) -> str:
            panel_id = f"panel-{request.request_id}"
            self.expert_reviews[panel_id] = request
            return panel_id

        @activity.defn(name="create_audit_task")
        async def create_audit_task(request: AuditRequest) -> str:
            task_id = f"audit-{request.request_id}"
            self.audits[task_id] = request
            return task_id

        @activity.defn(name="join_notice_batch")
        async def join_notice_batch(join: JoinNoticeBatch) -> None:
            assert self.client is not None
            await self.client.start_workflow(
                contracts.NOTICE_BATCH_WORKFLOW,
                join.batcher,
                id=contracts.notice_batcher_id(join.batcher.program_code),
                task_queue=self.task_queue,
                start_signal=contracts.JOIN_NOTICE_BATCH,
                start_signal_args=[join.entry],
            )

        @activity.defn(name="leave_notice_batch")
        async def leave_notice_batch(join: JoinNoticeBatch) -> None:
            self.left_batches.append(join.entry.application_id)
            assert self.client is not None
            handle = self.client.get_workflow_handle(
                contracts.notice_batcher_id(join.batcher.program_code)
            )
            await handle.signal(contracts.LEAVE_NOTICE_BATCH, join.entry.application_id)

        @activity.defn(name="allocate_batch")
        async def allocate_batch(request: AllocateBatchRequest) -> Allocations:
            """As the disbursement service does: reserves the batch against what is left."""
            self.allocations.append(request)
            left = self.budget_fen - sum(self.reserved.values())
            total = sum(e.amount_fen for e in request.entries)
            answer = []
            for entry in request.entries:
                amount = entry.amount_fen
                if request.policy == OverBudgetPolicy.PRO_RATA and total > left:
                    amount = entry.amount_fen * max(left, 0) // total
                elif request.policy != OverBudgetPolicy.PRO_RATA and amount > left:
                    answer.append(
                        Allocation(
                            application_id=entry.application_id,
                            reserved=False,
                            amount_fen=0,
                            requested_fen=entry.amount_fen,
                        )
                    )
                    continue
                self.reserved[entry.application_id] = amount
                if request.policy != OverBudgetPolicy.PRO_RATA:
                    left -= amount
                answer.append(
                    Allocation(
                        application_id=entry.application_id,
                        reserved=True,
                        amount_fen=amount,
                        requested_fen=entry.amount_fen,
                    )
                )
            return Allocations(allocations=answer)

        @activity.defn(name="publish_notice")
        async def publish_notice(request: PublishNoticeRequest) -> None:
            self.notices.append(request)

        return [
            check_eligibility,
            create_expert_review,
            create_audit_task,
            join_notice_batch,
            leave_notice_batch,
            allocate_batch,
            publish_notice,
            look_up_enterprise,
            working_days_deadline,
            create_review_task,
            cancel_review_tasks,
            remind_overdue_tasks,
            report_stage,
            reserve_budget,
            release_reservation,
            confirm_award,
            confirm_award_scheduled,
            release_instalment,
            pay_line,
            mark_payment_failed,
            complete_funding_plan,
        ]
