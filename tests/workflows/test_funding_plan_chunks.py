"""A funding plan of several chunks on the time-skipping server (stand-in payment activities):
every line paid once, failures counted, the progress query right while the plan runs, the chunks'
ids deterministic, and the plan's own history small at the city's size."""

from __future__ import annotations

import asyncio
import time
import uuid

from rich.console import Console
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory

from grantflow.ops import replay_history
from grantflow.plan_progress import follow, show_once, snapshot
from tests.workflows.grants import TASK_QUEUE, Harness
from workflows import contracts
from workflows.funding_plan import CHUNK_LINES, REPORT_EVERY, FundingPlanWorkflow
from workflows.models import FundingPlanOutcome


def plan_input(lines: int, chunk_lines: int = 0) -> contracts.FundingPlanInput:
    plan_id = uuid.uuid4().hex[:8]
    return contracts.FundingPlanInput(
        plan_id=plan_id,
        program_code="SME-CLOUD",
        line_ids=[f"{plan_id}-line-{i}" for i in range(lines)],
        # No grant runs for these: telling one fails and is logged, as for a grant that is gone.
        application_ids=[f"{plan_id}-app-{i}" for i in range(lines)],
        chunk_lines=chunk_lines,
    )


def started_children(history: WorkflowHistory) -> list[str]:
    return [
        event.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    ]


async def test_a_plan_of_several_chunks_pays_every_line_once_and_shows_its_progress(
    harness: Harness,
) -> None:
    services = harness.services
    plan = plan_input(230, chunk_lines=50)  # chunks of 50, 50, 50, 50 and 30 lines
    line = plan.line_ids
    services.line_amounts = {line_id: 10_000 + i for i, line_id in enumerate(line)}
    services.refuse_payment_lines = {line[7], line[130], line[215]}  # chunks 0, 2 and 4
    # One line of chunk 0 and one of chunk 1 hang at the gateway: those chunks keep running
    # while the others (three at a time) finish.
    services.hold_lines = {line[11], line[61]}
    handle = await harness.env.client.start_workflow(
        FundingPlanWorkflow.run,
        plan,
        id=contracts.plan_workflow_id(plan.plan_id),
        task_queue=TASK_QUEUE,
    )

    async def progress() -> FundingPlanOutcome:
        return await handle.query(contracts.PLAN_PROGRESS, result_type=FundingPlanOutcome)

    now = await progress()
    for _ in range(200):
        if now.chunks_done == 3:
            break
        await asyncio.sleep(0.05)
        now = await progress()
    assert (now.total_lines, now.chunks, now.chunks_done, now.chunks_running) == (230, 5, 3, 2)
    # Chunks 2, 3 and 4 counted whole (two refusals among them); the two running ones by their
    # reports, each sent after REPORT_EVERY settled lines: at least 25 of their 49, not all.
    assert 130 + 2 * REPORT_EVERY <= now.paid_lines + now.failed_lines < 228
    assert now.failed_lines >= 2
    assert now.pending_lines == 230 - now.paid_lines - now.failed_lines
    # A chunk answers for itself exactly: every line but the held one settled.
    chunk_0 = harness.env.client.get_workflow_handle(f"plan-{plan.plan_id}-chunk-0")
    own = await chunk_0.query(contracts.PLAN_PROGRESS, result_type=contracts.ChunkProgress)
    assert (own.lines, own.paid_lines, own.failed_lines) == (50, 48, 1)

    # What `grantflow plan show` draws from the query: the bar, and the same counts as text.
    screen = Console(record=True, width=160)
    show_once(screen, await snapshot(harness.env.client, plan.plan_id))
    drawn = screen.export_text()
    shown = await progress()  # reports may have come in since
    assert "拨付进度" in drawn and "分块 3/5 完成" in drawn
    assert f"已拨付 {now.paid_lines}" in drawn or f"已拨付 {shown.paid_lines}" in drawn

    services.release.set()
    screen = Console(record=True, width=160)
    followed = await follow(harness.env.client, plan.plan_id, screen, every_seconds=0.05)
    assert not followed.running and followed.progress is not None
    drawn = screen.export_text()
    assert "230/230 行已办结" in drawn and "失败 3 · 待拨付 0" in drawn
    result = await handle.result()
    assert followed.progress == result
    assert (result.paid_lines, result.failed_lines, result.pending_lines) == (227, 3, 0)
    assert result.chunks_done == 5 and result.chunks_running == 0
    paid = set(line) - services.refuse_payment_lines
    assert result.paid_fen == sum(services.line_amounts[line_id] for line_id in paid)
    assert services.payments_answered == dict.fromkeys(paid, 1)  # each paid exactly once
    assert sorted(services.failed_lines) == sorted(services.refuse_payment_lines)
    assert services.completed_plans.count(plan.plan_id) == 1
    expected = [contracts.plan_chunk_workflow_id(plan.plan_id, n) for n in range(5)]
    assert expected[0] == f"plan-{plan.plan_id}-chunk-0"
    history = await handle.fetch_history()
    assert started_children(history) == expected
    # The plan with its chunks' reports replays (the recorded plan of the demo has one chunk).
    assert (await replay_history(history)).error == ""
    for chunk_id in expected:
        chunk = harness.env.client.get_workflow_handle(chunk_id)
        assert (await chunk.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert (await replay_history(await chunk.fetch_history())).error == ""
    assert (await progress()) == result


async def test_the_plans_own_history_stays_small_at_the_citys_size(harness: Harness) -> None:
    """2,000 lines made a 13,000-event history when one workflow paid them all (1,500 lines:
    10,221 events, past Temporal's 10,240 warning); the plan now holds a few events per chunk
    and per chunk report, and each chunk a few hundred lines' worth."""
    plan = plan_input(2_000)
    started = time.monotonic()
    result = await harness.env.client.execute_workflow(
        FundingPlanWorkflow.run,
        plan,
        id=contracts.plan_workflow_id(plan.plan_id),
        task_queue=TASK_QUEUE,
    )
    seconds = time.monotonic() - started
    assert (result.paid_lines, result.failed_lines, result.chunks) == (2_000, 0, 8)
    handle = harness.env.client.get_workflow_handle(contracts.plan_workflow_id(plan.plan_id))
    history = await handle.fetch_history()
    assert len(started_children(history)) == 2_000 // CHUNK_LINES
    assert len(history.events) < 600, len(history.events)
    chunks = []
    for n in range(8):
        chunk = harness.env.client.get_workflow_handle(
            contracts.plan_chunk_workflow_id(plan.plan_id, n)
        )
        chunks.append(len((await chunk.fetch_history()).events))
    assert max(chunks) < 10 * CHUNK_LINES, chunks
    print(
        f"2,000 lines in {seconds:.1f} s; the plan's history: {len(history.events)} events, "
        f"its chunks': {chunks}"
    )
