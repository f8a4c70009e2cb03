"""DisbursementService over real gRPC on SQLite and PostgreSQL: budgets, reservations, funding
plans with maker-checker, payments through the simulated treasury, and the double-entry ledger."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import text
from stdnum.cn import uscc

from grantflow.v1 import applications_pb2, common_pb2, disbursement_pb2_grpc, events_pb2
from grantflow.v1 import disbursement_pb2 as pb
from services.applications.catalogue import load_catalogue
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.db import make_engine
from services.common.kafka import DISBURSEMENT, Record, read_topic, topic
from services.common.vocabulary import Department, Role
from services.disbursement.gateway import (
    GatewayPayment,
    GatewayTimeout,
    PayeeAccount,
    PaymentGateway,
    PaymentStatus,
    award_payment_key,
)
from services.disbursement.server import run
from services.disbursement.treasury import SimulatedTreasury
from tests.integration._applications_server import ApplicationsHarness, applications_service
from tests.support import free_port, holding_the_write_lock

if TYPE_CHECKING:
    from grantflow.v1.disbursement_pb2_grpc import DisbursementServiceAsyncStub as Stub

# Programs of the tests' own, published beside the seed catalogue from a copy of its SME-CLOUD
# rule: one keeping a budget of its own (whatever line the seed catalogue gives SME-CLOUD), one
# drawing on a budget line.
SEED_PROGRAM = "SME-CLOUD"
PROGRAM = "OWN-BUDGET"
LINED_PROGRAM, LINE = "ON-A-LINE", "TEST-LINE"
TABLES = (
    "program_budget",
    "reservation",
    "funding_plan",
    "payment_line",
    "ledger_entry",
    "outbox_event",
    "processed_event",
    "fund",
    "support_plan",
    "budget_line",
    "allocation_batch",
    "batch_allocation",
    "receiving_account",
)


def credit_code(n: int) -> str:
    base = f"91440300MA5F{n:05d}"
    return base + uscc.calc_check_digit(base)


@dataclass
class Harness:
    settings: Settings
    url: str
    clients: list[ServiceClients] = field(default_factory=list)
    applications: ApplicationsHarness | None = None  # the catalogue's service beside it

    def as_(self, subject: str, role: str, *, department: str = "", enterprise: str = "") -> Stub:
        token = mint_token(
            self.settings.auth_secret, subject, role, department=department, enterprise=enterprise
        )
        clients = ServiceClients(self.settings, token)
        self.clients.append(clients)
        return clients.disbursement  # type: ignore[return-value]

    @property
    def system(self) -> Stub:
        return self.as_("grantflow-system", Role.SYSTEM)

    def treasury(self) -> SimulatedTreasury:
        return SimulatedTreasury(self.settings.database_url("treasury"))

    def count_rows(self) -> dict[str, int]:
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                return {
                    t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES
                }
        finally:
            engine.dispose()

    def outbox(self, event_type: str) -> list[events_pb2.EventEnvelope]:
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT topic, key, payload FROM outbox_event WHERE event_type = :t"),
                    {"t": f"grantflow.v1.{event_type}"},
                ).all()
        finally:
            engine.dispose()
        envelopes = []
        for row_topic, key, payload in rows:
            envelope = events_pb2.EventEnvelope.FromString(payload)
            assert row_topic == topic(self.settings, DISBURSEMENT)
            assert key == envelope.subject
            envelopes.append(envelope)
        return envelopes


@asynccontextmanager
async def service(
    database_url: str,
    tmp_path: Path,
    kafka: str,
    *,
    gateway: PaymentGateway | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    """The real server on a free port, in this event loop, with its outbox relay on Kafka, beside
    a real applications service whose catalogue (the seed catalogue) it asks."""
    async with applications_service(
        f"sqlite:///{tmp_path / 'applications.db'}", tmp_path
    ) as applications:
        await publish_test_programs(applications)
        settings = Settings(
            data_dir=tmp_path,
            applications_address=applications.settings.applications_address,
            disbursement_address=f"127.0.0.1:{free_port()}",
            disbursement_database_url=database_url,
            treasury_database_url=f"sqlite:///{tmp_path / 'treasury.db'}",
            kafka_bootstrap_servers=kafka,
            kafka_embedded_broker_recovery=True,
            **overrides,
        )
        async with _disbursement(settings, database_url, gateway) as harness:
            harness.applications = applications
            yield harness


async def publish_test_programs(applications: ApplicationsHarness) -> None:
    [seed] = [rule for rule in load_catalogue() if rule.code == SEED_PROGRAM]
    for code, line in ((PROGRAM, ""), (LINED_PROGRAM, LINE)):
        rule = type(seed)()
        rule.CopyFrom(seed)
        rule.code, rule.budget_line_code = code, line
        await applications.stub.PublishProgramVersion(
            applications_pb2.PublishProgramVersionRequest(rule=rule),
            metadata=applications.auth(Role.OPS),
        )


@asynccontextmanager
async def _disbursement(
    settings: Settings, database_url: str, gateway: PaymentGateway | None
) -> AsyncIterator[Harness]:
    stop = asyncio.Event()
    ready = asyncio.Event()
    server = asyncio.create_task(run(settings, stop=stop, ready=ready.set, gateway=gateway))
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({server, waiting}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        waiting.cancel()
        server.result()
    assert ready.is_set(), "disbursement service did not start"
    harness = Harness(settings, database_url)
    try:
        yield harness
    finally:
        for clients in harness.clients:
            await clients.close()
        stop.set()
        await asyncio.wait_for(server, timeout=30)


async def expect_error(call: Any, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


def violated_field(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    return str(bad.field_violations[0].field)
    return ""


async def reserve(
    stub: Stub, application_id: str, amount: int, n: int = 1, program: str = PROGRAM
) -> pb.Reservation:
    return await stub.ReserveBudget(
        pb.ReserveBudgetRequest(
            application_id=application_id,
            program_code=program,
            amount_fen=amount,
            applicant_credit_code=credit_code(n),
            applicant_name=f"Enterprise {n} Ltd",
        )
    )


async def set_budget(h: Harness, total: int, program: str = PROGRAM) -> pb.ProgramBudget:
    finance = h.as_("fin-budget", Role.FINANCE)
    return await finance.SetProgramBudget(
        pb.SetProgramBudgetRequest(program_code=program, total_fen=total)
    )


def account_of(n: int, number: str = "") -> pb.AccountDetails:
    """Enterprise n's receiving account (the name reserve() gives it, a valid CNAPS code)."""
    return pb.AccountDetails(
        account_name=f"Enterprise {n} Ltd",
        account_number=number or f"4000{n:014d}",
        bank_code="102584000016",
        bank_name="中国工商银行深圳分行营业部",
    )


async def confirm_account(h: Harness, application_id: str, n: int) -> pb.ReceivingAccounts:
    """The applicant of enterprise n confirms its award's receiving account."""
    applicant = h.as_(f"applicant-{n}", Role.APPLICANT, enterprise=credit_code(n))
    return await applicant.ConfirmReceivingAccount(
        pb.ConfirmReceivingAccountRequest(
            request_id=f"account-{application_id}",
            application_id=application_id,
            account=account_of(n),
        )
    )


