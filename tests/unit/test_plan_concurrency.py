"""Many reservations, plan creations (of one program, of the whole line by filter, of a list of
awards), edits of drafts (awards added and removed), approvals (one and two levels),
cancellations and payments at once, from threads, against one budget line shared by two programs, on SQLite and PostgreSQL:
the line is never exceeded, an award is in at most one live plan and paid at most once, and the
ledger agrees with the figures.

The use cases run directly over their units of work (as in test_money_rules.py), each call in its
own thread and event loop, so on PostgreSQL they really interleave and only the row locks keep
the rules: drop a lock (store.lock_budget_line's FOR UPDATE, say) and the exact counts below fail.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlmodel import Session, select

from services.common.db import Database, migrate
from services.common.errors import ServiceError
from services.common.unit_of_work import Transactions
from services.common.vocabulary import PaymentState, PlanState, ReservationState
from services.disbursement import store
from services.disbursement.commands import (
    ApprovePlan,
    CancelPlan,
    ConfirmAward,
    CreatePlan,
    EditPlan,
    ExecuteLine,
    Reserve,
    SetBudgetLine,
)
from services.disbursement.server import MIGRATIONS
from services.disbursement.use_cases import Disbursement, PlanView, event_source
from tests.conftest import require_postgres
from tests.support import postgres_database
from tests.unit.test_money_rules import Gateway, Published, credit_code

LINE, YEAR = "SHARED-LINE", 2026
PROGRAMS = ("LINE-A", "LINE-B")
TOTAL = 1_000_000
AWARD = 30_000  # 60 x 30,000 fen asked of 1,000,000: exactly 33 fit
APPLICATIONS = 60
SECOND_APPROVAL_FEN = 60_000  # a plan of three awards or more needs two approvals


@pytest.fixture(params=["sqlite", "postgres"])
def books(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Disbursement, Database]]:
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'disbursement.db'}"])
        cleanup = None
    else:
        require_postgres()
        cleanup = postgres_database("plans")
        urls = iter([cleanup.__enter__()])
    url = next(urls)
    try:
        migrate(url, MIGRATIONS)
        database = Database(url)
        transactions = Transactions(database, event_source("test.disbursement.v1"))
        catalogue = Published(lines=dict.fromkeys(PROGRAMS, LINE))
        disbursement = Disbursement(
            transactions,
            Gateway(),
            catalogue,
            second_approval_fen=SECOND_APPROVAL_FEN,
            require_account=False,  # receiving accounts are tests/integration's
        )
        yield disbursement, database
        database.dispose()
    finally:
        if cleanup is not None:
            cleanup.__exit__(None, None, None)


def reserve_and_confirm(disbursement: Disbursement, n: int) -> bool:
    application = f"app-{n:03d}"
    try:
        asyncio.run(
            disbursement.reserve(
                Reserve(
                    application_id=application,
                    program_code=PROGRAMS[n % 2],
                    amount_fen=AWARD,
                    applicant_credit_code=credit_code(n),
                    applicant_name=f"Enterprise {n}",
                    fiscal_year=YEAR,
                )
            )
        )
    except ServiceError:
        return False
    asyncio.run(disbursement.confirm_award(ConfirmAward(application)))
    return True


class PlanDesk:
    """Finance officers at work: each round makes a plan of one program, then cancels it, or
    approves it (twice when it needs two) and pays it; and meddles with plans of the others
    (approving or cancelling them at the same time)."""

    def __init__(self, disbursement: Disbursement, database: Database) -> None:
        self.disbursement = disbursement
        self.database = database
        self.plans: list[str] = []
        self.edits = 0
        self.lock = threading.Lock()

    def _waiting(self, rng: random.Random, most: int) -> list[str]:
        """Some awards that were waiting for a plan when looked at (a stale look on purpose)."""

        def look(session: Session) -> list[str]:
            rows = session.exec(
                select(store.ReservationRow.application_id)
                .where(store.ReservationRow.state == ReservationState.AWARDED)
                .where(store.ReservationRow.plan_id == None)  # noqa: E711
            ).all()
            return list(rows)

        waiting = self.database.read(look)
        return rng.sample(waiting, min(len(waiting), rng.randint(1, most))) if waiting else []

    def _edit(
        self,
        desk: int,
        round_: int,
        plan_id: str,
        lines: list[store.PaymentLineRow],
        rng: random.Random,
    ) -> PlanView:
        """Adds awards that looked free, removes one of the draft's (when it has more)."""
        remove = (rng.choice(lines).application_id,) if len(lines) > 1 else ()
        add = tuple(a for a in self._waiting(rng, 3) if a not in {x.application_id for x in lines})
        view = asyncio.run(
            self.disbursement.edit_plan(
                EditPlan(f"edit-{desk}-{round_}", plan_id, add, remove, f"maker-{desk}", "调整")
            )
        )
        with self.lock:
            self.edits += 1
        return view

    def run(self, desk: int) -> None:
        rng = random.Random(desk)
        for round_ in range(10):
            time.sleep(rng.random() * 0.02)
            try:
                self._round(desk, round_, rng)
            except ServiceError:
                pass  # refused (no awards waiting, already cancelled or approved): nothing written

    def _round(self, desk: int, round_: int, rng: random.Random) -> None:
        call = asyncio.run
        if rng.random() < 0.3 and self.plans:
            with self.lock:
                other = rng.choice(self.plans)
            meddle = rng.random()
            if meddle < 0.3:
                call(self.disbursement.cancel_plan(CancelPlan(other, f"desk-{desk}", "meddling")))
            elif meddle < 0.6:
                call(self.disbursement.approve_plan(ApprovePlan(other, f"desk-{desk}")))
            else:  # edits another's plan while its maker may approve, cancel or edit it
                lines = call(self.disbursement.plan(other)).lines
                self._edit(desk, round_, other, lines, rng)
            return
        request_id = f"plan-{desk}-{round_}"
        title = f"desk {desk} round {round_}"
        how = rng.random()
        if how < 0.4:  # one program, the first form
            command = CreatePlan(request_id, rng.choice(PROGRAMS), title, f"maker-{desk}")
        elif how < 0.7:  # the line's programs, at most a few, by filter
            command = CreatePlan(
                request_id,
                "",
                title,
                f"maker-{desk}",
                budget_line_code=LINE,
                program_codes=PROGRAMS,
                max_lines=rng.randint(1, 6),
            )
        else:  # a list of what looked free a moment ago (others may take it meanwhile)
            command = CreatePlan(
                request_id,
                "",
                title,
                f"maker-{desk}",
                application_ids=tuple(self._waiting(rng, 4)),
            )
        view = call(self.disbursement.create_plan(command))
        if rng.random() < 0.7:
            view = self._edit(desk, round_, view.plan.plan_id, view.lines, rng)
        plan_id = view.plan.plan_id
        with self.lock:
            self.plans.append(plan_id)
        if rng.random() < 0.35:
            call(self.disbursement.cancel_plan(CancelPlan(plan_id, f"maker-{desk}", "redo")))
            return
        approved = call(self.disbursement.approve_plan(ApprovePlan(plan_id, f"checker-{desk}")))
        if approved.plan.state == PlanState.AWAITING_SECOND_APPROVAL:
            approved = call(self.disbursement.approve_plan(ApprovePlan(plan_id, f"second-{desk}")))
        for line in approved.lines:
            call(self.disbursement.execute_line(ExecuteLine(plan_id, line.line_id)))


