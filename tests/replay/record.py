"""Records histories of complete lifecycles for the replay tests.

`python -m tests.replay.record` starts a throw-away embedded stack, runs the scripted demo
(grantflow/demo_script.py), and writes one history per kind of life the demo has (paid, paid at a
lower amount, rejected, withdrawn, returned for supplement, incomplete at filing; in the fourth
process also audited lower, objections upheld and dismissed, scored too low, waitlisted …), a
funding plan's (with its chunk workflows', for plans paid in chunks) and a notice batch's into
tests/replay/histories/. Re-record only for a deliberate, versioned workflow change: these files
are what running grants look like. `--plans-only` writes the funding plan's files alone, for a
generation that changed the plan's workflow and not the grant's.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path

from rich.console import Console
from temporalio.service import RPCError, RPCStatusCode

from grantflow.demo import run_demo
from grantflow.ops import replay_workflow
from tests.stack_fixture import running_stack
from workflows import contracts

HISTORIES = Path(__file__).parent / "histories"


async def record(
    stack_settings: object, suffix: str, count: int, *, plans_only: bool = False
) -> list[Path]:
    from services.common.config import Settings

    settings: Settings = stack_settings  # type: ignore[assignment]
    summary = await run_demo(settings, Console(), count=count)
    if not summary.ok:
        raise SystemExit("the demo did not end as scripted; nothing recorded")
    written: list[Path] = []
    seen: set[str] = set()
    plans: set[str] = set()
    for grant in [] if plans_only else summary.grants:
        if grant.scenario.kind in seen:
            continue
        seen.add(grant.scenario.kind)
        path = HISTORIES / f"grant-{grant.scenario.kind}{suffix}.json"
        report = await replay_workflow(settings, f"grant-{grant.application_id}", path)
        assert not report.error, report.error
        written.append(path)
    from temporalio.client import Client

    client: Client = await Client.connect(settings.temporal_address)
    async for execution in client.list_workflows("WorkflowType = 'FundingPlanWorkflow'"):
        plans.add(execution.id)
    for index, plan in enumerate(sorted(plans)[:1]):
        path = HISTORIES / f"funding-plan-{index}{suffix}.json"
        await replay_workflow(settings, plan, path)
        written.append(path)
        # A plan paid in chunks (funding-plan-v4): its chunk workflows, numbered from 0.
        for chunk in itertools.count():
            chunk_id = contracts.plan_chunk_workflow_id(plan.removeprefix("plan-"), chunk)
            try:
                await client.get_workflow_handle(chunk_id).describe()
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
                break
            path = HISTORIES / f"funding-plan-{index}-chunk-{chunk}{suffix}.json"
            await replay_workflow(settings, chunk_id, path)
            written.append(path)
    if plans_only:
        return written
    # A notice batcher's run ends by continuing as new after its batch: one whole run.
    query = "WorkflowType = 'NoticeBatchWorkflow' AND ExecutionStatus = 'ContinuedAsNew'"
    async for execution in client.list_workflows(query, limit=1):
        path = HISTORIES / f"notice-batch-0{suffix}.json"
        history = await client.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).fetch_history()
        path.write_text(history.to_json())
        written.append(path)
    return written


def main() -> None:
    """`--suffix -v2` names the new files so earlier recordings stay: they stand for grants
    started under the earlier code, which must keep replaying."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suffix", default="")
    parser.add_argument("--count", type=int, default=24, help="the demo's applications")
    parser.add_argument(
        "--plans-only", action="store_true", help="write the funding plan's histories alone"
    )
    args = parser.parse_args()
    HISTORIES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp)) as stack:
        written = record(stack.settings, args.suffix, args.count, plans_only=args.plans_only)
        for path in asyncio.run(written):
            print(f"recorded {path}")


if __name__ == "__main__":
    from services.common.process import run_and_exit

    run_and_exit(main)