async def awarded_plan(h: Harness, amounts: dict[str, int]) -> pb.FundingPlan:
    """Budget, reserved and confirmed awards with their receiving accounts confirmed, a plan made
    by fin-a and approved by fin-b."""
    await set_budget(h, 10_000_000)
    for n, (application_id, amount) in enumerate(sorted(amounts.items()), start=1):
        await reserve(h.system, application_id, amount, n)
        await h.system.ConfirmAward(pb.ConfirmAwardRequest(application_id=application_id))
        await confirm_account(h, application_id, n)
    plan = await h.as_("fin-a", Role.FINANCE).CreateFundingPlan(
        pb.CreateFundingPlanRequest(
            request_id=f"plan-{uuid.uuid4().hex}", program_code=PROGRAM, title="2021 batch 1"
        )
    )
    checker = h.as_("fin-b", Role.FINANCE)
    return await checker.ApproveFundingPlan(pb.ApproveFundingPlanRequest(plan_id=plan.plan_id))


async def next_plan(h: Harness, title: str) -> pb.FundingPlan:
    """A further plan of the awards waiting for one, made by fin-a and approved by fin-b."""
    plan = await h.as_("fin-a", Role.FINANCE).CreateFundingPlan(
        pb.CreateFundingPlanRequest(
            request_id=f"plan-{uuid.uuid4().hex}", program_code=PROGRAM, title=title
        )
    )
    return await h.as_("fin-b", Role.FINANCE).ApproveFundingPlan(
        pb.ApproveFundingPlanRequest(plan_id=plan.plan_id)
    )


async def payment_journals(h: Harness) -> set[str]:
    entries = (
        await h.as_("ops-1", Role.OPS).ListLedgerEntries(
            pb.ListLedgerEntriesRequest(account_prefix=f"paid:{PROGRAM}")
        )
    ).entries
    return {e.journal_id for e in entries}


class SlowNetwork:
    """The simulated treasury behind a slow network: the first payment request reaches the
    treasury only when the test opens the way (`deliver`), as a bank may receive a request late.

    With answer_lost the caller hears a timeout at once while its request is still on the way;
    without, the caller waits for the late answer.
    """

    def __init__(self, treasury: SimulatedTreasury, *, answer_lost: bool) -> None:
        self.treasury = treasury
        self.answer_lost = answer_lost
        self.sent = asyncio.Event()
        self._open = asyncio.Event()
        self._late: asyncio.Task[str] | None = None

    async def pay(
        self,
        idempotency_key: str,
        payee_credit_code: str,
        payee_name: str,
        amount_fen: int,
        account: PayeeAccount | None = None,
    ) -> str:
        if self._late is not None:
            return await self.treasury.pay(
                idempotency_key, payee_credit_code, payee_name, amount_fen, account
            )

        async def arrive_late() -> str:
            await self._open.wait()
            return await self.treasury.pay(
                idempotency_key, payee_credit_code, payee_name, amount_fen, account
            )

        self._late = asyncio.create_task(arrive_late())
        self.sent.set()
        if self.answer_lost:
            raise GatewayTimeout("no answer; the request is still on its way")
        # The caller giving up does not stop the request, as with a real network.
        return await asyncio.shield(self._late)

    async def deliver(self) -> str:
        """Lets the held request reach the treasury; its reference."""
        assert self._late is not None, "no request was sent"
        self._open.set()
        return await self._late

    async def find_payment(self, idempotency_key: str) -> str | None:
        return await self.treasury.find_payment(idempotency_key)

    async def payment_status(self, idempotency_key: str) -> PaymentStatus | None:
        return await self.treasury.payment_status(idempotency_key)

    async def returns(self, since: datetime) -> list[PaymentStatus]:
        return await self.treasury.returns(since)

    async def statement(self, day: date) -> list[GatewayPayment]:
        return await self.treasury.statement(day)

    async def close(self) -> None:
        if self._late is not None and not self._late.done():
            self._late.cancel()


async def assert_books_balance(h: Harness, program: str = PROGRAM) -> None:
    """Every journal balances, and the ledger agrees with the budget figures."""
    entries = (
        await h.as_("ops-1", Role.OPS).ListLedgerEntries(pb.ListLedgerEntriesRequest())
    ).entries
    journals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    balances: dict[str, int] = defaultdict(int)
    for entry in entries:
        journals[entry.journal_id][0] += entry.debit_fen
        journals[entry.journal_id][1] += entry.credit_fen
        balances[entry.account] += entry.debit_fen - entry.credit_fen
    unbalanced = {j: dc for j, dc in journals.items() if dc[0] != dc[1]}
    assert not unbalanced
    assert sum(dc[0] for dc in journals.values()) == sum(dc[1] for dc in journals.values())
    budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=program))
    assert -balances[f"appropriation:{program}"] == budget.total_fen
    assert balances[f"budget:{program}:available"] == budget.available_fen
    # Held money sits reserved, payable (approved plans' lines) or returned (退汇).
    assert (
        balances[f"budget:{program}:reserved"]
        + balances[f"payable:{program}"]
        + balances[f"returned:{program}"]
        == budget.reserved_fen
    )
    assert balances[f"paid:{program}"] == budget.paid_fen


# Budgets and reservations -------------------------------------------------------------------------


async def test_budget_is_set_changed_and_read(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        assert await set_budget(h, 1_000_000) == pb.ProgramBudget(
            program_code=PROGRAM, total_fen=1_000_000, available_fen=1_000_000
        )
        await set_budget(h, 1_500_000)
        await set_budget(h, 1_500_000)  # no change, no journal
        await reserve(h.system, "app-1", 600_000)
        lowered = await set_budget(h, 1_200_000)
        assert (lowered.total_fen, lowered.reserved_fen, lowered.available_fen) == (
            1_200_000,
            600_000,
            600_000,
        )
        error = await expect_error(set_budget(h, 599_999), grpc.StatusCode.FAILED_PRECONDITION)
        assert "600000" in (error.details() or "")

        reviewer = h.as_("rev-1", Role.REVIEWER, department=Department.INDUSTRY)
        read = await reviewer.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (read.total_fen, read.reserved_fen, read.paid_fen, read.available_fen) == (
            1_200_000,
            600_000,
            0,
            600_000,
        )
        journals = {
            e.journal_id
            for e in (
                await h.as_("fin-1", Role.FINANCE).ListLedgerEntries(
                    pb.ListLedgerEntriesRequest(account_prefix=f"appropriation:{PROGRAM}")
                )
            ).entries
        }
        assert journals == {f"budget-{PROGRAM}-1", f"budget-{PROGRAM}-2", f"budget-{PROGRAM}-3"}
        await expect_error(
            h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code="NO-SUCH")),
            grpc.StatusCode.NOT_FOUND,
        )
        await assert_books_balance(h)


