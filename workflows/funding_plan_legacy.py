"""The first generation of FundingPlanWorkflow's payment run, for plans started before the v3
run (workflows/funding_plan.py, patch `funding-plan-v3`): every grant told of its plan first, then
the lines paid in batches of ten, a line given up after six attempts of any kind.

Kept as it ran, command for command, so that such plans and the recorded histories
funding-plan-0*.json replay; FundingPlanWorkflow.run hands a plan without the v3 marker here.
Delete this module and the legacy activities once no such plan runs.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import contracts
    from workflows.activities import GrantActivities
    from workflows.grant_legacy import SERVICE_RETRY, SERVICE_TIMEOUT
    from workflows.models import (
        FundingPlanOutcome,
        PaymentFailure,
        PaymentRequest,
        PaymentResult,
    )

# A payment attempt that keeps failing is reported after this many tries, not retried forever.
PAYMENT_ATTEMPTS = 6
# Longer than the gateway's own call timeout (30 s), so an attempt is never abandoned while the
# disbursement service may still be waiting for the bank's answer.
PAYMENT_TIMEOUT = timedelta(seconds=60)
PAYMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=PAYMENT_ATTEMPTS,
)
# Lines paid at the same time; the gateway is an external system with its own limits.
CONCURRENT_PAYMENTS = 10


class LegacyFundingPlan:
    def __init__(self) -> None:
        self._paid = 0
        self._failed = 0
        self._total = 0

    async def run(self, plan: contracts.FundingPlanInput) -> FundingPlanOutcome:
        lines = list(zip(plan.line_ids, plan.application_ids, strict=True))
        self._total = len(lines)
        for line_id, application_id in lines:
            await self._tell_grant(
                application_id,
                contracts.FUNDING_PLAN_ASSIGNED,
                contracts.FundingPlanAssigned(plan_id=plan.plan_id, line_id=line_id),
            )
        for start in range(0, len(lines), CONCURRENT_PAYMENTS):
            batch = lines[start : start + CONCURRENT_PAYMENTS]
            await asyncio.gather(*[self._pay(plan.plan_id, line, app) for line, app in batch])
        await workflow.execute_activity_method(
            GrantActivities.complete_funding_plan,
            plan.plan_id,
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )
        return FundingPlanOutcome(
            plan_id=plan.plan_id, paid_lines=self._paid, failed_lines=self._failed
        )

    async def _pay(self, plan_id: str, line_id: str, application_id: str) -> None:
        try:
            result = await workflow.execute_activity_method(
                GrantActivities.execute_payment,
                PaymentRequest(plan_id=plan_id, line_id=line_id),
                start_to_close_timeout=PAYMENT_TIMEOUT,
                retry_policy=PAYMENT_RETRY,
            )
        except ActivityError as error:
            reason = str(error.cause or error)
            try:
                await workflow.execute_activity_method(
                    GrantActivities.mark_payment_failed,
                    PaymentFailure(plan_id=plan_id, line_id=line_id, reason=reason),
                    start_to_close_timeout=SERVICE_TIMEOUT,
                    retry_policy=SERVICE_RETRY,
                )
            except ActivityError:
                # The gateway says the payment went through after all (its answer was lost):
                # settle the line with the same idempotency key instead of failing it.
                result = await workflow.execute_activity_method(
                    GrantActivities.execute_payment,
                    PaymentRequest(plan_id=plan_id, line_id=line_id),
                    start_to_close_timeout=SERVICE_TIMEOUT,
                    retry_policy=SERVICE_RETRY,
                )
                await self._settled(plan_id, line_id, application_id, result)
                return
            self._failed += 1
            await self._tell_grant(
                application_id,
                contracts.PAYMENT_FAILED,
                contracts.PaymentFailed(plan_id=plan_id, line_id=line_id, reason=reason),
            )
            return
        await self._settled(plan_id, line_id, application_id, result)

    async def _settled(
        self, plan_id: str, line_id: str, application_id: str, result: PaymentResult
    ) -> None:
        self._paid += 1
        await self._tell_grant(
            application_id,
            contracts.PAYMENT_SETTLED,
            contracts.PaymentSettled(
                plan_id=plan_id,
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

    def progress(self) -> FundingPlanOutcome:
        # A query: it adds no command, so its answer may grow without a patch.
        return FundingPlanOutcome(
            plan_id=workflow.info().workflow_id.removeprefix("plan-"),
            paid_lines=self._paid,
            failed_lines=self._failed,
            total_lines=self._total,
            pending_lines=self._total - self._paid - self._failed,
        )
