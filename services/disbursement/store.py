"""The disbursement database: budgets, reservations, funding plans, payment lines and the ledger.

Money lives in a double-entry ledger. Every movement is one journal whose debits equal its
credits, with a journal id derived from the business event, and UNIQUE(journal_id, account)
makes posting the same event twice impossible. Accounts per program P:
  appropriation:P          what the budget authority granted (credit balance)
  budget:P:available       budget not yet promised to anyone (debit balance)
  budget:P:reserved        promised to an award, not yet paid
  paid:P                   paid out
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, UniqueConstraint, func
from sqlmodel import Field, Session, SQLModel, col, select

from services.common.db import now_utc
from services.common.vocabulary import HOLDING_RESERVATION_STATES, ReservationState

MONEY = BigInteger()
# SQLite only auto-increments an INTEGER primary key; PostgreSQL gets a 64-bit one.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")
TIME = DateTime(timezone=True)


def appropriation(program: str) -> str:
    return f"appropriation:{program}"


def available(program: str) -> str:
    return f"budget:{program}:available"


def reserved(program: str) -> str:
    return f"budget:{program}:reserved"


def paid(program: str) -> str:
    return f"paid:{program}"


class ProgramBudgetRow(SQLModel, table=True):
    __tablename__ = "program_budget"

    program_code: str = Field(primary_key=True, max_length=128)
    total_fen: int = Field(sa_type=MONEY)
    # Counts the changes of the total; names the journal of each change.
    revision: int = 0
    created_at: datetime = Field(sa_type=TIME)
    updated_at: datetime = Field(sa_type=TIME)


class ReservationRow(SQLModel, table=True):
    __tablename__ = "reservation"

    application_id: str = Field(primary_key=True, max_length=128)
    program_code: str = Field(max_length=128, index=True)
    amount_fen: int = Field(sa_type=MONEY)
    state: str = Field(max_length=20)  # a ReservationState
    plan_id: str | None = Field(default=None, max_length=32, index=True)
    applicant_credit_code: str = Field(max_length=32)
    applicant_name: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=TIME)
    updated_at: datetime = Field(sa_type=TIME)


class FundingPlanRow(SQLModel, table=True):
    __tablename__ = "funding_plan"

    plan_id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(max_length=128, unique=True)
    request_fingerprint: str = Field(max_length=64)
    program_code: str = Field(max_length=128, index=True)
    title: str = Field(max_length=200)
    state: str = Field(max_length=30)  # a PlanState
    created_by: str = Field(max_length=200)
    approved_by: str = Field(default="", max_length=200)
    total_fen: int = Field(sa_type=MONEY)
    created_at: datetime = Field(sa_type=TIME)
    approved_at: datetime | None = Field(default=None, sa_type=TIME)
    completed_at: datetime | None = Field(default=None, sa_type=TIME)
    updated_at: datetime = Field(sa_type=TIME)


class PaymentLineRow(SQLModel, table=True):
    __tablename__ = "payment_line"

    line_id: str = Field(primary_key=True, max_length=32)
    plan_id: str = Field(max_length=32, index=True, foreign_key="funding_plan.plan_id")
    application_id: str = Field(max_length=128, index=True)
    applicant_credit_code: str = Field(max_length=32)
    applicant_name: str = Field(max_length=200)
    amount_fen: int = Field(sa_type=MONEY)
    state: str = Field(max_length=20)  # a PaymentState
    gateway_reference: str = Field(default="", max_length=128)
    failure_reason: str = Field(default="", max_length=500)
    attempts: int = 0
    paid_at: datetime | None = Field(default=None, sa_type=TIME)


class LedgerEntryRow(SQLModel, table=True):
    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("journal_id", "account", name="uq_ledger_journal_account"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=ROW_ID)
    journal_id: str = Field(max_length=200, index=True)
    account: str = Field(max_length=200, index=True)
    debit_fen: int = Field(default=0, sa_type=MONEY)
    credit_fen: int = Field(default=0, sa_type=MONEY)
    memo: str = Field(default="", max_length=500)
    posted_at: datetime = Field(sa_type=TIME)


def post_journal(
    session: Session,
    journal_id: str,
    memo: str,
    debit_account: str,
    credit_account: str,
    amount_fen: int,
) -> None:
    """Posts one balanced journal moving amount_fen from credit_account to debit_account."""
    if amount_fen <= 0:
        raise ValueError(f"journal {journal_id} must move a positive amount, not {amount_fen}")
    if debit_account == credit_account:
        raise ValueError(f"journal {journal_id} debits and credits the same account")
    stamp = now_utc()
    session.add(
        LedgerEntryRow(
            journal_id=journal_id,
            account=debit_account,
            debit_fen=amount_fen,
            credit_fen=0,
            memo=memo,
            posted_at=stamp,
        )
    )
    session.add(
        LedgerEntryRow(
            journal_id=journal_id,
            account=credit_account,
            debit_fen=0,
            credit_fen=amount_fen,
            memo=memo,
            posted_at=stamp,
        )
    )


@dataclass(frozen=True)
class BudgetFigures:
    program_code: str
    total_fen: int
    reserved_fen: int
    paid_fen: int

    @property
    def available_fen(self) -> int:
        return self.total_fen - self.reserved_fen - self.paid_fen


def budget_figures(session: Session, budget: ProgramBudgetRow) -> BudgetFigures:
    rows = session.exec(
        select(ReservationRow.state, func.coalesce(func.sum(ReservationRow.amount_fen), 0))
        .where(col(ReservationRow.program_code) == budget.program_code)
        .where(col(ReservationRow.state).in_([*HOLDING_RESERVATION_STATES, ReservationState.PAID]))
        .group_by(col(ReservationRow.state))
    ).all()
    sums = {state: int(total) for state, total in rows}
    return BudgetFigures(
        program_code=budget.program_code,
        total_fen=budget.total_fen,
        reserved_fen=sum(sums.get(state, 0) for state in HOLDING_RESERVATION_STATES),
        paid_fen=sums.get(ReservationState.PAID, 0),
    )


def lock_budget(session: Session, program_code: str) -> ProgramBudgetRow | None:
    """The program's budget row, locked until commit so budget checks and changes serialise.

    PostgreSQL takes a row lock (SELECT ... FOR UPDATE); SQLite needs none because every
    transaction already holds the database write lock from its start (BEGIN IMMEDIATE, db.py).
    """
    return session.exec(
        select(ProgramBudgetRow)
        .where(col(ProgramBudgetRow.program_code) == program_code)
        .with_for_update()
    ).first()


def lock_reservation(session: Session, application_id: str) -> ReservationRow | None:
    return session.exec(
        select(ReservationRow)
        .where(col(ReservationRow.application_id) == application_id)
        .with_for_update()
    ).first()


def lock_plan(session: Session, plan_id: str) -> FundingPlanRow | None:
    return session.exec(
        select(FundingPlanRow).where(col(FundingPlanRow.plan_id) == plan_id).with_for_update()
    ).first()


def lock_line(session: Session, line_id: str) -> PaymentLineRow | None:
    return session.exec(
        select(PaymentLineRow).where(col(PaymentLineRow.line_id) == line_id).with_for_update()
    ).first()


def plan_lines(session: Session, plan_id: str) -> list[PaymentLineRow]:
    return list(
        session.exec(
            select(PaymentLineRow)
            .where(col(PaymentLineRow.plan_id) == plan_id)
            .order_by(col(PaymentLineRow.application_id))
        ).all()
    )


def award_attempted(session: Session, application_id: str) -> bool:
    """Whether any payment line of the award, in any plan, ever called the payment gateway."""
    return (
        session.exec(
            select(PaymentLineRow.line_id)
            .where(col(PaymentLineRow.application_id) == application_id)
            .where(col(PaymentLineRow.attempts) > 0)
            .limit(1)
        ).first()
        is not None
    )


def plan_by_request(session: Session, request_id: str) -> FundingPlanRow | None:
    return session.exec(
        select(FundingPlanRow).where(col(FundingPlanRow.request_id) == request_id)
    ).first()


def awards_waiting_for_a_plan(session: Session, program_code: str) -> list[ReservationRow]:
    """The program's noticed awards that no plan holds, locked, in application order."""
    return list(
        session.exec(
            select(ReservationRow)
            .where(col(ReservationRow.program_code) == program_code)
            .where(col(ReservationRow.state) == ReservationState.AWARDED)
            .where(col(ReservationRow.plan_id).is_(None))
            .order_by(col(ReservationRow.application_id))
            .with_for_update()
        ).all()
    )