def check_the_books(database: Database, gateway: Gateway) -> tuple[int, int]:
    """Every rule that must hold whatever interleaved; (reserved, paid) of the line."""

    def check(session: Session) -> tuple[int, int]:
        line = session.get(store.BudgetLineRow, (LINE, YEAR))
        assert line is not None
        figures = store.line_figures(session, line)
        assert figures.reserved_fen + figures.paid_fen <= TOTAL
        assert figures.available_fen >= 0

        plans = {p.plan_id: p for p in session.exec(select(store.FundingPlanRow)).all()}
        lines = list(session.exec(select(store.PaymentLineRow)).all())
        by_plan: dict[str, list[store.PaymentLineRow]] = defaultdict(list)
        for payment_line in lines:
            by_plan[payment_line.plan_id].append(payment_line)
        live: Counter[str] = Counter()
        paid_lines: Counter[str] = Counter()
        for plan_id, plan in plans.items():
            assert plan.total_fen == sum(x.amount_fen for x in by_plan[plan_id])
            # The approvals a plan needs follow its total as made or last edited.
            assert plan.approvals_required == (2 if plan.total_fen > SECOND_APPROVAL_FEN else 1)
            programs = {x.program_code for x in by_plan[plan_id]}
            assert plan.program_code == (programs.pop() if len(programs) == 1 else "")
            if plan.state == PlanState.CANCELLED:
                assert {x.state for x in by_plan[plan_id]} == {PaymentState.CANCELLED}
                assert not plan.approved_by
                continue
            assert PaymentState.CANCELLED not in {x.state for x in by_plan[plan_id]}
            live.update(x.application_id for x in by_plan[plan_id])
            paid_lines.update(
                x.application_id for x in by_plan[plan_id] if x.state == PaymentState.PAID
            )
            if plan.approved_by:  # maker-checker, and two officers above the level
                assert plan.approved_by != plan.created_by
                if plan.approvals_required > 1:
                    assert plan.first_approved_by not in ("", plan.created_by, plan.approved_by)
        assert [app for app, count in live.items() if count > 1] == []  # one live plan each

        reservations = list(session.exec(select(store.ReservationRow)).all())
        for reservation in reservations:
            if reservation.state == ReservationState.IN_PLAN:
                plan = plans[reservation.plan_id or ""]
                assert plan.state != PlanState.CANCELLED
                assert reservation.application_id in {
                    x.application_id for x in by_plan[plan.plan_id]
                }
            elif reservation.state == ReservationState.AWARDED:
                assert reservation.plan_id is None
                assert reservation.application_id not in live
            elif reservation.state == ReservationState.PAID:
                assert paid_lines[reservation.application_id] == 1
        paid = [r for r in reservations if r.state == ReservationState.PAID]
        assert len(gateway.paid) == len(paid)
        assert sum(amount for _, amount in gateway.paid.values()) == figures.paid_fen

        balances: dict[str, int] = defaultdict(int)
        journals: dict[str, int] = defaultdict(int)
        for entry in store.ledger_entries(session):
            balances[entry.account] += entry.debit_fen - entry.credit_fen
            journals[entry.journal_id] += entry.debit_fen - entry.credit_fen
        assert {j: d for j, d in journals.items() if d} == {}
        key = store.line_key(LINE, YEAR)
        # Held money sits reserved, or payable once its plan is approved.
        assert balances[store.reserved(key)] + balances[store.payable(key)] == figures.reserved_fen
        assert balances[store.paid(key)] == figures.paid_fen
        assert balances[store.available(key)] == figures.available_fen
        return figures.reserved_fen, figures.paid_fen

    return database.read(check)


