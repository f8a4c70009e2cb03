"""FundingPlanWorkflow: one per approved funding plan (`plan-<plan id>`), the payment run; and
FundingPlanChunkWorkflow, its children, each paying one slice of the plan's lines.

A plan runs to thousands of lines (the city's batches: 2,886), and a line costs its workflow about
seven history events, so one workflow paying them all would pass Temporal's history warning
(10,240 events) at 1,500 lines. The plan therefore pays its lines in chunks of CHUNK_LINES, each a
child workflow `plan-<plan id>-chunk-<n>` (FundingPlanChunkWorkflow), CHUNKS_AT_ONCE at a time.
A chunk carries only its own lines; it reports its counts to the plan by one signal every
REPORT_EVERY settled lines and returns them when done, so the plan's own history grows with its
chunks, not its lines, and its `progress` query answers total, paid, failed and pending lines.

How a line is paid (LinePayments, unchanged from the third generation): the lines are paid a few
at a time, each as soon as a place is free (not in batches that wait for their slowest line),
through the disbursement service (which calls the payment gateway with the award's idempotency
key, so neither a retry nor a later plan pays twice); the grant is told the outcome. Only the
gateway's answers count against a line: a timeout with the outcome unknown or an unavailable
gateway is tried again later, up to PAYMENT_ATTEMPTS times, then the line is recorded as failed;
a rejection fails it at once. A disbursement service that cannot be reached is waited out and
costs the line nothing. A grant is told its plan is paying only when its payment does not go
through at the first attempt (a payment that settles at once has nothing to tell in between).
The plan is closed when every line is settled.

A payment the gateway accepted but has not settled yet (late settlement, 待清算) is no failure:
from the first such answer (patch `funding-plan-settling`) the line is polled, its status query
first, every SETTLEMENT_POLL doubling up to SETTLEMENT_POLL_MAX, until it settles; it never
counts against the line's attempts and is never given up (the money has left). A plan that took
such an answer before this code waits it out through its gateway attempts, then as a line the
gateway paid (mark_payment_failed is refused), which ends the same way.

A line whose award has no confirmed receiving account is refused by the service (a final
answer): the line is failed with that reason and the award waits for a later plan.

Generations: a plan started before the v3 code (no `funding-plan-v3` marker) runs
LegacyFundingPlan (funding_plan_legacy.py) as it did; one started under v3 (its marker, not the
v4 one) pays every line itself with LinePayments, as it did; a plan started since
(`funding-plan-v4`) pays in chunks. LinePayments' commands are those of the v3 plans: changing
them is a workflow change for running v3 plans and chunks alike.
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
# The fourth generation's marker: the plan pays in chunk workflows.
CHUNKED_PLAN_PATCH = "funding-plan-v4"
# Gateway answers that may pass (timeout, unavailable) tolerated per line before it is failed.
PAYMENT_ATTEMPTS = 6
# Longer than the gateway's own call timeout (30 s), so an attempt is never abandoned while the
# disbursement service may still be waiting for the bank's answer.
PAYMENT_TIMEOUT = timedelta(seconds=60)
# Between two gateway answers that may pass: 1 s, 2 s, 4 s ... at most 60 s (durable timers).
GATEWAY_BACKOFF = timedelta(seconds=1)
GATEWAY_BACKOFF_MAX = timedelta(seconds=60)
# Lines paid at the same time by a v3 plan; the gateway is an external system with its own limits.
CONCURRENT_PAYMENTS = 20
# Lines per chunk: about seven events a line keeps a chunk's history near 1,750 events, far from
# the 10,240 warning even if its lines meet many gateway retries.
CHUNK_LINES = 250
# Chunks paying at the same time, each paying this many lines at a time: at most 30 payments
# in flight (the worker runs 50 activities at once, and the grants it signals need some too).
CHUNKS_AT_ONCE = 3
CHUNK_CONCURRENT_PAYMENTS = 10
# A chunk tells its plan its counts every this many settled lines (and at its end, by its
# result): the plan's progress lags by fewer lines than this per running chunk.
REPORT_EVERY = 25


def settling(error: ActivityError) -> bool:
    """Whether a GATEWAY_FAILED answer says the payment was accepted and is settling."""
    cause = error.cause
    return isinstance(cause, ApplicationError) and contracts.SETTLING in cause.details


class LinePayments:
    """Pays lines of one plan and counts them: the line-level behaviour of the plan, shared by
    the v3 run and the chunk workflows (see the module docstring)."""

    def __init__(self, plan_id: str) -> None:
        self.plan_id = plan_id
        self.paid = 0
        self.failed = 0
        self.paid_fen = 0

    async def pay(self, line_id: str, application_id: str) -> None:
        plan_id = self.plan_id
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
        self.failed += 1
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
        self.paid += 1
        self.paid_fen += result.amount_fen
        await self._tell_grant(
            application_id,
            contracts.PAYMENT_SETTLED,
            contracts.PaymentSettled(
                plan_id=self.plan_id,
                line_id=line_id,
                amount_fen=result.amount_fen,
                gateway_reference=result.gateway_reference,
                instalment=result.instalment,
            ),
        )

    async def _tell_grant(self, application_id: str, signal: str, payload: object) -> None:
        handle = workflow.get_external_workflow_handle(contracts.grant_workflow_id(application_id))
        try:
            await handle.signal(signal, payload)
        except Exception as error:  # a grant that is gone cannot be told; the ledger still is
            workflow.logger.warning("could not signal %s: %s", application_id, error)


@workflow.defn(name=contracts.FUNDING_PLAN_CHUNK_WORKFLOW)
class FundingPlanChunkWorkflow:
    """Pays one chunk of a plan's lines (`plan-<plan id>-chunk-<n>`), started by the plan."""

    @workflow.init
    def __init__(self, chunk: contracts.FundingPlanChunkInput) -> None:
        self.chunk = chunk
        self.lines = LinePayments(chunk.plan_id)
        self._reported = 0  # settled lines the plan was last told of

    @workflow.run
    async def run(self, chunk: contracts.FundingPlanChunkInput) -> contracts.ChunkProgress:
        places = asyncio.Semaphore(CHUNK_CONCURRENT_PAYMENTS)

        async def pay(line_id: str, application_id: str) -> None:
            async with places:
                await self.lines.pay(line_id, application_id)
            await self._report_every_few_lines()

        await asyncio.gather(
            *[
                pay(line_id, application_id)
                for line_id, application_id in zip(
                    chunk.line_ids, chunk.application_ids, strict=True
                )
            ]
        )
        return self.progress()

    async def _report_every_few_lines(self) -> None:
        """One signal to the plan per REPORT_EVERY settled lines; none for the last lines, which
        the chunk's result carries."""
        settled = self.lines.paid + self.lines.failed
        if settled - self._reported < REPORT_EVERY or settled == len(self.chunk.line_ids):
            return
        self._reported = settled
        parent = workflow.info().parent
        if parent is None:  # started on its own (by an operator): nobody to tell
            return
        handle = workflow.get_external_workflow_handle(parent.workflow_id)
        try:
            await handle.signal(contracts.CHUNK_PROGRESS, self.progress())
        except Exception as error:  # only a progress report: the result carries the counts
            workflow.logger.warning("could not report to %s: %s", parent.workflow_id, error)

    @workflow.query(name=contracts.PLAN_PROGRESS)
    def progress(self) -> contracts.ChunkProgress:
        return contracts.ChunkProgress(
            chunk=self.chunk.chunk,
            lines=len(self.chunk.line_ids),
            paid_lines=self.lines.paid,
            failed_lines=self.lines.failed,
            paid_fen=self.lines.paid_fen,
        )


