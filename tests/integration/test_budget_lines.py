"""Budget lines and batch allocation, against the disbursement use cases on SQLite and PostgreSQL
(a migrated database per test, the real units of work), with the program catalogue as a fake
port naming each program's budget line, and a small payment gateway fake at the edge.

Rules: a batch is cut pro rata (floor, never above what is available) or put on a waiting list
in order, a waitlisted award is reserved by a later batch once the line is raised, a batch id
answers once, a line is never exceeded by concurrent batches and single reservations, a line
never goes below what is reserved or paid, and the ledger agrees with every line's figures.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session, select
from stdnum.cn import uscc

from services.common import audit
from services.common.db import Database, migrate
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
)
from services.common.unit_of_work import Transactions
from services.common.vocabulary import (
    AllocationState,
    AuditAction,
    OverBudgetPolicy,
)
from services.disbursement import store
from services.disbursement.commands import (
    AllocateBatch,
    AllocationEntry,
    ApprovePlan,
    ConfirmAward,
    CreatePlan,
    ExecuteLine,
    Release,
    Reserve,
    SetBudget,
    SetBudgetLine,
)
from services.disbursement.server import MIGRATIONS
from services.disbursement.store import BudgetLineRow, ProgramBudgetRow
from services.disbursement.use_cases import (
    BatchView,
    Disbursement,
    cut_pro_rata,
    event_source,
    waiting_list,
)
from tests.unit.test_money_rules import Gateway, Published

LINE, YEAR = "SME-SUPPORT", 2026
CLOUD, OTHER, OWN = "SME-CLOUD", "SME-OTHER", "OWN-BUDGET"
PRO_RATA, WAITING = OverBudgetPolicy.PRO_RATA, OverBudgetPolicy.WAITING_LIST


@pytest.fixture
def books(database_url: str) -> Iterator[tuple[Disbursement, Database, Gateway]]:
    migrate(database_url, MIGRATIONS)
    database = Database(database_url)
    gateway = Gateway()
    catalogue = Published(OWN, lines={CLOUD: LINE, OTHER: LINE})
    transactions = Transactions(database, event_source("test.disbursement.v1"))
    # Budget lines hold whoever is paid: receiving accounts are test_accounts_and_returns.py's.
    yield Disbursement(transactions, gateway, catalogue, require_account=False), database, gateway
    database.dispose()


def credit_code(n: int) -> str:
    base = f"91440300MA5F{n:05d}"
    return base + uscc.calc_check_digit(base)


def new_line(total: int, year: int = YEAR, line: str = LINE) -> SetBudgetLine:
    return SetBudgetLine(
        line_code=line,
        fiscal_year=year,
        total_fen=total,
        set_by="fin-a",
        name="民营及中小企业扶持",
        support_plan_code="SME-SUPPORT-PLAN",
        support_plan_name="民营及中小企业扶持计划",
        department="industry",
        fund_code="SZ-IIT",
        fund_name="深圳市工业和信息化专项资金",
    )


def entry(n: int, amount: int) -> AllocationEntry:
    return AllocationEntry(f"app-{n}", amount, credit_code(n), f"企业 {n}")


def batch(
    batch_id: str,
    awards: dict[int, int],
    policy: OverBudgetPolicy,
    program: str = CLOUD,
    year: int = YEAR,
) -> AllocateBatch:
    return AllocateBatch(
        batch_id=batch_id,
        program_code=program,
        fiscal_year=year,
        entries=tuple(entry(n, amount) for n, amount in awards.items()),
        policy=policy,
    )


def outcome(view: BatchView) -> dict[str, tuple[str, int]]:
    return {a.application_id: (a.state, a.amount_fen) for a in view.allocations}


def assert_books_balance(database: Database) -> None:
    """Every journal balances and the ledger agrees with every budget line's and program
    budget's figures; nothing is above its total."""

    def check(session: Session) -> None:
        journals: dict[str, int] = defaultdict(int)
        balances: dict[str, int] = defaultdict(int)
        for e in store.ledger_entries(session):
            journals[e.journal_id] += e.debit_fen - e.credit_fen
            balances[e.account] += e.debit_fen - e.credit_fen
        assert {j: d for j, d in journals.items() if d} == {}
        budgets: list[tuple[str, int, int, int]] = []
        for line in session.exec(select(BudgetLineRow)).all():
            f = store.line_figures(session, line)
            key = store.line_key(line.line_code, line.fiscal_year)
            budgets.append((key, line.total_fen, f.reserved_fen, f.paid_fen))
        for budget in session.exec(select(ProgramBudgetRow)).all():
            g = store.budget_figures(session, budget)
            budgets.append((budget.program_code, g.total_fen, g.reserved_fen, g.paid_fen))
        for key, total, reserved, paid in budgets:
            assert reserved + paid <= total, key
            assert -balances[store.appropriation(key)] == total, key
            assert balances[store.available(key)] == total - reserved - paid, key
            held = balances[store.reserved(key)] + balances[store.payable(key)]
            assert held + balances[store.returned(key)] == reserved, key
            assert balances[store.paid(key)] == paid, key

    database.read(check)