def test_parallel_reservations_and_plans_never_exceed_the_budget_line(
    books: tuple[Disbursement, Database],
) -> None:
    disbursement, database = books
    gateway = disbursement.gateway
    assert isinstance(gateway, Gateway)
    asyncio.run(
        disbursement.set_budget_line(
            SetBudgetLine(
                line_code=LINE,
                fiscal_year=YEAR,
                total_fen=TOTAL,
                set_by="fin",
                name="shared line",
                support_plan_code="SHARED-PLAN",
                support_plan_name="shared support plan",
                department="industry",
                fund_code="SHARED-FUND",
                fund_name="shared fund",
            )
        )
    )
    desk = PlanDesk(disbursement, database)
    work: list[tuple[str, int]] = [("reserve", n) for n in range(1, APPLICATIONS + 1)]
    work += [("plans", k) for k in range(6)]
    random.Random(7).shuffle(work)

    def do(item: tuple[str, int]) -> bool:
        kind, n = item
        if kind == "reserve":
            return reserve_and_confirm(disbursement, n)
        desk.run(n)
        return False

    with ThreadPoolExecutor(max_workers=12) as pool:
        granted = sum(pool.map(do, work))
    assert granted == TOTAL // AWARD  # 33: the line was full, and not one more
    reserved, paid = check_the_books(database, gateway)
    assert reserved + paid == granted * AWARD
    assert desk.plans, "no plan was made while the awards came in"
    assert desk.edits, "no draft was edited while plans were made"

    # Afterwards every award still waiting (a cancelled plan's too) is taken and paid once.
    for program in PROGRAMS:
        try:
            view = asyncio.run(
                disbursement.create_plan(CreatePlan(f"final-{program}", program, "final", "m"))
            )
        except ServiceError:
            continue
        approved = asyncio.run(disbursement.approve_plan(ApprovePlan(view.plan.plan_id, "c1")))
        if approved.plan.state == PlanState.AWAITING_SECOND_APPROVAL:
            approved = asyncio.run(disbursement.approve_plan(ApprovePlan(view.plan.plan_id, "c2")))
        for line in approved.lines:
            asyncio.run(disbursement.execute_line(ExecuteLine(line.plan_id, line.line_id)))
    # Plans left approved but unpaid by a meddler's approval are paid too.
    for view in asyncio.run(disbursement.plans())[0]:
        if view.plan.state in (PlanState.APPROVED, PlanState.PAYING):
            for line in view.lines:
                if line.state == PaymentState.PENDING:
                    asyncio.run(disbursement.execute_line(ExecuteLine(line.plan_id, line.line_id)))
    # A plan still awaiting approval or in draft holds its awards: approve and pay those too.
    for view in asyncio.run(disbursement.plans())[0]:
        plan = view.plan
        while plan.state in (PlanState.DRAFT, PlanState.AWAITING_SECOND_APPROVAL):
            checker = "c1" if plan.state == PlanState.DRAFT else "c2"
            plan = asyncio.run(disbursement.approve_plan(ApprovePlan(plan.plan_id, checker))).plan
            if plan.state == PlanState.APPROVED:
                for line in view.lines:
                    asyncio.run(disbursement.execute_line(ExecuteLine(plan.plan_id, line.line_id)))
    reserved, paid = check_the_books(database, gateway)
    assert (reserved, paid) == (0, granted * AWARD)
    assert len(gateway.paid) == granted