@workflow.defn(name=contracts.FUNDING_PLAN_WORKFLOW)
class FundingPlanWorkflow:
    @workflow.init
    def __init__(self, plan: contracts.FundingPlanInput) -> None:
        self.plan = plan
        self.lines = LinePayments(plan.plan_id)  # the v3 run's
        self._legacy: LegacyFundingPlan | None = None
        # Chunked run: each chunk's latest counts, and which chunks run and are done.
        self._chunks: dict[int, contracts.ChunkProgress] = {}
        self._running: set[int] = set()
        self._done: set[int] = set()

    @workflow.run
    async def run(self, plan: contracts.FundingPlanInput) -> FundingPlanOutcome:
        if workflow.patched(CHUNKED_PLAN_PATCH):
            await self._pay_in_chunks(plan)
        elif workflow.patched(FUNDING_PLAN_PATCH):
            await self._pay_every_line(plan)
        else:
            self._legacy = LegacyFundingPlan()
            return await self._legacy.run(plan)
        await workflow.execute_local_activity_method(
            GrantActivities.complete_funding_plan_v3,
            PlanRef(plan_id=plan.plan_id),
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )
        return self.progress()

    async def _pay_every_line(self, plan: contracts.FundingPlanInput) -> None:
        """The v3 run, for plans started under it: every line paid by this workflow."""
        places = asyncio.Semaphore(CONCURRENT_PAYMENTS)

        async def pay(line_id: str, application_id: str) -> None:
            async with places:
                await self.lines.pay(line_id, application_id)

        await asyncio.gather(
            *[
                pay(line_id, application_id)
                for line_id, application_id in zip(plan.line_ids, plan.application_ids, strict=True)
            ]
        )

    async def _pay_in_chunks(self, plan: contracts.FundingPlanInput) -> None:
        size = plan.chunk_lines or CHUNK_LINES
        starts = range(0, len(plan.line_ids), size)
        for n, start in enumerate(starts):
            lines = len(plan.line_ids[start : start + size])
            self._chunks[n] = contracts.ChunkProgress(chunk=n, lines=lines)
        places = asyncio.Semaphore(CHUNKS_AT_ONCE)
        # The chunks are found by the plan's program as the plan is (when it has one).
        attributes = workflow.info().typed_search_attributes
        inherited = attributes if attributes.search_attributes else None

        async def pay_chunk(n: int, start: int) -> None:
            async with places:
                self._running.add(n)
                result = await workflow.execute_child_workflow(
                    FundingPlanChunkWorkflow.run,
                    contracts.FundingPlanChunkInput(
                        plan_id=plan.plan_id,
                        chunk=n,
                        line_ids=plan.line_ids[start : start + size],
                        application_ids=plan.application_ids[start : start + size],
                    ),
                    id=contracts.plan_chunk_workflow_id(plan.plan_id, n),
                    search_attributes=inherited,
                )
            self._running.discard(n)
            self._done.add(n)
            self._chunks[n] = result

        await asyncio.gather(*[pay_chunk(n, start) for n, start in enumerate(starts)])

    @workflow.signal(name=contracts.CHUNK_PROGRESS)
    def chunk_progress(self, report: contracts.ChunkProgress) -> None:
        """A running chunk's counts; a late or reordered report never lowers them."""
        known = self._chunks.get(report.chunk)
        if report.chunk in self._done or known is None or report.settled <= known.settled:
            return
        self._chunks[report.chunk] = report

    @workflow.query(name=contracts.PLAN_PROGRESS)
    def progress(self) -> FundingPlanOutcome:
        if self._legacy is not None:
            return self._legacy.progress()
        total = len(self.plan.line_ids)
        if self._chunks:
            paid = sum(c.paid_lines for c in self._chunks.values())
            failed = sum(c.failed_lines for c in self._chunks.values())
            paid_fen = sum(c.paid_fen for c in self._chunks.values())
        else:
            paid, failed, paid_fen = self.lines.paid, self.lines.failed, self.lines.paid_fen
        return FundingPlanOutcome(
            plan_id=self.plan.plan_id,
            paid_lines=paid,
            failed_lines=failed,
            total_lines=total,
            pending_lines=total - paid - failed,
            paid_fen=paid_fen,
            chunks=len(self._chunks),
            chunks_done=len(self._done),
            chunks_running=len(self._running),
        )
