"""The second generation of GrantWorkflow's process, for grants started before the lighter
third generation (workflows/grant.py, patch `lighter-grant-v3`).

Kept as it ran, command for command, so that those grants and their recorded histories
(tests/replay/histories/*.json and *-v2.json) replay: GrantWorkflow.run hands a grant whose
history has no v3 marker to `LegacyGrant.run`, and its handlers to the methods here. Two changes
that issue no command were made on purpose: a decision no longer needs a claim made through the
workflow (the review service judges claims now), and withdrawal may also arrive as the v3 Update.
Delete this module, and the legacy activities, once no grant of this generation runs
(`grantflow ops find` with `GrantGeneration` unset lists them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows import contracts, rules
    from workflows.activities import GrantActivities
    from workflows.contracts import (
        ClaimReviewTask,
        DecideReviewTask,
        FundingPlanAssigned,
        PaymentFailed,
        PaymentSettled,
        ReviewTaskAck,
        Supplement,
        Withdraw,
    )
    from workflows.models import (
        CreateReviewTaskRequest,
        DeadlineRequest,
        EligibilityRequest,
        GrantInput,
        GrantOutcome,
        GrantStatus,
        ReserveRequest,
        StageReport,
    )

STAGE_KEY = SearchAttributeKey.for_keyword(contracts.SA_STAGE)
PROGRAM_KEY = SearchAttributeKey.for_keyword(contracts.SA_PROGRAM)
APPLICANT_KEY = SearchAttributeKey.for_keyword(contracts.SA_APPLICANT)
PENDING_KEY = SearchAttributeKey.for_keyword_list(contracts.SA_PENDING_DEPARTMENTS)

# Service calls are retried until they succeed (a service being down must not fail a grant);
# final answers (bad input, wrong state) are non-retryable errors raised by the activity.
SERVICE_TIMEOUT = timedelta(seconds=30)
SERVICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
# workflow.patched id of the review deadline reminders (grants started before keep their path).
REVIEW_REMINDERS_PATCH = "review-deadline-reminders"
REMINDER, ESCALATION = 1, 2  # review.proto EscalationLevel
# Longest reason a stage report carries (the applications service's limit is 1000).
MAX_REASON = 900
# Stages after which a withdrawal can no longer be honoured.
NOT_WITHDRAWABLE = {"IN_PAYMENT", "PAID", "REJECTED", "WITHDRAWN"}


@dataclass
class _Task:
    task_id: str
    department: str
    round: int
    proposed_amount_fen: int
    state: str = "open"  # open, claimed, decided, cancelled
    claimant: str = ""
    decision: str = ""
    reason: str = ""
    approved_amount_fen: int = 0


def _final_error_type(error: ActivityError) -> str:
    cause = error.cause
    return cause.type or "" if isinstance(cause, ApplicationError) else ""


class LegacyGrant:
    def __init__(self) -> None:
        self._stage = "SUBMITTED"
        self._reason = ""
        self._amount = 0
        self._sequence = 1  # the applications service recorded SUBMITTED itself
        self._round = 0
        self._tasks: dict[str, _Task] = {}
        self._creating_tasks = False
        self._figures: dict[str, int] = {}
        self._supplement: Supplement | None = None
        self._supplement_count = 0
        self._withdraw: Withdraw | None = None
        # Plans this grant was put in, in order, and the payment failures reported per plan.
        self._plans: dict[str, FundingPlanAssigned] = {}
        self._failures: dict[str, PaymentFailed] = {}
        self._failed_reported: set[str] = set()  # failed plans the applicant was told of
        self._settled: PaymentSettled | None = None
        self._reserved = False
        self._input: GrantInput | None = None

    # ----------------------------------------------------------------------------- the process

    async def run(self, grant: GrantInput) -> GrantOutcome:
        self._input = grant
        self._figures = dict(grant.figures)

        await self._report("FORMAL_CHECK")
        record = await workflow.execute_activity_method(
            GrantActivities.look_up_enterprise,
            EligibilityRequest(
                applicant_credit_code=grant.applicant_credit_code,
                applicant_name=grant.applicant_name,
            ),
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )
        while True:
            check = rules.formal_check(
                grant.rule, self._figures, grant.submitted_at, record.enterprise
            )
            if check.outcome == "reject":
                return await self._close("REJECTED", "formal check: " + "; ".join(check.reasons))
            if check.outcome == "pass":
                break
            if not await self._await_supplement("formal check: " + "; ".join(check.reasons)):
                return await self._after_failed_wait()
            await self._report("FORMAL_CHECK")

        while True:
            amount = rules.award_fen(
                grant.rule.amount_rule, self._figures, grant.requested_amount_fen
            )
            if amount <= 0:
                return await self._close("REJECTED", "the figures give no eligible amount")
            self._amount = amount
            verdict = await self._review_round(amount)
            if verdict == "withdrawn":
                return await self._withdrawn()
            if verdict == "reject":
                return await self._close("REJECTED", self._reason)
            if verdict == "return":
                if not await self._await_supplement(self._reason):
                    return await self._after_failed_wait()
                continue
            approved = [
                t.approved_amount_fen or t.proposed_amount_fen
                for t in self._tasks.values()
                if t.round == self._round and t.decision == "approve"
            ]
            self._amount = min([amount, *approved])
            break

        await self._report("APPROVED")
        try:
            await workflow.execute_activity_method(
                GrantActivities.reserve_budget,
                ReserveRequest(
                    application_id=grant.application_id,
                    program_code=grant.rule.code,
                    amount_fen=self._amount,
                    applicant_credit_code=grant.applicant_credit_code,
                    applicant_name=grant.applicant_name,
                ),
                start_to_close_timeout=SERVICE_TIMEOUT,
                retry_policy=SERVICE_RETRY,
            )
        except ActivityError as error:
            if _final_error_type(error) != "FAILED_PRECONDITION":
                raise
            return await self._close("REJECTED", f"no budget: {error.cause}")
        self._reserved = True

        await self._report("IN_NOTICE")
        notice = await self._period(grant.timing.notice_seconds, grant.rule.notice_working_days)
        if await self._wait(lambda: self._withdraw is not None, notice):
            return await self._withdrawn()
        await workflow.execute_activity_method(
            GrantActivities.confirm_award,
            grant.application_id,
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )
        await self._report("AWAITING_FUNDING_PLAN")

        while True:
            await workflow.wait_condition(
                lambda: (
                    self._settled is not None
                    or self._pending_plan() is not None
                    or self._withdraw is not None
                )
            )
            pending = self._pending_plan()
            # Plans in the order they came, so a failed one is reported before a later one paid.
            plan_id = pending.plan_id if pending else self._settled.plan_id if self._settled else ""
            if not plan_id:
                if await self._release("withdrawn by the applicant"):
                    return await self._withdrawn()
                self._withdraw = None
                await self._report(
                    "AWAITING_FUNDING_PLAN", "withdrawal refused: the award is in a funding plan"
                )
                continue
            await self._report("IN_PAYMENT", plan_id=plan_id)
            if await self._payment_settles(plan_id) and self._settled is not None:
                await self._report("PAID", plan_id=self._settled.plan_id)
                return self._outcome(gateway_reference=self._settled.gateway_reference)
            await self._report(
                "PAYMENT_FAILED",
                f"payment failed: {self._failures[plan_id].reason}; awaiting a later plan",
                plan_id=plan_id,
            )
            self._failed_reported.add(plan_id)

    async def _payment_settles(self, plan_id: str) -> bool:
        """Waits for the payment of plan_id: True when settled, False when it failed."""
        await workflow.wait_condition(
            lambda: self._settled is not None or plan_id in self._failures
        )
        if self._settled is not None and self._settled.plan_id == plan_id:
            return True
        return plan_id not in self._failures  # paid through another plan, this one not failed

    def _current_plan_id(self) -> str:
        if self._settled is not None:
            return self._settled.plan_id
        pending = self._pending_plan()
        return pending.plan_id if pending else ""

    def _pending_plan(self) -> FundingPlanAssigned | None:
        """The earliest plan this grant is in that has not been worked through: a plan whose
        failure arrived together with its assignment is still reported as failed."""
        return next(
            (p for p in self._plans.values() if p.plan_id not in self._failed_reported), None
        )

    async def _review_round(self, amount: int) -> str:
        """Creates one task per co-reviewing department and waits for their decisions."""
        assert self._input is not None
        grant = self._input
        self._round += 1
        current = self._round
        review_period = await self._period(
            grant.timing.review_seconds, grant.rule.review_working_days
        )
        due_at = workflow.now() + review_period
        await self._report("IN_REVIEW", f"review round {current}")
        self._creating_tasks = True
        departments = list(grant.rule.review_departments)
        task_ids = await asyncio.gather(
            *[
                workflow.execute_activity_method(
                    GrantActivities.create_review_task,
                    CreateReviewTaskRequest(
                        request_id=f"{workflow.info().workflow_id}-r{current}-{department}",
                        application_id=grant.application_id,
                        program_code=grant.rule.code,
                        department=department,
                        round=current,
                        proposed_amount_fen=amount,
                        due_at=due_at,
                        applicant_name=grant.applicant_name,
                        project_title=grant.project_title,
                    ),
                    start_to_close_timeout=SERVICE_TIMEOUT,
                    retry_policy=SERVICE_RETRY,
                )
                for department in departments
            ]
        )
        for department, task_id in zip(departments, task_ids, strict=True):
            self._tasks[task_id] = _Task(task_id, department, current, amount)
        self._creating_tasks = False
        self._publish_pending()

        def round_over() -> bool:
            return self._withdraw is not None or self._round_settled(current)

        if workflow.patched(REVIEW_REMINDERS_PATCH):
            await self._wait_reminding(round_over, due_at, review_period, current)
        else:  # grants started before reminders existed keep their recorded path
            await workflow.wait_condition(round_over)
        if self._withdraw is not None:
            return "withdrawn"
        decided = [t for t in self._tasks.values() if t.round == current and t.state == "decided"]
        for verdict in ("reject", "return"):
            deciding = [t for t in decided if t.decision == verdict]
            if deciding:
                first = deciding[0]
                await self._cancel_open_tasks(f"{first.department} decided {verdict}")
                label = "rejected" if verdict == "reject" else "returned for supplement"
                self._reason = f"{label} by {first.department}: {first.reason}"
                return verdict
        return "approve"

    async def _wait_reminding(
        self,
        round_over: Callable[[], bool],
        due_at: datetime,
        review_period: timedelta,
        current: int,
    ) -> None:
        """Waits for the round; reminds the reviewers when the due date passes and escalates
        after another review period (durable timers), then keeps waiting."""
        assert self._input is not None
        limit = max(due_at - workflow.now(), timedelta(seconds=1))
        for level in (REMINDER, ESCALATION):
            if await self._wait(round_over, limit):
                return
            overdue = [
                t.task_id
                for t in self._tasks.values()
                if t.round == current and t.state in ("open", "claimed")
            ]
            await workflow.execute_activity_method(
                GrantActivities.remind_overdue_tasks,
                args=[self._input.application_id, overdue, level],
                start_to_close_timeout=SERVICE_TIMEOUT,
                retry_policy=SERVICE_RETRY,
            )
            limit = review_period
        await workflow.wait_condition(round_over)

    def _round_settled(self, current: int) -> bool:
        tasks = [t for t in self._tasks.values() if t.round == current]
        if any(t.decision in ("reject", "return") for t in tasks):
            return True
        return all(t.state == "decided" for t in tasks)

    async def _await_supplement(self, reason: str) -> bool:
        """Asks for more information (补正) and waits for it until the deadline."""
        assert self._input is not None
        self._supplement = None
        await self._report("AWAITING_SUPPLEMENT", reason)
        period = await self._period(
            self._input.timing.supplement_seconds, self._input.rule.supplement_working_days
        )
        answered = await self._wait(
            lambda: self._supplement is not None or self._withdraw is not None, period
        )
        if self._withdraw is not None:
            return False
        if not answered or self._supplement is None:
            self._reason = "no supplement before the deadline"
            return False
        self._figures = dict(self._supplement.figures)
        return True

    async def _after_failed_wait(self) -> GrantOutcome:
        if self._withdraw is not None:
            return await self._withdrawn()
        return await self._close("REJECTED", self._reason)

    # ------------------------------------------------------------------------- endings

    async def _withdrawn(self) -> GrantOutcome:
        assert self._withdraw is not None
        reason = self._withdraw.reason or "withdrawn by the applicant"
        await self._cancel_open_tasks("application withdrawn")
        await self._release(reason)
        return await self._close("WITHDRAWN", reason)

    async def _close(self, stage: str, reason: str) -> GrantOutcome:
        await self._cancel_open_tasks(reason)
        if stage == "REJECTED":
            await self._release(reason)
        self._amount = 0  # nothing is awarded to a rejected or withdrawn application
        await self._report(stage, reason)
        return self._outcome()

    async def _release(self, reason: str) -> bool:
        """Compensation: gives the reservation back to the budget. False if it is in a plan."""
        assert self._input is not None
        if not self._reserved:
            return True
        try:
            await workflow.execute_activity_method(
                GrantActivities.release_reservation,
                args=[self._input.application_id, reason],
                start_to_close_timeout=SERVICE_TIMEOUT,
                retry_policy=SERVICE_RETRY,
            )
        except ActivityError as error:
            if _final_error_type(error) != "FAILED_PRECONDITION":
                raise
            return False
        self._reserved = False
        return True

    async def _cancel_open_tasks(self, reason: str) -> None:
        assert self._input is not None
        open_tasks = [t for t in self._tasks.values() if t.state in ("open", "claimed")]
        if not open_tasks:
            return
        # Cancelled here first, so a claim or decision arriving while the service cancels them
        # is refused by the validators instead of being accepted and then overwritten.
        for task in open_tasks:
            task.state = "cancelled"
        self._publish_pending()
        await workflow.execute_activity_method(
            GrantActivities.cancel_review_tasks,
            args=[self._input.application_id, reason, [t.task_id for t in open_tasks]],
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )

    def _outcome(self, gateway_reference: str = "") -> GrantOutcome:
        assert self._input is not None
        return GrantOutcome(
            application_id=self._input.application_id,
            stage=self._stage,
            reason=self._reason,
            award_amount_fen=self._amount,
            plan_id=self._settled.plan_id if self._settled else "",
            gateway_reference=gateway_reference,
        )

    # ------------------------------------------------------------------------- helpers

    async def _report(self, stage: str, reason: str = "", plan_id: str = "") -> None:
        assert self._input is not None
        if len(reason) > MAX_REASON:  # reviewers' reasons are long; a report has a limit
            reason = reason[: MAX_REASON - 1] + "…"
        self._stage = stage
        self._reason = reason
        self._sequence += 1
        self._upsert(STAGE_KEY.value_set(stage))
        await workflow.execute_activity_method(
            GrantActivities.report_stage,
            StageReport(
                event_id=f"{workflow.info().workflow_id}-{self._sequence}",
                application_id=self._input.application_id,
                stage=stage,
                reason=reason,
                award_amount_fen=self._amount,
                program_code=self._input.rule.code,
                plan_id=plan_id,
                sequence=self._sequence,
            ),
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )

    async def _period(self, override_seconds: float | None, working_days: int) -> timedelta:
        if override_seconds is not None:
            return timedelta(seconds=override_seconds)
        end = await workflow.execute_activity_method(
            GrantActivities.working_days_deadline,
            DeadlineRequest(start=workflow.now(), working_days=working_days),
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )
        return max(end.start - workflow.now(), timedelta(seconds=1))

    @staticmethod
    async def _wait(condition: object, limit: timedelta) -> bool:
        """True if the condition came true before the timeout."""
        try:
            await workflow.wait_condition(condition, timeout=limit)  # type: ignore[arg-type]
            return True
        except TimeoutError:
            return False

    def _publish_pending(self) -> None:
        pending = sorted(
            {t.department for t in self._tasks.values() if t.state in ("open", "claimed")}
        )
        self._upsert(PENDING_KEY.value_set(pending))

    @staticmethod
    def _upsert(update: SearchAttributeUpdate) -> None:
        # Grants are started with their search attributes (the intake consumer sets them all);
        # only those are kept current. A namespace without them registered (Temporal's
        # time-skipping test server cannot register any) then still runs grants.
        if workflow.info().typed_search_attributes.get(update.key) is not None:
            workflow.upsert_search_attributes([update])

    # ------------------------------------------------------------------------- updates

    def _task_for(self, task_id: str, department: str) -> _Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise ApplicationError(
                f"review task {task_id} does not belong to this grant", type=contracts.ERR_NOT_FOUND
            )
        if task.department != department:
            raise ApplicationError(
                f"review task {task_id} belongs to the {task.department} department",
                type=contracts.ERR_PERMISSION_DENIED,
            )
        return task

    def _check_claim(self, request: ClaimReviewTask) -> _Task:
        task = self._task_for(request.task_id, request.department)
        if task.state == "claimed" and task.claimant == request.reviewer:
            return task
        if task.state != "open":
            holder = f" by {task.claimant}" if task.state == "claimed" else ""
            raise ApplicationError(
                f"review task {task.task_id} is {task.state}{holder}",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        return task

    def _check_decision(self, request: DecideReviewTask) -> _Task:
        task = self._task_for(request.task_id, request.department)
        # The review service judges claims now: an open task may be decided by the reviewer it
        # vouches for; a claim made through this workflow earlier still binds.
        if task.state not in ("open", "claimed"):
            raise ApplicationError(
                f"review task {task.task_id} is {task.state}",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        if task.state == "claimed" and task.claimant != request.reviewer:
            raise ApplicationError(
                f"review task {task.task_id} is claimed by {task.claimant}",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        if request.approved_amount_fen > task.proposed_amount_fen:
            raise ApplicationError(
                "approved amount exceeds the proposed amount",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        return task

    async def claim_review_task(self, request: ClaimReviewTask) -> ReviewTaskAck:
        # A task may be claimed the instant the review service created it, before the activity's
        # result reached us: wait until the round's tasks are known, then check again.
        await workflow.wait_condition(lambda: not self._creating_tasks)
        task = self._check_claim(request)
        task.state = "claimed"
        task.claimant = request.reviewer
        return ReviewTaskAck(task_id=task.task_id, round=task.round, stage=self._stage)

    def validate_claim(self, request: ClaimReviewTask) -> None:
        if self._creating_tasks and request.task_id not in self._tasks:
            return
        self._check_claim(request)

    async def decide_review_task(self, request: DecideReviewTask) -> ReviewTaskAck:
        # Claims no longer pass through here, so a decision may come as early as a claim did.
        await workflow.wait_condition(lambda: not self._creating_tasks)
        task = self._check_decision(request)
        task.state = "decided"
        task.decision = request.decision
        task.reason = request.reason
        task.approved_amount_fen = request.approved_amount_fen
        self._publish_pending()
        return ReviewTaskAck(
            task_id=task.task_id,
            round=task.round,
            stage=self._stage,
            decision=task.decision,
            reason=task.reason,
            approved_amount_fen=task.approved_amount_fen,
        )

    def validate_decision(self, request: DecideReviewTask) -> None:
        if self._creating_tasks and request.task_id not in self._tasks:
            return
        self._check_decision(request)

    # ------------------------------------------------------------------------- signals, query

    def withdraw(self, request: Withdraw) -> None:
        if self._stage in NOT_WITHDRAWABLE:
            workflow.logger.info("withdrawal ignored at stage %s", self._stage)
            return
        self._withdraw = request

    def supplement(self, request: Supplement) -> None:
        # Redelivered events repeat a supplement; only a newer one counts.
        if request.supplement_count > self._supplement_count:
            self._supplement_count = request.supplement_count
            self._supplement = request

    # Payment signals may arrive together in one activation (a worker catching up), so each
    # handler only records; the main loop works through the plans in order.

    def funding_plan_assigned(self, request: FundingPlanAssigned) -> None:
        self._plans.setdefault(request.plan_id, request)

    def payment_settled(self, request: PaymentSettled) -> None:
        self._plans.setdefault(
            request.plan_id, FundingPlanAssigned(plan_id=request.plan_id, line_id=request.line_id)
        )
        if self._settled is None:
            self._settled = request

    def payment_failed(self, request: PaymentFailed) -> None:
        self._failures.setdefault(request.plan_id, request)

    def status(self) -> GrantStatus:
        return GrantStatus(
            application_id=self._input.application_id if self._input else "",
            stage=self._stage,
            reason=self._reason,
            award_amount_fen=self._amount,
            review_round=self._round,
            pending_departments=sorted(
                {t.department for t in self._tasks.values() if t.state in ("open", "claimed")}
            ),
            open_tasks={
                t.task_id: t.department
                for t in self._tasks.values()
                if t.state in ("open", "claimed")
            },
            plan_id=self._current_plan_id(),
            supplement_count=self._supplement_count,
        )
