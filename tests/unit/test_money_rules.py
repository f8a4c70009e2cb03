"""The disbursement service's money rules, against its use cases directly: no gRPC, a migrated
SQLite file per test, the real units of work, a small payment gateway fake at the edge.

Rules: a budget is never exceeded (also by many reservations at once, from threads); a line is
paid once (executed twice, or again after a lost answer); every journal balances and the ledger
agrees with the budget figures after every use case; a paid award is never released; a plan's
total is the sum of its lines.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select
from stdnum.cn import uscc

from services.common.db import Database, migrate, now_utc
from services.common.errors import FailedPrecondition, ServiceError, Unavailable
from services.common.unit_of_work import Transactions
from services.common.vocabulary import PaymentState, PlanState, ReservationState
from services.disbursement import store
from services.disbursement.commands import (
    ApprovePlan,
    ConfirmAward,
    CreatePlan,
    ExecuteLine,
    FailLine,
    Release,
    Reserve,
    SetBudget,
)
from services.disbursement.gateway import (
    SETTLED,
    GatewayPayment,
    GatewayTimeout,
    PayeeAccount,
    PaymentStatus,
)
from services.disbursement.server import MIGRATIONS
from services.disbursement.store import ProgramBudgetRow
from services.disbursement.use_cases import Disbursement, PlanView, event_source

PROGRAM = "SME-CLOUD"


class Published:
    """The program catalogue, as published codes and the budget line each names ("" none)."""

    def __init__(self, *codes: str, lines: dict[str, str] | None = None) -> None:
        self.lines = dict.fromkeys(codes, "") | (lines or {})

    async def is_published(self, program_code: str) -> bool:
        return program_code in self.lines

    async def budget_line(self, program_code: str) -> str | None:
        return self.lines.get(program_code)


class Gateway:
    """A payment gateway that pays once per idempotency key. As a bank's network may, it can
    lose its next answer (paying, then timing out), or hold its next request back (timing out,
    paying only when `deliver` lets the request arrive)."""

    def __init__(self) -> None:
        self.paid: dict[str, tuple[str, int]] = {}
        self.lose_next_answer = False
        self.hold_next_request = False
        self._held: tuple[str, int] | None = None
        self._lock = threading.Lock()

    def deliver(self) -> None:
        assert self._held is not None, "no request was held back"
        key, amount = self._held
        self.paid.setdefault(key, (f"ref-{len(self.paid) + 1}", amount))

    async def pay(
        self,
        idempotency_key: str,
        payee_credit_code: str,
        payee_name: str,
        amount_fen: int,
        account: PayeeAccount | None = None,
    ) -> str:
        with self._lock:
            if self.hold_next_request:
                self.hold_next_request = False
                self._held = (idempotency_key, amount_fen)
                raise GatewayTimeout("no answer; the request is still on its way")
            if idempotency_key not in self.paid:
                self.paid[idempotency_key] = (f"ref-{len(self.paid) + 1}", amount_fen)
            lost, self.lose_next_answer = self.lose_next_answer, False
        if lost:
            raise GatewayTimeout("the answer was lost")
        return self.paid[idempotency_key][0]

    async def find_payment(self, idempotency_key: str) -> str | None:
        payment = self.paid.get(idempotency_key)
        return payment[0] if payment else None

    async def payment_status(self, idempotency_key: str) -> PaymentStatus | None:
        payment = self.paid.get(idempotency_key)
        if payment is None:
            return None
        now = now_utc()
        return PaymentStatus(
            idempotency_key, payment[0], SETTLED, payment[1], "", "", None, now, now
        )

    async def returns(self, since: datetime) -> list[PaymentStatus]:
        return []

    async def statement(self, day: date) -> list[GatewayPayment]:
        return []  # these tests do not reconcile

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def migrated_template() -> Iterator[Path]:
    """One migrated database file; each test works on a copy (migrating takes a while)."""
    folder = Path(tempfile.mkdtemp(prefix="money-rules-"))
    path = folder / "template.db"
    migrate(f"sqlite:///{path}", MIGRATIONS)
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def fresh_books(template: Path, folder: Path) -> tuple[Disbursement, Database, Gateway]:
    path = folder / "disbursement.db"
    shutil.copy(template, path)
    database = Database(f"sqlite:///{path}")
    gateway = Gateway()
    transactions = Transactions(database, event_source("test.disbursement.v1"))
    # The money rules hold whoever is paid: receiving accounts are tests/integration's.
    return (
        Disbursement(transactions, gateway, Published(PROGRAM), require_account=False),
        database,
        gateway,
    )


@pytest.fixture
def books(
    migrated_template: Path, tmp_path: Path
) -> Iterator[tuple[Disbursement, Database, Gateway]]:
    disbursement, database, gateway = fresh_books(migrated_template, tmp_path)
    yield disbursement, database, gateway
    database.dispose()


def credit_code(n: int) -> str:
    base = f"91440300MA5F{n:05d}"
    return base + uscc.calc_check_digit(base)


def reserve(application: int, amount: int) -> Reserve:
    return Reserve(
        application_id=f"app-{application}",
        program_code=PROGRAM,
        amount_fen=amount,
        applicant_credit_code=credit_code(application),
        applicant_name=f"Enterprise {application}",
    )


def assert_books_balance(database: Database) -> None:
    """Every journal balances; the ledger agrees with every budget's figures; no budget is
    exceeded."""

    def check(session: Session) -> None:
        journals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        balances: dict[str, int] = defaultdict(int)
        for entry in store.ledger_entries(session):
            journals[entry.journal_id][0] += entry.debit_fen
            journals[entry.journal_id][1] += entry.credit_fen
            balances[entry.account] += entry.debit_fen - entry.credit_fen
        assert {j: dc for j, dc in journals.items() if dc[0] != dc[1]} == {}
        for budget in session.exec(select(ProgramBudgetRow)).all():
            figures = store.budget_figures(session, budget)
            program = budget.program_code
            assert figures.available_fen >= 0
            assert figures.reserved_fen + figures.paid_fen <= figures.total_fen
            assert -balances[store.appropriation(program)] == figures.total_fen
            assert balances[store.available(program)] == figures.available_fen
            # Held money sits reserved, payable (approved plans' lines) or returned (退汇).
            assert (
                balances[store.reserved(program)]
                + balances[store.payable(program)]
                + balances[store.returned(program)]
                == figures.reserved_fen
            )
            assert balances[store.paid(program)] == figures.paid_fen

    database.read(check)


async def awarded_plan(disbursement: Disbursement, amounts: list[int]) -> PlanView:
    for n, amount in enumerate(amounts, start=1):
        await disbursement.reserve(reserve(n, amount))
        await disbursement.confirm_award(ConfirmAward(f"app-{n}"))
    plan = await disbursement.create_plan(CreatePlan("plan-request-1", PROGRAM, "batch 1", "fin-a"))
    return await disbursement.approve_plan(ApprovePlan(plan.plan.plan_id, "fin-b"))


def payment_journals(database: Database) -> list[str]:
    entries = database.read(lambda s: store.ledger_entries(s, store.paid(PROGRAM)))
    return sorted({entry.journal_id for entry in entries})


# A budget is never exceeded ---------------------------------------------------------------------


async def test_a_budget_needs_a_published_program_and_never_goes_below_what_is_held(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    with pytest.raises(FailedPrecondition, match="never published"):
        await disbursement.set_budget(SetBudget("UNPUBLISHED", 1_000, "fin"))
    await disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin"))
    await disbursement.reserve(reserve(1, 600_000))
    with pytest.raises(FailedPrecondition, match="600000"):
        await disbursement.set_budget(SetBudget(PROGRAM, 599_999, "fin"))
    lowered = await disbursement.set_budget(SetBudget(PROGRAM, 600_000, "fin"))
    assert lowered.available_fen == 0
    with pytest.raises(FailedPrecondition, match="budget exhausted"):
        await disbursement.reserve(reserve(2, 1))
    assert_books_balance(database)


def test_many_reservations_at_once_never_exceed_the_budget(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    asyncio.run(disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin")))

    def attempt(n: int) -> bool:
        try:
            asyncio.run(disbursement.reserve(reserve(n, 30_000)))
            return True
        except FailedPrecondition:
            return False

    with ThreadPoolExecutor(max_workers=12) as pool:
        granted = list(pool.map(attempt, range(1, 41)))
    assert sum(granted) == 33  # 33 x 30,000 fen fit in 1,000,000; the other 7 are refused
    figures = asyncio.run(disbursement.budget(PROGRAM))
    assert (figures.reserved_fen, figures.available_fen) == (990_000, 10_000)
    assert_books_balance(database)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(1, 400_000)),
        st.tuples(st.just("confirm"), st.integers(1, 12)),
        st.tuples(st.just("release"), st.integers(1, 12)),
        st.tuples(st.just("budget"), st.integers(1, 2_000_000)),
        st.tuples(st.just("plan and pay"), st.just(0)),
    ),
    max_size=20,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=operations)
def test_any_sequence_of_use_cases_keeps_the_books_balanced_and_within_budget(
    migrated_template: Path, steps: list[tuple[str, int]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        disbursement, database, gateway = fresh_books(migrated_template, Path(folder))
        try:
            asyncio.run(run_steps(disbursement, database, steps))
            paid = sum(amount for _, amount in gateway.paid.values())
            assert asyncio.run(disbursement.budget(PROGRAM)).paid_fen == paid
        finally:
            database.dispose()


async def run_steps(
    disbursement: Disbursement, database: Database, steps: list[tuple[str, int]]
) -> None:
    await disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin"))
    applications = 0
    for number, (step, value) in enumerate(steps):
        try:
            if step == "reserve":
                applications += 1
                await disbursement.reserve(reserve(applications, value))
            elif step == "confirm":
                await disbursement.confirm_award(ConfirmAward(f"app-{value}"))
            elif step == "release":
                await disbursement.release(Release(f"app-{value}", "withdrawn"))
            elif step == "budget":
                await disbursement.set_budget(SetBudget(PROGRAM, value, "fin"))
            else:
                plan = await disbursement.create_plan(
                    CreatePlan(f"plan-request-{number}", PROGRAM, f"batch {number}", "fin-a")
                )
                await disbursement.approve_plan(ApprovePlan(plan.plan.plan_id, "fin-b"))
                for line in plan.lines:
                    await disbursement.execute_line(ExecuteLine(line.plan_id, line.line_id))
        except ServiceError:
            pass  # refused: the rules held, and nothing was written
        assert_books_balance(database)


# A line is paid once ----------------------------------------------------------------------------


async def test_executing_a_line_twice_pays_once(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, gateway = books
    await disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin"))
    plan = await awarded_plan(disbursement, [150_000])
    [line] = plan.lines
    first = await disbursement.execute_line(ExecuteLine(plan.plan.plan_id, line.line_id))
    again = await disbursement.execute_line(ExecuteLine(plan.plan.plan_id, line.line_id))
    assert first.state == again.state == PaymentState.PAID
    assert first.gateway_reference == again.gateway_reference
    assert (first.attempts, again.attempts) == (1, 1)  # the second call never reached the gateway
    assert len(gateway.paid) == 1
    assert payment_journals(database) == [f"pay-{line.line_id}"]
    assert (await disbursement.budget(PROGRAM)).paid_fen == 150_000
    assert_books_balance(database)


async def test_a_line_executed_again_after_a_lost_answer_is_paid_once(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, gateway = books
    await disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin"))
    plan = await awarded_plan(disbursement, [150_000])
    [line] = plan.lines
    gateway.lose_next_answer = True
    with pytest.raises(Unavailable, match="outcome is unknown"):
        await disbursement.execute_line(ExecuteLine(plan.plan.plan_id, line.line_id))
    assert payment_journals(database) == []  # paid at the bank, not yet in the books
    assert_books_balance(database)
    # Given up now, the money would be spent twice: failing the line is refused.
    with pytest.raises(FailedPrecondition, match="execute line"):
        await disbursement.fail_line(FailLine(plan.plan.plan_id, line.line_id, "timeout"))

    settled = await disbursement.execute_line(ExecuteLine(plan.plan.plan_id, line.line_id))
    assert settled.state == PaymentState.PAID
    assert settled.gateway_reference == gateway.paid[f"award-{line.application_id}"][0]
    assert len(gateway.paid) == 1
    assert payment_journals(database) == [f"pay-{line.line_id}"]
    assert_books_balance(database)


def test_a_line_executed_from_many_threads_at_once_is_paid_once(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, gateway = books
    asyncio.run(disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin")))
    plan = asyncio.run(awarded_plan(disbursement, [150_000]))
    [line] = plan.lines
    command = ExecuteLine(plan.plan.plan_id, line.line_id)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(
            pool.map(lambda _: asyncio.run(disbursement.execute_line(command)), range(6))
        )
    assert {result.state for result in results} == {PaymentState.PAID}
    assert len({result.gateway_reference for result in results}) == 1
    assert len(gateway.paid) == 1
    assert payment_journals(database) == [f"pay-{line.line_id}"]
    assert_books_balance(database)


# Releasing --------------------------------------------------------------------------------------


async def test_a_paid_award_is_never_released(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    await disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin"))
    plan = await awarded_plan(disbursement, [150_000])
    [line] = plan.lines
    await disbursement.execute_line(ExecuteLine(plan.plan.plan_id, line.line_id))
    with pytest.raises(FailedPrecondition, match="is paid"):
        await disbursement.release(Release(line.application_id, "withdrawn"))
    figures = await disbursement.budget(PROGRAM)
    assert (figures.paid_fen, figures.available_fen) == (150_000, 850_000)
    assert_books_balance(database)


async def test_an_award_paid_after_its_line_was_given_up_is_not_released(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, gateway = books
    await disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin"))
    plan = await awarded_plan(disbursement, [150_000])
    [line] = plan.lines
    gateway.hold_next_request = True
    with pytest.raises(Unavailable):
        await disbursement.execute_line(ExecuteLine(plan.plan.plan_id, line.line_id))
    # Nothing was paid yet, so the line may be given up; its award waits for a later plan.
    failed = await disbursement.fail_line(FailLine(plan.plan.plan_id, line.line_id, "timeout"))
    assert failed.state == PaymentState.FAILED
    gateway.deliver()  # and then the bank receives the request, and pays
    with pytest.raises(FailedPrecondition, match="cannot be released"):
        await disbursement.release(Release(line.application_id, "withdrawn"))
    figures = await disbursement.budget(PROGRAM)
    assert (figures.reserved_fen, figures.available_fen) == (150_000, 850_000)
    assert_books_balance(database)


async def test_released_money_returns_to_the_budget_once(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    await disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin"))
    await disbursement.reserve(reserve(1, 400_000))
    first = await disbursement.release(Release("app-1", "withdrawn"))
    again = await disbursement.release(Release("app-1", "withdrawn"))
    assert first.state == again.state == ReservationState.RELEASED
    figures = await disbursement.budget(PROGRAM)
    assert (figures.reserved_fen, figures.available_fen) == (0, 1_000_000)
    with pytest.raises(FailedPrecondition, match="released"):
        await disbursement.reserve(reserve(1, 400_000))
    assert_books_balance(database)


# Plans ------------------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(amounts=st.lists(st.integers(1, 200_000), min_size=1, max_size=8))
def test_a_plan_is_the_sum_of_its_lines(migrated_template: Path, amounts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        disbursement, database, _ = fresh_books(migrated_template, Path(folder))
        try:
            asyncio.run(disbursement.set_budget(SetBudget(PROGRAM, 10_000_000, "fin")))
            plan = asyncio.run(awarded_plan(disbursement, amounts))
            stored = asyncio.run(disbursement.plan(plan.plan.plan_id))
            assert stored.plan.state == PlanState.APPROVED
            assert stored.plan.total_fen == sum(line.amount_fen for line in stored.lines)
            assert sorted(line.amount_fen for line in stored.lines) == sorted(amounts)
            assert_books_balance(database)
        finally:
            database.dispose()
