"""The floor of the throughput benchmark: a no-op workflow with the shape of a real grant.

`Shape.of(history)` counts what one grant's history holds (activities, local activities, timers
that fired or were cancelled, signals and updates received, search-attribute upserts);
`GrantShapeFloor` does exactly that to Temporal and nothing else; `run_floor` starts N of them the
way the lifecycle starts grants and drives their updates and signals as reviewers and plans would.
`python -m benchmarks.floor ADDRESS NAMESPACE` is the floor's worker process, configured like
Grantflow's own worker. This module imports nothing else of Grantflow's at import time, so the
workflow sandbox can load it.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

FLOOR_TASK_QUEUE = "grantflow-floor"
FLOOR_WORKFLOW = "GrantShapeFloor"
LOCAL_ACTIVITY_MARKER = "core_local_activity"


@dataclass
class Shape:
    """What one grant's history holds, counted event by event."""

    activities: int = 0
    local_activities: int = 0
    timers_fired: int = 0
    timers_cancelled: int = 0
    signals: int = 0
    updates: int = 0
    upserts: int = 0
    external_signals: int = 0
    history_events: int = 0
    workflow_tasks: int = 0
    timer_seconds: float = 5.0

    @classmethod
    def of(cls, history: WorkflowHistory, timer_seconds: float) -> Shape:
        shape = cls(history_events=len(history.events), timer_seconds=timer_seconds)
        for event in history.events:
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                shape.activities += 1
            elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
                if event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER:
                    shape.local_activities += 1
            elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
                shape.timers_fired += 1
            elif kind == EventType.EVENT_TYPE_TIMER_CANCELED:
                shape.timers_cancelled += 1
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                shape.signals += 1
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                shape.updates += 1
            elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                shape.upserts += 1
            elif kind == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
                shape.external_signals += 1
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                shape.workflow_tasks += 1
        return shape


@activity.defn(name="floor_noop")
async def floor_noop() -> None:
    return None


STAGE_KEY = SearchAttributeKey.for_keyword("GrantStage")


@workflow.defn(name=FLOOR_WORKFLOW)
class GrantShapeFloor:
    """Does what a grant does to Temporal, and nothing else: the same number of activities,
    local activities, timers, updates, signals and upserts, in the grant's order (work, wait for
    the reviewers' updates, the notice timer, more work, wait for the plan's signals)."""

    def __init__(self) -> None:
        self._updates = 0
        self._signals = 0

    @workflow.run
    async def run(self, shape: Shape) -> None:
        first = shape.activities // 2
        first_local = shape.local_activities // 2
        upserts = shape.upserts
        await self._work(first, first_local)
        if upserts:
            workflow.upsert_search_attributes([STAGE_KEY.value_set("IN_REVIEW")])
            upserts -= 1
        # The review round: a due-date timer that the decisions cancel.
        for _ in range(shape.timers_cancelled):
            try:
                await workflow.wait_condition(
                    lambda: self._updates >= shape.updates, timeout=timedelta(hours=1)
                )
            except TimeoutError:
                pass
        await workflow.wait_condition(lambda: self._updates >= shape.updates)
        for _ in range(shape.timers_fired):
            await asyncio.sleep(shape.timer_seconds)
        await self._work(shape.activities - first, shape.local_activities - first_local)
        for _ in range(upserts):
            workflow.upsert_search_attributes([STAGE_KEY.value_set("PAID")])
        await workflow.wait_condition(lambda: self._signals >= shape.signals)

    async def _work(self, activities: int, local_activities: int) -> None:
        for _ in range(activities):
            await workflow.execute_activity(
                floor_noop, start_to_close_timeout=timedelta(seconds=30)
            )
        for _ in range(local_activities):
            await workflow.execute_local_activity(
                floor_noop, start_to_close_timeout=timedelta(seconds=30)
            )

    @workflow.update(name="poke")
    async def poke(self) -> None:
        self._updates += 1

    @workflow.signal(name="nudge")
    def nudge(self) -> None:
        self._signals += 1


async def floor_worker(address: str, namespace: str) -> None:
    """The floor's worker process: configured like Grantflow's worker (workflows/worker.py)."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Worker

    client = await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )
    worker = Worker(
        client,
        task_queue=FLOOR_TASK_QUEUE,
        workflows=[GrantShapeFloor],
        activities=[floor_noop],
        **worker_tuning(),
    )
    async with worker:
        await asyncio.Event().wait()


def worker_tuning() -> dict[str, Any]:
    """Grantflow's own worker settings, so the floor's worker works the same way."""
    import workflows.worker

    # Code from before the tuning was named used only this setting.
    tuning = getattr(workflows.worker, "WORKER_TUNING", {"max_concurrent_activities": 50})
    return dict(tuning)


async def _update(handle: Any, update_id: str) -> None:
    """One update, as a reviewer's service sends it: with its own id, so a call that timed out
    while a busy server held it is sent again without counting twice."""
    while True:
        try:
            await handle.execute_update("poke", id=update_id)
            return
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            continue


async def run_floor(
    client: Client, shape: Shape, count: int, clients: int
) -> tuple[float, list[float]]:
    attributes = TypedSearchAttributes(
        [
            SearchAttributePair(STAGE_KEY, "SUBMITTED"),
            SearchAttributePair(SearchAttributeKey.for_keyword("GrantProgram"), "FLOOR"),
            SearchAttributePair(SearchAttributeKey.for_keyword("ApplicantCreditCode"), "FLOOR"),
            SearchAttributePair(SearchAttributeKey.for_keyword_list("PendingDepartments"), []),
        ]
    )
    run_id = uuid.uuid4().hex[:8]
    starting = asyncio.Semaphore(clients)
    latencies: list[float] = []

    async def one(number: int) -> None:
        async with starting:
            started = time.monotonic()
            handle = await client.start_workflow(
                FLOOR_WORKFLOW,
                shape,
                id=f"floor-{run_id}-{number}",
                task_queue=FLOOR_TASK_QUEUE,
                search_attributes=attributes,
            )
        for number_of_update in range(shape.updates):
            await _update(handle, f"poke-{number_of_update}")
        for _ in range(shape.signals):
            await handle.signal("nudge")
        await handle.result()
        latencies.append(time.monotonic() - started)

    began = time.monotonic()
    await asyncio.gather(*[one(n) for n in range(count)])
    return time.monotonic() - began, latencies


def main() -> None:
    address, namespace = sys.argv[1:3]
    asyncio.run(floor_worker(address, namespace))


if __name__ == "__main__":
    from services.common.process import run_and_exit

    run_and_exit(main)
