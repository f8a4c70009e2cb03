"""The disbursement service's use cases: budgets, reservations, funding plans and payments, and
the money rules they keep.

- A budget is never exceeded: a reservation is checked against what is available under the
  budget's lock, and a budget never goes below what is reserved or paid. A budget is a yearly
  budget line of a support plan (every program naming the line in the catalogue draws on it), or,
  for a program whose catalogue rule names no line, the program's own budget.
- A batch of awards is allocated in one transaction by the program's over-budget policy:
  WAITING_LIST reserves the awards in order while they fit and waitlists the rest (no award
  overtakes an earlier one: the queue keeps its order, and a later batch lists the waitlisted
  ones again first); PRO_RATA cuts every award to floor(amount x available / total) when the
  batch exceeds what is available (an award whose share is below one fen waits instead).
- A line is paid once: the gateway is called with the line's idempotency key (the award's,
  award_payment_key; a reissue after a returned payment has its own), outside any transaction,
  and the line is settled (journal `pay-<line id>`) once, whatever is retried. A retry asks the
  gateway's status query first and submits again only when the gateway has no payment for the
  key; a payment accepted but settling (SETTLING) is asked again until it settles.
- A line is paid only to the receiving account its award's recipient confirmed (accounts.py),
  taken at its first attempt; without one the line is refused with the reason (the workflow
  then fails it: its award waits for a later plan, nothing spins).
- Approving a plan moves each line's money reserved -> payable (payable-<line>-<n>); a failed
  line moves it back (unpayable-<line>-<n>); a returned payment (退汇) moves paid -> returned
  (return-<line>), the award RETURNED until its account is corrected (accounts.py); of an award
  paid in instalments, the instalment RETURNED, and no plan takes the award meanwhile.
- Every journal balances (store.post_journal), and its id is derived from the business event
  (`budget-<program>-<revision>`, `line-<line>-<year>-<revision>`, `reserve-<application>`,
  `release-<application>`, `pay-<line>`), so posting one event twice is impossible.
- Money that may have been paid is never given back to the budget nor given up.

Each use case takes one command (commands.py) and does its work in units of work
(services/common/unit_of_work.py) that commit the rows, the ledger journal, the outbox event and
the audit record (budgets, reservations, plans by maker and checker, each line paid or failed)
together. Row locks are always taken in the same order (budget or budget line, plan, payment
line, reservations in application order) so
concurrent calls on PostgreSQL cannot deadlock; on SQLite every writing transaction holds the
write lock from its start.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import structlog
from sqlmodel import Session, col, select

from grantflow.v1 import events_pb2
from services.common.auth import Principal
from services.common.db import now_utc, to_timestamp
from services.common.errors import (
    REASON_PAYMENT_GATEWAY,
    REASON_PAYMENT_SETTLING,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.unit_of_work import EventSource, Transactions, UnitOfWork
from services.common.validation import cut
from services.common.vocabulary import (
    CLOSED_PLAN_STATES,
    PAYABLE_PLAN_STATES,
    UNAPPROVED_PLAN_STATES,
    AllocationState,
    AuditAction,
    Department,
    InstalmentState,
    Milestone,
    OverBudgetPolicy,
    PaymentState,
    PlanState,
    ReconciliationExceptionState,
    ReservationState,
    Role,
)
from services.disbursement import reconciliation, store
from services.disbursement.catalogue import ProgramCatalogue
from services.disbursement.commands import (
    AllocateBatch,
    AllocationEntry,
    ApprovePlan,
    CancelPlan,
    CompletePlan,
    ConfirmAward,
    CreatePlan,
    EditPlan,
    ExecuteLine,
    FailLine,
    GrantStatementQuery,
    InstalmentItem,
    ListLines,
    ListReconciliationExceptions,
    ReconcileDay,
    Release,
    ReleaseInstalment,
    Reserve,
    ResolveReconciliationException,
    RetryLine,
    SetBudget,
    SetBudgetLine,
    SyncReturns,
    TrialBalanceQuery,
)
from services.disbursement.gateway import (
    PENDING,
    RETURNED,
    GatewayError,
    GatewayPayment,
    GatewayPending,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    PayeeAccount,
    PaymentGateway,
    PaymentStatus,
    award_payment_key,
    day_bounds,
)
from services.disbursement.store import (
    AllocationBatchRow,
    BatchAllocationRow,
    BudgetFigures,
    BudgetLineRow,
    FundingPlanEditRow,
    FundingPlanRow,
    FundRow,
    InstalmentRow,
    LedgerEntryRow,
    LineFigures,
    PaymentLineRow,
    ProgramBudgetRow,
    ReconciliationExceptionRow,
    ReconciliationRunRow,
    ReservationRow,
    SupportPlanRow,
)

log = structlog.get_logger(__name__)

# Derives the ids of this service's events (EventSource.event_id); never to change, or a retry
# across an upgrade could announce a change twice.
EVENT_NAMESPACE = uuid.UUID("5d0c7a52-3f53-4a43-9a55-6f1b1c1f9d10")
# A gateway that answers after this long is treated as a timeout: outcome unknown.
GATEWAY_CALL_TIMEOUT_S = 30.0
MAX_MEMO = 500  # ledger_entry.memo
# A plan above this total (fen) needs two approvals besides its maker (Settings default).
SECOND_APPROVAL_FEN = 500_000_000
# A reservation may be released only while its award has not gone into a plan.
RELEASABLE = frozenset({ReservationState.RESERVED, ReservationState.AWARDED})
# Budgets are per fiscal year, China's being the calendar year in Beijing time.
SHANGHAI = ZoneInfo("Asia/Shanghai")


def current_day() -> date:
    """Today in Beijing: the last day that can be reconciled."""
    return datetime.now(SHANGHAI).date()


def current_fiscal_year() -> int:
    return datetime.now(SHANGHAI).year


def event_source(topic: str) -> EventSource:
    """Where the disbursement service's events go: `topic`, the service's Kafka topic."""
    return EventSource(name="disbursement", topic=topic, namespace=EVENT_NAMESPACE)


def finance_officer(subject: str) -> Principal:
    """Who set a budget or made or checked a plan (only finance may: the role table)."""
    return Principal(subject=subject, role=Role.FINANCE)


@dataclass(frozen=True)
class PlanView:
    plan: FundingPlanRow
    lines: list[PaymentLineRow]
    line_count: int | None = None  # when the lines are left out: how many there are
    # (program, line count, amount) by program, when the lines are not all of the plan's
    programs: list[tuple[str, int, int]] | None = None


@dataclass(frozen=True)
class PlanScope:
    """The budget a plan is of: a budget line (line_code), or one program's own budget
    (program_lock, line ""); programs bound its awards (empty: any program of the line)."""

    line_code: str
    programs: tuple[str, ...]
    program_lock: str = ""  # a program's own budget row to lock (the first form locks it too)

    def describe(self) -> str:
        where = f"budget line {self.line_code}" if self.line_code else "own budget"
        return where + (f", programs {', '.join(self.programs)}" if self.programs else "")


def _narrowest_filter(command: CreatePlan) -> str:
    """The field of a filter that found nothing to name: the narrowest one given."""
    if command.awarded_before is not None:
        return "awarded_before"
    if command.max_lines:
        return "max_lines"
    if command.fiscal_year:
        return "fiscal_year"
    if command.program_codes:
        return "program_codes"
    if command.program_code:
        return "program_code"
    return "budget_line_code"


MAX_LISTED_PROBLEMS = 20  # named in one refusal; the rest counted


def _listing(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    return shown + (f"; and {more} more" if more > 0 else "")


def _not_plannable(row: ReservationRow | None, line_code: str, programs: tuple[str, ...]) -> str:
    """Why the award cannot go into a plan of this budget ("" when it can)."""
    if row is None:
        return "holds no reservation (no award)"
    if row.state == ReservationState.RESERVED:
        return (
            "is not yet a noticed award (its public notice has not ended, or an objection to "
            "it is still open)"
        )
    if row.state == ReservationState.IN_PLAN:
        return f"is in funding plan {row.plan_id} already"
    if row.state != ReservationState.AWARDED or row.plan_id is not None:
        return f"is {row.state}, not waiting for a funding plan"
    if (row.budget_line_code or "") != line_code:
        return (
            f"is of {f'budget line {row.budget_line_code}' if row.budget_line_code else 'its own budget'}"
            f", not of {f'budget line {line_code}' if line_code else 'this budget'}"
        )
    if programs and row.program_code not in programs:
        return f"is of program {row.program_code}, not of {', '.join(programs)}"
    return ""


@dataclass(frozen=True)
class LineView:
    figures: LineFigures
    support_plan: SupportPlanRow
    fund: FundRow


@dataclass(frozen=True)
class BatchView:
    batch: AllocationBatchRow
    allocations: list[BatchAllocationRow]


@dataclass(frozen=True)
class Target:
    """The budget a program's awards are reserved against: a budget line's year, or (line "")
    the program's own budget."""

    program_code: str
    line_code: str
    fiscal_year: int

    @property
    def key(self) -> str:
        if self.line_code:
            return store.line_key(self.line_code, self.fiscal_year)
        return self.program_code

    def describe(self) -> str:
        if self.line_code:
            return f"budget line {self.line_code} {self.fiscal_year}"
        return f"program {self.program_code}"


def line_view(session: Session, line: BudgetLineRow) -> LineView:
    support_plan = session.get(SupportPlanRow, line.support_plan_code)
    assert support_plan is not None  # a foreign key
    fund = session.get(FundRow, support_plan.fund_code)
    assert fund is not None
    return LineView(store.line_figures(session, line), support_plan, fund)


