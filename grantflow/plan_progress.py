"""A funding plan's payment run as `grantflow plan show` draws it: the plan workflow's `progress`
query (FundingPlanWorkflow, which its chunks keep informed) as a progress bar, Chinese first,
drawn once or followed until the run ends (`--watch`).

The ledger (the plan's lines in the disbursement service) stays the record of what was paid; this
is the live view of a run in progress, which a plan of thousands of lines needs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from grantflow.format import yuan
from workflows import contracts
from workflows.models import FundingPlanOutcome

# What a run that is not running any more ended as, for the person reading.
ENDED = {
    WorkflowExecutionStatus.FAILED: "拨付流程失败 (the payment run failed)",
    WorkflowExecutionStatus.TERMINATED: "拨付流程被终止 (the payment run was terminated)",
    WorkflowExecutionStatus.CANCELED: "拨付流程被取消 (the payment run was cancelled)",
    WorkflowExecutionStatus.TIMED_OUT: "拨付流程超时 (the payment run timed out)",
}
NOT_STARTED = "拨付流程尚未启动 (the payment run has not started yet)"


@dataclass
class RunSnapshot:
    progress: FundingPlanOutcome | None  # None: no run yet, or one that ended without a result
    running: bool
    note: str = ""  # why there is no progress, or how the run ended


async def snapshot(client: Client, plan_id: str) -> RunSnapshot:
    """The run's counts now: queried while it runs, its result once it completed."""
    handle = client.get_workflow_handle(
        contracts.plan_workflow_id(plan_id), result_type=FundingPlanOutcome
    )
    try:
        described = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return RunSnapshot(None, running=False, note=NOT_STARTED)
        raise
    if described.status == WorkflowExecutionStatus.RUNNING:
        progress = await handle.query(contracts.PLAN_PROGRESS, result_type=FundingPlanOutcome)
        return RunSnapshot(progress, running=True)
    if described.status == WorkflowExecutionStatus.COMPLETED:
        return RunSnapshot(await handle.result(), running=False)
    status = described.status
    note = ENDED.get(status, str(status)) if status is not None else str(status)
    return RunSnapshot(None, running=False, note=note)


def settled_and_total(progress: FundingPlanOutcome) -> tuple[int, int]:
    settled = progress.paid_lines + progress.failed_lines
    # A plan of an earlier generation answers no total: what it settled is what it knows.
    return settled, max(progress.total_lines, settled)


def detail(progress: FundingPlanOutcome) -> str:
    settled, total = settled_and_total(progress)
    text = (
        f"已拨付 {progress.paid_lines}（{yuan(progress.paid_fen)}） · "
        f"失败 {progress.failed_lines} · 待拨付 {total - settled}"
    )
    if progress.chunks:
        text += f" · 分块 {progress.chunks_done}/{progress.chunks} 完成"
    return text


def summary(progress: FundingPlanOutcome) -> str:
    """One line, for a terminal or a log: Chinese first, the English terms after."""
    settled, total = settled_and_total(progress)
    return (
        f"拨付进度：{settled}/{total} 行已办结，{detail(progress)} "
        f"(paid {progress.paid_lines}, failed {progress.failed_lines}, "
        f"pending {total - settled} of {total} lines)"
    )


def progress_bar(console: Console, *, followed: bool) -> Progress:
    columns = [
        TextColumn("[bold]拨付进度[/bold] payment run"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
    ]
    if followed:  # the time since the watch began (a snapshot has none)
        columns.append(TimeElapsedColumn())
    return Progress(*columns, console=console)


def _update(bar: Progress, task: TaskID, run: RunSnapshot) -> None:
    if run.progress is None:
        bar.update(task, detail=run.note)
        return
    settled, total = settled_and_total(run.progress)
    bar.update(task, total=total, completed=settled, detail=detail(run.progress))


def show_once(console: Console, run: RunSnapshot) -> None:
    """One snapshot: the bar as it stands, and the same as a line of text."""
    if run.progress is None:
        console.print(run.note, highlight=False)
        return
    bar = progress_bar(console, followed=False)
    task = bar.add_task("", total=None, detail="")
    _update(bar, task, run)
    console.print(bar.get_renderable())
    console.print(summary(run.progress), highlight=False)


async def follow(
    client: Client, plan_id: str, console: Console, every_seconds: float = 1.0
) -> RunSnapshot:
    """Redraws the bar from the query every `every_seconds` until the run has ended (waiting for
    a run the intake has not started yet); answers its last snapshot."""
    with progress_bar(console, followed=True) as bar:
        task = bar.add_task("", total=None, detail=NOT_STARTED)
        while True:
            run = await snapshot(client, plan_id)
            _update(bar, task, run)
            if not run.running and run.note != NOT_STARTED:
                break
            await asyncio.sleep(every_seconds)
    if run.progress is not None:
        console.print(summary(run.progress), highlight=False)
    else:
        console.print(run.note, highlight=False)
    return run
