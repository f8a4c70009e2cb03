"""How long an operator waits for `grantflow ops find` and `ops show` when the stack holds many
grants (`python -m benchmarks.ops_view --grants 10000`).

Starts a throw-away embedded stack, walks a few grants to paid (one is shown), files the rest
with 16 clients and waits until every grant's workflow is visible to Temporal's visibility
store, then runs each command as its users do (a separate `grantflow` process: start-up
included), several times, and prints the median and the slowest run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from benchmarks.shared import sme_cloud_filing
from grantflow.demo import seed_catalogue
from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2_grpc
from services.common.config import Settings
from services.common.temporal import connect_temporal
from tests.actors import Actors
from tests.stack_fixture import running_stack
from workflows import contracts

CLI = str(Path(sys.executable).parent / "grantflow")
FIRST_NUMBER = 600_000  # credit codes of the filed grants: credit_code(FIRST_NUMBER + n)


async def walk_to_paid(settings: Settings) -> str:
    actors = Actors(settings)
    try:
        paid = await actors.submit_sme_cloud(1)
        await actors.wait_for([paid], {4})
        await actors.approve(paid)
        await actors.wait_for([paid], {7})
        await actors.fund()
        await actors.wait_for([paid], {9})
        return paid
    finally:
        await actors.close()


async def file_many(settings: Settings, count: int, clients: int = 16) -> float:
    channel = grpc.aio.insecure_channel(settings.applications_address)
    stub = applications_pb2_grpc.ApplicationServiceStub(channel)
    numbers = iter(range(count))
    started = time.monotonic()

    async def client() -> None:
        for n in numbers:
            request, metadata = sme_cloud_filing(settings.auth_secret, FIRST_NUMBER + n)
            await stub.SubmitApplication(request, metadata=metadata, timeout=60)

    await asyncio.gather(*(client() for _ in range(clients)))
    await channel.close()
    return time.monotonic() - started


async def wait_visible(settings: Settings, count: int) -> float:
    client = await connect_temporal(settings)
    started = time.monotonic()
    query = f"WorkflowType = '{contracts.GRANT_WORKFLOW}' AND GrantStage = 'IN_REVIEW'"
    while (await client.count_workflows(query)).count < count:
        await asyncio.sleep(5)
    return time.monotonic() - started


def run_cli(env: dict[str, str], args: list[str], repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        started = time.monotonic()
        done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True)
        times.append(time.monotonic() - started)
        if done.returncode != 0:
            raise SystemExit(f"grantflow {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        running_stack(
            Path(folder), notice_period_seconds=1.0, review_period_seconds=7 * 24 * 3600.0
        ) as stack,
    ):
        settings = stack.settings
        asyncio.run(seed_catalogue(settings))
        paid = asyncio.run(walk_to_paid(settings))
        filing = asyncio.run(file_many(settings, args.grants))
        print(f"filed {args.grants} grants in {filing:.0f} s", flush=True)
        waited = asyncio.run(wait_visible(settings, args.grants))
        print(f"all {args.grants} in review {waited:.0f} s after the last filing", flush=True)
        env = {**stack.environment(), "COLUMNS": "200"}
        middle = credit_code(FIRST_NUMBER + args.grants // 2)
        commands = [
            ["ops", "find", "--credit-code", middle],
            ["ops", "find", "--application", paid[:8]],
            ["ops", "find", "--stage", "IN_REVIEW"],
            ["ops", "find", "--department", "finance", "--program", "SME-CLOUD"],
            ["ops", "find", "--overdue"],
            ["ops", "find", "--failed-payment"],
            ["ops", "find", "--stage", "IN_REVIEW", "--limit", "500", "--json"],
            ["ops", "show", paid],
            ["--help"],
        ]
        for command in commands:
            median, slowest = run_cli(env, command, args.repeats)
            print(
                f"grantflow {' '.join(command):<58} median {median:5.2f} s  slowest {slowest:5.2f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