def cut_pro_rata(amounts: list[int], available: int) -> list[int]:
    """Every amount cut by the same ratio so that the sum fits in `available` (floor, so an odd
    fen is dropped and the sum never exceeds it); unchanged when they fit already."""
    total = sum(amounts)
    if total <= available:
        return list(amounts)
    return [amount * max(available, 0) // total for amount in amounts]


def waiting_list(amounts: list[int], available: int) -> list[int]:
    """In order, each amount while it fits; from the first that does not, 0 (waitlisted)."""
    granted: list[int] = []
    left, queueing = available, False
    for amount in amounts:
        queueing = queueing or amount > left
        granted.append(0 if queueing else amount)
        left -= granted[-1]
    return granted


class Disbursement:
    """The use cases, over the service's database, the payment gateway and the catalogue."""

    def __init__(
        self,
        transactions: Transactions,
        gateway: PaymentGateway,
        catalogue: ProgramCatalogue,
        *,
        gateway_timeout_s: float = GATEWAY_CALL_TIMEOUT_S,
        second_approval_fen: int = SECOND_APPROVAL_FEN,
        require_account: bool = True,
    ) -> None:
        self.transactions = transactions
        self.gateway = gateway
        self.catalogue = catalogue
        self.gateway_timeout_s = gateway_timeout_s
        self.second_approval_fen = second_approval_fen
        # Pay only to a confirmed receiving account (Settings.payment_requires_account).
        self.require_account = require_account

    # Budgets ------------------------------------------------------------------------------------

    async def set_budget(self, command: SetBudget) -> BudgetFigures:
        program, total = command.program_code, command.total_fen
        line_code = await self.catalogue.budget_line(program)
        if line_code is None:
            raise FailedPrecondition(
                f"program {program} was never published in the program catalogue; publish it "
                "before giving it a budget"
            )
        if line_code:
            raise FailedPrecondition(
                f"program {program} draws on budget line {line_code}: set the line's budget "
                "(SetBudgetLine), not the program's"
            )

        def work(unit: UnitOfWork) -> BudgetFigures:
            session = unit.session
            now = now_utc()
            budget = store.lock_budget(session, program)
            if budget is None:
                session.add(
                    ProgramBudgetRow(
                        program_code=program,
                        total_fen=total,
                        revision=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
                store.post_journal(
                    session,
                    f"budget-{program}-1",
                    f"budget set to {total} fen by {command.set_by}",
                    store.available(program),
                    store.appropriation(program),
                    total,
                )
                unit.audit(
                    AuditAction.BUDGET_SET,
                    program,
                    finance_officer(command.set_by),
                    details={"program_code": program, "total_fen": total, "revision": 1},
                    key=f"{program}-1",
                )
                return BudgetFigures(program, total, 0, 0)
            figures = store.budget_figures(session, budget)
            delta = total - budget.total_fen
            if delta == 0:
                return figures
            committed = figures.reserved_fen + figures.paid_fen
            if total < committed:
                raise FailedPrecondition(
                    f"budget of {program} cannot go below {committed} fen already reserved "
                    f"or paid (asked {total} fen)"
                )
            budget.revision += 1
            budget.total_fen = total
            budget.updated_at = now
            session.add(budget)
            memo = f"budget changed by {delta:+d} fen to {total} fen by {command.set_by}"
            journal = f"budget-{program}-{budget.revision}"
            if delta > 0:
                debit, credit = store.available(program), store.appropriation(program)
            else:
                debit, credit = store.appropriation(program), store.available(program)
            store.post_journal(session, journal, memo, debit, credit, abs(delta))
            unit.audit(
                AuditAction.BUDGET_CHANGED,
                program,
                finance_officer(command.set_by),
                details={
                    "program_code": program,
                    "total_fen": total,
                    "previous_total_fen": total - delta,
                    "change_fen": delta,
                    "revision": budget.revision,
                },
                key=f"{program}-{budget.revision}",
            )
            return BudgetFigures(program, total, figures.reserved_fen, figures.paid_fen)

        return await self.transactions.write(work)

    async def budget(self, program_code: str, fiscal_year: int = 0) -> BudgetFigures:
        """The program's own budget, or its part of its budget line's year (the current year
        unless one is given), with the awards it has waiting for a later batch."""
        line_code = await self.catalogue.budget_line(program_code) or ""
        year = fiscal_year or current_fiscal_year()

        def work(session: Session) -> BudgetFigures:
            waiting = store.waitlisted(session, program_code)
            if not line_code:
                budget = session.get(ProgramBudgetRow, program_code)
                if budget is None:
                    raise NotFound(f"program {program_code} has no budget")
                figures = store.budget_figures(session, budget)
            else:
                line = session.get(BudgetLineRow, (line_code, year))
                if line is None:
                    raise NotFound(
                        f"program {program_code} draws on budget line {line_code}, which has "
                        f"no budget for {year}"
                    )
                of_line = store.line_figures(session, line)
                held, paid_out = of_line.programs.get(program_code, (0, 0))
                figures = BudgetFigures(
                    program_code,
                    held + paid_out + of_line.available_fen,
                    held,
                    paid_out,
                    budget_line_code=line_code,
                    fiscal_year=year,
                    line_total_fen=line.total_fen,
                )
            return replace(
                figures, waitlisted_fen=sum(waiting.values()), waitlisted_count=len(waiting)
            )

        return await self.transactions.read(work)

    async def _target(self, program_code: str, fiscal_year: int) -> Target:
        """Where the program's awards of the fiscal year (0: the current one) are reserved."""
        line_code = await self.catalogue.budget_line(program_code)
        if line_code is None:
            raise FailedPrecondition(
                f"program {program_code} was never published in the program catalogue"
            )
        if not line_code:
            return Target(program_code, "", 0)
        return Target(program_code, line_code, fiscal_year or current_fiscal_year())

    # Budget lines -------------------------------------------------------------------------------

    async def set_budget_line(self, command: SetBudgetLine) -> LineView:
        line_code, year, total = command.line_code, command.fiscal_year, command.total_fen
        officer = finance_officer(command.set_by)

        def work(unit: UnitOfWork) -> LineView:
            session = unit.session
            now = now_utc()
            line = store.lock_budget_line(session, line_code, year)
            known = line or store.any_year_of_line(session, line_code)
            plan_code = command.support_plan_code
            if known is not None:
                if plan_code and plan_code != known.support_plan_code:
                    raise FailedPrecondition(
                        f"budget line {line_code} belongs to support plan "
                        f"{known.support_plan_code}, not {plan_code}"
                    )
                plan_code = known.support_plan_code
                if command.name and command.name != known.name:
                    raise FailedPrecondition(f"budget line {line_code} is named {known.name}")
            else:
                if not plan_code:
                    raise InvalidArgument("support_plan_code", "is required for a new budget line")
                if not command.name:
                    raise InvalidArgument("name", "is required for a new budget line")
            support_plan = self._support_plan(session, command, plan_code, now)
            if line is None:
                line = BudgetLineRow(
                    line_code=line_code,
                    fiscal_year=year,
                    name=command.name or (known.name if known else line_code),
                    support_plan_code=support_plan.support_plan_code,
                    total_fen=total,
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
                session.add(line)
                key = store.line_key(line_code, year)
                store.post_journal(
                    session,
                    f"line-{line_code}-{year}-1",
                    f"budget line {line_code} {year} set to {total} fen by {command.set_by}",
                    store.available(key),
                    store.appropriation(key),
                    total,
                )
                unit.audit(
                    AuditAction.BUDGET_LINE_SET,
                    f"{line_code}:{year}",
                    officer,
                    command.reason,
                    details={
                        "line_code": line_code,
                        "fiscal_year": year,
                        "total_fen": total,
                        "support_plan_code": support_plan.support_plan_code,
                        "fund_code": support_plan.fund_code,
                        "revision": 1,
                    },
                    key=f"{line_code}-{year}-1",
                )
                session.flush()
                return line_view(session, line)
            if command.name and command.name != line.name:
                raise FailedPrecondition(f"budget line {line_code} is named {line.name}")
            figures = store.line_figures(session, line)
            delta = total - line.total_fen
            if delta == 0:
                return line_view(session, line)
            held = figures.reserved_fen + figures.paid_fen
            if total < held:
                raise FailedPrecondition(
                    f"budget line {line_code} {year} cannot go below {held} fen already "
                    f"reserved or paid (asked {total} fen)"
                )
            line.revision += 1
            line.total_fen = total
            line.updated_at = now
            session.add(line)
            key = store.line_key(line_code, year)
            if delta > 0:
                debit, credit = store.available(key), store.appropriation(key)
            else:
                debit, credit = store.appropriation(key), store.available(key)
            store.post_journal(
                session,
                f"line-{line_code}-{year}-{line.revision}",
                cut(
                    f"budget line {line_code} {year} changed by {delta:+d} fen to {total} fen "
                    f"by {command.set_by}" + (f": {command.reason}" if command.reason else ""),
                    MAX_MEMO,
                ),
                debit,
                credit,
                abs(delta),
            )
            unit.audit(
                AuditAction.BUDGET_LINE_CHANGED,
                f"{line_code}:{year}",
                officer,
                command.reason,
                details={
                    "line_code": line_code,
                    "fiscal_year": year,
                    "total_fen": total,
                    "previous_total_fen": total - delta,
                    "change_fen": delta,
                    "revision": line.revision,
                },
                key=f"{line_code}-{year}-{line.revision}",
            )
            session.flush()
            return line_view(session, line)

        return await self.transactions.write(work)

    @staticmethod
    def _support_plan(
        session: Session, command: SetBudgetLine, plan_code: str, now: datetime
    ) -> SupportPlanRow:
        """The line's support plan, and its fund: created when new (every part named). A name,
        department or fund given for a known one must be its own: nothing is renamed or moved
        here, so the money's place in the fund never changes unseen."""
        plan = session.get(SupportPlanRow, plan_code)
        fund_code = command.fund_code or (plan.fund_code if plan else "")
        if plan is None:
            for field, value in (
                ("support_plan_name", command.support_plan_name),
                ("department", command.department),
                ("fund_code", command.fund_code),
            ):
                if not value:
                    raise InvalidArgument(field, "is required for a new support plan")
        else:
            for what, given, own in (
                ("fund", command.fund_code, plan.fund_code),
                ("name", command.support_plan_name, plan.name),
                ("department", command.department, plan.department),
            ):
                if given and given != own:
                    raise FailedPrecondition(f"support plan {plan_code} has {what} {own}")
        fund = session.get(FundRow, fund_code)
        if fund is None:
            if not command.fund_name:
                raise InvalidArgument("fund_name", "is required for a new fund")
            fund = FundRow(
                fund_code=fund_code, name=command.fund_name, created_at=now, updated_at=now
            )
            session.add(fund)
        elif command.fund_name and command.fund_name != fund.name:
            raise FailedPrecondition(f"fund {fund_code} is named {fund.name}")
        if plan is None:
            plan = SupportPlanRow(
                support_plan_code=plan_code,
                name=command.support_plan_name,
                fund_code=fund_code,
                department=Department.parse(command.department),
                created_at=now,
                updated_at=now,
            )
            session.add(plan)
            session.flush()  # the line's foreign key needs the plan's row
        return plan

    async def budget_line(self, line_code: str, fiscal_year: int) -> LineView:
        def work(session: Session) -> LineView:
            line = session.get(BudgetLineRow, (line_code, fiscal_year))
            if line is None:
                raise NotFound(f"budget line {line_code} has no budget for {fiscal_year}")
            return line_view(session, line)

        return await self.transactions.read(work)

    async def budget_lines(self, fiscal_year: int = 0, fund_code: str = "") -> list[LineView]:
        def work(session: Session) -> list[LineView]:
            return [
                line_view(session, line)
                for line in store.budget_lines(session, fiscal_year, fund_code)
            ]

        return await self.transactions.read(work)

    # Reservations -------------------------------------------------------------------------------

    async def reserve(self, command: Reserve) -> ReservationRow:
        application_id, program = command.application_id, command.program_code
        amount = command.amount_fen
        target = await self._target(program, command.fiscal_year)

        def work(unit: UnitOfWork) -> ReservationRow:
            session = unit.session
            available = self._lock_target(session, target)
            existing = store.lock_reservation(session, application_id)
            if existing is not None:
                if existing.state == ReservationState.RELEASED:
                    raise FailedPrecondition(
                        f"the reservation of application {application_id} was released; "
                        "a released award is not reserved again"
                    )
                if (existing.program_code, existing.amount_fen) != (program, amount):
                    raise AlreadyExists(
                        f"application {application_id} already holds a reservation of "
                        f"{existing.amount_fen} fen in {existing.program_code}"
                    )
                return existing
            if available < amount:
                raise FailedPrecondition(
                    f"budget exhausted: {target.describe()} has {available} fen available, "
                    f"{amount} fen requested"
                )
            return self._reserve_row(
                unit,
                target,
                AllocationEntry(
                    application_id, amount, command.applicant_credit_code, command.applicant_name
                ),
                amount,
            )

        return await self.transactions.write(work)

    @staticmethod
    def _lock_target(session: Session, target: Target) -> int:
        """Locks the budget the target names; answers what it has available."""
        if target.line_code:
            line = store.lock_budget_line(session, target.line_code, target.fiscal_year)
            if line is None:
                raise FailedPrecondition(
                    f"program {target.program_code} draws on budget line {target.line_code}, "
                    f"which has no budget for {target.fiscal_year}"
                )
            return store.line_figures(session, line).available_fen
        budget = store.lock_budget(session, target.program_code)
        if budget is None:
            raise FailedPrecondition(f"program {target.program_code} has no budget")
        return store.budget_figures(session, budget).available_fen

    @staticmethod
    def _reserve_row(
        unit: UnitOfWork,
        target: Target,
        entry: AllocationEntry,
        amount: int,
        batch_id: str | None = None,
    ) -> ReservationRow:
        """Reserves `amount` of the award (its entry's amount, or less after a pro-rata cut):
        the row, its journal, its event and its audit record."""
        application_id, program = entry.application_id, target.program_code
        cut_from = entry.amount_fen if amount < entry.amount_fen else 0
        now = now_utc()
        row = ReservationRow(
            application_id=application_id,
            program_code=program,
            amount_fen=amount,
            state=ReservationState.RESERVED,
            applicant_credit_code=entry.applicant_credit_code,
            applicant_name=entry.applicant_name,
            created_at=now,
            updated_at=now,
            budget_line_code=target.line_code or None,
            fiscal_year=target.fiscal_year or None,
            batch_id=batch_id,
            cut_from_fen=cut_from,
        )
        unit.session.add(row)
        store.post_journal(
            unit.session,
            f"reserve-{application_id}",
            f"award of application {application_id}"
            + (f" (cut pro rata from {cut_from} fen)" if cut_from else ""),
            store.reserved(target.key),
            store.available(target.key),
            amount,
        )
        unit.announce(
            application_id,
            events_pb2.BudgetReserved(
                application_id=application_id, program_code=program, amount_fen=amount
            ),
            key=application_id,
        )
        details: dict[str, object] = {"program_code": program, "amount_fen": amount}
        if target.line_code:
            details |= {"budget_line_code": target.line_code, "fiscal_year": target.fiscal_year}
        if batch_id:
            details["batch_id"] = batch_id
        if cut_from:
            details["cut_from_fen"] = cut_from
        unit.audit(
            AuditAction.RESERVATION_MADE, application_id, details=details, key=application_id
        )
        return row

    async def allocate_batch(self, command: AllocateBatch) -> BatchView:
        """Reserves a batch's awards against the program's budget by its over-budget policy, in
        one transaction; a repeated batch id answers what the first call allocated."""
        target = await self._target(command.program_code, command.fiscal_year)
        policy = OverBudgetPolicy.parse(command.policy)

        def work(unit: UnitOfWork) -> BatchView:
            session = unit.session
            # The budget's lock first: it serialises allocations on the budget, so a concurrent
            # retry of this batch waits for it and then finds it below.
            available = self._lock_target(session, target)
            existing = session.get(AllocationBatchRow, command.batch_id)
            if existing is not None:
                if existing.request_fingerprint != command.fingerprint:
                    raise AlreadyExists(
                        f"batch_id {command.batch_id} was already used for another batch "
                        f"(program {existing.program_code}, {existing.fiscal_year})"
                    )
                return BatchView(existing, store.batch_allocations(session, command.batch_id))
            held: dict[str, ReservationRow] = {}
            listed = [entry.application_id for entry in command.entries]
            for reservation in store.lock_reservations(session, listed):
                application_id = reservation.application_id
                if reservation.state == ReservationState.RELEASED:
                    raise FailedPrecondition(
                        f"the reservation of application {application_id} was released; "
                        "a released award is not reserved again"
                    )
                if reservation.program_code != command.program_code:
                    raise FailedPrecondition(
                        f"application {application_id} holds a reservation in program "
                        f"{reservation.program_code}"
                    )
                held[application_id] = reservation
            fresh = [entry for entry in command.entries if entry.application_id not in held]
            amounts = [entry.amount_fen for entry in fresh]
            if policy == OverBudgetPolicy.PRO_RATA:
                granted = cut_pro_rata(amounts, available)
            else:
                granted = waiting_list(amounts, available)
            assert sum(granted) <= max(available, 0)
            given = {
                entry.application_id: amount for entry, amount in zip(fresh, granted, strict=True)
            }
            now = now_utc()
            batch = AllocationBatchRow(
                batch_id=command.batch_id,
                request_fingerprint=command.fingerprint,
                program_code=command.program_code,
                budget_line_code=target.line_code,
                fiscal_year=command.fiscal_year,
                policy=policy,
                available_before_fen=available,
                cut=policy == OverBudgetPolicy.PRO_RATA and sum(amounts) > available,
                created_at=now,
            )
            session.add(batch)
            session.flush()  # the allocations' foreign key needs the batch's row
            allocations = []
            for position, entry in enumerate(command.entries):
                if entry.application_id in held:
                    state, amount = AllocationState.RESERVED, held[entry.application_id].amount_fen
                else:
                    amount = given[entry.application_id]
                    state = AllocationState.RESERVED if amount else AllocationState.WAITLISTED
                    if amount:
                        self._reserve_row(unit, target, entry, amount, command.batch_id)
                allocation = BatchAllocationRow(
                    batch_id=command.batch_id,
                    position=position,
                    application_id=entry.application_id,
                    state=state,
                    amount_fen=amount,
                    requested_fen=entry.amount_fen,
                )
                session.add(allocation)
                allocations.append(allocation)
            waitlisted = [a for a in allocations if a.state == AllocationState.WAITLISTED]
            unit.audit(
                AuditAction.BATCH_ALLOCATED,
                command.batch_id,
                details={
                    "program_code": command.program_code,
                    "budget_line_code": target.line_code,
                    "fiscal_year": command.fiscal_year,
                    "policy": policy,
                    "available_before_fen": available,
                    "requested_fen": sum(amounts),
                    "reserved_fen": sum(granted),
                    "cut": batch.cut,
                    "entries": len(allocations),
                    "already_held": sorted(held),
                    "waitlisted": [a.application_id for a in waitlisted],
                },
                key=command.batch_id,
            )
            return BatchView(batch, allocations)

        return await self.transactions.write(work)

    async def batch(self, batch_id: str) -> BatchView:
        def work(session: Session) -> BatchView:
            batch = session.get(AllocationBatchRow, batch_id)
            if batch is None:
                raise NotFound(f"batch {batch_id} was never allocated")
            return BatchView(batch, store.batch_allocations(session, batch_id))

        return await self.transactions.read(work)

    async def release(self, command: Release) -> ReservationRow:
        application_id, reason = command.application_id, command.reason

        def attempted(session: Session) -> str:
            row = session.get(ReservationRow, application_id)
            if (
                row is not None
                and row.state in RELEASABLE
                and store.award_attempted(session, application_id)
            ):
                # Releasable only while nothing was paid: instalment 1 of one in instalments.
                return award_payment_key(application_id, reissue=_reissue(session, row, 1))
            return ""

        key = await self.transactions.read(attempted)
        if key:
            # An award whose payment line was given up may have been paid late: giving its
            # money back to the budget would spend it twice.
            reference = await self._award_payment(key)
            if reference:
                raise FailedPrecondition(
                    f"the payment gateway paid the award of application {application_id} "
                    f"(reference {reference}) after its payment line failed: it cannot be "
                    "released; its line in the next funding plan settles the payment"
                )

        def work(unit: UnitOfWork) -> ReservationRow:
            session = unit.session
            row = store.lock_reservation(session, application_id)
            if row is None:
                raise NotFound(f"application {application_id} has no reservation")
            if row.state == ReservationState.RELEASED:
                return row
            if row.state not in RELEASABLE:
                raise FailedPrecondition(
                    f"the reservation of application {application_id} is {row.state}; "
                    "only a reserved or awarded one can be released"
                )
            if row.paid_fen:
                raise FailedPrecondition(
                    f"the award of application {application_id} is paid in instalments and "
                    f"{row.paid_fen} fen of it were paid: it cannot be released (a clawback "
                    "recovers paid money)"
                )
            if row.scheduled and store.returned_instalments(session, application_id):
                # Its money sits in returned:K, not reserved:K: it is paid again, not released.
                raise FailedPrecondition(
                    f"an instalment of the award of application {application_id} was paid and "
                    "came back (退汇): it is paid again to the corrected account, not released"
                )
            program = row.program_code
            store.post_journal(
                session,
                f"release-{application_id}",
                cut(
                    f"release of application {application_id}: {reason or 'award fell away'}",
                    MAX_MEMO,
                ),
                store.available(row.budget_key),
                store.reserved(row.budget_key),
                row.amount_fen,
            )
            row.state = ReservationState.RELEASED
            row.updated_at = now_utc()
            session.add(row)
            unit.announce(
                application_id,
                events_pb2.ReservationReleased(
                    application_id=application_id,
                    program_code=program,
                    amount_fen=row.amount_fen,
                    reason=reason,
                ),
                key=application_id,
            )
            unit.audit(
                AuditAction.RESERVATION_RELEASED,
                application_id,
                reason=reason,
                details={"program_code": program, "amount_fen": row.amount_fen},
                key=application_id,
            )
            return row

        return await self.transactions.write(work)

    async def confirm_award(self, command: ConfirmAward) -> ReservationRow:
        application_id = command.application_id

        def work(unit: UnitOfWork) -> ReservationRow:
            row = store.lock_reservation(unit.session, application_id)
            if row is None:
                raise NotFound(f"application {application_id} has no reservation")
            if row.state == ReservationState.RELEASED:
                raise FailedPrecondition(
                    f"the reservation of application {application_id} was released"
                )
            if row.state != ReservationState.RESERVED:
                return row  # awarded already, or further along: nothing to do
            _check_schedule(command.schedule, row.amount_fen)
            now = now_utc()
            row.state = ReservationState.AWARDED
            row.updated_at = row.awarded_at = now
            if command.schedule:
                row.instalments = len(command.schedule)
                for item in command.schedule:
                    first = item.number == 1
                    unit.session.add(
                        store.InstalmentRow(
                            application_id=application_id,
                            number=item.number,
                            count=len(command.schedule),
                            amount_fen=item.amount_fen,
                            milestone=item.milestone,
                            due_at=item.due_at,
                            # The award itself is instalment 1's milestone: it awaits a plan.
                            state=InstalmentState.RELEASED if first else InstalmentState.SCHEDULED,
                            released_at=now if first else None,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            unit.session.add(row)
            unit.announce(
                application_id,
                events_pb2.AwardConfirmed(
                    application_id=application_id,
                    program_code=row.program_code,
                    amount_fen=row.amount_fen,
                ),
                key=application_id,
            )
            details: dict[str, object] = {
                "program_code": row.program_code,
                "amount_fen": row.amount_fen,
            }
            if command.schedule:
                details["instalments"] = [item.amount_fen for item in command.schedule]
            unit.audit(
                AuditAction.AWARD_CONFIRMED, application_id, details=details, key=application_id
            )
            return row

        return await self.transactions.write(work)

    async def release_instalment(self, command: ReleaseInstalment) -> InstalmentRow:
        """Instalment n of a scheduled award released by its confirmed milestone: it awaits a
        funding plan. Only after instalment n-1 was paid; a released one answers as it is."""
        application_id, number = command.application_id, command.number

        def work(unit: UnitOfWork) -> InstalmentRow:
            session = unit.session
            reservation = store.lock_reservation(session, application_id)
            if reservation is None:
                raise NotFound(f"application {application_id} has no reservation")
            row = store.lock_instalment(session, application_id, number)
            if row is None:
                raise NotFound(
                    f"the award of application {application_id} has no instalment {number} "
                    f"(it is paid in {reservation.instalments})"
                )
            if row.state != InstalmentState.SCHEDULED:
                return row  # released before (a retried call)
            previous = store.lock_instalment(session, application_id, number - 1)
            # One paid and sent back by the bank (退汇) was paid: its milestone's successor is
            # released; plans take the earlier one first once the account is corrected.
            if previous is None or (
                previous.state != InstalmentState.PAID
                and not store.instalment_returns(session, application_id, number - 1)
            ):
                state = previous.state if previous else "missing"
                raise FailedPrecondition(
                    f"instalment {number - 1} of application {application_id} is {state}, not "
                    f"paid: instalment {number} is released only after it"
                )
            if reservation.state == ReservationState.RELEASED:
                raise FailedPrecondition(
                    f"the reservation of application {application_id} was released"
                )
            now = now_utc()
            row.state = InstalmentState.RELEASED
            row.released_at = now
            row.confirmed_by = command.confirmed_by
            row.note = cut(command.note, MAX_MEMO)
            row.updated_at = now
            session.add(row)
            unit.audit(
                AuditAction.INSTALMENT_RELEASED,
                application_id,
                reason=row.note,
                details={
                    "instalment": number,
                    "of": row.count,
                    "amount_fen": row.amount_fen,
                    "milestone": row.milestone,
                    "due_at": row.due_at.isoformat(),
                    "confirmed_by": command.confirmed_by,
                    "late": now > _aware(row.due_at),
                },
                key=f"{application_id}-{number}",
            )
            return row

        return await self.transactions.write(work)

    async def instalment_schedule(
        self, application_id: str, caller: Principal | None = None
    ) -> list[InstalmentRow]:
        """An award's schedule (empty for one paid at once); an applicant sees only its own."""

        def work(session: Session) -> list[InstalmentRow]:
            reservation = session.get(ReservationRow, application_id)
            if reservation is None:
                raise NotFound(f"application {application_id} has no reservation")
            if caller is not None:
                _only_own(caller, reservation)
            return store.instalments_of(session, application_id)

        return await self.transactions.read(work)

    # Funding plans ------------------------------------------------------------------------------

    async def create_plan(self, command: CreatePlan) -> PlanView:
        """A DRAFT plan of the awards the command chooses (commands.CreatePlan), all of one budget
        line (or one program's own budget), each waiting for a plan: noticed (ConfirmAward, so its
        notice ended with no objection open or upheld) and in no plan."""
        scope = await self._plan_scope(command)
        fingerprint = command.fingerprint

        def work(unit: UnitOfWork) -> PlanView:
            session = unit.session
            # The budget's lock (the line's years, or a program's own budget) serialises plan
            # making and editing on it, so two plans never take the same award; the replay
            # check comes after it so a concurrent retry sees the plan.
            locked = self._lock_plan_budget(session, scope.program_lock, scope.line_code)
            existing = store.plan_by_request(session, command.request_id)
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise AlreadyExists(
                        f"request_id {command.request_id} was already used for another funding "
                        f"plan ({existing.plan_id})"
                    )
                return PlanView(existing, store.plan_lines(session, existing.plan_id))
            if not locked and (scope.line_code or scope.program_lock):
                if command.first_form or not scope.line_code:
                    raise FailedPrecondition(f"program {scope.program_lock} has no budget")
                raise InvalidArgument(
                    "budget_line_code", f"budget line {scope.line_code} has no budget"
                )
            # Awards paid at once, and the released instalments of awards paid in instalments
            # (each a line of its own amount, at most one per award at a time).
            awards: list[tuple[ReservationRow, InstalmentRow | None]]
            if command.application_ids:
                awards = self._listed_awards(session, command.application_ids, scope)
            else:
                awards = store.awards_waiting_for_a_plan(
                    session,
                    list(scope.programs),
                    scope.line_code,
                    fiscal_year=command.fiscal_year,
                    awarded_before=command.awarded_before,
                    limit=command.max_lines,
                )
            if not awards:
                if command.first_form:
                    raise FailedPrecondition(
                        f"program {command.program_code} has no noticed awards waiting for a "
                        "funding plan"
                    )
                raise InvalidArgument(
                    _narrowest_filter(command),
                    "no noticed award waiting for a funding plan matches this filter ("
                    + scope.describe()
                    + ")",
                )
            now = now_utc()
            total = sum((part or award).amount_fen for award, part in awards)
            programs = sorted({award.program_code for award, _ in awards})
            plan = FundingPlanRow(
                plan_id=uuid.uuid4().hex,
                request_id=command.request_id,
                request_fingerprint=fingerprint,
                program_code=programs[0] if len(programs) == 1 else "",
                budget_line_code=scope.line_code,
                title=command.title,
                state=PlanState.DRAFT,
                created_by=command.maker,
                total_fen=total,
                created_at=now,
                updated_at=now,
                # Fixed as the plan is made (or edited), so a later change of the level changes
                # no draft.
                approvals_required=self._approvals_for(total),
            )
            session.add(plan)
            lines = [self._take_award(session, plan, award, now, part) for award, part in awards]
            lines.sort(key=lambda line: line.application_id)
            unit.announce(
                plan.plan_id,
                events_pb2.FundingPlanCreated(
                    plan_id=plan.plan_id,
                    program_code=plan.program_code,
                    total_fen=plan.total_fen,
                    line_count=len(lines),
                    created_by=command.maker,
                    budget_line_code=scope.line_code,
                    program_codes=programs,
                ),
                key=plan.plan_id,
            )
            details: dict[str, object] = {
                "program_code": plan.program_code,
                "title": command.title,
                "total_fen": plan.total_fen,
                "line_count": len(lines),
                "approvals_required": plan.approvals_required,
            }
            if not command.first_form:
                details |= {
                    "budget_line_code": scope.line_code,
                    "program_codes": programs,
                    "chosen_by": "list" if command.application_ids else "filter",
                    "filter": {
                        "program_codes": list(scope.programs),
                        "fiscal_year": command.fiscal_year,
                        "awarded_before": (
                            command.awarded_before.isoformat() if command.awarded_before else ""
                        ),
                        "max_lines": command.max_lines,
                    },
                }
            unit.audit(
                AuditAction.PLAN_CREATED,
                plan.plan_id,
                finance_officer(command.maker),
                details=details,
                key=plan.plan_id,
            )
            return PlanView(plan, lines)

        return await self.transactions.write(work)

    def _approvals_for(self, total_fen: int) -> int:
        return 2 if total_fen > self.second_approval_fen else 1

    @staticmethod
    def _take_award(
        session: Session,
        plan: FundingPlanRow,
        award: ReservationRow,
        now: datetime,
        part: InstalmentRow | None = None,
    ) -> PaymentLineRow:
        """The award's payment line in the plan (of its released instalment `part`, for an award
        paid in instalments); the award IN_PLAN (its row locked already)."""
        number = part.number if part else 1
        # A payment again after returns is a new payment: its own key (-r<k>).
        reissue = _reissue(session, award, number)
        line = PaymentLineRow(
            line_id=uuid.uuid4().hex,
            plan_id=plan.plan_id,
            application_id=award.application_id,
            applicant_credit_code=award.applicant_credit_code,
            applicant_name=award.applicant_name,
            amount_fen=(part or award).amount_fen,
            state=PaymentState.PENDING,
            program_code=award.program_code,
            instalment=number,
            reissue=reissue,
            idempotency_key=award_payment_key(
                award.application_id, instalment=number, reissue=reissue
            ),
        )
        session.add(line)
        if part is not None:
            part.state = InstalmentState.IN_PLAN
            part.plan_id = plan.plan_id
            part.updated_at = now
            session.add(part)
        award.state = ReservationState.IN_PLAN
        award.plan_id = plan.plan_id
        award.updated_at = now
        session.add(award)
        return line

    async def _plan_budget(self, plan_id: str) -> tuple[str, str]:
        """What a plan's budget locks are taken on (_lock_plan_budget): its budget line, or the
        program's own budget for a plan of a program without a line; NOT_FOUND for no plan."""

        def budget_of(session: Session) -> tuple[str, str]:
            plan = session.get(FundingPlanRow, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            return plan.program_code if not plan.budget_line_code else "", plan.budget_line_code

        return await self.transactions.read(budget_of)

    @staticmethod
    def _lock_plan_budget(session: Session, program: str, line_code: str) -> bool:
        """Locks what plans of the budget serialise on (a program's own budget row, then every
        year of the budget line), in the order of the module docstring; whether any exists."""
        found = False
        if program:
            found = store.lock_budget(session, program) is not None
        if line_code:
            found = bool(store.lock_budget_lines(session, line_code)) or found
        return found

    async def _plan_scope(self, command: CreatePlan) -> PlanScope:
        """Which budget the plan is of, from the catalogue (the programs' budget lines) or, for
        a list alone, from its awards' reservations; checked again under the budget's lock."""
        programs = command.programs
        field = (
            "program_code"
            if command.program_code and not command.program_codes
            else ("program_codes")
        )
        lines = {program: await self.catalogue.budget_line(program) for program in programs}
        if command.first_form:
            # As before plans spanned programs: an unpublished program has no budget.
            [program] = programs
            line = lines[program] or ""
            return PlanScope(line, programs, program_lock=program)
        unpublished = [program for program, line in lines.items() if line is None]
        if unpublished:
            raise InvalidArgument(
                field, f"program {', '.join(unpublished)} was never published in the catalogue"
            )
        line_code = command.budget_line_code
        if line_code:
            wrong = [
                f"{p} ({line or 'own budget'})" for p, line in lines.items() if line != line_code
            ]
            if wrong:
                raise InvalidArgument(
                    field,
                    f"not of budget line {line_code}: {', '.join(wrong)}; a funding plan holds "
                    "the awards of one budget line",
                )
            return PlanScope(line_code, programs)
        if programs:
            found = sorted({line or "" for line in lines.values()})
            if len(found) > 1:
                raise InvalidArgument(
                    field,
                    "the programs draw on different budgets ("
                    + ", ".join(f"{p}: {line or 'own budget'}" for p, line in lines.items())
                    + "); a funding plan holds the awards of one budget line",
                )
            if not found[0] and len(programs) > 1:
                raise InvalidArgument(
                    field,
                    "programs with budgets of their own are planned one program at a time",
                )
            return PlanScope(found[0], programs, program_lock="" if found[0] else programs[0])
        # A list alone: the budget its awards are reserved against.
        held = await self.transactions.read(
            lambda session: store.reservations_of(session, list(command.application_ids))
        )
        budgets = sorted({(row.budget_line_code or "", row.program_code) for row in held})
        line_codes = sorted({line for line, _ in budgets})
        if len(line_codes) > 1 or (line_codes == [""] and len(budgets) > 1):
            raise InvalidArgument(
                "application_ids",
                "the awards are of different budgets ("
                + ", ".join(line or f"{program} own budget" for line, program in budgets)
                + "); a funding plan holds the awards of one budget line",
            )
        if not budgets:
            return PlanScope("", ())  # none holds a reservation: refused under the lock
        line, program = budgets[0]
        if line:
            return PlanScope(line, ())
        return PlanScope("", (program,), program_lock=program)

    @staticmethod
    def _listed_awards(
        session: Session, application_ids: tuple[str, ...], scope: PlanScope
    ) -> list[tuple[ReservationRow, InstalmentRow | None]]:
        """The listed awards (with the released instalment of one paid in instalments), locked;
        INVALID_ARGUMENT (application_ids) naming every one that is not waiting for a plan or
        not of the plan's budget."""
        rows = {
            row.application_id: row
            for row in store.lock_reservations(session, list(application_ids))
        }
        problems = []
        chosen: list[tuple[ReservationRow, InstalmentRow | None]] = []
        for application_id in application_ids:
            row = rows.get(application_id)
            problem = _not_plannable(row, scope.line_code, scope.programs)
            part = None
            if not problem and row is not None and row.scheduled:
                part = store.released_instalment(session, application_id)
                if part is None:
                    problem = NONE_RELEASED
            if problem:
                problems.append(f"{application_id} {problem}")
            elif row is not None:
                chosen.append((row, part))
        if problems:
            raise InvalidArgument("application_ids", _listing(problems))
        return chosen

    async def edit_plan(self, command: EditPlan) -> PlanView:
        """Adds and removes awards of a DRAFT plan (commands.EditPlan): a removed award waits for
        a plan again (its line is deleted: a draft's lines were never paid nor announced); an
        added one must be waiting for a plan, of the plan's budget. The total, the plan's program
        and the approvals it needs follow. A repeated request id answers the plan as it is."""
        plan_id = command.plan_id

        program, line_code = await self._plan_budget(plan_id)

        def work(unit: UnitOfWork) -> PlanView:
            session = unit.session
            # create_plan's locks, then the plan's: an edit and a plan being made on the same
            # budget line take turns, so an award goes into one of them only.
            self._lock_plan_budget(session, program, line_code)
            plan = store.lock_plan(session, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            existing = store.plan_edit_by_request(session, command.request_id)
            if existing is not None:
                if existing.request_fingerprint != command.fingerprint:
                    raise AlreadyExists(
                        f"request_id {command.request_id} was already used for another edit "
                        f"(of funding plan {existing.plan_id})"
                    )
                return PlanView(plan, store.plan_lines(session, plan_id))
            if plan.state != PlanState.DRAFT:
                raise FailedPrecondition(
                    f"funding plan {plan_id} is {plan.state}"
                    + (f", approved by {plan.first_approved_by}" if plan.first_approved_by else "")
                    + (f", approved by {plan.approved_by}" if plan.approved_by else "")
                    + ": only a draft can be edited (cancel it and make another)"
                )
            lines = store.plan_lines(session, plan_id)
            held = {line.application_id: line for line in lines}
            absent = [a for a in command.remove if a not in held]
            if absent:
                raise InvalidArgument(
                    "remove_application_ids", _listing([f"{a} is not in this plan" for a in absent])
                )
            rows = {
                row.application_id: row
                for row in store.lock_reservations(session, sorted({*command.add, *command.remove}))
            }
            plan_programs = () if plan.budget_line_code else (plan.program_code,)
            problems = []
            added: list[tuple[str, InstalmentRow | None]] = []
            for application_id in command.add:
                if application_id in held:
                    problems.append(f"{application_id} is in this plan already")
                    continue
                row = rows.get(application_id)
                problem = _not_plannable(row, plan.budget_line_code, plan_programs)
                part = None
                if not problem and row is not None and row.scheduled:
                    part = store.released_instalment(session, application_id)
                    if part is None:
                        problem = NONE_RELEASED
                if problem:
                    problems.append(f"{application_id} {problem}")
                else:
                    added.append((application_id, part))
            if problems:
                raise InvalidArgument("add_application_ids", _listing(problems))
            if len(lines) - len(command.remove) + len(command.add) == 0:
                raise InvalidArgument(
                    "remove_application_ids",
                    "would leave the plan empty: cancel it instead (CancelFundingPlan)",
                )
            now = now_utc()
            before = plan.total_fen
            for application_id in command.remove:
                session.delete(held.pop(application_id))
                reservation = rows.get(application_id)
                if (
                    reservation is not None
                    and reservation.state == ReservationState.IN_PLAN
                    and reservation.plan_id == plan_id
                ):
                    reservation.state = ReservationState.AWARDED
                    reservation.plan_id = None
                    reservation.updated_at = now
                    session.add(reservation)
                    _unplan_instalment(session, reservation, plan_id, now)
            for application_id, part in added:
                line = self._take_award(session, plan, rows[application_id], now, part)
                held[application_id] = line
            kept = sorted(held.values(), key=lambda line: line.application_id)
            programs = sorted({line.program_code for line in kept})
            plan.total_fen = sum(line.amount_fen for line in kept)
            plan.program_code = programs[0] if len(programs) == 1 else ""
            plan.approvals_required = self._approvals_for(plan.total_fen)
            plan.updated_at = now
            session.add(plan)
            edit = FundingPlanEditRow(
                edit_id=uuid.uuid4().hex,
                request_id=command.request_id,
                request_fingerprint=command.fingerprint,
                plan_id=plan_id,
                added=json.dumps(list(command.add)),
                removed=json.dumps(list(command.remove)),
                reason=command.reason,
                edited_by=command.edited_by,
                edited_at=now,
                total_before_fen=before,
                total_after_fen=plan.total_fen,
                approvals_required=plan.approvals_required,
            )
            session.add(edit)
            unit.audit(
                AuditAction.PLAN_EDITED,
                plan_id,
                finance_officer(command.edited_by),
                reason=command.reason,
                details={
                    "request_id": command.request_id,
                    "added": list(command.add),
                    "removed": list(command.remove),
                    "total_before_fen": before,
                    "total_fen": plan.total_fen,
                    "line_count": len(kept),
                    "program_codes": programs,
                    "approvals_required": plan.approvals_required,
                    "second_approval_fen": self.second_approval_fen,
                },
                key=edit.edit_id,
            )
            return PlanView(plan, kept)

        return await self.transactions.write(work)

    async def approve_plan(self, command: ApprovePlan) -> PlanView:
        """The checker's approval. A plan needing two (above the second-approval level when it
        was made) is approved by two officers, neither its maker: the first approval leaves it
        AWAITING_SECOND_APPROVAL; only the second approves it and announces FundingPlanApproved,
        from which FundingPlanWorkflow starts."""
        plan_id, checker = command.plan_id, command.checker

        def work(unit: UnitOfWork) -> PlanView:
            session = unit.session
            plan = store.lock_plan(session, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            if plan.created_by == checker:
                raise PermissionDenied(
                    "the maker of a funding plan may not approve it: a second finance officer "
                    "must (maker-checker)"
                )
            lines = store.plan_lines(session, plan_id)
            if plan.state == PlanState.CANCELLED:
                raise FailedPrecondition(
                    f"funding plan {plan_id} was cancelled by {plan.cancelled_by}: "
                    f"{plan.cancel_reason}"
                )
            if plan.state == PlanState.AWAITING_SECOND_APPROVAL and (
                plan.first_approved_by == checker
            ):
                raise PermissionDenied(
                    f"{checker} gave funding plan {plan_id} its first approval; its total "
                    f"({plan.total_fen} fen) is above the second-approval level, so the second "
                    "approval must come from another finance officer"
                )
            if plan.state not in UNAPPROVED_PLAN_STATES:
                if plan.approved_by == checker:
                    return PlanView(plan, lines)
                raise FailedPrecondition(
                    f"funding plan {plan_id} is {plan.state}"
                    + (f", approved by {plan.approved_by}" if plan.approved_by else "")
                )
            now = now_utc()
            plan.updated_at = now
            if plan.state == PlanState.DRAFT and plan.approvals_required > 1:
                plan.state = PlanState.AWAITING_SECOND_APPROVAL
                plan.first_approved_by = checker
                plan.first_approved_at = now
                session.add(plan)
                unit.audit(
                    AuditAction.PLAN_FIRST_APPROVED,
                    plan_id,
                    finance_officer(checker),
                    details={
                        "program_code": plan.program_code,
                        "maker": plan.created_by,
                        "first_checker": checker,
                        "total_fen": plan.total_fen,
                        "line_count": len(lines),
                        "second_approval_fen": self.second_approval_fen,
                    },
                    key=plan_id,
                )
                return PlanView(plan, lines)
            plan.state = PlanState.APPROVED
            plan.approved_by = checker
            plan.approved_at = now
            session.add(plan)
            # What the approved plan owes: each line's money from reserved to payable.
            held = {
                row.application_id: row
                for row in store.lock_reservations(session, [line.application_id for line in lines])
            }
            for line in lines:
                reservation = held.get(line.application_id)
                key = reservation.budget_key if reservation is not None else plan.program_code
                _move_payable(session, line, key, to_payable=True, why=f"plan {plan_id} approved")
            # A consumer starts FundingPlanWorkflow plan-<plan_id> from this event.
            unit.announce(
                plan_id,
                events_pb2.FundingPlanApproved(
                    plan_id=plan_id,
                    program_code=plan.program_code,
                    approved_by=checker,
                    line_ids=[line.line_id for line in lines],
                    application_ids=[line.application_id for line in lines],
                ),
                key=plan_id,
            )
            details: dict[str, object] = {
                "program_code": plan.program_code,
                "maker": plan.created_by,
                "checker": checker,
                "total_fen": plan.total_fen,
                "line_count": len(lines),
            }
            if plan.first_approved_by:
                details["first_checker"] = plan.first_approved_by
            unit.audit(
                AuditAction.PLAN_APPROVED,
                plan_id,
                finance_officer(checker),
                details=details,
                key=plan_id,
            )
            return PlanView(plan, lines)

        return await self.transactions.write(work)

    async def cancel_plan(self, command: CancelPlan) -> PlanView:
        """Cancels a plan not yet approved: its lines CANCELLED, its awards back to waiting for a
        plan (AWARDED, in no plan; their money stays reserved, so no journal), so a later plan
        takes them. Nothing was announced to the grants or paid before approval, so nothing else
        is undone. A cancelled plan answers as it is."""
        plan_id, officer, reason = command.plan_id, command.cancelled_by, command.reason

        program, line_code = await self._plan_budget(plan_id)

        def work(unit: UnitOfWork) -> PlanView:
            session = unit.session
            # The locks in create_plan's order (budget, plan, reservations): a plan being made
            # for the budget waits for the cancelled plan's awards, and takes them.
            self._lock_plan_budget(session, program, line_code)
            plan = store.lock_plan(session, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            lines = store.plan_lines(session, plan_id)
            if plan.state == PlanState.CANCELLED:
                return PlanView(plan, lines)
            if plan.state not in UNAPPROVED_PLAN_STATES:
                raise FailedPrecondition(
                    f"funding plan {plan_id} is {plan.state}"
                    + (f", approved by {plan.approved_by}" if plan.approved_by else "")
                    + ": only a plan not yet approved can be cancelled"
                )
            now = now_utc()
            returned = []
            for reservation in store.lock_reservations(
                session, [line.application_id for line in lines]
            ):
                if reservation.state == ReservationState.IN_PLAN and reservation.plan_id == plan_id:
                    reservation.state = ReservationState.AWARDED
                    reservation.plan_id = None
                    reservation.updated_at = now
                    session.add(reservation)
                    returned.append(reservation.application_id)
                    _unplan_instalment(session, reservation, plan_id, now)
            for line in lines:
                line.state = PaymentState.CANCELLED
                session.add(line)
            plan.state = PlanState.CANCELLED
            plan.cancelled_by = officer
            plan.cancelled_at = now
            plan.cancel_reason = reason
            plan.updated_at = now
            session.add(plan)
            unit.announce(
                plan_id,
                events_pb2.FundingPlanCancelled(
                    plan_id=plan_id,
                    program_code=plan.program_code,
                    cancelled_by=officer,
                    reason=reason,
                    total_fen=plan.total_fen,
                    application_ids=returned,
                ),
                key=plan_id,
            )
            unit.audit(
                AuditAction.PLAN_CANCELLED,
                plan_id,
                finance_officer(officer),
                reason=reason,
                details={
                    "program_code": plan.program_code,
                    "maker": plan.created_by,
                    "first_checker": plan.first_approved_by,
                    "total_fen": plan.total_fen,
                    "line_count": len(lines),
                    "returned_awards": returned,
                },
                key=plan_id,
            )
            return PlanView(plan, lines)

        return await self.transactions.write(work)

    async def plan(self, plan_id: str) -> PlanView:
        def work(session: Session) -> PlanView:
            plan = session.get(FundingPlanRow, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            return PlanView(plan, store.plan_lines(session, plan_id))

        return await self.transactions.read(work)

    async def plans(
        self,
        program_code: str = "",
        *,
        limit: int = 0,
        after: tuple[datetime, str] | None = None,
        with_lines: bool = True,
    ) -> tuple[list[PlanView], bool]:
        """Plans newest first (see store.plans) and whether more follow; without their lines,
        each view carries only how many it has."""

        def work(session: Session) -> tuple[list[PlanView], bool]:
            rows = store.plans(session, program_code, limit=limit + 1 if limit else 0, after=after)
            more = bool(limit) and len(rows) > limit
            rows = rows[:limit] if limit else rows
            if with_lines:
                views = [PlanView(plan, store.plan_lines(session, plan.plan_id)) for plan in rows]
            else:
                ids = [plan.plan_id for plan in rows]
                counts = store.line_counts(session, ids)
                totals = store.program_totals(session, ids)
                views = [
                    PlanView(plan, [], counts.get(plan.plan_id, 0), totals.get(plan.plan_id, []))
                    for plan in rows
                ]
            return views, more

        return await self.transactions.read(work)

    async def complete_plan(self, command: CompletePlan) -> PlanView:
        plan_id = command.plan_id

        def work(unit: UnitOfWork) -> PlanView:
            session = unit.session
            plan = store.lock_plan(session, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            lines = store.plan_lines(session, plan_id)
            if plan.state in CLOSED_PLAN_STATES:
                return PlanView(plan, lines)
            if plan.state not in PAYABLE_PLAN_STATES:
                raise FailedPrecondition(f"funding plan {plan_id} is {plan.state}, not approved")
            pending = sum(
                1 for line in lines if line.state in (PaymentState.PENDING, PaymentState.SETTLING)
            )
            if pending:
                raise FailedPrecondition(
                    f"funding plan {plan_id} still has {pending} pending payment line(s)"
                )
            # A line returned since it was paid was paid all the same (退汇 is tracked apart).
            paid_lines = [
                line for line in lines if line.state in (PaymentState.PAID, PaymentState.RETURNED)
            ]
            failed = len(lines) - len(paid_lines)
            now = now_utc()
            plan.state = PlanState.COMPLETED_WITH_FAILURES if failed else PlanState.COMPLETED
            plan.completed_at = now
            plan.updated_at = now
            session.add(plan)
            completed = events_pb2.FundingPlanCompleted(
                plan_id=plan_id,
                paid_lines=len(paid_lines),
                failed_lines=failed,
                paid_fen=sum(line.amount_fen for line in paid_lines),
            )
            key = plan_id
            if unit.announced(event_source("").event_id(completed, key)):
                # Completed before, then a repair retried a failed line: this completion is
                # another event (the attempts only grow, so each completion has its own id).
                key = f"{plan_id}:attempts-{sum(line.attempts for line in lines)}"
            unit.announce(plan_id, completed, key=key)
            unit.audit(
                AuditAction.PLAN_COMPLETED,
                plan_id,
                details={
                    "state": plan.state,
                    "paid_lines": len(paid_lines),
                    "failed_lines": failed,
                    "paid_fen": sum(line.amount_fen for line in paid_lines),
                },
                key=key,
            )
            return PlanView(plan, lines)

        return await self.transactions.write(work)

    # Payments -----------------------------------------------------------------------------------

    async def execute_line(self, command: ExecuteLine) -> PaymentLineRow:
        """Pays one line. A first attempt submits the payment with the line's key and its
        account (the one in force, kept on the line); a later one (a lost answer, a payment
        settling) asks the gateway's status query first and submits again only if the gateway
        has nothing for the key. A payment accepted but still settling is SETTLING and answers
        UNAVAILABLE with reason PAYMENT_SETTLING: ask again later."""
        plan_id, line_id = command.plan_id, command.line_id

        def begin(unit: UnitOfWork) -> tuple[PaymentLineRow, str]:
            session = unit.session
            line = store.lock_line(session, line_id)
            if line is None or line.plan_id != plan_id:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if line.state in (PaymentState.PAID, PaymentState.RETURNED):
                return line, DONE
            plan = session.get(FundingPlanRow, plan_id)
            if plan is None or plan.state not in PAYABLE_PLAN_STATES:
                state = plan.state if plan else "missing"
                raise FailedPrecondition(f"funding plan {plan_id} is {state}, not approved")
            if line.state == PaymentState.FAILED:
                raise FailedPrecondition(f"payment line {line_id} was marked failed")
            if not line.account_version:
                account = store.account_in_force(session, line.application_id)
                if account is not None:
                    # Retries pay where the first attempt paid, whatever changes meanwhile.
                    line.account_name, line.account_number = (
                        account.account_name,
                        account.account_number,
                    )
                    line.bank_code, line.bank_name = account.bank_code, account.bank_name
                    line.account_version = account.version
                elif self.require_account and line.attempts == 0:
                    raise FailedPrecondition(NO_ACCOUNT.format(application=line.application_id))
            # An earlier attempt may have paid (its answer lost) or be settling: ask first.
            action = STATUS if line.attempts > 0 or line.state == PaymentState.SETTLING else PAY
            line.attempts += 1
            session.add(line)
            return line, action

        line, action = await self.transactions.write(begin)
        if action == DONE:
            return line
        key = store.payment_key(line)
        if action == STATUS:
            status = await self._status(key)
            if status is not None:
                if status.state == PENDING:
                    return await self._settling(plan_id, line_id, status.reference)
                return await self._settle(plan_id, line_id, status.reference, status)
        account = (
            PayeeAccount(line.account_name, line.account_number, line.bank_code, line.bank_name)
            if line.account_number
            else None
        )
        try:
            reference = await asyncio.wait_for(
                self.gateway.pay(
                    idempotency_key=key,
                    payee_credit_code=line.applicant_credit_code,
                    payee_name=line.applicant_name,
                    amount_fen=line.amount_fen,
                    account=account,
                ),
                timeout=self.gateway_timeout_s,
            )
        except GatewayPending as pending:
            return await self._settling(plan_id, line_id, pending.reference)
        except GatewayRejected as exc:
            raise FailedPrecondition(f"payment rejected by the gateway: {exc.reason}") from exc
        except (GatewayTimeout, TimeoutError) as exc:
            log.warning("payment outcome unknown", line_id=line_id, attempt=line.attempts)
            raise Unavailable(
                "payment gateway timed out, the outcome is unknown: retry this line (the "
                "gateway's status query answers first) to settle it",
                reason=REASON_PAYMENT_GATEWAY,
            ) from exc
        except GatewayUnavailable as exc:
            raise Unavailable(
                f"payment gateway unavailable: {exc}", reason=REASON_PAYMENT_GATEWAY
            ) from exc
        return await self._settle(plan_id, line_id, reference, None)

    async def _status(self, key: str) -> PaymentStatus | None:
        """The gateway's status query; UNAVAILABLE (PAYMENT_GATEWAY) when it cannot answer, so
        nothing is submitted again while the outcome is unknown."""
        try:
            return await asyncio.wait_for(
                self.gateway.payment_status(key), timeout=self.gateway_timeout_s
            )
        except (GatewayError, TimeoutError) as exc:
            raise Unavailable(
                f"the payment gateway could not say what became of payment {key}: {exc}",
                reason=REASON_PAYMENT_GATEWAY,
            ) from exc

    async def _settling(self, plan_id: str, line_id: str, reference: str) -> PaymentLineRow:
        """The gateway accepted the payment; it settles later: the line SETTLING (once audited),
        and the caller told to ask again (UNAVAILABLE, reason PAYMENT_SETTLING)."""

        def work(unit: UnitOfWork) -> None:
            session = unit.session
            plan = store.lock_plan(session, plan_id)
            row = store.lock_line(session, line_id)
            if plan is None or row is None or row.state != PaymentState.PENDING:
                return
            row.state = PaymentState.SETTLING
            row.gateway_reference = reference
            session.add(row)
            if plan.state == PlanState.APPROVED:
                plan.state = PlanState.PAYING
                plan.updated_at = now_utc()
                session.add(plan)
            unit.audit(
                AuditAction.PAYMENT_SETTLING,
                row.application_id,
                details={
                    "plan_id": plan_id,
                    "line_id": line_id,
                    "amount_fen": row.amount_fen,
                    "gateway_reference": reference,
                    "idempotency_key": store.payment_key(row),
                },
                key=f"{line_id}-settling",
            )

        await self.transactions.write(work)
        raise Unavailable(
            f"the payment gateway accepted payment {reference} and it is settling (国库已受理，"
            "待清算): ask again later; it is neither paid again nor given up",
            reason=REASON_PAYMENT_SETTLING,
        )

    async def _settle(
        self, plan_id: str, line_id: str, reference: str, status: PaymentStatus | None
    ) -> PaymentLineRow:
        """The gateway paid: the line PAID when it settled (the status query's time, else now),
        once; a payment the gateway returned since is recorded RETURNED too."""

        def work(unit: UnitOfWork) -> PaymentLineRow:
            session = unit.session
            plan = store.lock_plan(session, plan_id)
            row = store.lock_line(session, line_id)
            if plan is None or row is None:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if row.state in (PaymentState.PAID, PaymentState.RETURNED):
                return row  # a concurrent call settled it
            reservation = store.lock_reservation(session, row.application_id)
            if row.state == PaymentState.FAILED:
                raise _paid_after_failure(row, reservation, reference)
            settle_line(unit, plan, row, reservation, reference, status)
            if status is not None and status.state == RETURNED:
                return_line(unit, row, reservation, status)
            return row

        return await self.transactions.write(work)

    async def sync_returns(self, command: SyncReturns) -> tuple[list[PaymentLineRow], int]:
        """The gateway's returns since a moment recorded (record_returns)."""
        try:
            returned = await asyncio.wait_for(
                self.gateway.returns(command.since), timeout=self.gateway_timeout_s
            )
        except (GatewayError, TimeoutError) as exc:
            raise Unavailable(
                f"the payment gateway could not list its returned payments: {exc}",
                reason=REASON_PAYMENT_GATEWAY,
            ) from exc
        return await self.record_returns(returned)

    async def record_returns(
        self, returned: list[PaymentStatus]
    ) -> tuple[list[PaymentLineRow], int]:
        """Records payments the gateway returned (退汇), each once in its own transaction: the
        line RETURNED (settled first if the ledger had not settled it yet), journal
        return-<line>, the award RETURNED (or waiting for a plan again at once when its account
        was changed since), PaymentReturned announced. Answers the lines recorded now and how
        many were recorded before. A returned key no line knows is left to reconciliation."""
        recorded: list[PaymentLineRow] = []
        known = 0
        for status in returned:
            if status.state != RETURNED:
                continue

            def work(
                unit: UnitOfWork, status: PaymentStatus = status
            ) -> tuple[PaymentLineRow | None, bool]:
                session = unit.session
                found = store.lines_by_keys(
                    session,
                    [status.idempotency_key],
                    [PaymentState.PAID, PaymentState.RETURNED, PaymentState.SETTLING],
                )
                if not found:
                    # A PENDING line whose answer was lost: it tried, and the gateway paid.
                    found = [
                        line
                        for line in store.lines_by_keys(
                            session, [status.idempotency_key], [PaymentState.PENDING]
                        )
                        if line.attempts > 0
                    ]
                if not found:
                    log.warning("a returned payment no line knows", key=status.idempotency_key)
                    return None, False
                plan = store.lock_plan(session, found[-1].plan_id)
                row = store.lock_line(session, found[-1].line_id)
                assert plan is not None and row is not None
                if row.state == PaymentState.RETURNED:
                    return row, False
                reservation = store.lock_reservation(session, row.application_id)
                if row.state != PaymentState.PAID:
                    settle_line(unit, plan, row, reservation, status.reference, status)
                return_line(unit, row, reservation, status)
                return row, True

            row, fresh = await self.transactions.write(work)
            if row is None:
                continue
            if fresh:
                recorded.append(row)
            else:
                known += 1
        return recorded, known

    async def fail_line(self, command: FailLine) -> PaymentLineRow:
        plan_id, line_id, reason = command.plan_id, command.line_id, command.reason

        def check(session: Session, *, lock: bool) -> tuple[PaymentLineRow, bool]:
            if lock:
                plan = store.lock_plan(session, plan_id)
                line = store.lock_line(session, line_id)
            else:
                plan = session.get(FundingPlanRow, plan_id)
                line = session.get(PaymentLineRow, line_id)
            if plan is None or line is None or line.plan_id != plan_id:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if line.state == PaymentState.PAID:
                raise FailedPrecondition(f"payment line {line_id} is already paid")
            if line.state != PaymentState.FAILED and plan.state not in PAYABLE_PLAN_STATES:
                raise FailedPrecondition(f"funding plan {plan_id} is {plan.state}, not approved")
            return line, store.award_attempted(session, line.application_id)

        seen, attempted = await self.transactions.read(lambda session: check(session, lock=False))
        if seen.state == PaymentState.FAILED:
            return seen
        if attempted:
            # An attempt whose answer was lost, on this line or an earlier one of the award with
            # the same key, may have paid: the payment is then settled on this line, never
            # given up.
            reference = await self._award_payment(store.payment_key(seen))
            if reference:
                raise FailedPrecondition(
                    f"the payment gateway paid the award of application {seen.application_id} "
                    f"(reference {reference}): execute line {line_id} again to settle it instead "
                    "of marking it failed"
                )

        def work(unit: UnitOfWork) -> PaymentLineRow:
            session = unit.session
            line, _ = check(session, lock=True)
            if line.state == PaymentState.FAILED:
                return line
            if line.attempts != seen.attempts:
                raise Unavailable(f"a payment attempt on line {line_id} started meanwhile; retry")
            now = now_utc()
            line.state = PaymentState.FAILED
            line.failure_reason = reason
            session.add(line)
            reservation = store.lock_reservation(session, line.application_id)
            if line.payable:
                # Nothing is owed on a failed line: its money back to the award's reservation.
                _move_payable(
                    session,
                    line,
                    reservation.budget_key
                    if reservation is not None
                    else plan_program(session, line),
                    to_payable=False,
                    why=f"line {line_id} failed",
                )
            if (
                reservation is not None
                and reservation.state == ReservationState.IN_PLAN
                and reservation.plan_id == plan_id
            ):
                # The award still stands and its money stays reserved: a later plan takes it.
                reservation.state = ReservationState.AWARDED
                reservation.plan_id = None
                reservation.updated_at = now
                session.add(reservation)
                _unplan_instalment(session, reservation, plan_id, now)
            failure = events_pb2.PaymentFailed(
                plan_id=plan_id,
                line_id=line_id,
                application_id=line.application_id,
                amount_fen=line.amount_fen,
                reason=reason,
            )
            key = line_id
            if unit.announced(event_source("").event_id(failure, key)):
                # It failed before, a repair retried it, and it failed again: another event.
                key = f"{line_id}:attempts-{line.attempts}"
            unit.announce(line.application_id, failure, key=key)
            unit.audit(
                AuditAction.PAYMENT_FAILED,
                line.application_id,
                reason=reason,
                details={
                    "plan_id": plan_id,
                    "line_id": line_id,
                    "amount_fen": line.amount_fen,
                    "attempts": line.attempts,
                },
                key=key,
            )
            return line

        return await self.transactions.write(work)

    async def retry_line(self, command: RetryLine) -> PaymentLineRow:
        """A failed line made payable again by an approved repair: the line PENDING, the award
        back in this plan (its money is still reserved: a failed line leaves it AWARDED), the
        plan paying. Refused once the award was paid, released or taken by a later plan."""
        plan_id, line_id = command.plan_id, command.line_id

        def work(unit: UnitOfWork) -> PaymentLineRow:
            session = unit.session
            plan = store.lock_plan(session, plan_id)
            line = store.lock_line(session, line_id)
            if plan is None or line is None or line.plan_id != plan_id:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if line.state == PaymentState.PENDING and plan.state in PAYABLE_PLAN_STATES:
                return line  # retried already
            if line.state != PaymentState.FAILED:
                raise FailedPrecondition(f"payment line {line_id} is {line.state}, not failed")
            reservation = store.lock_reservation(session, line.application_id)
            if reservation is None or reservation.state != ReservationState.AWARDED:
                state = reservation.state if reservation else "missing"
                raise FailedPrecondition(
                    f"the award of application {line.application_id} is {state}: a later plan "
                    "holds it, or it was paid or released"
                )
            now = now_utc()
            line.state = PaymentState.PENDING
            line.failure_reason = ""
            session.add(line)
            if reservation.scheduled:
                if store.returned_instalments(session, line.application_id):
                    raise FailedPrecondition(
                        f"a payment of the award of application {line.application_id} came "
                        "back (退汇): its lines wait for the corrected receiving account"
                    )
                part = store.lock_instalment(session, line.application_id, line.instalment)
                if part is None or part.state != InstalmentState.RELEASED or part.plan_id:
                    raise FailedPrecondition(
                        f"instalment {line.instalment} of application {line.application_id} is "
                        f"{part.state if part else 'missing'}: a later plan holds it, or it was paid"
                    )
                part.state = InstalmentState.IN_PLAN
                part.plan_id = plan_id
                part.updated_at = now
                session.add(part)
            _move_payable(
                session, line, reservation.budget_key, to_payable=True, why=command.reason
            )
            reservation.state = ReservationState.IN_PLAN
            reservation.plan_id = plan_id
            reservation.updated_at = now
            session.add(reservation)
            if plan.state in CLOSED_PLAN_STATES:
                plan.state = PlanState.PAYING
                plan.completed_at = None
            plan.updated_at = now
            session.add(plan)
            unit.audit(
                AuditAction.PAYMENT_RETRIED,
                line.application_id,
                reason=command.reason,
                details={
                    "plan_id": plan_id,
                    "line_id": line_id,
                    "amount_fen": line.amount_fen,
                    "attempts": line.attempts,
                },
                key=f"{line_id}:attempts-{line.attempts}",
            )
            return line

        return await self.transactions.write(work)

    async def _award_payment(self, key: str) -> str | None:
        """The gateway reference of the payment made under the key (the award's, or one of its
        reissues), if one was made; Unavailable if unsure."""
        try:
            return await asyncio.wait_for(
                self.gateway.find_payment(key), timeout=self.gateway_timeout_s
            )
        except (GatewayUnavailable, GatewayTimeout, TimeoutError) as exc:
            raise Unavailable(
                f"cannot confirm with the payment gateway that payment {key} was not made; retry"
            ) from exc

    # Reading for operators ----------------------------------------------------------------------

    async def application_funds(
        self, application_id: str
    ) -> tuple[ReservationRow | None, list[PlanView]]:
        """An application's reservation and the plans holding it, each with only its lines."""

        def work(session: Session) -> tuple[ReservationRow | None, list[PlanView]]:
            reservation = session.get(ReservationRow, application_id)
            lines = store.lines_of_application(session, application_id)
            plans = store.plans_by_id(session, {line.plan_id for line in lines})
            totals = store.program_totals(session, [plan.plan_id for plan in plans])
            return reservation, [
                PlanView(
                    plan,
                    [line for line in lines if line.plan_id == plan.plan_id],
                    programs=totals.get(plan.plan_id, []),
                )
                for plan in plans
            ]

        return await self.transactions.read(work)

    async def payment_lines(self, command: ListLines) -> list[PaymentLineRow]:
        return await self.transactions.read(
            lambda session: store.payment_lines(
                session, command.state, command.limit, command.program_code
            )
        )

    # Ledger -------------------------------------------------------------------------------------

    async def ledger(self, account_prefix: str = "", journal_id: str = "") -> list[LedgerEntryRow]:
        return await self.transactions.read(
            lambda session: store.ledger_entries(session, account_prefix, journal_id)
        )

    async def trial_balance(self, query: TrialBalanceQuery) -> TrialBalance:
        """试算平衡表: every account's totals (one aggregate query), grouped by budget; of one
        budget, or of the budgets a program draws on, when asked."""
        keys: set[str] | None = {query.budget_key} if query.budget_key else None
        line_code = ""
        if query.program_code:
            known = await self.catalogue.budget_line(query.program_code)
            if known is None:
                raise NotFound(
                    f"program {query.program_code} was never published in the program catalogue"
                )
            line_code = known

        def work(session: Session) -> list[tuple[str, int, int]]:
            nonlocal keys
            if query.program_code:
                keys = {query.program_code} | store.reservation_budget_keys(
                    session, query.program_code
                )
            return store.account_totals(session, query.as_of)

        def wanted(key: str) -> bool:
            if keys is None:
                return True
            return key in keys or bool(line_code and key.startswith(f"{line_code}:"))

        budgets: dict[str, list[AccountBalance]] = {}
        for account, debit, credit in await self.transactions.read(work):
            kind, key = store.account_kind(account)
            if wanted(key):
                budgets.setdefault(key, []).append(AccountBalance(account, kind, debit, credit))
        return TrialBalance(
            [BudgetBalance(key, accounts) for key, accounts in sorted(budgets.items())],
            query.as_of,
        )

    async def grant_statement(self, query: GrantStatementQuery) -> GrantStatement:
        """资金对账单: an award's ledger movements in time order with running balances per
        account; an applicant sees only its own enterprise's awards."""
        application_id, caller = query.application_id, query.caller

        def work(session: Session) -> GrantStatement:
            reservation = session.get(ReservationRow, application_id)
            if reservation is None:
                raise NotFound(f"application {application_id} has no reservation: no money moved")
            if (
                caller.role == Role.APPLICANT
                and reservation.applicant_credit_code != caller.enterprise.strip().upper()
            ):
                raise PermissionDenied(
                    f"application {application_id} is not your enterprise's: an applicant sees "
                    "only its own statements"
                )
            running: dict[str, int] = {}
            lines = []
            for entry in store.award_entries(session, application_id):
                running[entry.account] = (
                    running.get(entry.account, 0) + entry.debit_fen - entry.credit_fen
                )
                kind, _ = store.account_kind(entry.account)
                lines.append(
                    StatementLine(
                        entry, movement_of(entry.journal_id), kind, running[entry.account]
                    )
                )
            return GrantStatement(reservation, lines, store.instalments_of(session, application_id))

        return await self.transactions.read(work)

    # Reconciliation -----------------------------------------------------------------------------

    async def reconcile_day(self, command: ReconcileDay) -> ReconciliationView:
        """对账: the gateway's statement of the day against the lines the ledger settled that day
        (reconciliation.py compares); the day's report replaced, its exceptions kept once per
        key and kind (reopened when found again after clearing; resolved ones stay resolved)."""
        day, name = command.day, command.day.isoformat()
        try:
            statement = await asyncio.wait_for(
                self.gateway.statement(day), timeout=self.gateway_timeout_s
            )
        except (GatewayError, TimeoutError) as exc:
            raise Unavailable(
                f"the payment gateway could not give its statement of {name}: {exc}",
                reason=REASON_PAYMENT_GATEWAY,
            ) from exc
        start, end = day_bounds(day)
        on_statement = {payment.idempotency_key for payment in statement}
        await self._catch_up(statement)

        def ledger_side(
            session: Session,
        ) -> tuple[list[reconciliation.SettledLine], dict[str, list[reconciliation.SettledLine]]]:
            settled = _settled(session, store.settled_lines(session, start, end))
            keys = {line.idempotency_key for line in settled}
            elsewhere: dict[str, list[reconciliation.SettledLine]] = {}
            paid_before = store.lines_by_keys(
                session, sorted(on_statement - keys), [PaymentState.PAID, PaymentState.RETURNED]
            )
            for line in _settled(session, paid_before):
                elsewhere.setdefault(line.idempotency_key, []).append(line)
            return settled, elsewhere

        settled, settled_elsewhere = await self.transactions.read(ledger_side)
        paid_elsewhere: dict[str, str] = {}
        for key in sorted({line.idempotency_key for line in settled} - on_statement):
            try:
                reference = await asyncio.wait_for(
                    self.gateway.find_payment(key), timeout=self.gateway_timeout_s
                )
            except (GatewayError, TimeoutError) as exc:
                raise Unavailable(
                    f"the payment gateway could not say whether it paid {key}: {exc}",
                    reason=REASON_PAYMENT_GATEWAY,
                ) from exc
            if reference:
                paid_elsewhere[key] = reference
        outcome = reconciliation.compare(statement, settled, settled_elsewhere, paid_elsewhere)

        def keep(unit: UnitOfWork) -> ReconciliationView:
            session = unit.session
            now = now_utc()
            run = session.exec(
                select(ReconciliationRunRow)
                .where(col(ReconciliationRunRow.day) == name)
                .with_for_update()
            ).first()
            if run is None:
                run = ReconciliationRunRow(day=name, reconciled_at=now)
            run.gateway_count, run.gateway_total_fen = (
                outcome.gateway_count,
                outcome.gateway_total_fen,
            )
            run.ledger_count, run.ledger_total_fen = outcome.ledger_count, outcome.ledger_total_fen
            run.matched_count, run.matched_total_fen = (
                outcome.matched_count,
                outcome.matched_total_fen,
            )
            run.exception_count = len(outcome.findings)
            run.runs += 1
            run.reconciled_by, run.reconciled_at = command.run_by, now
            session.add(run)

            known = {
                (row.idempotency_key, row.kind): row
                for row in store.day_exceptions(session, name, lock=True)
            }
            # A payment the gateway made that no line settled: name the award's latest line.
            latest = {
                line.application_id: line.line_id
                for line in store.lines_of_applications(
                    session, [f.application_id for f in outcome.findings if not f.line_id]
                )
            }
            found = set()
            opened = reopened = 0
            for finding in outcome.findings:
                kind = str(finding.kind)
                found.add((finding.idempotency_key, kind))
                row = known.get((finding.idempotency_key, kind))
                if row is None:
                    row = ReconciliationExceptionRow(
                        day=name,
                        kind=kind,
                        state=ReconciliationExceptionState.OPEN,
                        idempotency_key=finding.idempotency_key,
                        found_at=now,
                    )
                    opened += 1
                elif row.state == ReconciliationExceptionState.CLEARED:
                    row.state = ReconciliationExceptionState.OPEN
                    reopened += 1
                row.line_id = finding.line_id or latest.get(finding.application_id, "")
                row.application_id = finding.application_id
                row.gateway_reference = finding.gateway_reference
                row.gateway_amount_fen = finding.gateway_amount_fen
                row.ledger_amount_fen = finding.ledger_amount_fen
                row.gateway_payee = cut(finding.gateway_payee, 240)
                row.ledger_payee = cut(finding.ledger_payee, 240)
                session.add(row)
            cleared = 0
            for key, row in known.items():
                if key not in found and row.state == ReconciliationExceptionState.OPEN:
                    row.state = ReconciliationExceptionState.CLEARED
                    session.add(row)
                    cleared += 1
            unit.audit(
                AuditAction.RECONCILIATION_RUN,
                f"reconciliation-{name}",
                details={
                    "day": name,
                    "run": run.runs,
                    "gateway_count": run.gateway_count,
                    "gateway_total_fen": run.gateway_total_fen,
                    "ledger_count": run.ledger_count,
                    "ledger_total_fen": run.ledger_total_fen,
                    "matched_count": run.matched_count,
                    "exception_count": run.exception_count,
                    "opened": opened,
                    "reopened": reopened,
                    "cleared": cleared,
                },
                key=f"reconcile-{name}-{run.runs}",
            )
            session.flush()
            return ReconciliationView(run, store.day_exceptions(session, name))

        return await self.transactions.write(keep)

    async def _catch_up(self, statement: list[GatewayPayment]) -> None:
        """What the statement shows that the ledger has not recorded yet, recorded before the
        comparison: a payment settled whose line is still SETTLING (the payment run has not
        asked again yet) is settled, a payment returned (退汇) is recorded returned. Both are
        the gateway's final word, so neither is an exception."""

        def behind(session: Session) -> list[PaymentLineRow]:
            return store.lines_by_keys(
                session,
                sorted({payment.idempotency_key for payment in statement}),
                [PaymentState.SETTLING, PaymentState.PAID],
            )

        lines = {store.payment_key(line): line for line in await self.transactions.read(behind)}
        returned = []
        for payment in statement:
            line = lines.get(payment.idempotency_key)
            if line is None:
                continue
            status = PaymentStatus(
                idempotency_key=payment.idempotency_key,
                reference=payment.reference,
                state=payment.state,
                amount_fen=payment.amount_fen,
                payee_credit_code=payment.payee_credit_code,
                payee_name=payment.payee_name,
                account=None,
                accepted_at=payment.paid_at,
                settled_at=payment.paid_at,
                returned_at=payment.returned_at,
                return_reason=payment.return_reason,
            )
            if payment.state == RETURNED:
                returned.append(status)  # settles a settling line first
            elif line.state == PaymentState.SETTLING:
                try:
                    await self._settle(line.plan_id, line.line_id, payment.reference, status)
                except FailedPrecondition:
                    pass  # failed meanwhile: the comparison shows it
        if returned:
            await self.record_returns(returned)

    async def reconciliation(self, day: date) -> ReconciliationView:
        name = day.isoformat()

        def work(session: Session) -> ReconciliationView:
            run = session.get(ReconciliationRunRow, name)
            if run is None:
                raise NotFound(f"{name} was never reconciled")
            return ReconciliationView(run, store.day_exceptions(session, name))

        return await self.transactions.read(work)

    async def reconciliation_exceptions(
        self, command: ListReconciliationExceptions
    ) -> list[ReconciliationExceptionRow]:
        return await self.transactions.read(
            lambda session: store.reconciliation_exceptions(
                session, command.state, command.day, command.limit, command.after
            )
        )

    async def resolve_reconciliation_exception(
        self, command: ResolveReconciliationException
    ) -> ReconciliationExceptionRow:
        def work(unit: UnitOfWork) -> ReconciliationExceptionRow:
            row = store.lock_exception(unit.session, command.exception_id)
            if row is None:
                raise NotFound(f"reconciliation exception {command.exception_id} not found")
            if row.state != ReconciliationExceptionState.OPEN:
                how = (
                    f"resolved by {row.resolved_by} at {row.resolved_at}"
                    if row.state == ReconciliationExceptionState.RESOLVED
                    else "cleared when its day was reconciled again"
                )
                raise FailedPrecondition(
                    f"reconciliation exception {command.exception_id} is not open: it was {how}"
                )
            row.state = ReconciliationExceptionState.RESOLVED
            row.resolution = command.resolution
            row.resolution_note = command.note
            row.resolved_by = command.resolved_by
            row.resolved_at = now_utc()
            unit.session.add(row)
            unit.audit(
                AuditAction.RECONCILIATION_RESOLVED,
                row.application_id or f"reconciliation-{row.day}",
                reason=command.note,
                details={
                    "exception_id": row.id,
                    "day": row.day,
                    "kind": row.kind,
                    "idempotency_key": row.idempotency_key,
                    "line_id": row.line_id,
                    "gateway_amount_fen": row.gateway_amount_fen,
                    "ledger_amount_fen": row.ledger_amount_fen,
                    "resolution": command.resolution,
                },
                key=f"reconciliation-resolved-{row.id}",
            )
            return row

        return await self.transactions.write(work)


@dataclass(frozen=True)
class ReconciliationView:
    """A day's last reconciliation and its exceptions (every state)."""

    run: ReconciliationRunRow
    exceptions: list[ReconciliationExceptionRow]

    @property
    def open_count(self) -> int:
        return sum(1 for row in self.exceptions if row.state == ReconciliationExceptionState.OPEN)


def _settled(session: Session, lines: list[PaymentLineRow]) -> list[reconciliation.SettledLine]:
    """The ledger's side of settled lines: each with what its journal pay-<line> moved."""
    amounts = store.journal_amounts(session, [line.line_id for line in lines])
    return [
        reconciliation.SettledLine(
            idempotency_key=store.payment_key(line),
            line_id=line.line_id,
            application_id=line.application_id,
            amount_fen=amounts.get(line.line_id, 0),
            payee_credit_code=line.applicant_credit_code,
            payee_name=line.applicant_name,
            gateway_reference=line.gateway_reference,
            account_number=line.account_number,
            returned=line.state == PaymentState.RETURNED,
        )
        for line in lines
    ]


RESERVATION, RELEASE, PAYMENT = "reservation", "release", "payment"
CLAWBACK, REPAYMENT = "clawback", "repayment"  # clawbacks.py
# Plan approval and line failure (payable), returns after settlement (退汇) and the award made
# payable again after its account was corrected (accounts.py).
PAYABLE_MOVE, UNPAYABLE, RETURN, REAWARD = "payable", "unpayable", "return", "reaward"
JOURNAL_PREFIXES = (
    ("reserve-", RESERVATION),
    ("release-", RELEASE),
    ("pay-", PAYMENT),
    ("clawback-", CLAWBACK),
    ("repay-", REPAYMENT),
    ("payable-", PAYABLE_MOVE),
    ("unpayable-", UNPAYABLE),
    ("return-", RETURN),
    ("reaward-", REAWARD),
)


def movement_of(journal_id: str) -> str:
    """What an award's journal did, from its id (reserve-, release-, pay-, clawback-, repay-);
    "" otherwise."""
    for prefix, movement in JOURNAL_PREFIXES:
        if journal_id.startswith(prefix):
            return movement
    return ""


@dataclass(frozen=True)
class AccountBalance:
    account: str
    kind: str  # store.APPROPRIATION, AVAILABLE, RESERVED, PAID, or "" for another name
    debit_fen: int
    credit_fen: int

    @property
    def balance_fen(self) -> int:
        return self.debit_fen - self.credit_fen


@dataclass(frozen=True)
class BudgetBalance:
    budget_key: str  # "" for accounts of no known form
    accounts: list[AccountBalance]

    @property
    def debit_fen(self) -> int:
        return sum(account.debit_fen for account in self.accounts)

    @property
    def credit_fen(self) -> int:
        return sum(account.credit_fen for account in self.accounts)


@dataclass(frozen=True)
class TrialBalance:
    budgets: list[BudgetBalance]
    as_of: datetime | None

    @property
    def debit_fen(self) -> int:
        return sum(budget.debit_fen for budget in self.budgets)

    @property
    def credit_fen(self) -> int:
        return sum(budget.credit_fen for budget in self.budgets)

    @property
    def balanced(self) -> bool:
        return self.debit_fen == self.credit_fen


@dataclass(frozen=True)
class StatementLine:
    entry: LedgerEntryRow
    movement: str  # RESERVATION, RELEASE, PAYMENT, CLAWBACK, REPAYMENT
    kind: str  # the account's kind (store.account_kind)
    balance_fen: int  # the account's running balance within the award


@dataclass(frozen=True)
class GrantStatement:
    reservation: ReservationRow
    lines: list[StatementLine]
    instalments: list[InstalmentRow] = field(default_factory=list)  # its schedule, if any

    def _sum(self, movement: str, kind: str, *, debit: bool) -> int:
        return sum(
            line.entry.debit_fen if debit else line.entry.credit_fen
            for line in self.lines
            if line.movement == movement and line.kind == kind
        )

    @property
    def reserved_fen(self) -> int:
        return self._sum(RESERVATION, store.RESERVED, debit=True)

    @property
    def released_fen(self) -> int:
        return self._sum(RELEASE, store.RESERVED, debit=False)

    @property
    def paid_fen(self) -> int:
        return self._sum(PAYMENT, store.PAID, debit=True)

    @property
    def returned_fen(self) -> int:
        """What came back from returned payments (退汇), owed to the award again."""
        return self._sum(RETURN, store.RETURNED, debit=True)

    @property
    def outstanding_fen(self) -> int:
        return self.reserved_fen - self.released_fen - self.paid_fen + self.returned_fen

    @property
    def clawed_back_fen(self) -> int:
        return self._sum(CLAWBACK, store.CLAWBACK_RECEIVABLE, debit=True)

    @property
    def repaid_fen(self) -> int:
        return self._sum(REPAYMENT, store.CLAWBACK_RECEIVABLE, debit=False)

    @property
    def receivable_fen(self) -> int:
        return self.clawed_back_fen - self.repaid_fen


def _paid_after_failure(
    line: PaymentLineRow, reservation: ReservationRow | None, reference: str
) -> FailedPrecondition:
    """The answer to a gateway payment that completed after its line was marked failed.

    A failed line keeps no journal, so the line is not revived: the payment belongs to the award
    (its key is the award's), and the award's next line settles it with this reference without
    paying again. Only an award that fell away meanwhile leaves money to recover.
    """
    state = reservation.state if reservation is not None else "missing"
    where = f"payment line {line.line_id} was marked failed before the gateway paid it"
    if state == ReservationState.PAID:
        log.info(
            "late payment of a failed line; the award is settled already",
            line_id=line.line_id,
            application_id=line.application_id,
            reference=reference,
        )
        return FailedPrecondition(
            f"{where} (reference {reference}); the award of application "
            f"{line.application_id} is settled by a later line with that payment"
        )
    if state in (ReservationState.AWARDED, ReservationState.IN_PLAN):
        log.warning(
            "late payment of a failed line; the award's next line settles it",
            line_id=line.line_id,
            application_id=line.application_id,
            reference=reference,
        )
        return FailedPrecondition(
            f"{where} (reference {reference}); the award of application "
            f"{line.application_id} stays reserved and its line in the next funding plan "
            "settles this payment without paying again"
        )
    log.error(
        "gateway paid an award that fell away: reconcile with the treasury",
        line_id=line.line_id,
        application_id=line.application_id,
        reservation_state=state,
        reference=reference,
    )
    return FailedPrecondition(
        f"{where} (reference {reference}), and the award of application "
        f"{line.application_id} is {state}: reconcile with the treasury"
    )


def _check_schedule(schedule: tuple[InstalmentItem, ...], award_fen: int) -> None:
    """A schedule numbers its instalments 1..n, each positive, adding up to the award, the first
    released by the award itself."""
    if not schedule:
        return
    if [item.number for item in schedule] != list(range(1, len(schedule) + 1)):
        raise InvalidArgument("schedule", "instalments must be numbered 1..n in order")
    if len(schedule) < 2:
        raise InvalidArgument("schedule", "a schedule has at least two instalments")
    if any(item.amount_fen <= 0 for item in schedule):
        raise InvalidArgument("schedule", "every instalment pays a positive amount")
    if sum(item.amount_fen for item in schedule) != award_fen:
        raise InvalidArgument(
            "schedule", f"the instalments must add up to the award, {award_fen} fen"
        )
    if schedule[0].milestone != Milestone.AWARD or any(
        item.milestone == Milestone.AWARD for item in schedule[1:]
    ):
        raise InvalidArgument(
            "schedule", "instalment 1 is released by the award, each later one by a milestone"
        )


def _aware(instant: datetime) -> datetime:
    """SQLite gives back naive UTC instants."""
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _only_own(caller: Principal, reservation: ReservationRow) -> None:
    if (
        caller.role == Role.APPLICANT
        and reservation.applicant_credit_code != caller.enterprise.strip().upper()
    ):
        raise PermissionDenied(
            f"application {reservation.application_id} is not your enterprise's: an applicant "
            "sees only its own"
        )


NONE_RELEASED = (
    "is paid in instalments and has none released for payment (or one came back, 退汇, and "
    "waits for its corrected receiving account)"
)


def _reissue(session: Session, award: ReservationRow, number: int) -> int:
    """The reissue number of the award's next payment of instalment `number`: how many of its
    payments came back. Counted per instalment for an award paid in instalments, so that one
    instalment's return does not change another's key (a failed line's late payment is found
    by the key its award's next line pays with)."""
    if not award.scheduled:
        return award.returns
    return store.instalment_returns(session, award.application_id, number)


def _resting_state(parts: list[InstalmentRow]) -> ReservationState:
    """An award in instalments no plan holds: PAID once every instalment is paid, RETURNED when
    the rest came back (退汇) and wait for the corrected account, else AWARDED (waiting for a
    milestone or a plan)."""
    if all(part.state == InstalmentState.PAID for part in parts):
        return ReservationState.PAID
    if all(part.state in (InstalmentState.PAID, InstalmentState.RETURNED) for part in parts):
        return ReservationState.RETURNED
    return ReservationState.AWARDED


def _unplan_instalment(
    session: Session, reservation: ReservationRow, plan_id: str, now: datetime
) -> None:
    """The instalment a plan held goes back to awaiting a plan with its award."""
    if not reservation.scheduled:
        return
    for part in store.instalments_of(session, reservation.application_id):
        if part.state == InstalmentState.IN_PLAN and part.plan_id == plan_id:
            part.state = InstalmentState.RELEASED
            part.plan_id = None
            part.updated_at = now
            session.add(part)


def _settle_award(
    session: Session, reservation: ReservationRow, line: PaymentLineRow, now: datetime
) -> None:
    """A settled line pays its award: the whole of one paid at once; one instalment of one paid
    in instalments, which is PAID with its last and otherwise waits, in no plan, for the next
    instalment's milestone."""
    reservation.updated_at = now
    if not reservation.scheduled:
        reservation.state = ReservationState.PAID
        session.add(reservation)
        return
    part = store.lock_instalment(session, reservation.application_id, line.instalment)
    if part is not None and part.state != InstalmentState.PAID:
        part.state = InstalmentState.PAID
        part.plan_id = line.plan_id
        part.paid_at = now
        part.updated_at = now
        session.add(part)
        reservation.paid_fen += line.amount_fen
    # Not "the last instalment": an earlier one may have come back and wait to be paid again.
    reservation.state = _resting_state(store.instalments_of(session, reservation.application_id))
    reservation.plan_id = line.plan_id if reservation.state != ReservationState.AWARDED else None
    session.add(reservation)


# What execute_line does after its first transaction.
DONE, STATUS, PAY = "done", "status", "pay"
NO_ACCOUNT = (
    "收款账户未确认：申请单位须先确认收款账户，该笔资助转入后续资助计划拨付 (no confirmed "
    "receiving account for application {application}: the applicant confirms it, "
    "`grantflow finance account confirm`, and a later funding plan pays the award)"
)


def plan_program(session: Session, line: PaymentLineRow) -> str:
    plan = session.get(FundingPlanRow, line.plan_id)
    return plan.program_code if plan is not None else ""


def _move_payable(
    session: Session, line: PaymentLineRow, key: str, *, to_payable: bool, why: str
) -> None:
    """Moves a line's money between the award's reservation and payable:K (journals
    payable-<line>-<n> and unpayable-<line>-<n>, n counting the line's moves)."""
    if line.payable == to_payable:
        return
    line.ledger_moves += 1
    n = line.ledger_moves
    memo = cut(f"line {line.line_id} of application {line.application_id}: {why}", MAX_MEMO)
    if to_payable:
        store.post_journal(
            session,
            f"payable-{line.line_id}-{n}",
            memo,
            store.payable(key),
            store.reserved(key),
            line.amount_fen,
        )
    else:
        store.post_journal(
            session,
            f"unpayable-{line.line_id}-{n}",
            memo,
            store.reserved(key),
            store.payable(key),
            line.amount_fen,
        )
    line.payable = to_payable
    session.add(line)


def settle_line(
    unit: UnitOfWork,
    plan: FundingPlanRow,
    row: PaymentLineRow,
    reservation: ReservationRow | None,
    reference: str,
    status: PaymentStatus | None,
) -> None:
    """A line the gateway paid: PAID at the time it settled (the status query's, else now), its
    money from payable:K (reserved:K for lines approved before payable existed) to paid:K
    (journal pay-<line>), PaymentSettled announced, audited."""
    session = unit.session
    now = now_utc()
    row.state = PaymentState.PAID
    row.gateway_reference = reference
    row.paid_at = status.settled_at if status is not None and status.settled_at else now
    if reservation is not None:
        _settle_award(session, reservation, row, now)
    # The money leaves the budget the award was reserved against.
    key = reservation.budget_key if reservation is not None else plan.program_code
    store.post_journal(
        session,
        f"pay-{row.line_id}",
        f"payment to {row.applicant_credit_code} for application {row.application_id} "
        f"({reference})",
        store.paid(key),
        store.payable(key) if row.payable else store.reserved(key),
        row.amount_fen,
    )
    row.payable = False
    session.add(row)
    if plan.state == PlanState.APPROVED:
        plan.state = PlanState.PAYING
        plan.updated_at = now
        session.add(plan)
    # Keyed by application so every event of one grant stays in order on its partition.
    unit.announce(
        row.application_id,
        events_pb2.PaymentSettled(
            plan_id=plan.plan_id,
            line_id=row.line_id,
            application_id=row.application_id,
            amount_fen=row.amount_fen,
            gateway_reference=reference,
        ),
        key=row.line_id,
    )
    details: dict[str, object] = {
        "plan_id": plan.plan_id,
        "line_id": row.line_id,
        "amount_fen": row.amount_fen,
        "payee_credit_code": row.applicant_credit_code,
        "gateway_reference": reference,
        "attempts": row.attempts,
    }
    if row.account_number:
        details |= {
            "account_version": row.account_version,
            "account_number_tail": row.account_number[-4:],
            "idempotency_key": store.payment_key(row),
        }
    unit.audit(AuditAction.PAYMENT_SETTLED, row.application_id, details=details, key=row.line_id)


def return_line(
    unit: UnitOfWork,
    row: PaymentLineRow,
    reservation: ReservationRow | None,
    status: PaymentStatus,
) -> None:
    """A settled line whose payment came back (退汇): RETURNED with the reason, journal
    return-<line> (paid:K -> returned:K), the award RETURNED until its account is corrected
    (or waiting for a plan at once if the account in force is newer than the one paid),
    PaymentReturned announced, audited. Of an award paid in instalments, the line's instalment
    is RETURNED and no longer counts as paid (paid_fen); the award is RETURNED only if it was
    PAID, and otherwise keeps its state (between instalments, or a later one in a plan)."""
    from services.disbursement.accounts import reaward

    session = unit.session
    now = now_utc()
    key = reservation.budget_key if reservation is not None else plan_program(session, row)
    row.state = PaymentState.RETURNED
    row.returned_at = status.returned_at or now
    row.return_reason = cut(status.return_reason or "returned by the recipient's bank", 500)
    session.add(row)
    store.post_journal(
        session,
        f"return-{row.line_id}",
        cut(f"退汇 {row.application_id} ({status.reference}): {row.return_reason}", MAX_MEMO),
        store.returned(key),
        store.paid(key),
        row.amount_fen,
    )
    payable_again = False
    returned = False
    if reservation is not None and reservation.scheduled:
        # One instalment came back: it waits for the corrected account; the award keeps its
        # state (AWARDED between instalments, IN_PLAN with a later one) unless it was PAID.
        part = store.lock_instalment(session, row.application_id, row.instalment)
        if part is not None and part.state == InstalmentState.PAID:
            returned = True
            part.state = InstalmentState.RETURNED
            part.updated_at = now
            session.add(part)
            reservation.paid_fen -= row.amount_fen
            if reservation.state == ReservationState.PAID:
                reservation.state = ReservationState.RETURNED
    elif reservation is not None and reservation.state == ReservationState.PAID:
        returned = True
        reservation.state = ReservationState.RETURNED
    if reservation is not None and returned:
        reservation.returns += 1
        reservation.updated_at = now
        session.add(reservation)
        current = store.account_in_force(session, row.application_id)
        if current is not None and current.version > row.account_version:
            payable_again = True
            reaward(unit, reservation, f"account version {current.version} in force already")
    unit.announce(
        row.application_id,
        events_pb2.PaymentReturned(
            plan_id=row.plan_id,
            line_id=row.line_id,
            application_id=row.application_id,
            amount_fen=row.amount_fen,
            gateway_reference=status.reference,
            reason=row.return_reason,
            returned_at=to_timestamp(row.returned_at),
        ),
        key=f"{row.line_id}-returned",
    )
    unit.audit(
        AuditAction.PAYMENT_RETURNED,
        row.application_id,
        reason=row.return_reason,
        details={
            "plan_id": row.plan_id,
            "line_id": row.line_id,
            "amount_fen": row.amount_fen,
            "gateway_reference": status.reference,
            "idempotency_key": store.payment_key(row),
            "account_version": row.account_version,
            "payable_again": payable_again,
        },
        key=f"{row.line_id}-returned",
    )
