"""How long one grant takes from submission to paid on the embedded stack, stage by stage.

`python -m benchmarks.one_grant [--grants N] [--notice-seconds S]` starts a throw-away stack
(SQLite), then walks N grants one after another; reviewers and finance act the moment a grant
reaches them, so the figures are the system's own latency plus the shortened notice.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from grantflow.demo import seed_catalogue
from grantflow.format import stage_name
from grantflow.v1 import common_pb2
from tests.actors import Actors
from tests.stack_fixture import running_stack

S = common_pb2
MILESTONES = [
    S.GRANT_STAGE_IN_REVIEW,
    S.GRANT_STAGE_IN_NOTICE,
    S.GRANT_STAGE_AWAITING_FUNDING_PLAN,
    S.GRANT_STAGE_PAID,
]


async def one(actors: Actors, number: int) -> dict[str, float]:
    started = time.monotonic()
    marks: dict[str, float] = {}
    application_id = await actors.submit_sme_cloud(900_000 + number)
    marks["submitted (RPC answered)"] = time.monotonic() - started

    async def reach(stage: int) -> None:
        while (await actors.status(application_id)).status != stage:
            await asyncio.sleep(0.02)
        marks[f"-> {stage_name(stage)}"] = time.monotonic() - started

    await reach(S.GRANT_STAGE_IN_REVIEW)
    await actors.approve(application_id)
    marks["both departments decided"] = time.monotonic() - started
    await reach(S.GRANT_STAGE_IN_NOTICE)
    await reach(S.GRANT_STAGE_AWAITING_FUNDING_PLAN)
    await actors.fund()
    marks["plan made and approved"] = time.monotonic() - started
    await reach(S.GRANT_STAGE_PAID)
    return marks


async def bench(settings: object, grants: int) -> list[dict[str, float]]:
    from services.common.config import Settings

    assert isinstance(settings, Settings)
    await seed_catalogue(settings)
    actors = Actors(settings)
    try:
        return [await one(actors, i) for i in range(grants)]
    finally:
        await actors.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grants", type=int, default=5)
    parser.add_argument("--notice-seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        with running_stack(Path(tmp), notice_period_seconds=args.notice_seconds) as stack:
            print(f"stack ready in {time.monotonic() - t0:.1f} s")
            runs = asyncio.run(bench(stack.settings, args.grants))
    print(f"{args.grants} grants one after another, notice shortened to {args.notice_seconds:g} s")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(
            f"  {key:<32} median {statistics.median(values):6.2f} s  "
            f"min {min(values):6.2f}  max {max(values):6.2f}"
        )
    totals = [r["-> PAID"] for r in runs]
    print(
        f"submission to paid: median {statistics.median(totals):.2f} s, of which the notice is "
        f"{args.notice_seconds:g} s; without it {statistics.median(totals) - args.notice_seconds:.2f} s"
    )


if __name__ == "__main__":
    from services.common.process import run_and_exit

    run_and_exit(main)
