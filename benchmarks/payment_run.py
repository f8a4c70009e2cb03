"""One funding plan's payment run at the city's size, with the treasury misbehaving
(`python -m benchmarks.payment_run [--lines 3000] [--rejections 0.10] [--timeouts 0.05]
[--returns 0.01] [--settling 0.0]`).

Starts a throw-away embedded stack whose simulated treasury injects faults (its settings:
treasury_rejected_payees, a chosen share of the enterprises whose accounts it refuses for good;
treasury_timeout_rate, payments recorded but their answer lost; treasury_failure_rate, the gateway
unavailable before anything is paid, 0 unless --unavailable), publishes the catalogue and budgets,
files N SME-CLOUD applications with 16 clients, approves them in both departments as scripted
reviewers (claim and approve every open task), waits until every award is noticed and waits for a
plan, then one finance officer makes one plan of all N awards, every recipient confirms its
receiving account (收款账户: the stack pays only confirmed accounts), and two others approve it.
Timed: from the plan's (last) approval to its completion (completed_at set). Printed: the time,
lines/s, lines paid and failed, retries (the lines' gateway attempts beyond the first), and the
sizes of the plan's history and its chunk workflows' (plan-<id>-chunk-<n>).

Returns after settlement (退汇, --returns, treasury_return_rate; and --settling, late
settlement): the returned payments are recorded (SyncGatewayReturns), each recipient proposes a
corrected account and a second finance officer approves it, and a further plan pays those awards
again with their reissue keys (award-<id>-r<k>), round after round until none is returned. Then
checked:

- every line of the first plan ends PAID, RETURNED or FAILED with a reason (the grant PAID or
  PAYMENT_FAILED), and the failed ones are exactly the refused payees';
- every returned award is paid again once, to its corrected account, and none is left returned;
- the treasury's statement of the day has each key at most once, exactly the paid and returned
  lines' keys with their amounts;
- ReconcileDay of today's Beijing day matches every payment (its exceptions are listed);
- GetTrialBalance of SME-CLOUD balances, its paid account holding what the PAID lines paid, its
  returned and payable accounts at zero.

The floor: the gateway alone, SimulatedTreasury.pay called N times (30 at a time, as many as the
plan's chunks pay at once) on a scratch database without faults; printed with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from temporalio.service import RPCError, RPCStatusCode

from benchmarks.shared import bearer, sme_cloud_filing
from grantflow.demo import seed_catalogue
from grantflow.plan_progress import summary
from grantflow.sample import credit_code
from grantflow.v1 import (
    applications_pb2_grpc,
    common_pb2,
    disbursement_pb2,
    review_pb2,
    review_pb2_grpc,
)
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.temporal import connect_temporal
from services.common.vocabulary import Role
from services.disbursement.gateway import BEIJING
from services.disbursement.treasury import SimulatedTreasury
from tests.actors import Actors
from tests.stack_fixture import running_stack
from workflows import contracts
from workflows.funding_plan import CHUNK_CONCURRENT_PAYMENTS, CHUNKS_AT_ONCE
from workflows.models import FundingPlanOutcome

FIRST_NUMBER = 800_000  # the enterprises: credit_code(FIRST_NUMBER + n)
AWARD_FEN = 150_000  # SME-CLOUD: 50 % of the 300,000 fen fee sme_cloud_filing reports
LINE = "SME-SUPPORT"  # SME-CLOUD's budget line
# As many as workflows/funding_plan.py pays at once: its chunks at once, each a few lines at a time.
CONCURRENT_PAYMENTS = CHUNKS_AT_ONCE * CHUNK_CONCURRENT_PAYMENTS
PS = disbursement_pb2


# ------------------------------------------------------------------------------- to awarded


async def file_all(settings: Settings, count: int, clients: int = 16) -> float:
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


async def reviewer(
    settings: Settings,
    department: str,
    enum: Any,
    stop: asyncio.Event,
    decided: Counter[str],
    errors: Counter[str],
) -> None:
    """Claims and approves every open task of the department (8 at a time) until stopped."""
    channel = grpc.aio.insecure_channel(settings.review_address)
    stub = review_pb2_grpc.ReviewServiceStub(channel)
    meta = bearer(
        mint_token(settings.auth_secret, f"bench-{department}", "reviewer", department=department)
    )
    handled: set[str] = set()
    deciding = asyncio.Semaphore(8)

    async def handle(task_id: str, claimed: bool) -> None:
        async with deciding:
            try:
                if not claimed:
                    await stub.ClaimTask(
                        review_pb2.ClaimTaskRequest(task_id=task_id), metadata=meta
                    )
                await stub.DecideTask(
                    review_pb2.DecideTaskRequest(
                        task_id=task_id,
                        decision=review_pb2.REVIEW_DECISION_APPROVE,
                        reason="meets the rules",
                    ),
                    metadata=meta,
                )
            except grpc.aio.AioRpcError as error:
                # E.g. UNAVAILABLE "the grant workflow did not answer in time; try again": the
                # next look at the inbox finds the task again (open, or claimed by us).
                errors[f"{department} {error.code().name}"] += 1
                handled.discard(task_id)
                return
            decided[department] += 1

    running: set[asyncio.Task[None]] = set()
    try:
        while not stop.is_set():
            page = await stub.ListTasks(
                review_pb2.ListTasksRequest(
                    department=enum, filter=review_pb2.TASK_FILTER_OPEN, page_size=200
                ),
                metadata=meta,
            )
            for task in page.tasks:
                claimed = task.state == review_pb2.TASK_STATE_CLAIMED
                if task.state == review_pb2.TASK_STATE_OPEN or claimed:
                    if task.task_id in handled:
                        continue
                    handled.add(task.task_id)
                    job = asyncio.create_task(handle(task.task_id, claimed))
                    running.add(job)
                    job.add_done_callback(running.discard)
            await sleep_or(stop, 1.0)
        await asyncio.gather(*running)
    finally:
        await channel.close()


async def sleep_or(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def count_stage(client: Any, stage: str) -> int:
    query = f"WorkflowType = '{contracts.GRANT_WORKFLOW}' AND GrantStage = '{stage}'"
    return int((await client.count_workflows(query)).count)


async def to_awaiting_plan(settings: Settings, count: int, temporal: Any) -> None:
    """Files `count` applications and reviews them until every award is noticed (the budget
    line's committed share) and every grant waits for a plan."""
    finance = ServiceClients(
        settings, mint_token(settings.auth_secret, "bench.finance", Role.FINANCE)
    )
    year = datetime.now(BEIJING).year
    line = await finance.disbursement.GetBudgetLine(
        PS.GetBudgetLineRequest(line_code=LINE, fiscal_year=year)
    )
    if line.available_fen < count * AWARD_FEN:
        raise SystemExit(f"{LINE} {year} has {line.available_fen} fen, not {count * AWARD_FEN}")
    stop = asyncio.Event()
    decided: Counter[str] = Counter()
    errors: Counter[str] = Counter()  # decisions refused for now, tried again
    reviewers = [
        asyncio.create_task(
            reviewer(settings, "industry", common_pb2.DEPARTMENT_INDUSTRY, stop, decided, errors)
        ),
        asyncio.create_task(
            reviewer(settings, "finance", common_pb2.DEPARTMENT_FINANCE, stop, decided, errors)
        ),
    ]
    began = time.monotonic()
    try:
        filing = await file_all(settings, count)
        print(f"filed {count} applications in {filing:.0f} s", flush=True)
        deadline = time.monotonic() + max(600.0, count * 1.0)
        last_print = 0.0
        while True:
            line = await finance.disbursement.GetBudgetLine(
                PS.GetBudgetLineRequest(line_code=LINE, fiscal_year=year)
            )
            awarded = line.committed_fen // AWARD_FEN
            waiting = await count_stage(temporal, "AWAITING_FUNDING_PLAN")
            if awarded >= count and waiting >= count:
                break
            if time.monotonic() - last_print > 15:
                last_print = time.monotonic()
                print(
                    f"  {last_print - began:5.0f} s: {dict(decided)} decisions "
                    f"({dict(errors)} tried again), "
                    f"{awarded} awards noticed, {waiting} grants awaiting a plan",
                    flush=True,
                )
            if time.monotonic() > deadline:
                raise SystemExit(f"only {awarded} awards noticed, {waiting} awaiting a plan")
            if any(task.done() for task in reviewers):
                await asyncio.gather(*reviewers)  # a reviewer failed: say why
            await asyncio.sleep(2.0)
        print(
            f"{count} awards awaiting a plan {time.monotonic() - began:.0f} s after the first filing",
            flush=True,
        )
    finally:
        stop.set()
        await asyncio.gather(*reviewers, return_exceptions=True)
        await finance.close()


# ------------------------------------------------------------------------------- the payment run


def account_number(credit: str, reissue: int = 0) -> str:
    """A made-up account number per enterprise (a different one after each correction)."""
    digits = "".join(ch for ch in credit if ch.isdigit())
    return f"{reissue + 4}{digits[-12:]:0>12}{reissue:03d}"


async def confirm_accounts(settings: Settings, lines: list[Any], reissue: int = 0) -> None:
    """Every line's recipient confirms (first time) or changes (after a return, approved by a
    second finance officer) its receiving account, 16 at a time."""
    channel = grpc.aio.insecure_channel(settings.disbursement_address)
    from grantflow.v1 import disbursement_pb2_grpc

    stub = disbursement_pb2_grpc.DisbursementServiceStub(channel)
    approver = bearer(mint_token(settings.auth_secret, "bench.finance-accounts", Role.FINANCE))
    places = asyncio.Semaphore(16)

    async def one(line: Any) -> None:
        code = line.applicant_credit_code
        meta = bearer(mint_token(settings.auth_secret, code, "applicant", enterprise=code))
        async with places:
            details = PS.AccountDetails(
                account_name=line.applicant_name,
                account_number=account_number(code, reissue),
                bank_code="102584000016",
                bank_name="中国工商银行深圳分行营业部",
            )
            if not reissue:
                await stub.ConfirmReceivingAccount(
                    PS.ConfirmReceivingAccountRequest(
                        request_id=f"bench-account-{line.application_id}",
                        application_id=line.application_id,
                        account=details,
                    ),
                    metadata=meta,
                )
                return
            proposed = await stub.ProposeAccountChange(
                PS.ProposeAccountChangeRequest(
                    request_id=f"bench-change-{line.application_id}-{reissue}",
                    application_id=line.application_id,
                    account=details,
                    reason="原账户已销户（退汇）",
                ),
                metadata=meta,
            )
            await stub.ApproveAccountChange(
                PS.ApproveAccountChangeRequest(
                    application_id=line.application_id, version=proposed.proposed.version
                ),
                metadata=approver,
            )

    try:
        await asyncio.gather(*(one(line) for line in lines))
    finally:
        await channel.close()


async def fund_with_accounts(actors: Actors, settings: Settings, reissue: int = 0) -> Any:
    """A plan of every award waiting for one, its recipients' accounts confirmed (or corrected
    after a return), approved by two further officers when its total asks for them."""
    plan = await actors.maker.disbursement.CreateFundingPlan(
        PS.CreateFundingPlanRequest(
            request_id=f"plan-{uuid.uuid4().hex}", program_code="SME-CLOUD", title="SME-CLOUD batch"
        )
    )
    if not reissue:
        await confirm_accounts(settings, list(plan.lines))
    approve = PS.ApproveFundingPlanRequest(plan_id=plan.plan_id)
    approved = await actors.checker.disbursement.ApproveFundingPlan(approve)
    if approved.state == PS.PLAN_STATE_AWAITING_SECOND_APPROVAL:
        approved = await actors.second_checker.disbursement.ApproveFundingPlan(approve)
    return approved


async def wait_completed(actors: Actors, plan_id: str) -> Any:
    while True:
        plan = await actors.maker.disbursement.GetFundingPlan(
            PS.GetFundingPlanRequest(plan_id=plan_id)
        )
        if plan.HasField("completed_at"):
            return plan
        await asyncio.sleep(1.0)


async def pay_returns_again(settings: Settings, rounds: int = 4) -> list[Any]:
    """Records the returned payments, corrects their accounts and pays them again by further
    plans, round after round until the treasury returns none; the reissue plans."""
    actors = Actors(settings)
    plans: list[Any] = []
    handled: set[str] = set()
    try:
        for reissue in range(1, rounds + 1):
            await asyncio.sleep(1.0)  # returns come back after settlement
            synced = await actors.maker.disbursement.SyncGatewayReturns(
                PS.SyncGatewayReturnsRequest()
            )
            # Returns are also recorded as they are met (a late-settling payment whose status
            # query already says returned): finance acts on every RETURNED line, as its
            # console's 已退汇 filter lists them, not only on what this sync recorded.
            listed = await actors.maker.disbursement.ListPaymentLines(
                PS.ListPaymentLinesRequest(
                    state=PS.PAYMENT_STATE_RETURNED, program_code="SME-CLOUD", limit=1000
                )
            )
            fresh = [line for line in listed.lines if line.line_id not in handled]
            if not fresh:
                break
            handled |= {line.line_id for line in fresh}
            print(
                f"round {reissue}: {len(fresh)} returned payments (退汇), "
                f"{len(synced.returned)} of them recorded by SyncGatewayReturns",
                flush=True,
            )
            await confirm_accounts(settings, fresh, reissue)
            plan = await fund_with_accounts(actors, settings, reissue)
            plans.append(await wait_completed(actors, plan.plan_id))
        return plans
    finally:
        await actors.close()


async def payment_run(settings: Settings, count: int, temporal: Any) -> dict[str, Any]:
    actors = Actors(settings)
    try:
        plan = await fund_with_accounts(actors, settings)
        if plan.line_count != count:
            raise SystemExit(f"the plan has {plan.line_count} lines, not {count}")
        approved = plan.approved_at.ToDatetime().timestamp()
        approvals = 2 if plan.second_approval_required else 1
        print(
            f"plan {plan.plan_id}: {plan.line_count} lines, {plan.total_fen / 100:,.2f} yuan, "
            f"{approvals} approval(s); paying",
            flush=True,
        )
        handle = temporal.get_workflow_handle(plan.workflow_id)
        last_print = time.monotonic()
        while True:
            page = await actors.maker.disbursement.ListFundingPlans(
                PS.ListFundingPlansRequest(
                    program_code="SME-CLOUD", page_size=10, without_lines=True
                )
            )
            mine = next(p for p in page.plans if p.plan_id == plan.plan_id)
            if mine.HasField("completed_at"):
                break
            if time.monotonic() - last_print > 15:
                last_print = time.monotonic()
                try:
                    progress = await handle.query(
                        contracts.PLAN_PROGRESS, result_type=FundingPlanOutcome
                    )
                    done = summary(progress)
                except Exception as error:  # the figure is only a progress report
                    done = f"progress unreadable: {error}"
                print(f"  {time.time() - approved:5.0f} s after approval: {done}", flush=True)
            await asyncio.sleep(1.0)
        seconds = mine.completed_at.ToDatetime().timestamp() - approved
        full = await actors.maker.disbursement.GetFundingPlan(
            PS.GetFundingPlanRequest(plan_id=plan.plan_id)
        )
        history = await handle.fetch_history()
        return {
            "plan": full,
            "seconds": seconds,
            "history_events": len(history.events),
            "history_bytes": sum(event.ByteSize() for event in history.events),
            "chunks": await chunk_histories(temporal, plan.plan_id),
        }
    finally:
        await actors.close()


async def chunk_histories(temporal: Any, plan_id: str) -> list[tuple[int, int]]:
    """(events, bytes) of each chunk workflow of the plan, chunk 0 first (none for a plan paid
    by one workflow)."""
    sizes: list[tuple[int, int]] = []
    for chunk in itertools.count():
        handle = temporal.get_workflow_handle(contracts.plan_chunk_workflow_id(plan_id, chunk))
        try:
            history = await handle.fetch_history()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return sizes
        sizes.append((len(history.events), sum(event.ByteSize() for event in history.events)))
    return sizes


async def gateway_status(settings: Settings, key: str) -> str:
    treasury = SimulatedTreasury.from_settings(settings)
    try:
        status = await treasury.payment_status(key)
    finally:
        await treasury.close()
    if status is None:
        return "no payment"
    return f"{status.state} accepted {status.accepted_at:%H:%M:%S.%f} settled {status.settled_at} returned {status.returned_at}"


async def check(
    settings: Settings,
    plan: PS.FundingPlan,
    refused: set[str],
    temporal: Any,
    reissues: list[PS.FundingPlan],
) -> list[str]:
    """What does not agree, as sentences (none: ledger, gateway and reconciliation agree)."""
    problems: list[str] = []
    paid_states = (PS.PAYMENT_STATE_PAID, PS.PAYMENT_STATE_RETURNED)
    paid = [line for line in plan.lines if line.state in paid_states]
    failed = [line for line in plan.lines if line.state == PS.PAYMENT_STATE_FAILED]
    other = len(plan.lines) - len(paid) - len(failed)
    if other:
        problems.append(f"{other} lines neither paid nor failed")
    if any(not line.failure_reason for line in failed):
        problems.append("a failed line without a reason")
    failed_payees = {line.applicant_credit_code for line in failed}
    if failed_payees != refused:
        problems.append(
            f"failed lines' payees differ from the refused ones: "
            f"{len(failed_payees - refused)} not refused, {len(refused - failed_payees)} refused but not failed"
        )
    if any(line.applicant_credit_code in refused for line in paid):
        problems.append("a refused payee was paid")

    # The gateway: its statement of the day.
    day = datetime.now(BEIJING).date()
    treasury = SimulatedTreasury.from_settings(settings)
    try:
        statement = await treasury.statement(day)
    finally:
        await treasury.close()
    keys = Counter(entry.idempotency_key for entry in statement)
    duplicates = [key for key, n in keys.items() if n > 1]
    if duplicates:
        problems.append(f"{len(duplicates)} keys paid more than once by the treasury")
    every = paid + [line for p in reissues for line in p.lines if line.state in paid_states]
    wanted = {line.idempotency_key: line.amount_fen for line in every}
    at_gateway = {entry.idempotency_key: entry.amount_fen for entry in statement}
    # Every award paid is paid once net: the returned ones again, with a new key, each once.
    returned = [line for line in every if line.state == PS.PAYMENT_STATE_RETURNED]
    settled = [line for line in every if line.state == PS.PAYMENT_STATE_PAID]
    twice = [a for a, n in Counter(x.application_id for x in settled).items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} awards have two settled payments that were not returned")
    unpaid = {x.application_id for x in paid} - {x.application_id for x in settled}
    if unpaid:
        problems.append(f"{len(unpaid)} awards returned and not paid again")
    for application_id in sorted({*twice, *unpaid}):  # what happened to each, for the reader
        for line in every:
            if line.application_id == application_id:
                status = await gateway_status(settings, line.idempotency_key)
                print(
                    f"  {application_id} line {line.line_id[:8]} of plan {line.plan_id[:8]}: "
                    f"{PS.PaymentState.Name(line.state)} key {line.idempotency_key} attempts "
                    f"{line.attempts} reissue {line.reissue}; treasury: {status}",
                    flush=True,
                )
    if any(
        line.reissue and line.account_number == account_number(line.applicant_credit_code)
        for line in settled
    ):
        problems.append("a reissue was paid to the account that returned it")
    print(
        f"returns: {len(returned)} payments returned (退汇), paid again in {len(reissues)} "
        f"plan(s) with {sum(len(p.lines) for p in reissues)} lines",
        flush=True,
    )
    if wanted != at_gateway:
        problems.append(
            f"statement and paid lines differ: {len(set(at_gateway) - set(wanted))} paid "
            f"without a paid line, {len(set(wanted) - set(at_gateway))} lines not at the "
            f"gateway, {sum(1 for k in wanted if k in at_gateway and wanted[k] != at_gateway[k])} amounts"
        )

    # The grants: told their outcome.
    deadline = time.monotonic() + 120
    while True:
        grants_paid = await count_stage(temporal, "PAID")
        grants_failed = await count_stage(temporal, "PAYMENT_FAILED")
        if (grants_paid, grants_failed) == (len(paid), len(failed)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(2.0)
    if (grants_paid, grants_failed) != (len(paid), len(failed)):
        problems.append(f"grants PAID {grants_paid}, PAYMENT_FAILED {grants_failed} (visibility)")

    async with ServiceClients(
        settings, mint_token(settings.auth_secret, "bench.finance", Role.FINANCE)
    ) as finance:
        reconciliation = await finance.disbursement.ReconcileDay(
            PS.ReconcileDayRequest(day=day.isoformat())
        )
        balance = await finance.disbursement.GetTrialBalance(
            PS.GetTrialBalanceRequest(program_code="SME-CLOUD")
        )
    r = reconciliation
    print(
        f"reconciliation {r.day}: gateway {r.gateway_count} ({r.gateway_total_fen} fen), ledger "
        f"{r.ledger_count} ({r.ledger_total_fen} fen), matched {r.matched_count}, "
        f"exceptions {r.exception_count}",
        flush=True,
    )
    for exception in r.exceptions:
        print(
            f"  exception {PS.ReconciliationKind.Name(exception.kind)} {exception.idempotency_key} "
            f"gateway {exception.gateway_amount_fen} ledger {exception.ledger_amount_fen}",
            flush=True,
        )
    if not (r.gateway_count == r.ledger_count == r.matched_count == len(every)):
        problems.append("reconciliation counts differ from the paid lines")
    if r.exception_count:
        problems.append(f"{r.exception_count} reconciliation exceptions")
    paid_fen = sum(line.amount_fen for line in settled)
    ledger_paid = sum(
        account.balance_fen
        for budget in balance.budgets
        for account in budget.accounts
        if account.kind == PS.LEDGER_ACCOUNT_KIND_PAID
    )
    left = sum(
        account.balance_fen
        for budget in balance.budgets
        for account in budget.accounts
        if account.kind in (PS.LEDGER_ACCOUNT_KIND_RETURNED, PS.LEDGER_ACCOUNT_KIND_PAYABLE)
    )
    if left:
        problems.append(f"{left} fen still returned or payable in the ledger")
    print(
        f"trial balance: debit {balance.debit_fen} credit {balance.credit_fen} "
        f"balanced {balance.balanced}; paid accounts {ledger_paid} fen, lines paid {paid_fen} fen",
        flush=True,
    )
    if not balance.balanced:
        problems.append("the trial balance does not balance")
    if ledger_paid != paid_fen:
        problems.append(f"ledger paid {ledger_paid} fen, the lines {paid_fen} fen")
    return problems


# ------------------------------------------------------------------------------- the floor


async def bare_gateway(count: int) -> float:
    """Seconds for SimulatedTreasury.pay called `count` times, CONCURRENT_PAYMENTS at a time, on a scratch
    database, without faults."""
    with tempfile.TemporaryDirectory() as folder:
        treasury = SimulatedTreasury(f"sqlite:///{Path(folder) / 'treasury.db'}")
        places = asyncio.Semaphore(CONCURRENT_PAYMENTS)

        async def pay(n: int) -> None:
            async with places:
                await treasury.pay(
                    f"floor-{uuid.uuid4().hex}",
                    credit_code(FIRST_NUMBER + n),
                    f"Floor {n}",
                    AWARD_FEN,
                )

        started = time.monotonic()
        await asyncio.gather(*(pay(n) for n in range(count)))
        seconds = time.monotonic() - started
        await treasury.close()
    return seconds


# ------------------------------------------------------------------------------- main


async def bench(settings: Settings, args: argparse.Namespace, refused: set[str]) -> bool:
    await seed_catalogue(settings)
    temporal = await connect_temporal(settings)
    await to_awaiting_plan(settings, args.lines, temporal)
    run = await payment_run(settings, args.lines, temporal)
    reissues = await pay_returns_again(settings)
    plan: PS.FundingPlan = run["plan"]
    # Its lines as they are now: the returned ones recorded RETURNED since the run.
    actors = Actors(settings)
    try:
        plan = await actors.maker.disbursement.GetFundingPlan(
            PS.GetFundingPlanRequest(plan_id=plan.plan_id)
        )
        reissues = [  # and so are the reissue plans' (a reissue may come back too)
            await actors.maker.disbursement.GetFundingPlan(
                PS.GetFundingPlanRequest(plan_id=p.plan_id)
            )
            for p in reissues
        ]
    finally:
        await actors.close()
    seconds: float = run["seconds"]
    paid = sum(
        1 for line in plan.lines if line.state in (PS.PAYMENT_STATE_PAID, PS.PAYMENT_STATE_RETURNED)
    )
    failed = sum(1 for line in plan.lines if line.state == PS.PAYMENT_STATE_FAILED)
    retries = sum(max(0, line.attempts - 1) for line in plan.lines)
    retried = sum(1 for line in plan.lines if line.attempts > 1)
    print(
        f"payment run: {args.lines} lines in {seconds:.1f} s ({args.lines / seconds:.1f} lines/s); "
        f"{paid} paid, {failed} failed (reported), {retries} retries on {retried} lines; "
        f"plan {PS.PlanState.Name(plan.state)}",
        flush=True,
    )
    print(
        f"FundingPlanWorkflow history: {run['history_events']} events, "
        f"{run['history_bytes'] / 1e6:.2f} MB",
        flush=True,
    )
    chunks: list[tuple[int, int]] = run["chunks"]
    if chunks:
        events = [size[0] for size in chunks]
        print(
            f"its {len(chunks)} FundingPlanChunkWorkflow histories: largest {max(events)} events, "
            f"{sum(events)} in all, {sum(size[1] for size in chunks) / 1e6:.2f} MB "
            f"(events per chunk: {', '.join(map(str, events))})",
            flush=True,
        )
    problems = await check(settings, plan, refused, temporal, reissues)
    floor = await bare_gateway(args.lines)
    print(
        f"floor (SimulatedTreasury.pay x {args.lines}, no faults): {floor:.1f} s "
        f"({args.lines / floor:.1f} payments/s); payment run / floor = {seconds / floor:.1f}",
        flush=True,
    )
    for problem in problems:
        print(f"DISAGREES: {problem}", flush=True)
    if not problems:
        print(
            "every line paid once or reported; ledger, gateway and reconciliation agree", flush=True
        )
    return not problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--rejections", type=float, default=0.10, help="share of payees refused")
    parser.add_argument(
        "--timeouts", type=float, default=0.05, help="payments whose answer is lost"
    )
    parser.add_argument("--unavailable", type=float, default=0.0, help="calls the gateway refuses")
    parser.add_argument(
        "--returns", type=float, default=0.01, help="payments returned after settlement (退汇)"
    )
    parser.add_argument(
        "--settling", type=float, default=0.0, help="payments that settle late (2 s later)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    refused = {
        credit_code(FIRST_NUMBER + n)
        for n in rng.sample(range(args.lines), round(args.lines * args.rejections))
    }
    print(
        f"{args.lines} lines: {len(refused)} payees refused, timeouts {args.timeouts:.0%}, "
        f"unavailable {args.unavailable:.0%}, returns {args.returns:.0%}, "
        f"settling late {args.settling:.0%}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory() as folder,
        running_stack(
            Path(folder),
            notice_period_seconds=1.0,
            review_period_seconds=7 * 24 * 3600.0,
            treasury_rejected_payees=",".join(sorted(refused)),
            treasury_timeout_rate=args.timeouts,
            treasury_failure_rate=args.unavailable,
            treasury_seed=args.seed,
            treasury_return_rate=args.returns,
            treasury_settle_delay_rate=args.settling,
            treasury_settle_delay_s=2.0,
            payment_requires_account=True,
        ) as stack,
    ):
        ok = asyncio.run(bench(stack.settings, args, refused))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