def plans(session: Session, program_code: str = "") -> list[FundingPlanRow]:
    """Funding plans, newest first; of one program when program_code is given."""
    query = select(FundingPlanRow).order_by(
        col(FundingPlanRow.created_at).desc(), col(FundingPlanRow.plan_id)
    )
    if program_code:
        query = query.where(col(FundingPlanRow.program_code) == program_code)
    return list(session.exec(query).all())


def ledger_entries(
    session: Session, account_prefix: str = "", journal_id: str = ""
) -> list[LedgerEntryRow]:
    query = select(LedgerEntryRow).order_by(col(LedgerEntryRow.id))
    if account_prefix:
        query = query.where(col(LedgerEntryRow.account).startswith(account_prefix, autoescape=True))
    if journal_id:
        query = query.where(col(LedgerEntryRow.journal_id) == journal_id)
    return list(session.exec(query).all())


def lines_of_application(session: Session, application_id: str) -> list[PaymentLineRow]:
    return list(
        session.exec(
            select(PaymentLineRow)
            .where(col(PaymentLineRow.application_id) == application_id)
            .order_by(col(PaymentLineRow.line_id))
        ).all()
    )


def plans_by_id(session: Session, plan_ids: set[str]) -> list[FundingPlanRow]:
    """The plans named, oldest first."""
    if not plan_ids:
        return []
    return list(
        session.exec(
            select(FundingPlanRow)
            .where(col(FundingPlanRow.plan_id).in_(sorted(plan_ids)))
            .order_by(col(FundingPlanRow.created_at), col(FundingPlanRow.plan_id))
        ).all()
    )


def payment_lines(
    session: Session, state: str | None, limit: int, program_code: str = ""
) -> list[PaymentLineRow]:
    """Payment lines (of one PaymentState, of one program's plans, when given), newest plan
    first, at most `limit`."""
    query = select(PaymentLineRow).join(
        FundingPlanRow, col(FundingPlanRow.plan_id) == col(PaymentLineRow.plan_id)
    )
    if state is not None:
        query = query.where(col(PaymentLineRow.state) == state)
    if program_code:
        query = query.where(col(FundingPlanRow.program_code) == program_code)
    query = query.order_by(col(FundingPlanRow.created_at).desc(), col(PaymentLineRow.line_id))
    return list(session.exec(query.limit(limit)).all())
