"""NoticeBatchWorkflow: one per program (`notice-<program>`), gathering the awards decided
together into a batch, giving them money from the program's budget line, and publishing them as
one public notice (公示) of N working days.

A decided grant joins (signal `join`, by signal-with-start from its activity); the batch closes a
collection window after its first new award (or at once on `close_batch`), then:
1. the budget line is asked for the batch's money (AllocateBatch: the program's over-budget policy
   cuts every award pro rata (按比例核减) or waitlists what does not fit);
2. the funded awards (and those noticed again after a dismissed objection, with the money they
   have) are published as notice `<program>-<year>-<n>`, closing N working days later;
3. each grant is told what it got (signal `notice_published`); waitlisted awards are carried into
   the next batch, first in line, and tried again when new awards come or a month has passed.
Then the batcher continues as new, so its history stays one batch long.

A grant withdrawn before its batch closed leaves it (`leave`); one gone by the time its batch
was published gets its reservation released here (compensation).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows import contracts, reasons
    from workflows.activities import GrantActivities
    from workflows.models import (
        AllocateBatchRequest,
        Allocation,
        DeadlineRequest,
        NoticeBatcherInput,
        NoticeEntry,
        NoticePublished,
        PublishNoticeRequest,
        ReservationRelease,
    )

# Generations: a batch begun before this marker told its grants one after the other (one workflow
# task per grant: a city batch of thousands took most of an hour to reach its grants); from it on,
# TELL_AT_ONCE grants are told together, their signals sent by one workflow task.
TELL_TOGETHER_PATCH = "notice-batch-tell-together"
TELL_AT_ONCE = 100
SERVICE_TIMEOUT = timedelta(seconds=30)
SERVICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
# Waitlisted awards are tried again this often when no new award comes to carry them.
WAITLIST_RETRY = timedelta(days=30)
# China keeps one offset all year (no zoneinfo file read in workflow code).
CHINA = timezone(timedelta(hours=8))


@workflow.defn(name=contracts.NOTICE_BATCH_WORKFLOW)
class NoticeBatchWorkflow:
    @workflow.init
    def __init__(self, batcher: NoticeBatcherInput) -> None:
        self.batcher = batcher
        # Entries in order of arrival; carried-over ones first.
        self.entries: dict[str, NoticeEntry] = {e.application_id: e for e in batcher.pending}
        self.waitlisted: set[str] = set(batcher.waitlisted)
        self.close_now = False

    @workflow.run
    async def run(self, batcher: NoticeBatcherInput) -> None:
        fresh = self._fresh
        try:
            await workflow.wait_condition(
                lambda: self.close_now or fresh() > 0,
                timeout=WAITLIST_RETRY if self.entries else None,
            )
        except TimeoutError:
            pass  # a month without new awards: the waitlisted ones are tried again
        if not self.close_now and fresh() > 0:
            try:
                await workflow.wait_condition(
                    lambda: self.close_now,
                    timeout=timedelta(seconds=self.batcher.batch_window_seconds),
                )
            except TimeoutError:
                pass
        carried = await self._publish_batch()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(carried)

    # ------------------------------------------------------------------------- a batch

    async def _publish_batch(self) -> NoticeBatcherInput:
        taken = list(self.entries.values())
        taken_ids = {e.application_id for e in taken}
        number = self.batcher.batches + 1
        year = workflow.now().astimezone(CHINA).year
        batch_id = f"{self.batcher.program_code}-{year}-{number:03d}"
        to_fund = [e for e in taken if not e.renotice]
        allocations: dict[str, Allocation] = {}
        if to_fund:
            answer = await workflow.execute_local_activity_method(
                GrantActivities.allocate_batch,
                AllocateBatchRequest(
                    batch_id=batch_id,
                    program_code=self.batcher.program_code,
                    fiscal_year=year,
                    policy=self.batcher.over_budget_policy,
                    entries=to_fund,
                ),
                start_to_close_timeout=SERVICE_TIMEOUT,
                retry_policy=SERVICE_RETRY,
            )
            allocations = {a.application_id: a for a in answer.allocations}
        # A grant withdrawn while its batch was being allocated left it: its money goes back
        # (the grant sent `leave` before releasing, so either it or this finds the reservation).
        gone = [e for e in taken if e.application_id not in self.entries]
        for entry in gone:
            allocation = allocations.get(entry.application_id)
            if allocation is not None and allocation.reserved:
                await self._release(entry.application_id)
        taken = [e for e in taken if e.application_id in self.entries]
        noticed = [
            e.model_copy(update={"amount_fen": allocations[e.application_id].amount_fen})
            if not e.renotice
            else e
            for e in taken
            if e.renotice or allocations[e.application_id].reserved
        ]
        opens_at = workflow.now()
        closes_at = await self._notice_closes(opens_at)
        if noticed:
            await workflow.execute_local_activity_method(
                GrantActivities.publish_notice,
                PublishNoticeRequest(
                    batch_id=batch_id,
                    program_code=self.batcher.program_code,
                    owner_department=self.batcher.owner_department,
                    batch_number=number,
                    entries=noticed,
                    opens_at=opens_at,
                    closes_at=closes_at,
                ),
                start_to_close_timeout=SERVICE_TIMEOUT,
                retry_policy=SERVICE_RETRY,
            )
        still_waiting: list[NoticeEntry] = []

        def news(entry: NoticeEntry) -> NoticePublished:
            allocation = allocations.get(entry.application_id)
            return NoticePublished(
                batch_id=batch_id,
                reserved=allocation.reserved if allocation else True,
                amount_fen=allocation.amount_fen if allocation else entry.amount_fen,
                requested_fen=entry.amount_fen,
                closes_at=closes_at,
            )

        told_together: dict[str, bool] = {}
        if workflow.patched(TELL_TOGETHER_PATCH):
            for start in range(0, len(taken), TELL_AT_ONCE):
                group = taken[start : start + TELL_AT_ONCE]
                answers = await asyncio.gather(
                    *(self._tell_grant(e.application_id, news(e)) for e in group)
                )
                told_together.update(zip((e.application_id for e in group), answers, strict=True))
        for entry in taken:
            allocation = allocations.get(entry.application_id)
            reserved = allocation.reserved if allocation else True
            if entry.application_id in told_together:
                told = told_together[entry.application_id]
            else:  # a batch begun before TELL_TOGETHER_PATCH: one grant after the other
                told = await self._tell_grant(entry.application_id, news(entry))
            if not reserved:
                if told:
                    still_waiting.append(entry)
            elif not told and allocation is not None:
                await self._release(entry.application_id)
        workflow.logger.info(
            "notice %s: %d noticed, %d waitlisted", batch_id, len(noticed), len(still_waiting)
        )
        # Awards that came while this batch was being published go into the next one.
        late = [e for e in self.entries.values() if e.application_id not in taken_ids]
        return self.batcher.model_copy(
            update={
                "batches": number,
                "pending": still_waiting + late,
                "waitlisted": [e.application_id for e in still_waiting],
            }
        )

    async def _notice_closes(self, opens_at: datetime) -> datetime:
        if self.batcher.notice_seconds is not None:
            return opens_at + timedelta(seconds=self.batcher.notice_seconds)
        end = await workflow.execute_local_activity_method(
            GrantActivities.working_days_deadline,
            DeadlineRequest(start=opens_at, working_days=self.batcher.notice_working_days),
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )
        return end.start

    async def _tell_grant(self, application_id: str, news: NoticePublished) -> bool:
        """False if the grant is gone (withdrawn meanwhile)."""
        handle = workflow.get_external_workflow_handle(contracts.grant_workflow_id(application_id))
        try:
            await handle.signal(contracts.NOTICE_PUBLISHED, news)
            return True
        except ApplicationError as error:  # the grant has ended
            workflow.logger.warning("grant %s is gone: %s", application_id, error)
            return False

    async def _release(self, application_id: str) -> None:
        await workflow.execute_local_activity_method(
            GrantActivities.release_reservation_v3,
            ReservationRelease(application_id=application_id, reason=reasons.GONE_BEFORE_NOTICE),
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )

    def _fresh(self) -> int:
        """Awards not yet tried in a batch."""
        return sum(1 for e in self.entries if e not in self.waitlisted)

    # ------------------------------------------------------------------------- signals

    @workflow.signal(name=contracts.JOIN_NOTICE_BATCH)
    def join(self, entry: NoticeEntry) -> None:
        # A retried join (its activity ran twice) changes nothing.
        self.entries.setdefault(entry.application_id, entry)

    @workflow.signal(name=contracts.LEAVE_NOTICE_BATCH)
    def leave(self, application_id: str) -> None:
        self.entries.pop(application_id, None)
        self.waitlisted.discard(application_id)

    @workflow.signal(name=contracts.CLOSE_NOTICE_BATCH)
    def close_batch(self) -> None:
        self.close_now = True
