"""Grants per second on the embedded stack, against a floor of the grant's own shape.

`python -m benchmarks.throughput [--grants 1000] [--notice-seconds 5]` starts a throw-away stack
(SQLite databases, the Temporal dev server as the embedded stack configures it), publishes the
catalogue and budgets, then:

1. The lifecycle: N SME-CLOUD applications are filed by 16 concurrent clients; scripted reviewers
   of both departments look at their inbox every second and claim and approve every open task
   (8 at a time per department);
   two finance officers make and approve a funding plan every few seconds; a watcher consumes the
   grants topic and notes when each grant was reported PAID. Printed: grants/s (N over first
   submission to last PAID), p50/p99 submission -> paid, and the ClaimTask / DecideTask and
   SubmitApplication latencies.
2. The floor: the history of one paid grant is counted (activities, local activities, timers that
   fired or were cancelled, signals and updates received, search-attribute upserts), and the same
   N workflows of a no-op workflow with exactly that shape run on the same server, on their own
   task queue, with a worker process configured like Grantflow's, driven the same way (started by
   16 clients, updates and signals sent by the driver as reviewers and plans would). Printed:
   workflows/s, p50/p99, and the ratio lifecycle / floor.

The machine is shared and noisy: the ratio, measured in one run, means more than either time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from benchmarks.floor import Shape, run_floor
from benchmarks.shared import bearer, pct, sme_cloud_filing, timed

REPOSITORY = str(Path(__file__).resolve().parents[1])
# How often a scripted reviewer looks at the department's inbox (a person would look far less).
INBOX_POLL_SECONDS = 1.0


# ---------------------------------------------------------------------------------- lifecycle


@dataclass
class Lifecycle:
    submitted_at: dict[str, float] = field(default_factory=dict)  # wall clock
    paid_at: dict[str, float] = field(default_factory=dict)
    submit_latency: list[float] = field(default_factory=list)
    claim_latency: list[float] = field(default_factory=list)
    decide_latency: list[float] = field(default_factory=list)
    plans: int = 0
    errors: list[str] = field(default_factory=list)


async def run_lifecycle(
    settings: Any, count: int, clients: int, plan_every: float, rate: float | None = None
) -> Lifecycle:
    from grantflow.v1 import (
        applications_pb2_grpc,
        common_pb2,
        disbursement_pb2,
        disbursement_pb2_grpc,
        events_pb2,
        review_pb2,
        review_pb2_grpc,
    )
    from services.common import kafka
    from services.common.auth import mint_token

    secret = settings.auth_secret
    result = Lifecycle()
    stop = asyncio.Event()
    all_paid = asyncio.Event()

    async def watch(envelope: events_pb2.EventEnvelope) -> None:
        if envelope.WhichOneof("payload") != "grant_stage_changed":
            return
        change = envelope.grant_stage_changed
        if change.stage == common_pb2.GRANT_STAGE_PAID:
            stamp = envelope.occurred_at  # when the applications service recorded PAID
            result.paid_at.setdefault(change.application_id, stamp.seconds + stamp.nanos / 1e9)
            if len(result.paid_at) >= count:
                all_paid.set()
        elif change.stage in (common_pb2.GRANT_STAGE_REJECTED, common_pb2.GRANT_STAGE_WITHDRAWN):
            result.errors.append(f"{change.application_id}: {change.reason}")

    watcher = kafka.EventConsumer(
        settings, f"bench-{uuid.uuid4().hex[:8]}", [kafka.topic(settings, kafka.GRANTS)], watch
    )
    watching = asyncio.create_task(watcher.run(stop))

    applications = grpc.aio.insecure_channel(settings.applications_address)
    review = grpc.aio.insecure_channel(settings.review_address)
    disbursement = grpc.aio.insecure_channel(settings.disbursement_address)
    apps = applications_pb2_grpc.ApplicationServiceStub(applications)
    tasks_stub = review_pb2_grpc.ReviewServiceStub(review)
    money = disbursement_pb2_grpc.DisbursementServiceStub(disbursement)

    submitting = asyncio.Semaphore(clients)

    async def submit(number: int) -> None:
        request, metadata = sme_cloud_filing(secret, 700_000 + number)
        async with submitting:
            submitted = time.time()
            answer = await timed(
                result.submit_latency, apps.SubmitApplication(request, metadata=metadata)
            )
        result.submitted_at[answer.application_id] = submitted

    async def reviewer(department: str, enum: Any) -> None:
        token = mint_token(secret, f"bench-{department}", "reviewer", department=department)
        meta = bearer(token)
        handled: set[str] = set()
        deciding = asyncio.Semaphore(8)

        async def handle(task_id: str) -> None:
            async with deciding:
                await timed(
                    result.claim_latency,
                    tasks_stub.ClaimTask(
                        review_pb2.ClaimTaskRequest(task_id=task_id), metadata=meta
                    ),
                )
                await timed(
                    result.decide_latency,
                    tasks_stub.DecideTask(
                        review_pb2.DecideTaskRequest(
                            task_id=task_id,
                            decision=review_pb2.REVIEW_DECISION_APPROVE,
                            reason="meets the rules",
                        ),
                        metadata=meta,
                    ),
                )

        running: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            page = await tasks_stub.ListTasks(
                review_pb2.ListTasksRequest(
                    department=enum, filter=review_pb2.TASK_FILTER_OPEN, page_size=200
                ),
                metadata=meta,
            )
            fresh = [
                t.task_id
                for t in page.tasks
                if t.state == review_pb2.TASK_STATE_OPEN and t.task_id not in handled
            ]
            for task_id in fresh:
                handled.add(task_id)
                task = asyncio.create_task(handle(task_id))
                running.add(task)
                task.add_done_callback(running.discard)
            await _sleep_or(stop, INBOX_POLL_SECONDS)
        await asyncio.gather(*running, return_exceptions=True)

    async def finance() -> None:
        maker = bearer(mint_token(secret, "bench-maker", "finance"))
        checker = bearer(mint_token(secret, "bench-checker", "finance"))
        second_checker = bearer(mint_token(secret, "bench-second-checker", "finance"))
        while not stop.is_set():
            await _sleep_or(stop, plan_every)
            try:
                plan = await money.CreateFundingPlan(
                    disbursement_pb2.CreateFundingPlanRequest(
                        request_id=f"bench-plan-{uuid.uuid4().hex}",
                        program_code="SME-CLOUD",
                        title="SME-CLOUD benchmark batch",
                    ),
                    metadata=maker,
                )
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    continue  # nothing awaiting a plan yet
                raise
            approve = disbursement_pb2.ApproveFundingPlanRequest(plan_id=plan.plan_id)
            plan = await money.ApproveFundingPlan(approve, metadata=checker)
            if plan.state == disbursement_pb2.PLAN_STATE_AWAITING_SECOND_APPROVAL:
                # Above the second-approval level: another officer approves it too.
                await money.ApproveFundingPlan(approve, metadata=second_checker)
            result.plans += 1

    async def progress(began: float) -> None:
        while not stop.is_set():
            await _sleep_or(stop, 10.0)
            print(
                f"  {time.monotonic() - began:6.0f} s: {len(result.submitted_at)} filed, "
                f"{len(result.decide_latency)} decisions, {result.plans} plans, "
                f"{len(result.paid_at)} paid",
                flush=True,
            )

    began = time.monotonic()
    actors = [
        asyncio.create_task(reviewer("industry", common_pb2.DEPARTMENT_INDUSTRY)),
        asyncio.create_task(reviewer("finance", common_pb2.DEPARTMENT_FINANCE)),
        asyncio.create_task(finance()),
        asyncio.create_task(progress(began)),
    ]
    try:
        if rate is None:
            await asyncio.gather(*[submit(n) for n in range(count)])
        else:  # an offered load: one filing every 1/rate seconds, whatever the others do
            filings = []
            for n in range(count):
                await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
                filings.append(asyncio.create_task(submit(n)))
            await asyncio.gather(*filings)
        await asyncio.wait_for(all_paid.wait(), timeout=max(600.0, count * 2.0))
    finally:
        stop.set()
        await asyncio.gather(*actors, watching, return_exceptions=True)
        for channel in (applications, review, disbursement):
            await channel.close()
    return result


async def _sleep_or(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


# ---------------------------------------------------------------------------------- reporting


def show(figures: dict[str, Any]) -> None:
    for key, value in figures.items():
        if key not in ("shape", "cpu_ms_per_grant"):
            print(f"  {key:<28} {value}", flush=True)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (Linux /proc): unlike wall time,
    this does not depend on what else the machine is doing."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return used


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


async def bench(stack: Any, args: argparse.Namespace) -> dict[str, Any]:
    from grantflow.demo import seed_catalogue
    from services.common.temporal import connect_temporal

    settings = stack.settings
    await seed_catalogue(settings)
    offered = f", filed at {args.submit_rate:g}/s" if args.submit_rate else ""
    print(f"lifecycle: {args.grants} grants, notice {args.notice_seconds:g} s{offered}", flush=True)
    pids = {name: process.pid for name, process in stack.processes.items()}
    pids["benchmark"] = os.getpid()
    cpu_before = cpu_seconds(pids)
    life = await run_lifecycle(
        settings, args.grants, args.clients, args.plan_every, args.submit_rate
    )
    lifecycle_cpu = spent(cpu_before, cpu_seconds(pids))
    first_submit = min(life.submitted_at.values())
    last_paid = max(life.paid_at.values())
    lifecycle_s = last_paid - first_submit
    lifecycle_rate = args.grants / lifecycle_s
    to_paid = [
        life.paid_at[a] - life.submitted_at[a] for a in life.paid_at if a in life.submitted_at
    ]

    client = await connect_temporal(settings)
    sample = next(iter(life.paid_at))
    history = await client.get_workflow_handle(f"grant-{sample}").fetch_history()
    shape = Shape.of(history, args.notice_seconds)
    figures: dict[str, Any] = {
        "grants": args.grants,
        "lifecycle_seconds": round(lifecycle_s, 1),
        "lifecycle_grants_per_s": round(lifecycle_rate, 2),
        "submission_to_paid_p50_s": round(pct(to_paid, 50), 2),
        "submission_to_paid_p99_s": round(pct(to_paid, 99), 2),
        "claim_p50_ms": round(pct(life.claim_latency, 50) * 1000),
        "claim_p99_ms": round(pct(life.claim_latency, 99) * 1000),
        "decide_p50_ms": round(pct(life.decide_latency, 50) * 1000),
        "decide_p99_ms": round(pct(life.decide_latency, 99) * 1000),
        "submit_p50_ms": round(pct(life.submit_latency, 50) * 1000),
        "submit_p99_ms": round(pct(life.submit_latency, 99) * 1000),
        "plans": life.plans,
        "shape": asdict(shape),
    }
    print(f"one grant's history: {json.dumps(asdict(shape))}", flush=True)
    if args.skip_floor:
        return figures
    show(figures)  # the lifecycle's figures stand even if the floor cannot be measured

    print(f"floor: {args.grants} no-op workflows of that shape on the same server", flush=True)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.floor",
        settings.temporal_address,
        settings.temporal_namespace,
        env={**os.environ, "PYTHONPATH": REPOSITORY},
    )
    floor_pids = {
        "temporal": pids["temporal"],
        "floor worker": worker.pid,
        "benchmark": os.getpid(),
    }
    floor_before = cpu_seconds(floor_pids)
    try:
        floor = asyncio.create_task(run_floor(client, shape, args.grants, args.clients))
        worker_exit = asyncio.create_task(worker.wait())
        await asyncio.wait({floor, worker_exit}, return_when=asyncio.FIRST_COMPLETED)
        if not floor.done():
            floor.cancel()
            raise RuntimeError(f"the floor's worker exited with {worker.returncode}")
        floor_s, floor_latency = floor.result()
        floor_cpu = spent(floor_before, cpu_seconds(floor_pids))
    finally:
        if worker.returncode is None:
            worker.terminate()
            await worker.wait()
    floor_rate = args.grants / floor_s
    figures.update(
        {
            "floor_seconds": round(floor_s, 1),
            "floor_workflows_per_s": round(floor_rate, 2),
            "floor_p50_s": round(pct(floor_latency, 50), 2),
            "floor_p99_s": round(pct(floor_latency, 99), 2),
            "ratio": round(lifecycle_rate / floor_rate, 2),
        }
    )
    print("CPU seconds per grant, by process (lifecycle | floor):")
    for name in sorted(set(lifecycle_cpu) | set(floor_cpu)):
        life_ms = lifecycle_cpu.get(name, 0.0) / args.grants * 1000
        floor_ms = floor_cpu.get(name, 0.0) / args.grants * 1000
        print(f"  {name:<14} {life_ms:7.1f} ms | {floor_ms:7.1f} ms")
    figures["cpu_ms_per_grant"] = {
        "lifecycle": {k: round(v / args.grants * 1000, 1) for k, v in lifecycle_cpu.items()},
        "floor": {k: round(v / args.grants * 1000, 1) for k, v in floor_cpu.items()},
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--notice-seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16, help="concurrent filing clients")
    parser.add_argument("--plan-every", type=float, default=3.0, help="seconds between plans")
    parser.add_argument(
        "--submit-rate",
        type=float,
        help="file at this many applications per second (an offered load) instead of as fast "
        "as the clients go; the latencies then show what a user waits at that load",
    )
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    from tests.stack_fixture import running_stack

    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        with running_stack(
            Path(tmp),
            notice_period_seconds=args.notice_seconds,
            review_period_seconds=3600.0,
        ) as stack:
            print(f"stack ready in {time.monotonic() - started:.1f} s", flush=True)
            figures = asyncio.run(bench(stack, args))
    print()
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (2 cores)")
    show(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    from services.common.process import run_and_exit

    run_and_exit(main)
