"""FundingPlanWorkflow: one per approved funding plan (`plan-<plan id>`), the payment run.

The lines are paid a few at a time, each as soon as a place is free (not in batches that wait
for their slowest line), through the disbursement service (which calls the payment gateway with
the award's idempotency key, so neither a retry nor a later plan pays twice); the grant is told
the outcome. Only the gateway's answers count against a line: a timeout with the outcome unknown
or an unavailable gateway is tried again later, up to PAYMENT_ATTEMPTS times, then the line is
recorded as failed; a rejection fails it at once. A disbursement service that cannot be reached
is waited out and costs the line nothing. A grant is told its plan is paying only when its
payment does not go through at the first attempt (a payment that settles at once has nothing to
tell in between). The plan is closed when every line is settled.

A payment the gateway accepted but has not settled yet (late settlement, 待清算) is no failure:
from the first such answer (patch `funding-plan-settling`) the line is polled, its status query
first, every SETTLEMENT_POLL doubling up to SETTLEMENT_POLL_MAX, until it settles; it never
counts against the line's attempts and is never given up (the money has left). A plan that took
such an answer before this code waits it out through its gateway attempts, then as a line the
gateway paid (mark_payment_failed is refused), which ends the same way.

A line whose award has no confirmed receiving account is refused by the service (a final
answer): the line is failed with that reason and the award waits for a later plan.

Generations: a plan started before this code (no `funding-plan-v3` marker) runs
LegacyFundingPlan (funding_plan_legacy.py) as it did.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from services.common.vocabulary import ErrorType
    from workflows import contracts
    from workflows.activities import GrantActivities
    from workflows.funding_plan_legacy import LegacyFundingPlan
    from workflows.grant import SERVICE_RETRY, SERVICE_TIMEOUT, ServiceRefusal, final_error_type
    from workflows.models import (
        FundingPlanOutcome,
        PaymentFailure,
        PaymentRequest,
        PaymentResult,
        PlanRef,
    )

FUNDING_PLAN_PATCH = "funding-plan-v3"
# Taken only when the gateway first answers "accepted, settling": recorded histories never had one.
SETTLEMENT_PATCH = "funding-plan-settling"
# Polling a settling payment: 5 s, 10 s ... at most 10 min (durable timers; the history grows
# by one poll per interval, so a payment settling for a day costs a few hundred events).
SETTLEMENT_POLL = timedelta(seconds=5)
SETTLEMENT_POLL_MAX = timedelta(minutes=10)
# Gateway answers that may pass (timeout, unavailable) tolerated per line before it is failed.
PAYMENT_ATTEMPTS = 6
# Longer than the gateway's own call timeout (30 s), so an attempt is never abandoned while the
# disbursement service may still be waiting for the bank's answer.
PAYMENT_TIMEOUT = timedelta(seconds=60)
# Between two gateway answers that may pass: 1 s, 2 s, 4 s ... at most 60 s (durable timers).
GATEWAY_BACKOFF = timedelta(seconds=1)
GATEWAY_BACKOFF_MAX = timedelta(seconds=60)
# Lines paid at the same time; the gateway is an external system with its own limits.
CONCURRENT_PAYMENTS = 20


def settling(error: ActivityError) -> bool:
    """Whether a GATEWAY_FAILED answer says the payment was accepted and is settling."""
    cause = error.cause
    return isinstance(cause, ApplicationError) and contracts.SETTLING in cause.details


@workflow.defn(name=contracts.FUNDING_PLAN_WORKFLOW)
class FundingPlanWorkflow:
    @workflow.init
    def __init__(self, plan: contracts.FundingPlanInput) -> None:
        self.plan = plan
        self._paid = 0
        self._failed = 0
        self._legacy: LegacyFundingPlan | None = None

    @workflow.run
    async def run(self, plan: contracts.FundingPlanInput) -> FundingPlanOutcome:
        if not workflow.patched(FUNDING_PLAN_PATCH):
            self._legacy = LegacyFundingPlan()
            return await self._legacy.run(plan)
        places = asyncio.Semaphore(CONCURRENT_PAYMENTS)

        async def pay(line_id: str, application_id: str) -> None:
            async with places:
                await self._pay(line_id, application_id)

        await asyncio.gather(
            *[
                pay(line_id, application_id)
                for line_id, application_id in zip(plan.line_ids, plan.application_ids, strict=True)
            ]
        )
        await workflow.execute_local_activity_method(
            GrantActivities.complete_funding_plan_v3,
            PlanRef(plan_id=plan.plan_id),
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )
        return self.progress()

    async def _pay(self, line_id: str, application_id: str) -> None:
        plan_id = self.plan.plan_id
        request = PaymentRequest(plan_id=plan_id, line_id=line_id)
        backoff = GATEWAY_BACKOFF
        reason = ""
        for attempt in range(1, PAYMENT_ATTEMPTS + 1):
            try:
                result = await workflow.execute_activity_method(
                    GrantActivities.pay_line_v3,
                    request,
                    start_to_close_timeout=PAYMENT_TIMEOUT,
                    retry_policy=SERVICE_RETRY,
                )
                return await self._settled(line_id, application_id, result)
            except ActivityError as error:
                reason = str(error.cause or error)
                if final_error_type(error) != ErrorType.GATEWAY_FAILED:
                    break  # a final answer: the gateway rejected it, or the line cannot be paid
                if settling(error) and workflow.patched(SETTLEMENT_PATCH):
                    # Accepted, settling: polled until it settles, never counted or given up.
                    await self._tell_grant(
                        application_id,
                        contracts.FUNDING_PLAN_ASSIGNED,
                        contracts.FundingPlanAssigned(plan_id=plan_id, line_id=line_id),
                    )
                    return await self._settle_paid_line(
                        request, application_id, SETTLEMENT_POLL, SETTLEMENT_POLL_MAX
                    )
                workflow.logger.info(
                    "gateway failure on line %s (%d): %s", line_id, attempt, reason
                )
                if attempt == 1:  # the payment will take a while: the applicant is told
                    await self._tell_grant(
                        application_id,
                        contracts.FUNDING_PLAN_ASSIGNED,
                        contracts.FundingPlanAssigned(plan_id=plan_id, line_id=line_id),
                    )
                if attempt < PAYMENT_ATTEMPTS:
                    await workflow.sleep(backoff)
                    backoff = min(backoff * 2, GATEWAY_BACKOFF_MAX)
        try:
            await workflow.execute_local_activity_method(
                GrantActivities.mark_payment_failed,
                PaymentFailure(plan_id=plan_id, line_id=line_id, reason=reason),
                start_to_close_timeout=SERVICE_TIMEOUT,
                retry_policy=SERVICE_RETRY,
            )
        except ServiceRefusal:
            # The gateway says the payment went through after all (its answer was lost):
            # settle the line with the same idempotency key instead of failing it.
            return await self._settle_paid_line(request, application_id, backoff)
        self._failed += 1
        await self._tell_grant(
            application_id,
            contracts.PAYMENT_FAILED,
            contracts.PaymentFailed(plan_id=plan_id, line_id=line_id, reason=reason),
        )

    async def _settle_paid_line(
        self,
        request: PaymentRequest,
        application_id: str,
        backoff: timedelta,
        backoff_max: timedelta = GATEWAY_BACKOFF_MAX,
    ) -> None:
        """A line the gateway paid: executed again (same key) until the gateway answers. Its
        passing failures are waited out, never counted: the money has left, so the line cannot
        fail, and an error here would fail the whole run with every other line in it."""
        while True:
            try:
                result = await workflow.execute_activity_method(
                    GrantActivities.pay_line_v3,
                    request,
                    start_to_close_timeout=PAYMENT_TIMEOUT,
                    retry_policy=SERVICE_RETRY,
                )
                return await self._settled(request.line_id, application_id, result)
            except ActivityError as error:
                if final_error_type(error) != ErrorType.GATEWAY_FAILED:
                    raise
                await workflow.sleep(backoff)
                backoff = min(backoff * 2, backoff_max)

    async def _settled(self, line_id: str, application_id: str, result: PaymentResult) -> None:
        self._paid += 1
        await self._tell_grant(
            application_id,
            contracts.PAYMENT_SETTLED,
            contracts.PaymentSettled(
                plan_id=self.plan.plan_id,
                line_id=line_id,
                amount_fen=result.amount_fen,
                gateway_reference=result.gateway_reference,
            ),
        )

    async def _tell_grant(self, application_id: str, signal: str, payload: object) -> None:
        handle = workflow.get_external_workflow_handle(contracts.grant_workflow_id(application_id))
        try:
            await handle.signal(signal, payload)
        except Exception as error:  # a grant that is gone cannot be told; the ledger still is
            workflow.logger.warning("could not signal %s: %s", application_id, error)

    @workflow.query(name="progress")
    def progress(self) -> FundingPlanOutcome:
        if self._legacy is not None:
            return self._legacy.progress()
        return FundingPlanOutcome(
            plan_id=self.plan.plan_id, paid_lines=self._paid, failed_lines=self._failed
        )