# The two policies, as arithmetic ------------------------------------------------------------------


def test_the_policies_as_arithmetic() -> None:
    assert cut_pro_rata([100, 200, 300], 300) == [50, 100, 150]
    assert cut_pro_rata([100, 200, 301], 300) == [49, 99, 150]  # odd fen floor; 298 <= 300
    assert cut_pro_rata([100, 200], 300) == [100, 200]  # they fit: nothing is cut
    assert cut_pro_rata([1, 1, 1], 2) == [0, 0, 0]  # a share below one fen waits
    assert waiting_list([200, 400, 100], 500) == [200, 0, 0]  # no award overtakes another
    assert waiting_list([200, 300, 100], 500) == [200, 300, 0]


# Pro rata ---------------------------------------------------------------------------------------


async def test_a_batch_over_the_line_is_cut_pro_rata(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    await disbursement.set_budget_line(new_line(1_000))
    await disbursement.reserve(Reserve("app-0", OTHER, 700, credit_code(99), "企业 0", YEAR))

    cut = await disbursement.allocate_batch(
        batch("batch-cloud-1", {1: 100, 2: 200, 3: 300}, PRO_RATA)
    )

    assert cut.batch.cut and cut.batch.available_before_fen == 300
    assert outcome(cut) == {
        "app-1": (AllocationState.RESERVED, 50),
        "app-2": (AllocationState.RESERVED, 100),
        "app-3": (AllocationState.RESERVED, 150),
    }
    assert [a.requested_fen for a in cut.allocations] == [100, 200, 300]
    funds, _ = await disbursement.application_funds("app-3")
    assert funds is not None
    assert (funds.amount_fen, funds.cut_from_fen, funds.batch_id) == (150, 300, "batch-cloud-1")
    assert (funds.budget_line_code, funds.fiscal_year) == (LINE, YEAR)
    line = await disbursement.budget_line(LINE, YEAR)
    assert (line.figures.reserved_fen, line.figures.available_fen) == (1_000, 0)
    assert line.figures.programs == {CLOUD: (300, 0), OTHER: (700, 0)}
    assert_books_balance(database)


async def test_odd_fen_are_floored_and_the_sum_never_exceeds_what_is_left(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    await disbursement.set_budget_line(new_line(300))

    cut = await disbursement.allocate_batch(
        batch("batch-odd-fen", {1: 100, 2: 200, 3: 301}, PRO_RATA)
    )

    assert [a.amount_fen for a in cut.allocations] == [49, 99, 150]
    line = await disbursement.budget_line(LINE, YEAR)
    assert (line.figures.reserved_fen, line.figures.available_fen) == (298, 2)
    assert_books_balance(database)


# Waiting list -----------------------------------------------------------------------------------


async def test_a_waiting_list_is_funded_by_a_later_batch_once_the_line_is_raised(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    await disbursement.set_budget_line(new_line(500))

    first = await disbursement.allocate_batch(
        batch("batch-wait-1", {1: 200, 2: 400, 3: 100}, WAITING)
    )

    # In order: app-1 fits; app-2 does not, and app-3 does not overtake it.
    assert outcome(first) == {
        "app-1": (AllocationState.RESERVED, 200),
        "app-2": (AllocationState.WAITLISTED, 0),
        "app-3": (AllocationState.WAITLISTED, 0),
    }
    assert await disbursement.application_funds("app-2") == (None, [])
    budget = await disbursement.budget(CLOUD, YEAR)
    assert (budget.budget_line_code, budget.waitlisted_count, budget.waitlisted_fen) == (
        LINE,
        2,
        500,
    )
    assert (budget.reserved_fen, budget.available_fen, budget.line_total_fen) == (200, 300, 500)

    raised = await disbursement.set_budget_line(new_line(1_000))
    assert (raised.figures.line.revision, raised.figures.available_fen) == (2, 800)
    # The later batch lists the waitlisted awards again, first, then its own.
    second = await disbursement.allocate_batch(
        batch("batch-wait-2", {2: 400, 3: 100, 4: 350}, WAITING)
    )
    assert outcome(second) == {
        "app-2": (AllocationState.RESERVED, 400),
        "app-3": (AllocationState.RESERVED, 100),
        "app-4": (AllocationState.WAITLISTED, 0),
    }
    budget = await disbursement.budget(CLOUD, YEAR)
    assert (budget.reserved_fen, budget.available_fen) == (700, 300)
    assert (budget.waitlisted_count, budget.waitlisted_fen) == (1, 350)
    assert_books_balance(database)


async def test_an_award_already_reserved_is_answered_as_it_is_and_a_released_one_refused(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    await disbursement.set_budget_line(new_line(1_000))
    await disbursement.allocate_batch(batch("batch-held-1", {1: 300}, WAITING))

    again = await disbursement.allocate_batch(batch("batch-held-2", {1: 900, 2: 600}, PRO_RATA))

    # app-1 keeps its 300; app-2 alone is cut to what is left (700 of 1000).
    assert outcome(again) == {
        "app-1": (AllocationState.RESERVED, 300),
        "app-2": (AllocationState.RESERVED, 600),
    }
    await disbursement.release(Release("app-2", "objection upheld"))
    with pytest.raises(FailedPrecondition, match="app-2 was released"):
        await disbursement.allocate_batch(batch("batch-held-3", {2: 600}, WAITING))
    with pytest.raises(FailedPrecondition, match="holds a reservation in program SME-CLOUD"):
        await disbursement.allocate_batch(batch("batch-held-4", {1: 300}, WAITING, OTHER))
    assert_books_balance(database)


# Idempotence ------------------------------------------------------------------------------------


async def test_a_batch_id_allocates_once(books: tuple[Disbursement, Database, Gateway]) -> None:
    disbursement, database, _ = books
    await disbursement.set_budget_line(new_line(300))
    command = batch("batch-once-1", {1: 100, 2: 200, 3: 300}, PRO_RATA)

    first = await disbursement.allocate_batch(command)
    await disbursement.set_budget_line(new_line(10_000))  # more money does not change an answer
    repeated = await disbursement.allocate_batch(command)

    assert outcome(repeated) == outcome(first)
    assert repeated.batch.available_before_fen == 300
    reserve_journals = database.read(
        lambda s: {
            e.journal_id for e in store.ledger_entries(s) if e.journal_id.startswith("reserve-")
        }
    )
    assert reserve_journals == {"reserve-app-1", "reserve-app-2", "reserve-app-3"}
    allocated = database.read(
        lambda s: [
            r
            for r in audit.records_about(s, "batch-once-1")
            if r.action == AuditAction.BATCH_ALLOCATED
        ]
    )
    assert len(allocated) == 1
    with pytest.raises(AlreadyExists, match="batch-once-1"):
        await disbursement.allocate_batch(batch("batch-once-1", {1: 100}, PRO_RATA))
    assert_books_balance(database)


# Concurrency ------------------------------------------------------------------------------------


def test_concurrent_batches_and_reservations_never_exceed_the_line(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    asyncio.run(disbursement.set_budget_line(new_line(1_000_000)))

    def allocate(n: int) -> int:
        policy = PRO_RATA if n % 2 else WAITING
        awards = {100 * n + k: 40_000 + 1_001 * k for k in range(5)}
        try:
            view = asyncio.run(
                disbursement.allocate_batch(batch(f"batch-many-{n}", awards, policy))
            )
        except ServiceError:
            return 0
        return sum(a.amount_fen for a in view.allocations if a.state == AllocationState.RESERVED)

    def single(n: int) -> int:
        try:
            asyncio.run(
                disbursement.reserve(
                    Reserve(f"single-{n}", OTHER, 30_000, credit_code(n), "企业", YEAR)
                )
            )
        except FailedPrecondition:
            return 0
        return 30_000

    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = [pool.submit(allocate, n) for n in range(1, 13)]
        singles = [pool.submit(single, n) for n in range(1, 13)]
        reserved = sum(f.result() for f in batches) + sum(f.result() for f in singles)

    line = asyncio.run(disbursement.budget_line(LINE, YEAR))
    assert line.figures.reserved_fen == reserved
    assert reserved <= 1_000_000
    # 12 batches of ~210,000 fen against 1,000,000: the line runs out, and is then full but
    # for less than the smallest award that could still come (a pro-rata cut takes the rest).
    assert line.figures.available_fen < 40_000
    assert_books_balance(database)


# Setting a line ---------------------------------------------------------------------------------


async def test_a_line_never_goes_below_what_is_reserved_and_paid(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, gateway = books
    await disbursement.set_budget_line(new_line(1_000))
    await disbursement.allocate_batch(batch("batch-floor-1", {1: 300, 2: 200}, WAITING))
    for n in (1, 2):
        await disbursement.confirm_award(ConfirmAward(f"app-{n}"))
    plan = await disbursement.create_plan(
        CreatePlan("plan-request-floor", CLOUD, "第一批", "fin-a")
    )
    await disbursement.approve_plan(ApprovePlan(plan.plan.plan_id, "fin-b"))
    paid = next(line for line in plan.lines if line.application_id == "app-1")
    await disbursement.execute_line(ExecuteLine(plan.plan.plan_id, paid.line_id))

    with pytest.raises(FailedPrecondition, match="below 500 fen already reserved or paid"):
        await disbursement.set_budget_line(new_line(499))
    lowered = await disbursement.set_budget_line(new_line(500))
    assert (lowered.figures.paid_fen, lowered.figures.reserved_fen) == (300, 200)
    assert (lowered.figures.committed_fen, lowered.figures.available_fen) == (200, 0)
    assert gateway.paid and database.read(
        lambda s: [e.account for e in store.ledger_entries(s, journal_id=f"pay-{paid.line_id}")]
    ) == [store.paid(f"{LINE}:{YEAR}"), store.payable(f"{LINE}:{YEAR}")]
    assert_books_balance(database)


async def test_lines_are_per_year_and_named_once(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    await disbursement.set_budget_line(new_line(1_000, 2026))
    # A later year of a known line needs no names; given names must be the line's own.
    later = await disbursement.set_budget_line(SetBudgetLine(LINE, 2027, 2_000, "fin-a"))
    assert (later.support_plan.name, later.fund.name) == (
        "民营及中小企业扶持计划",
        "深圳市工业和信息化专项资金",
    )
    with pytest.raises(FailedPrecondition, match="belongs to support plan SME-SUPPORT-PLAN"):
        await disbursement.set_budget_line(
            SetBudgetLine(LINE, 2027, 2_000, "fin-a", support_plan_code="IIP-PLAN")
        )
    with pytest.raises(InvalidArgument) as missing:
        await disbursement.set_budget_line(
            SetBudgetLine("IIP", 2026, 1_000, "fin-a", name="工业互联网")
        )
    assert missing.value.field == "support_plan_code"
    await disbursement.allocate_batch(batch("batch-2027", {1: 1_500}, WAITING, year=2027))
    lines = await disbursement.budget_lines()
    assert [(v.figures.line.fiscal_year, v.figures.reserved_fen) for v in lines] == [
        (2026, 0),
        (2027, 1_500),
    ]
    assert [v.figures.line.fiscal_year for v in await disbursement.budget_lines(2027)] == [2027]
    with pytest.raises(FailedPrecondition, match="has no budget for 2028"):
        await disbursement.allocate_batch(batch("batch-2028", {2: 1}, WAITING, year=2028))
    assert_books_balance(database)


async def test_a_program_without_a_line_keeps_its_own_budget(
    books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = books
    await disbursement.set_budget(SetBudget(OWN, 500, "fin-a"))
    with pytest.raises(FailedPrecondition, match="draws on budget line SME-SUPPORT"):
        await disbursement.set_budget(SetBudget(CLOUD, 500, "fin-a"))

    own = await disbursement.allocate_batch(batch("batch-own-1", {1: 300, 2: 300}, PRO_RATA, OWN))

    assert [a.amount_fen for a in own.allocations] == [250, 250]
    assert own.batch.budget_line_code == ""
    with pytest.raises(FailedPrecondition, match="budget exhausted: program OWN-BUDGET has 0"):
        await disbursement.reserve(Reserve("app-9", OWN, 1, credit_code(9), "企业 9"))
    figures = await disbursement.budget(OWN)
    assert (figures.budget_line_code, figures.reserved_fen, figures.available_fen) == ("", 500, 0)
    with pytest.raises(NotFound, match="no budget for 2026"):
        await disbursement.budget(CLOUD, 2026)
    assert_books_balance(database)
