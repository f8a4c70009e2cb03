"""SubmitApplication under load, on the embedded stack, against a bare gRPC floor.

`python -m benchmarks.submit [--count 1000] [--clients 16] [--rate 100] [--seconds 20]` starts a
throw-away stack (SQLite databases) with the whole process running behind each filing (the
intake starts a grant, the worker reports its stages back to the applications service), then:

1. closed loop: `--count` filings by `--clients` concurrent clients, as fast as they go:
   requests/s and p50/p99 latency;
2. open loop: filings at a steady `--rate` per second for `--seconds`, each sent on time whatever
   the others do (as independent applicants would): p50/p99 at that load;
3. the floor, measured the same two ways in the same run: the standard gRPC health check on the
   same server (a bare client: no token, no database), so the figures can be read against what
   this machine does at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.shared import pct, sme_cloud_filing, timed

Call = Callable[[int], Awaitable[Any]]


async def closed_loop(call: Call, count: int, clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    numbers = iter(range(count))

    async def client() -> None:
        for number in numbers:
            await timed(latencies, call(number))

    began = time.monotonic()
    await asyncio.gather(*[client() for _ in range(clients)])
    return count / (time.monotonic() - began), latencies


async def open_loop(call: Call, rate: float, seconds: float, first: int) -> list[float]:
    latencies: list[float] = []
    running: list[asyncio.Task[None]] = []
    began = time.monotonic()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
        running.append(asyncio.create_task(timed(latencies, call(first + i))))
    await asyncio.gather(*running)
    return latencies


def line(label: str, latencies: list[float], rate: float | None = None) -> str:
    shown = f"{rate:7.1f} req/s  " if rate is not None else " " * 15
    return (
        f"  {label:<34}{shown}p50 {pct(latencies, 50) * 1000:7.1f} ms   "
        f"p99 {pct(latencies, 99) * 1000:7.1f} ms"
    )


async def bench(settings: Any, args: argparse.Namespace) -> None:
    from grantflow.demo import seed_catalogue
    from grantflow.v1 import applications_pb2, applications_pb2_grpc
    from services.applications.catalogue import load_catalogue
    from services.common.auth import mint_token

    channel = grpc.aio.insecure_channel(settings.applications_address)
    stub = applications_pb2_grpc.ApplicationServiceStub(channel)
    if args.service_only:  # the catalogue alone: no disbursement service takes budgets
        ops = (("authorization", f"Bearer {mint_token(settings.auth_secret, 'ops', 'ops')}"),)
        for rule in load_catalogue():
            await stub.PublishProgramVersion(
                applications_pb2.PublishProgramVersionRequest(rule=rule), metadata=ops
            )
    else:
        await seed_catalogue(settings)
    health = health_pb2_grpc.HealthStub(channel)

    async def submit(number: int) -> None:
        request, metadata = sme_cloud_filing(settings.auth_secret, 800_000 + number)
        await stub.SubmitApplication(request, metadata=metadata)

    async def bare(number: int) -> None:
        await health.Check(health_pb2.HealthCheckRequest(service=""))

    try:
        floor_rate, floor_closed = await closed_loop(bare, args.count, args.clients)
        floor_open = await open_loop(bare, args.rate, args.seconds, 0)
        rate, closed = await closed_loop(submit, args.count, args.clients)
        opened = await open_loop(submit, args.rate, args.seconds, args.count)
    finally:
        await channel.close()
    print(f"load average {os.getloadavg()[0]:.2f} (2 cores)")
    print(f"closed loop, {args.clients} clients, {args.count} calls:")
    print(line("SubmitApplication", closed, rate))
    print(line("floor: gRPC health check", floor_closed, floor_rate))
    print(f"open loop, {args.rate:g} calls/s for {args.seconds:g} s:")
    print(line("SubmitApplication", opened))
    print(line("floor: gRPC health check", floor_open))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--service-only",
        action="store_true",
        help="run only the applications service and the broker its relay publishes to, not the "
        "grants each filing starts: the service's own latency, without the process behind it",
    )
    args = parser.parse_args()

    from tests.stack_fixture import running_stack

    processes = ("temporal", "tansu", "applications") if args.service_only else None
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_stack(Path(tmp), processes=processes) as stack,
    ):
        print("the applications service alone" if args.service_only else "the whole stack")
        asyncio.run(bench(stack.settings, args))


if __name__ == "__main__":
    from services.common.process import run_and_exit

    run_and_exit(main)