async def test_a_budget_is_only_set_for_a_program_the_catalogue_published(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        error = await expect_error(
            set_budget(h, 1_000_000, program="NEVER-PUBLISHED"),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert "NEVER-PUBLISHED" in (error.details() or "")
        assert "catalogue" in (error.details() or "")
        written = h.count_rows()
        assert (written["program_budget"], written["ledger_entry"]) == (0, 0)

        # Once the applications service publishes it, the program can have its budget.
        assert h.applications is not None
        [rule] = [rule for rule in load_catalogue() if rule.code == SEED_PROGRAM]
        rule.code = "NEWLY-PUBLISHED"
        rule.budget_line_code = ""
        await h.applications.stub.PublishProgramVersion(
            applications_pb2.PublishProgramVersionRequest(rule=rule),
            metadata=h.applications.auth(Role.OPS),
        )
        budget = await set_budget(h, 1_000_000, program="NEWLY-PUBLISHED")
        assert (budget.program_code, budget.total_fen) == ("NEWLY-PUBLISHED", 1_000_000)


async def test_reads_answer_while_another_connection_holds_the_write_lock(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    url = f"sqlite:///{tmp_path / 'disbursement.db'}"
    async with service(url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 1_000_000)
        finance = h.as_("fin-1", Role.FINANCE)
        with holding_the_write_lock(url):
            # The deadline only keeps a blocked read from hanging the test.
            budget = await finance.GetProgramBudget(
                pb.GetProgramBudgetRequest(program_code=PROGRAM), timeout=10
            )
            plans = await finance.ListFundingPlans(pb.ListFundingPlansRequest(), timeout=10)
        assert budget.available_fen == 1_000_000
        assert list(plans.plans) == []


async def test_reservations_stay_within_the_budget_and_are_idempotent(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 1_000_000)
        first = await reserve(h.system, "app-1", 700_000)
        assert first.state == pb.RESERVATION_STATE_RESERVED
        assert first.applicant_credit_code == credit_code(1)
        assert await reserve(h.system, "app-1", 700_000) == first  # a retry changes nothing

        error = await expect_error(
            reserve(h.system, "app-2", 300_001, 2), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert "budget exhausted" in (error.details() or "")
        await expect_error(reserve(h.system, "app-1", 500_000), grpc.StatusCode.ALREADY_EXISTS)
        await expect_error(
            reserve(h.system, "app-3", 100, 3, program="NO-BUDGET"),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        exact = await reserve(h.system, "app-2", 300_000, 2)  # exactly what is left
        assert exact.amount_fen == 300_000

        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.reserved_fen, budget.available_fen) == (1_000_000, 0)
        reserved = h.outbox("BudgetReserved")
        assert sorted(e.subject for e in reserved) == ["app-1", "app-2"]
        assert {e.budget_reserved.amount_fen for e in reserved} == {700_000, 300_000}
        await assert_books_balance(h)


async def test_concurrent_reservations_never_over_reserve(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 100_000)
        stub = h.system
        # 20 x 7,000 fen = 140,000 fen asked of 100,000: exactly 14 fit.
        results = await asyncio.gather(
            *(reserve(stub, f"app-{n}", 7_000, n) for n in range(20)),
            return_exceptions=True,
        )
        granted = [r for r in results if isinstance(r, pb.Reservation)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(granted) + len(refused) == 20
        assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in refused)
        assert len(granted) == 14
        budget = await stub.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert budget.reserved_fen == 98_000 <= budget.total_fen
        assert budget.available_fen == 2_000
        assert len(h.outbox("BudgetReserved")) == 14
        await assert_books_balance(h)


async def test_release_and_confirm_are_idempotent_and_released_awards_stay_released(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 1_000_000)
        await reserve(h.system, "app-1", 400_000)
        await reserve(h.system, "app-2", 100_000, 2)
        confirm = pb.ConfirmAwardRequest(application_id="app-1")
        assert (await h.system.ConfirmAward(confirm)).state == pb.RESERVATION_STATE_AWARDED
        assert (await h.system.ConfirmAward(confirm)).state == pb.RESERVATION_STATE_AWARDED

        release = pb.ReleaseReservationRequest(application_id="app-1", reason="objection upheld")
        assert (await h.system.ReleaseReservation(release)).state == pb.RESERVATION_STATE_RELEASED
        assert (await h.system.ReleaseReservation(release)).state == pb.RESERVATION_STATE_RELEASED
        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.reserved_fen, budget.available_fen) == (100_000, 900_000)

        await expect_error(reserve(h.system, "app-1", 400_000), grpc.StatusCode.FAILED_PRECONDITION)
        await expect_error(h.system.ConfirmAward(confirm), grpc.StatusCode.FAILED_PRECONDITION)
        await expect_error(
            h.system.ReleaseReservation(pb.ReleaseReservationRequest(application_id="app-9")),
            grpc.StatusCode.NOT_FOUND,
        )
        assert len(h.outbox("AwardConfirmed")) == 1
        released = h.outbox("ReservationReleased")
        assert [e.reservation_released.reason for e in released] == ["objection upheld"]
        entries = (
            await h.as_("fin-1", Role.FINANCE).ListLedgerEntries(
                pb.ListLedgerEntriesRequest(journal_id="release-app-1")
            )
        ).entries
        assert len(entries) == 2
        await assert_books_balance(h)


# Funding plans ------------------------------------------------------------------------------------


async def test_funding_plan_needs_a_second_officer_and_announces_its_approval(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 1_000_000)
        for n, application_id in enumerate(["app-1", "app-2", "app-3"], start=1):
            await reserve(h.system, application_id, 100_000 * n, n)
        for application_id in ["app-1", "app-2"]:  # app-3 is still in its notice period
            await h.system.ConfirmAward(pb.ConfirmAwardRequest(application_id=application_id))

        maker = h.as_("fin-a", Role.FINANCE)
        request = pb.CreateFundingPlanRequest(
            request_id="batch-2021-01", program_code=PROGRAM, title="2021 batch 1"
        )
        plan = await maker.CreateFundingPlan(request)
        assert plan.state == pb.PLAN_STATE_DRAFT
        assert plan.created_by == "fin-a"
        assert plan.workflow_id == f"plan-{plan.plan_id}"
        assert plan.total_fen == 300_000
        assert [(line.application_id, line.amount_fen, line.state) for line in plan.lines] == [
            ("app-1", 100_000, pb.PAYMENT_STATE_PENDING),
            ("app-2", 200_000, pb.PAYMENT_STATE_PENDING),
        ]
        assert await maker.CreateFundingPlan(request) == plan  # replayed request
        await expect_error(
            maker.CreateFundingPlan(
                pb.CreateFundingPlanRequest(
                    request_id="batch-2021-01", program_code=PROGRAM, title="another title"
                )
            ),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        await expect_error(  # every noticed award is in the plan already
            maker.CreateFundingPlan(
                pb.CreateFundingPlanRequest(
                    request_id="batch-2021-02", program_code=PROGRAM, title="2021 batch 2"
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        await expect_error(
            h.system.ReleaseReservation(pb.ReleaseReservationRequest(application_id="app-1")),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        first_line = plan.lines[0].line_id
        await expect_error(  # nothing is paid before approval
            h.system.ExecutePayment(
                pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=first_line)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

        approve = pb.ApproveFundingPlanRequest(plan_id=plan.plan_id)
        await expect_error(maker.ApproveFundingPlan(approve), grpc.StatusCode.PERMISSION_DENIED)
        assert (
            await maker.GetFundingPlan(pb.GetFundingPlanRequest(plan_id=plan.plan_id))
        ).state == (pb.PLAN_STATE_DRAFT)
        checker = h.as_("fin-b", Role.FINANCE)
        approved = await checker.ApproveFundingPlan(approve)
        assert (approved.state, approved.approved_by) == (pb.PLAN_STATE_APPROVED, "fin-b")
        assert approved.approved_at.seconds > 0
        assert await checker.ApproveFundingPlan(approve) == approved
        await expect_error(
            h.as_("fin-c", Role.FINANCE).ApproveFundingPlan(approve),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        await expect_error(
            checker.ApproveFundingPlan(pb.ApproveFundingPlanRequest(plan_id=uuid.uuid4().hex)),
            grpc.StatusCode.NOT_FOUND,
        )

        listed = await h.as_("ops-1", Role.OPS).ListFundingPlans(
            pb.ListFundingPlansRequest(program_code=PROGRAM)
        )
        assert [p.plan_id for p in listed.plans] == [plan.plan_id]
        assert len(listed.plans[0].lines) == 2

        [announced] = h.outbox("FundingPlanApproved")
        assert announced.subject == plan.plan_id
        assert announced.funding_plan_approved.approved_by == "fin-b"
        assert list(announced.funding_plan_approved.line_ids) == [
            line.line_id for line in plan.lines
        ]
        assert list(announced.funding_plan_approved.application_ids) == ["app-1", "app-2"]
        assert len(h.outbox("FundingPlanCreated")) == 1

        # The relay hands the event to Kafka, keyed by the plan id.
        seen = await read_kafka_until(h, announced.event_id)
        assert seen.key == plan.plan_id.encode()
        await assert_books_balance(h)


async def test_plans_list_page_by_page_without_their_lines(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    """A list page of plans need not carry every plan's lines (a city plan has thousands)."""
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 10_000_000)
        made = []
        for n in range(1, 6):  # five plans, the n-th of n awards
            for k in range(n):
                application_id = f"app-{n}-{k}"
                await reserve(h.system, application_id, 1_000, n * 10 + k)
                await h.system.ConfirmAward(pb.ConfirmAwardRequest(application_id=application_id))
            made.append(await next_plan(h, f"batch {n}"))
        finance = h.as_("fin-c", Role.FINANCE)
        seen: list[tuple[str, int, int]] = []
        token = ""
        while True:
            page = await finance.ListFundingPlans(
                pb.ListFundingPlansRequest(page_size=2, page_token=token, without_lines=True)
            )
            assert len(page.plans) <= 2
            seen += [(plan.plan_id, plan.line_count, len(plan.lines)) for plan in page.plans]
            token = page.next_page_token
            if not token:
                break
        newest_first = [(plan.plan_id, len(plan.lines), 0) for plan in reversed(made)]
        assert seen == newest_first
        everything = await finance.ListFundingPlans(pb.ListFundingPlansRequest())
        assert [len(plan.lines) for plan in everything.plans] == [5, 4, 3, 2, 1]
        assert [plan.line_count for plan in everything.plans] == [5, 4, 3, 2, 1]
        for bad in (
            pb.ListFundingPlansRequest(page_size=201),
            pb.ListFundingPlansRequest(page_size=2, page_token="not-a-token"),
        ):
            error = await expect_error(
                finance.ListFundingPlans(bad), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert violated_field(error) in {"page_size", "page_token"}


@dataclass
class KafkaRecord:
    key: bytes
    envelope: events_pb2.EventEnvelope


async def read_kafka_until(h: Harness, event_id: str, wait_s: float = 30.0) -> KafkaRecord:
    name = topic(h.settings, DISBURSEMENT)

    def is_wanted(record: Record) -> bool:
        return events_pb2.EventEnvelope.FromString(record.value).event_id == event_id

    # The relay creates the topics when it connects; the reader waits for them.
    records = await read_topic(
        h.settings, name, until=lambda read: any(map(is_wanted, read)), timeout_s=wait_s
    )
    for record in filter(is_wanted, records):
        assert record.key is not None
        return KafkaRecord(record.key, events_pb2.EventEnvelope.FromString(record.value))
    raise AssertionError(f"event {event_id} never reached {name}")


# Payments -----------------------------------------------------------------------------------------


async def test_executing_a_payment_twice_pays_once(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        plan = await awarded_plan(h, {"app-1": 150_000, "app-2": 250_000})
        one, two = plan.lines
        execute = pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=one.line_id)
        paid = await h.system.ExecutePayment(execute)
        again = await h.system.ExecutePayment(execute)
        assert paid.state == pb.PAYMENT_STATE_PAID
        assert paid.gateway_reference
        assert again == paid
        # Two activity attempts racing on the other line still pay it once.
        racing = await asyncio.gather(
            *(
                h.system.ExecutePayment(
                    pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=two.line_id)
                )
                for _ in range(3)
            )
        )
        assert len({r.gateway_reference for r in racing}) == 1

        treasury = h.treasury()
        try:
            payments = await treasury.list_payments()
        finally:
            await treasury.close()
        # Keyed by award, so a later plan's line for the same award could never pay it again.
        assert sorted((p.idempotency_key, p.amount_fen) for p in payments) == [
            ("award-app-1", 150_000),
            ("award-app-2", 250_000),
        ]
        assert {p.payee_credit_code for p in payments} == {credit_code(1), credit_code(2)}
        finance = h.as_("fin-1", Role.FINANCE)
        journal = await finance.ListLedgerEntries(
            pb.ListLedgerEntriesRequest(journal_id=f"pay-{one.line_id}")
        )
        # Approving the plan made the line payable; paying it moves payable to paid.
        assert sorted((e.account, e.debit_fen, e.credit_fen) for e in journal.entries) == [
            (f"paid:{PROGRAM}", 150_000, 0),
            (f"payable:{PROGRAM}", 0, 150_000),
        ]
        assert len(h.outbox("PaymentSettled")) == 2

        current = await h.system.GetFundingPlan(pb.GetFundingPlanRequest(plan_id=plan.plan_id))
        assert current.state == pb.PLAN_STATE_PAYING
        complete = pb.CompleteFundingPlanRequest(plan_id=plan.plan_id)
        done = await h.system.CompleteFundingPlan(complete)
        assert done.state == pb.PLAN_STATE_COMPLETED
        assert await h.system.CompleteFundingPlan(complete) == done
        [completed] = h.outbox("FundingPlanCompleted")
        assert (
            completed.funding_plan_completed.paid_lines,
            completed.funding_plan_completed.paid_fen,
        ) == (2, 400_000)
        assert await h.system.ExecutePayment(execute) == paid  # a late retry still answers

        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.paid_fen, budget.reserved_fen) == (400_000, 0)
        await assert_books_balance(h)


async def test_a_lost_gateway_answer_is_retried_into_exactly_one_payment(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap, treasury_timeout_rate=1.0) as h:
        plan = await awarded_plan(h, {"app-1": 150_000})
        execute = pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=plan.lines[0].line_id)
        await expect_error(h.system.ExecutePayment(execute), grpc.StatusCode.UNAVAILABLE)

        treasury = h.treasury()
        try:
            [made] = await treasury.list_payments()  # the money did go out
            unsettled = await h.system.GetFundingPlan(
                pb.GetFundingPlanRequest(plan_id=plan.plan_id)
            )
            assert unsettled.lines[0].state == pb.PAYMENT_STATE_PENDING
            # Giving up now would hand the award to a later plan and pay it twice: refused.
            error = await expect_error(
                h.system.MarkPaymentFailed(
                    pb.MarkPaymentFailedRequest(
                        plan_id=plan.plan_id, line_id=plan.lines[0].line_id, reason="timeouts"
                    )
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            assert made.reference in (error.details() or "")
            assert h.outbox("PaymentFailed") == []
            settled = await h.system.ExecutePayment(execute)
            assert settled.state == pb.PAYMENT_STATE_PAID
            assert settled.gateway_reference == made.reference
            assert settled.attempts == 2
            assert len(await treasury.list_payments()) == 1
        finally:
            await treasury.close()
        journals = {
            e.journal_id
            for e in (
                await h.as_("ops-1", Role.OPS).ListLedgerEntries(
                    pb.ListLedgerEntriesRequest(account_prefix=f"paid:{PROGRAM}")
                )
            ).entries
        }
        assert journals == {f"pay-{plan.lines[0].line_id}"}
        await assert_books_balance(h)


async def test_a_line_given_up_and_paid_late_is_settled_by_the_awards_next_line_paying_once(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    treasury = SimulatedTreasury(f"sqlite:///{tmp_path / 'treasury.db'}")
    network = SlowNetwork(treasury, answer_lost=True)
    try:
        async with service(database_url, tmp_path, kafka_bootstrap, gateway=network) as h:
            first = await awarded_plan(h, {"app-1": 150_000})
            [given_up] = first.lines
            await expect_error(
                h.system.ExecutePayment(
                    pb.ExecutePaymentRequest(plan_id=first.plan_id, line_id=given_up.line_id)
                ),
                grpc.StatusCode.UNAVAILABLE,
            )
            # The treasury shows no payment yet, so the workflow may give the line up.
            assert await treasury.list_payments() == []
            failed = await h.system.MarkPaymentFailed(
                pb.MarkPaymentFailedRequest(
                    plan_id=first.plan_id, line_id=given_up.line_id, reason="timed out"
                )
            )
            assert failed.state == pb.PAYMENT_STATE_FAILED
            done = await h.system.CompleteFundingPlan(
                pb.CompleteFundingPlanRequest(plan_id=first.plan_id)
            )
            assert done.state == pb.PLAN_STATE_COMPLETED_WITH_FAILURES

            reference = await network.deliver()  # the bank receives the request after all
            [made] = await treasury.list_payments()
            assert (made.reference, made.amount_fen) == (reference, 150_000)
            # Its money went out, so the award's reservation is not given back to the budget.
            error = await expect_error(
                h.system.ReleaseReservation(
                    pb.ReleaseReservationRequest(application_id="app-1", reason="withdrawn")
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            assert reference in (error.details() or "")

            second = await next_plan(h, "2021 batch 2")
            [line] = second.lines
            assert (line.application_id, line.line_id != given_up.line_id) == ("app-1", True)
            settled = await h.system.ExecutePayment(
                pb.ExecutePaymentRequest(plan_id=second.plan_id, line_id=line.line_id)
            )
            assert (settled.state, settled.gateway_reference) == (pb.PAYMENT_STATE_PAID, reference)
            payments = await treasury.list_payments()
            assert [(p.idempotency_key, p.reference) for p in payments] == [
                (award_payment_key("app-1"), reference)
            ]
            assert await payment_journals(h) == {f"pay-{line.line_id}"}
            [event] = h.outbox("PaymentSettled")
            assert (event.payment_settled.line_id, event.payment_settled.gateway_reference) == (
                line.line_id,
                reference,
            )
            budget = await h.system.GetProgramBudget(
                pb.GetProgramBudgetRequest(program_code=PROGRAM)
            )
            assert (budget.paid_fen, budget.reserved_fen) == (150_000, 0)
            await assert_books_balance(h)
    finally:
        await network.close()
        await treasury.close()


async def test_a_payment_answered_after_its_line_failed_is_left_to_the_awards_next_line(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    treasury = SimulatedTreasury(f"sqlite:///{tmp_path / 'treasury.db'}")
    network = SlowNetwork(treasury, answer_lost=False)
    try:
        async with service(database_url, tmp_path, kafka_bootstrap, gateway=network) as h:
            first = await awarded_plan(h, {"app-1": 150_000})
            [given_up] = first.lines
            stub = h.system

            async def execute(plan_id: str, line_id: str) -> pb.PaymentLine:
                return await stub.ExecutePayment(
                    pb.ExecutePaymentRequest(plan_id=plan_id, line_id=line_id)
                )

            in_flight = asyncio.create_task(execute(first.plan_id, given_up.line_id))
            await asyncio.wait_for(network.sent.wait(), timeout=10)
            # The call is still on its way: the gateway shows nothing, the line is given up.
            failed = await stub.MarkPaymentFailed(
                pb.MarkPaymentFailedRequest(
                    plan_id=first.plan_id, line_id=given_up.line_id, reason="activity timed out"
                )
            )
            assert failed.state == pb.PAYMENT_STATE_FAILED
            reference = await network.deliver()
            error = await expect_error(in_flight, grpc.StatusCode.FAILED_PRECONDITION)
            assert "next funding plan" in (error.details() or "")
            # The failed line keeps no journal; the award stays reserved for its next line.
            assert await payment_journals(h) == set()
            assert h.outbox("PaymentSettled") == []
            budget = await stub.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
            assert (budget.paid_fen, budget.reserved_fen) == (0, 150_000)

            second = await next_plan(h, "2021 batch 2")
            [line] = second.lines
            # The gateway reports the award paid: its new line is settled, never given up.
            error = await expect_error(
                stub.MarkPaymentFailed(
                    pb.MarkPaymentFailedRequest(plan_id=second.plan_id, line_id=line.line_id)
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            assert reference in (error.details() or "")
            settled = await execute(second.plan_id, line.line_id)
            assert (settled.state, settled.gateway_reference) == (pb.PAYMENT_STATE_PAID, reference)
            assert [p.reference for p in await treasury.list_payments()] == [reference]
            assert await payment_journals(h) == {f"pay-{line.line_id}"}
            assert [e.payment_settled.line_id for e in h.outbox("PaymentSettled")] == [line.line_id]
            await assert_books_balance(h)
    finally:
        await network.close()
        await treasury.close()


async def test_an_unavailable_gateway_pays_nothing_and_leaves_the_line_pending(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap, treasury_failure_rate=1.0) as h:
        plan = await awarded_plan(h, {"app-1": 150_000})
        execute = pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=plan.lines[0].line_id)
        for _ in range(2):
            await expect_error(h.system.ExecutePayment(execute), grpc.StatusCode.UNAVAILABLE)
        treasury = h.treasury()
        try:
            assert await treasury.list_payments() == []
        finally:
            await treasury.close()
        line = (
            await h.system.GetFundingPlan(pb.GetFundingPlanRequest(plan_id=plan.plan_id))
        ).lines[0]
        assert (line.state, line.attempts) == (pb.PAYMENT_STATE_PENDING, 2)
        assert h.outbox("PaymentSettled") == []
        # The gateway confirms nothing was paid, so the line may be given up; the workflow's
        # long error text is kept, shortened.
        failed = await h.system.MarkPaymentFailed(
            pb.MarkPaymentFailedRequest(
                plan_id=plan.plan_id, line_id=line.line_id, reason="unavailable " * 60
            )
        )
        assert failed.state == pb.PAYMENT_STATE_FAILED
        assert failed.failure_reason.startswith("unavailable") and len(failed.failure_reason) == 500
        await assert_books_balance(h)


async def test_a_rejected_payment_is_marked_failed_and_its_award_waits_for_a_later_plan(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    treasury = SimulatedTreasury(
        f"sqlite:///{tmp_path / 'treasury.db'}", rejected_payees={credit_code(2)}
    )
    try:
        async with service(database_url, tmp_path, kafka_bootstrap, gateway=treasury) as h:
            plan = await awarded_plan(h, {"app-1": 150_000, "app-2": 250_000})
            good, bad = plan.lines
            assert bad.applicant_credit_code == credit_code(2)
            await h.system.ExecutePayment(
                pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=good.line_id)
            )
            error = await expect_error(
                h.system.ExecutePayment(
                    pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=bad.line_id)
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            assert "refuses" in (error.details() or "")
            complete = pb.CompleteFundingPlanRequest(plan_id=plan.plan_id)
            await expect_error(
                h.system.CompleteFundingPlan(complete), grpc.StatusCode.FAILED_PRECONDITION
            )

            mark = pb.MarkPaymentFailedRequest(
                plan_id=plan.plan_id, line_id=bad.line_id, reason="account closed"
            )
            failed = await h.system.MarkPaymentFailed(mark)
            assert (failed.state, failed.failure_reason) == (
                pb.PAYMENT_STATE_FAILED,
                "account closed",
            )
            assert await h.system.MarkPaymentFailed(mark) == failed
            await expect_error(
                h.system.MarkPaymentFailed(
                    pb.MarkPaymentFailedRequest(plan_id=plan.plan_id, line_id=good.line_id)
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            await expect_error(
                h.system.ExecutePayment(
                    pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=bad.line_id)
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            [event] = h.outbox("PaymentFailed")
            assert (event.subject, event.payment_failed.reason) == ("app-2", "account closed")

            done = await h.system.CompleteFundingPlan(complete)
            assert done.state == pb.PLAN_STATE_COMPLETED_WITH_FAILURES
            [completed] = h.outbox("FundingPlanCompleted")
            assert completed.funding_plan_completed.failed_lines == 1
            # Finance and ops find the failed line by state, and by the plan's program.
            for program in ("", PROGRAM):
                listed = await h.as_("ops-1", Role.OPS).ListPaymentLines(
                    pb.ListPaymentLinesRequest(state=pb.PAYMENT_STATE_FAILED, program_code=program)
                )
                assert [line.line_id for line in listed.lines] == [bad.line_id]
            elsewhere = await h.as_("ops-1", Role.OPS).ListPaymentLines(
                pb.ListPaymentLinesRequest(program_code="IIP-CROSS")
            )
            assert list(elsewhere.lines) == []

            # The award still stands with its money reserved; the next plan takes it.
            budget = await h.system.GetProgramBudget(
                pb.GetProgramBudgetRequest(program_code=PROGRAM)
            )
            assert (budget.paid_fen, budget.reserved_fen) == (150_000, 250_000)
            retry_plan = await h.as_("fin-a", Role.FINANCE).CreateFundingPlan(
                pb.CreateFundingPlanRequest(
                    request_id="batch-2021-02", program_code=PROGRAM, title="2021 batch 2"
                )
            )
            assert [line.application_id for line in retry_plan.lines] == ["app-2"]
            assert retry_plan.lines[0].line_id != bad.line_id
            await assert_books_balance(h)
    finally:
        await treasury.close()


# Bad input, roles, authentication -----------------------------------------------------------------


def _reserve_request(**changes: Any) -> pb.ReserveBudgetRequest:
    fields: dict[str, Any] = {
        "application_id": "app-new",
        "program_code": PROGRAM,
        "amount_fen": 1_000,
        "applicant_credit_code": credit_code(7),
        "applicant_name": "Futian Sensors Ltd",
    }
    fields.update(changes)
    return pb.ReserveBudgetRequest(**fields)


def _plan_request(**changes: Any) -> pb.CreateFundingPlanRequest:
    fields: dict[str, Any] = {
        "request_id": "batch-2021-99",
        "program_code": PROGRAM,
        "title": "2021 batch 9",
    }
    fields.update(changes)
    return pb.CreateFundingPlanRequest(**fields)


async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    bad_code = credit_code(7)[:-1] + ("0" if credit_code(7)[-1] != "0" else "1")
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        finance = h.as_("fin-a", Role.FINANCE)
        await set_budget(h, 1_000_000)
        await reserve(h.system, "app-1", 100_000)
        await h.system.ConfirmAward(pb.ConfirmAwardRequest(application_id="app-1"))
        cases: list[tuple[str, Any, str]] = [
            ("SetProgramBudget", pb.SetProgramBudgetRequest(total_fen=5), "program_code"),
            (
                "SetProgramBudget",
                pb.SetProgramBudgetRequest(program_code="SME CLOUD", total_fen=5),
                "program_code",
            ),
            (
                "SetProgramBudget",
                pb.SetProgramBudgetRequest(program_code="SME:CLOUD", total_fen=5),
                "program_code",
            ),
            (
                "SetProgramBudget",
                pb.SetProgramBudgetRequest(program_code="X" * 129, total_fen=5),
                "program_code",
            ),
            ("SetProgramBudget", pb.SetProgramBudgetRequest(program_code=PROGRAM), "total_fen"),
            (
                "SetProgramBudget",
                pb.SetProgramBudgetRequest(program_code="NEW", total_fen=-100),
                "total_fen",
            ),
            (
                "SetProgramBudget",
                pb.SetProgramBudgetRequest(program_code="NEW", total_fen=10**13),
                "total_fen",
            ),
            ("ReserveBudget", _reserve_request(application_id=""), "application_id"),
            ("ReserveBudget", _reserve_request(application_id="app/../1"), "application_id"),
            ("ReserveBudget", _reserve_request(program_code=""), "program_code"),
            ("ReserveBudget", _reserve_request(amount_fen=0), "amount_fen"),
            ("ReserveBudget", _reserve_request(amount_fen=-1_000), "amount_fen"),
            ("ReserveBudget", _reserve_request(amount_fen=2**62), "amount_fen"),
            ("ReserveBudget", _reserve_request(applicant_credit_code=""), "applicant_credit_code"),
            (
                "ReserveBudget",
                _reserve_request(applicant_credit_code="12345"),
                "applicant_credit_code",
            ),
            (
                "ReserveBudget",
                _reserve_request(applicant_credit_code=bad_code),
                "applicant_credit_code",
            ),
            ("ReserveBudget", _reserve_request(applicant_name="  "), "applicant_name"),
            ("ReserveBudget", _reserve_request(applicant_name="x" * 201), "applicant_name"),
            ("ReserveBudget", _reserve_request(applicant_name="a\x00b"), "applicant_name"),
            ("CreateFundingPlan", _plan_request(request_id=""), "request_id"),
            ("CreateFundingPlan", _plan_request(request_id="short"), "request_id"),
            ("CreateFundingPlan", _plan_request(request_id="has spaces in it"), "request_id"),
            ("CreateFundingPlan", _plan_request(program_code=""), "program_code"),
            ("CreateFundingPlan", _plan_request(program_code="bad code"), "program_code"),
            ("CreateFundingPlan", _plan_request(title=""), "title"),
            ("CreateFundingPlan", _plan_request(title="t" * 201), "title"),
            (
                "ReleaseReservation",
                pb.ReleaseReservationRequest(application_id="a b"),
                "application_id",
            ),
            (
                "ReleaseReservation",
                pb.ReleaseReservationRequest(application_id="app-1", reason="bell\x07"),
                "reason",
            ),
            ("ApproveFundingPlan", pb.ApproveFundingPlanRequest(), "plan_id"),
            ("ExecutePayment", pb.ExecutePaymentRequest(plan_id="p1"), "line_id"),
            ("MarkPaymentFailed", pb.MarkPaymentFailedRequest(line_id="l1"), "plan_id"),
        ]
        system_methods = {
            "ReserveBudget",
            "ReleaseReservation",
            "ExecutePayment",
            "MarkPaymentFailed",
        }
        before = h.count_rows()
        assert before["reservation"] == 1 and before["outbox_event"] == 2
        for method, request, field_name in cases:
            stub = h.system if method in system_methods else finance
            error = await expect_error(
                getattr(stub, method)(request), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert violated_field(error) == field_name, (method, request)
            assert field_name in (error.details() or "")
        assert h.count_rows() == before

        # The same calls with good input do write: the refusals above were about the input.
        await h.system.ReserveBudget(_reserve_request())
        await finance.CreateFundingPlan(_plan_request())
        after = h.count_rows()
        assert after["reservation"] == 2 and after["funding_plan"] == 1
        assert after["ledger_entry"] == before["ledger_entry"] + 2


async def test_roles_and_authentication_are_enforced(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        get_budget = pb.GetProgramBudgetRequest(program_code=PROGRAM)
        channel = grpc.aio.insecure_channel(h.settings.disbursement_address)
        try:
            anonymous = disbursement_pb2_grpc.DisbursementServiceStub(channel)
            await expect_error(
                anonymous.GetProgramBudget(get_budget), grpc.StatusCode.UNAUTHENTICATED
            )
            forged = mint_token("not-the-secret-of-this-deployment-at-all", "fin-x", Role.FINANCE)
            await expect_error(
                anonymous.SetProgramBudget(
                    pb.SetProgramBudgetRequest(program_code=PROGRAM, total_fen=100),
                    metadata=(("authorization", f"Bearer {forged}"),),
                ),
                grpc.StatusCode.UNAUTHENTICATED,
            )
        finally:
            await channel.close()

        applicant = h.as_("ent-1", Role.APPLICANT, enterprise=credit_code(1))
        reviewer = h.as_("rev-1", Role.REVIEWER, department=Department.FINANCE)
        finance = h.as_("fin-1", Role.FINANCE)
        ops = h.as_("ops-1", Role.OPS)
        denied = grpc.StatusCode.PERMISSION_DENIED
        await expect_error(applicant.GetProgramBudget(get_budget), denied)
        await expect_error(
            reviewer.SetProgramBudget(
                pb.SetProgramBudgetRequest(program_code=PROGRAM, total_fen=1)
            ),
            denied,
        )
        await expect_error(
            h.system.SetProgramBudget(
                pb.SetProgramBudgetRequest(program_code=PROGRAM, total_fen=1)
            ),
            denied,
        )
        await expect_error(finance.ReserveBudget(_reserve_request()), denied)
        await expect_error(ops.ConfirmAward(pb.ConfirmAwardRequest(application_id="app-1")), denied)
        await expect_error(h.system.CreateFundingPlan(_plan_request()), denied)
        await expect_error(
            ops.ApproveFundingPlan(pb.ApproveFundingPlanRequest(plan_id="p1")), denied
        )
        await expect_error(
            finance.ExecutePayment(pb.ExecutePaymentRequest(plan_id="p", line_id="l")), denied
        )
        await expect_error(applicant.ListFundingPlans(pb.ListFundingPlansRequest()), denied)
        await expect_error(h.system.ListLedgerEntries(pb.ListLedgerEntriesRequest()), denied)
        await expect_error(reviewer.ListLedgerEntries(pb.ListLedgerEntriesRequest()), denied)
        assert h.count_rows()["program_budget"] == 0

        await set_budget(h, 5_000)
        assert (await reviewer.GetProgramBudget(get_budget)).total_fen == 5_000
        assert len((await ops.ListLedgerEntries(pb.ListLedgerEntriesRequest())).entries) == 2
        assert (await ops.ListFundingPlans(pb.ListFundingPlansRequest())).plans == []
        await expect_error(
            ops.GetFundingPlan(pb.GetFundingPlanRequest(plan_id=uuid.uuid4().hex)),
            grpc.StatusCode.NOT_FOUND,
        )


def _line_request(**overrides: Any) -> pb.SetBudgetLineRequest:
    fields: dict[str, Any] = {
        "line_code": LINE,
        "fiscal_year": 2026,
        "total_fen": 300,
        "name": "测试预算科目",
        "support_plan_code": "TEST-PLAN",
        "support_plan_name": "测试扶持计划",
        "department": Department.INDUSTRY.to_proto(),
        "fund_code": "TEST-FUND",
        "fund_name": "测试专项资金",
    }
    return pb.SetBudgetLineRequest(**(fields | overrides))


def _batch_request(**overrides: Any) -> pb.AllocateBatchRequest:
    fields: dict[str, Any] = {
        "batch_id": "batch-grpc-1",
        "program_code": LINED_PROGRAM,
        "fiscal_year": 2026,
        "policy": common_pb2.OVER_BUDGET_POLICY_PRO_RATA,
        "entries": [
            pb.AllocationEntry(
                application_id=f"app-{n}",
                amount_fen=amount,
                applicant_credit_code=credit_code(n),
                applicant_name=f"Enterprise {n} Ltd",
            )
            for n, amount in ((1, 100), (2, 200), (3, 300))
        ],
    }
    return pb.AllocateBatchRequest(**(fields | overrides))


async def test_budget_lines_and_batches_over_grpc(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        finance = h.as_("fin-a", Role.FINANCE)
        line = await finance.SetBudgetLine(_line_request())
        assert (line.available_fen, line.revision, line.fund.name) == (300, 1, "测试专项资金")
        assert line.support_plan.department == Department.INDUSTRY.to_proto()

        allocated = await h.system.AllocateBatch(_batch_request())
        assert [(a.state, a.amount_fen, a.requested_fen) for a in allocated.allocations] == [
            (pb.ALLOCATION_STATE_RESERVED, 50, 100),
            (pb.ALLOCATION_STATE_RESERVED, 100, 200),
            (pb.ALLOCATION_STATE_RESERVED, 150, 300),
        ]
        assert (allocated.budget_line_code, allocated.cut, allocated.reserved_fen) == (
            LINE,
            True,
            300,
        )
        assert await h.system.AllocateBatch(_batch_request()) == allocated
        part = await h.as_("ops-1", Role.OPS).GetProgramBudget(
            pb.GetProgramBudgetRequest(program_code=LINED_PROGRAM, fiscal_year=2026)
        )
        assert (part.budget_line_code, part.reserved_fen, part.available_fen) == (LINE, 300, 0)
        listed = await h.as_("ops-1", Role.OPS).ListBudgetLines(pb.ListBudgetLinesRequest())
        assert [(x.line_code, x.reserved_fen) for x in listed.lines] == [(LINE, 300)]
        assert [(p.program_code, p.reserved_fen) for p in listed.lines[0].programs] == [
            (LINED_PROGRAM, 300)
        ]
        error = await expect_error(
            finance.SetBudgetLine(_line_request(total_fen=299)), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert "300" in (error.details() or "")
        await expect_error(
            finance.SetProgramBudget(
                pb.SetProgramBudgetRequest(program_code=LINED_PROGRAM, total_fen=1)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

        entry = pb.AllocationEntry(
            application_id="app-9",
            amount_fen=10,
            applicant_credit_code=credit_code(9),
            applicant_name="Enterprise 9",
        )
        cases: list[tuple[str, Any, str]] = [
            ("SetBudgetLine", _line_request(line_code=""), "line_code"),
            ("SetBudgetLine", _line_request(line_code="A:B"), "line_code"),
            ("SetBudgetLine", _line_request(line_code="L" * 65), "line_code"),
            ("SetBudgetLine", _line_request(fiscal_year=0), "fiscal_year"),
            ("SetBudgetLine", _line_request(fiscal_year=12026), "fiscal_year"),
            ("SetBudgetLine", _line_request(total_fen=0), "total_fen"),
            ("SetBudgetLine", _line_request(total_fen=-5), "total_fen"),
            ("SetBudgetLine", _line_request(name="n" * 201), "name"),
            ("SetBudgetLine", _line_request(department=99), "department"),
            ("SetBudgetLine", _line_request(fund_code="bad code"), "fund_code"),
            ("SetBudgetLine", _line_request(support_plan_code="x/y"), "support_plan_code"),
            ("SetBudgetLine", _line_request(reason="bell\x07"), "reason"),
            (
                "SetBudgetLine",
                _line_request(line_code="NEW-LINE", support_plan_code=""),
                "support_plan_code",
            ),
            (
                "SetBudgetLine",
                _line_request(line_code="NEW-LINE", support_plan_code="NEW-PLAN", department=0),
                "department",
            ),
            (
                "SetBudgetLine",
                _line_request(
                    line_code="NEW-LINE",
                    support_plan_code="NEW-PLAN",
                    fund_code="NEW-FUND",
                    fund_name="",
                ),
                "fund_name",
            ),
            ("GetBudgetLine", pb.GetBudgetLineRequest(line_code=LINE), "fiscal_year"),
            ("GetBudgetLine", pb.GetBudgetLineRequest(fiscal_year=2026), "line_code"),
            ("ListBudgetLines", pb.ListBudgetLinesRequest(fiscal_year=1999), "fiscal_year"),
            ("ListBudgetLines", pb.ListBudgetLinesRequest(fund_code="a b"), "fund_code"),
            (
                "GetProgramBudget",
                pb.GetProgramBudgetRequest(program_code=PROGRAM, fiscal_year=-1),
                "fiscal_year",
            ),
            ("AllocateBatch", _batch_request(batch_id=""), "batch_id"),
            ("AllocateBatch", _batch_request(batch_id="short"), "batch_id"),
            ("AllocateBatch", _batch_request(program_code=""), "program_code"),
            ("AllocateBatch", _batch_request(fiscal_year=0), "fiscal_year"),
            ("AllocateBatch", _batch_request(policy=7), "policy"),
            ("AllocateBatch", _batch_request(entries=[]), "entries"),
            ("AllocateBatch", _batch_request(entries=[entry] * 1001), "entries"),
            ("AllocateBatch", _batch_request(entries=[entry, entry]), "entries[1].application_id"),
            (
                "AllocateBatch",
                _batch_request(entries=[entry, pb.AllocationEntry(application_id="a b")]),
                "entries[1].application_id",
            ),
            (
                "AllocateBatch",
                _batch_request(entries=[pb.AllocationEntry(application_id="app-8", amount_fen=0)]),
                "entries[0].amount_fen",
            ),
            (
                "AllocateBatch",
                _batch_request(
                    entries=[
                        pb.AllocationEntry(
                            application_id="app-8", amount_fen=5, applicant_credit_code="123"
                        )
                    ]
                ),
                "entries[0].applicant_credit_code",
            ),
            (
                "AllocateBatch",
                _batch_request(
                    entries=[
                        pb.AllocationEntry(
                            application_id="app-8",
                            amount_fen=5,
                            applicant_credit_code=credit_code(8),
                            applicant_name=" ",
                        )
                    ]
                ),
                "entries[0].applicant_name",
            ),
        ]
        before = h.count_rows()
        for method, request, field_name in cases:
            stub = h.system if method == "AllocateBatch" else finance
            error = await expect_error(
                getattr(stub, method)(request), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert violated_field(error) == field_name, (method, request)
        assert h.count_rows() == before

        applicant = h.as_("ent-1", Role.APPLICANT, enterprise=credit_code(1))
        reviewer = h.as_("rev-1", Role.REVIEWER, department=Department.INDUSTRY)
        denied = grpc.StatusCode.PERMISSION_DENIED
        await expect_error(reviewer.SetBudgetLine(_line_request(total_fen=400)), denied)
        await expect_error(h.system.SetBudgetLine(_line_request(total_fen=400)), denied)
        await expect_error(applicant.ListBudgetLines(pb.ListBudgetLinesRequest()), denied)
        await expect_error(
            reviewer.GetBudgetLine(pb.GetBudgetLineRequest(line_code=LINE, fiscal_year=2026)),
            denied,
        )
        await expect_error(finance.AllocateBatch(_batch_request(batch_id="batch-grpc-2")), denied)
        assert h.count_rows() == before
