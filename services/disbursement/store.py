"""The disbursement database: funds, support plans and their yearly budget lines, program
budgets, reservations and batch allocations, funding plans, payment lines and the ledger.

Money lives in a double-entry ledger. Every movement is one journal whose debits equal its
credits, with a journal id derived from the business event, and UNIQUE(journal_id, account)
makes posting the same event twice impossible. Accounts per budget K, where K is a program code
P for a program with its own budget, or L:Y for budget line L in fiscal year Y (program codes
hold no ':', so the two never meet):
  appropriation:K          what the budget authority granted (credit balance)
  budget:K:available       budget not yet promised to anyone (debit balance)
  budget:K:reserved        promised to an award, not yet paid
  paid:K                   paid out
  payable:K                owed by approved funding plans' lines, not yet paid (应付)
  paid:K                   paid out
  returned:K               paid, then sent back by the recipient's bank (退汇), owed again
  clawback_receivable:K    what clawbacks (追回) of paid awards claim back, not yet repaid
  recovered:K              what enterprises repaid of clawbacks (returned to the treasury)
An award's money moves reserved -> payable when its plan is approved (journal
payable-<line>-<n>; back by unpayable-<line>-<n> when the line fails, and payable again when a
repair retries it), payable -> paid when it is paid (pay-<line>; a line approved before payable
existed, payable False, is paid from reserved as it always was), paid -> returned when the
payment comes back (return-<line>), and returned -> reserved when the recipient's account is
corrected (reaward-<application>-<k>), so a later plan pays it again like any award.
A clawback moves its amount from paid:K to clawback_receivable:K (journal clawback-<id>), each
repayment from the receivable to recovered:K (journal repay-<repayment id>), so every budget's
accounts still balance and paid:K nets to what the enterprises keep.
An award paid in instalments (TECH-MAJOR) is reserved whole; each instalment's payment line moves
its part from reserved to paid (journal pay-<line>), and the reservation counts what it has paid
(paid_fen) until the last instalment makes it PAID. Its schedule is the instalment table.
A reservation remembers the budget it was made against (its line and year, or none), so its
release and payment move money in the same accounts whatever the catalogue says later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, Text, UniqueConstraint, and_, func, or_
from sqlmodel import Field, Session, SQLModel, col, select

from services.common.db import now_utc
from services.common.vocabulary import (
    HOLDING_RESERVATION_STATES,
    AllocationState,
    InstalmentState,
    PaymentState,
    ReservationState,
)

MONEY = BigInteger()
# SQLite only auto-increments an INTEGER primary key; PostgreSQL gets a 64-bit one.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")
TIME = DateTime(timezone=True)


def line_key(line_code: str, fiscal_year: int) -> str:
    """The ledger's name of a budget line's year (the K of the module docstring)."""
    return f"{line_code}:{fiscal_year}"


def appropriation(program: str) -> str:
    return f"appropriation:{program}"


def available(program: str) -> str:
    return f"budget:{program}:available"


def reserved(program: str) -> str:
    return f"budget:{program}:reserved"


def paid(program: str) -> str:
    return f"paid:{program}"


def payable(program: str) -> str:
    return f"payable:{program}"


def returned(program: str) -> str:
    return f"returned:{program}"


def clawback_receivable(program: str) -> str:
    return f"clawback_receivable:{program}"


def recovered(program: str) -> str:
    return f"recovered:{program}"


# What an account holds (account_kind): the forms of the module docstring.
APPROPRIATION, AVAILABLE, RESERVED, PAID = "appropriation", "available", "reserved", "paid"
CLAWBACK_RECEIVABLE, RECOVERED = "clawback_receivable", "recovered"
PAYABLE, RETURNED = "payable", "returned"


def account_kind(account: str) -> tuple[str, str]:
    """The kind of an account and its budget key K: "budget:L:2025:reserved" -> ("reserved",
    "L:2025"); ("", "") for a name of none of the forms."""
    head, _, rest = account.partition(":")
    if head in (APPROPRIATION, PAID, CLAWBACK_RECEIVABLE, RECOVERED, PAYABLE, RETURNED) and rest:
        return head, rest
    if head == "budget":
        key, _, tail = rest.rpartition(":")
        if key and tail in (AVAILABLE, RESERVED):
            return tail, key
    return "", ""


def split_budget_key(key: str) -> tuple[str, str, int]:
    """A budget key as (program code, budget line code, fiscal year): "P" -> ("P", "", 0),
    "L:2025" -> ("", "L", 2025)."""
    line_code, _, year = key.partition(":")
    if not year:
        return key, "", 0
    return "", line_code, int(year) if year.isdigit() else 0


class ProgramBudgetRow(SQLModel, table=True):
    __tablename__ = "program_budget"

    program_code: str = Field(primary_key=True, max_length=128)
    total_fen: int = Field(sa_type=MONEY)
    # Counts the changes of the total; names the journal of each change.
    revision: int = 0
    created_at: datetime = Field(sa_type=TIME)
    updated_at: datetime = Field(sa_type=TIME)


class FundRow(SQLModel, table=True):
    __tablename__ = "fund"

    fund_code: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=TIME)
    updated_at: datetime = Field(sa_type=TIME)


class SupportPlanRow(SQLModel, table=True):
    __tablename__ = "support_plan"

    support_plan_code: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    fund_code: str = Field(max_length=64, foreign_key="fund.fund_code", index=True)
    department: str = Field(max_length=32)  # a Department
    created_at: datetime = Field(sa_type=TIME)
    updated_at: datetime = Field(sa_type=TIME)


class BudgetLineRow(SQLModel, table=True):
    __tablename__ = "budget_line"

    line_code: str = Field(primary_key=True, max_length=64)
    fiscal_year: int = Field(primary_key=True)
    name: str = Field(max_length=200)
    support_plan_code: str = Field(
        max_length=64, foreign_key="support_plan.support_plan_code", index=True
    )
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
    # The budget line and year it was reserved against; None: the program's own budget.
    budget_line_code: str | None = Field(default=None, max_length=64)
    fiscal_year: int | None = None
    batch_id: str | None = Field(default=None, max_length=128)
    cut_from_fen: int = Field(default=0, sa_type=MONEY)  # before a pro-rata cut; 0: not cut
    # When the award was noticed (ConfirmAward): plans take the oldest first.
    awarded_at: datetime | None = Field(default=None, sa_type=TIME)
    # An award paid in instalments: how many, and what its paid instalments moved so far (0
    # for an award paid at once, whose PAID state says it all).
    instalments: int = 1
    paid_fen: int = Field(default=0, sa_type=MONEY)

    @property
    def scheduled(self) -> bool:
        return self.instalments > 1

    # How many of its payments came back (退汇): the next payment's reissue number.
    returns: int = 0

    @property
    def budget_key(self) -> str:
        """The budget (ledger accounts) the reservation holds money in."""
        if self.budget_line_code and self.fiscal_year:
            return line_key(self.budget_line_code, self.fiscal_year)
        return self.program_code


class AllocationBatchRow(SQLModel, table=True):
    __tablename__ = "allocation_batch"

    batch_id: str = Field(primary_key=True, max_length=128)
    request_fingerprint: str = Field(max_length=64)
    program_code: str = Field(max_length=128, index=True)
    budget_line_code: str = Field(default="", max_length=64)  # "": the program's own budget
    fiscal_year: int
    policy: str = Field(max_length=20)  # an OverBudgetPolicy, as applied
    available_before_fen: int = Field(sa_type=MONEY)
    cut: bool = False
    created_at: datetime = Field(sa_type=TIME)


class BatchAllocationRow(SQLModel, table=True):
    __tablename__ = "batch_allocation"

    batch_id: str = Field(primary_key=True, max_length=128, foreign_key="allocation_batch.batch_id")
    position: int = Field(primary_key=True)
    application_id: str = Field(max_length=128, index=True)
    state: str = Field(max_length=20)  # an AllocationState
    amount_fen: int = Field(sa_type=MONEY)
    requested_fen: int = Field(sa_type=MONEY)


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
    # 2 when the total exceeded the second-approval level as the plan was made: the first
    # approval (first_approved_*) leaves it AWAITING_SECOND_APPROVAL, the second (approved_*)
    # approves it.
    approvals_required: int = 1
    first_approved_by: str = Field(default="", max_length=200)
    first_approved_at: datetime | None = Field(default=None, sa_type=TIME)
    cancelled_by: str = Field(default="", max_length=200)
    cancelled_at: datetime | None = Field(default=None, sa_type=TIME)
    cancel_reason: str = Field(default="", max_length=500)
    # The budget line its awards are of ("": one program's own budget). program_code is the
    # plan's program when it holds one program's awards, "" when several (the lines say which).
    budget_line_code: str = Field(default="", max_length=64)


class FundingPlanEditRow(SQLModel, table=True):
    """One edit of a draft plan (awards added and removed), kept for its request id (a retry
    finds it) and as the plan's history."""

    __tablename__ = "funding_plan_edit"

    edit_id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(max_length=128, unique=True)
    request_fingerprint: str = Field(max_length=64)
    plan_id: str = Field(max_length=32, index=True, foreign_key="funding_plan.plan_id")
    added: str = Field(sa_type=Text())  # JSON list of application ids
    removed: str = Field(sa_type=Text())
    reason: str = Field(default="", max_length=500)
    edited_by: str = Field(max_length=200)
    edited_at: datetime = Field(sa_type=TIME)
    total_before_fen: int = Field(sa_type=MONEY)
    total_after_fen: int = Field(sa_type=MONEY)
    approvals_required: int


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
    program_code: str = Field(default="", max_length=128, index=True)  # the award's program
    instalment: int = 1  # which instalment of its award it pays (1: the whole of a single one)
    # The receiving account it pays (a copy, taken at its first attempt: retries go where the
    # first attempt went), and which version of the award's account that was (0: none yet).
    account_name: str = Field(default="", max_length=200)
    account_number: str = Field(default="", max_length=40)
    bank_code: str = Field(default="", max_length=12)
    bank_name: str = Field(default="", max_length=200)
    account_version: int = 0
    # 0; k for the k-th payment of the award again after returns (key award-<id>-r<k>).
    reissue: int = 0
    # The gateway's idempotency key of its payment; "" on lines made before it was kept (their
    # key is award_payment_key(application_id): see line_key).
    idempotency_key: str = Field(default="", max_length=128, index=True)
    # Whether its money sits in payable:K (moved there when its plan was approved); lines
    # approved before payable existed have False and are paid from reserved:K.
    payable: bool = False
    ledger_moves: int = 0  # payable/unpayable journals posted: names the next one
    returned_at: datetime | None = Field(default=None, sa_type=TIME)
    return_reason: str = Field(default="", max_length=500)


class InstalmentRow(SQLModel, table=True):
    """One instalment of an award paid in instalments: fixed when the award is confirmed,
    released by its milestone (instalment 1 by the award), then planned and paid like an
    award paid at once."""

    __tablename__ = "instalment"

    application_id: str = Field(primary_key=True, max_length=128)
    number: int = Field(primary_key=True)
    count: int
    amount_fen: int = Field(sa_type=MONEY)
    milestone: str = Field(max_length=20)  # a Milestone
    due_at: datetime = Field(sa_type=TIME)
    state: str = Field(max_length=20)  # an InstalmentState
    plan_id: str | None = Field(default=None, max_length=32, index=True)
    released_at: datetime | None = Field(default=None, sa_type=TIME)
    paid_at: datetime | None = Field(default=None, sa_type=TIME)
    confirmed_by: str = Field(default="", max_length=200)
    note: str = Field(default="", max_length=500)
    created_at: datetime = Field(sa_type=TIME)
    updated_at: datetime = Field(sa_type=TIME)


def instalments_of(session: Session, application_id: str) -> list[InstalmentRow]:
    return list(
        session.exec(
            select(InstalmentRow)
            .where(col(InstalmentRow.application_id) == application_id)
            .order_by(col(InstalmentRow.number))
        ).all()
    )


def lock_instalment(session: Session, application_id: str, number: int) -> InstalmentRow | None:
    return session.exec(
        select(InstalmentRow)
        .where(col(InstalmentRow.application_id) == application_id)
        .where(col(InstalmentRow.number) == number)
        .with_for_update()
    ).first()


def released_instalment(session: Session, application_id: str) -> InstalmentRow | None:
    """The award's first released instalment no plan holds, locked; None while one of its
    instalments came back (退汇) and waits for the corrected account (a payment now would go to
    the account the bank sent the money back from). Two are released at once only when an
    earlier one was paid again after a return: the earlier goes first."""
    if returned_instalments(session, application_id):
        return None
    return session.exec(
        select(InstalmentRow)
        .where(col(InstalmentRow.application_id) == application_id)
        .where(col(InstalmentRow.state) == InstalmentState.RELEASED)
        .where(col(InstalmentRow.plan_id).is_(None))
        .order_by(col(InstalmentRow.number))
        .with_for_update()
    ).first()


def returned_instalments(session: Session, application_id: str) -> list[InstalmentRow]:
    """The award's instalments whose payment came back and wait for the corrected account."""
    return [
        part
        for part in instalments_of(session, application_id)
        if part.state == InstalmentState.RETURNED
    ]


def instalment_returns(session: Session, application_id: str, number: int) -> int:
    """How many payments of the award's instalment `number` came back: its next payment's
    reissue number (award_payment_key)."""
    return len(
        session.exec(
            select(PaymentLineRow.line_id)
            .where(col(PaymentLineRow.application_id) == application_id)
            .where(col(PaymentLineRow.instalment) == number)
            .where(col(PaymentLineRow.state) == PaymentState.RETURNED)
        ).all()
    )


def payment_key(line: PaymentLineRow) -> str:
    """The idempotency key a line pays with (kept on the line; computed for older lines)."""
    from services.disbursement.gateway import award_payment_key

    return line.idempotency_key or award_payment_key(line.application_id, line.instalment)


def lines_by_keys(session: Session, keys: list[str], states: list[str]) -> list[PaymentLineRow]:
    """The lines (in these PaymentStates) paying with these idempotency keys, by line id; older
    lines without a kept key are found by the application their key names."""
    if not keys:
        return []
    from services.disbursement.reconciliation import application_of_key

    wanted = set(keys)
    older = {application_of_key(key) for key in keys} - {""}
    query = (
        select(PaymentLineRow)
        .where(col(PaymentLineRow.state).in_(states))
        .where(
            or_(
                col(PaymentLineRow.idempotency_key).in_(sorted(wanted)),
                and_(
                    col(PaymentLineRow.idempotency_key) == "",
                    col(PaymentLineRow.application_id).in_(sorted(older)),
                ),
            )
        )
        .order_by(col(PaymentLineRow.line_id))
    )
    return [line for line in session.exec(query).all() if payment_key(line) in wanted]


class ReceivingAccountRow(SQLModel, table=True):
    """A version of an award's receiving account (收款账户): at most one CONFIRMED (in force)
    and one PROPOSED (a change waiting for a second finance approval) per application."""

    __tablename__ = "receiving_account"

    application_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    state: str = Field(max_length=20, index=True)  # an AccountState
    account_name: str = Field(max_length=200)
    account_number: str = Field(max_length=40)
    bank_code: str = Field(max_length=12)
    bank_name: str = Field(max_length=200)
    request_id: str = Field(max_length=128, unique=True)
    request_fingerprint: str = Field(max_length=64)
    given_by: str = Field(max_length=200)
    given_by_role: str = Field(max_length=20)
    given_at: datetime = Field(sa_type=TIME)
    approved_by: str = Field(default="", max_length=200)
    approved_at: datetime | None = Field(default=None, sa_type=TIME)
    reason: str = Field(default="", max_length=500)


def receiving_accounts(
    session: Session, application_id: str, *, lock: bool = False
) -> list[ReceivingAccountRow]:
    """Every version of the award's receiving account, oldest first (locked when asked)."""
    query = (
        select(ReceivingAccountRow)
        .where(col(ReceivingAccountRow.application_id) == application_id)
        .order_by(col(ReceivingAccountRow.version))
    )
    if lock:
        query = query.with_for_update()
    return list(session.exec(query).all())


def account_in_force(session: Session, application_id: str) -> ReceivingAccountRow | None:
    from services.common.vocabulary import AccountState

    return session.exec(
        select(ReceivingAccountRow)
        .where(col(ReceivingAccountRow.application_id) == application_id)
        .where(col(ReceivingAccountRow.state) == AccountState.CONFIRMED)
    ).first()


def pending_account_changes(
    session: Session, program_code: str, limit: int
) -> list[tuple[ReservationRow, ReceivingAccountRow, ReceivingAccountRow | None]]:
    """The changes waiting for approval, oldest proposal first, each with its award and the
    account in force (one query for the proposals, one for the accounts they would replace)."""
    from services.common.vocabulary import AccountState

    query = (
        select(ReceivingAccountRow, ReservationRow)
        .join(
            ReservationRow,
            col(ReservationRow.application_id) == col(ReceivingAccountRow.application_id),
        )
        .where(col(ReceivingAccountRow.state) == AccountState.PROPOSED)
        .order_by(col(ReceivingAccountRow.given_at), col(ReceivingAccountRow.application_id))
        .limit(limit)
    )
    if program_code:
        query = query.where(col(ReservationRow.program_code) == program_code)
    proposals = list(session.exec(query).all())
    ids = [row.application_id for row, _ in proposals]
    in_force = {
        row.application_id: row
        for row in session.exec(
            select(ReceivingAccountRow)
            .where(col(ReceivingAccountRow.application_id).in_(ids))
            .where(col(ReceivingAccountRow.state) == AccountState.CONFIRMED)
        ).all()
    }
    return [
        (reservation, proposed, in_force.get(proposed.application_id))
        for proposed, reservation in proposals
    ]


def account_by_request(session: Session, request_id: str) -> ReceivingAccountRow | None:
    return session.exec(
        select(ReceivingAccountRow).where(col(ReceivingAccountRow.request_id) == request_id)
    ).first()


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


class ClawbackRow(SQLModel, table=True):
    """A clawback (追回) of a paid award: the amount claimed back, what was repaid, and the
    credit penalty (bar_until) it imposes."""

    __tablename__ = "clawback"

    clawback_id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(max_length=128, unique=True)
    request_fingerprint: str = Field(max_length=64)
    application_id: str = Field(max_length=128, index=True)
    program_code: str = Field(max_length=128)
    budget_key: str = Field(max_length=200)  # the ledger's K: where the award's money was
    applicant_credit_code: str = Field(max_length=32, index=True)
    applicant_name: str = Field(max_length=200)
    amount_fen: int = Field(sa_type=MONEY)
    repaid_fen: int = Field(default=0, sa_type=MONEY)
    reason: str = Field(max_length=500)
    state: str = Field(max_length=20)  # a ClawbackState
    opened_by: str = Field(max_length=200)
    opened_at: datetime = Field(sa_type=TIME)
    settled_at: datetime | None = Field(default=None, sa_type=TIME)
    bar_years: int
    bar_until: datetime = Field(sa_type=TIME)
    updated_at: datetime = Field(sa_type=TIME)

    @property
    def outstanding_fen(self) -> int:
        return self.amount_fen - self.repaid_fen


class ClawbackRepaymentRow(SQLModel, table=True):
    __tablename__ = "clawback_repayment"

    repayment_id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(max_length=128, unique=True)
    clawback_id: str = Field(max_length=32, foreign_key="clawback.clawback_id", index=True)
    amount_fen: int = Field(sa_type=MONEY)
    recorded_by: str = Field(max_length=200)
    recorded_at: datetime = Field(sa_type=TIME)


def lock_clawback(session: Session, clawback_id: str) -> ClawbackRow | None:
    return session.exec(
        select(ClawbackRow).where(col(ClawbackRow.clawback_id) == clawback_id).with_for_update()
    ).first()


def clawback_by_request(session: Session, request_id: str) -> ClawbackRow | None:
    return session.exec(
        select(ClawbackRow).where(col(ClawbackRow.request_id) == request_id)
    ).first()


def repayment_by_request(session: Session, request_id: str) -> ClawbackRepaymentRow | None:
    return session.exec(
        select(ClawbackRepaymentRow).where(col(ClawbackRepaymentRow.request_id) == request_id)
    ).first()


def repayments(session: Session, clawback_ids: list[str]) -> list[ClawbackRepaymentRow]:
    """The repayments of these clawbacks, oldest first."""
    if not clawback_ids:
        return []
    return list(
        session.exec(
            select(ClawbackRepaymentRow)
            .where(col(ClawbackRepaymentRow.clawback_id).in_(clawback_ids))
            .order_by(col(ClawbackRepaymentRow.recorded_at), col(ClawbackRepaymentRow.repayment_id))
        ).all()
    )


def clawbacks(
    session: Session, application_id: str = "", state: str | None = None, limit: int = 0
) -> list[ClawbackRow]:
    """Clawbacks newest first, of one application and one ClawbackState when given."""
    query = select(ClawbackRow).order_by(
        col(ClawbackRow.opened_at).desc(), col(ClawbackRow.clawback_id)
    )
    if application_id:
        query = query.where(col(ClawbackRow.application_id) == application_id)
    if state is not None:
        query = query.where(col(ClawbackRow.state) == state)
    if limit:
        query = query.limit(limit)
    return list(session.exec(query).all())


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
    """A program's budget: its own, or its part of its budget line's year (then total is what
    it reserved and paid plus what the line still has)."""

    program_code: str
    total_fen: int
    reserved_fen: int
    paid_fen: int
    budget_line_code: str = ""
    fiscal_year: int = 0
    line_total_fen: int = 0
    waitlisted_fen: int = 0
    waitlisted_count: int = 0

    @property
    def available_fen(self) -> int:
        return self.total_fen - self.reserved_fen - self.paid_fen


def budget_figures(session: Session, budget: ProgramBudgetRow) -> BudgetFigures:
    rows = session.exec(
        select(
            ReservationRow.state,
            func.coalesce(func.sum(ReservationRow.amount_fen), 0),
            func.coalesce(func.sum(ReservationRow.paid_fen), 0),
        )
        .where(col(ReservationRow.program_code) == budget.program_code)
        .where(col(ReservationRow.budget_line_code).is_(None))
        .where(col(ReservationRow.state).in_([*HOLDING_RESERVATION_STATES, ReservationState.PAID]))
        .group_by(col(ReservationRow.state))
    ).all()
    reserved_fen = paid_fen = 0
    for state, total, part_paid in rows:
        held, paid_out = _held_and_paid(state, int(total), int(part_paid))
        reserved_fen += held
        paid_fen += paid_out
    return BudgetFigures(
        program_code=budget.program_code,
        total_fen=budget.total_fen,
        reserved_fen=reserved_fen,
        paid_fen=paid_fen,
    )


def _held_and_paid(state: str, amount_fen: int, part_paid_fen: int) -> tuple[int, int]:
    """What reservations of one state hold and have paid: a PAID one its whole amount paid; a
    holding one its amount less what its paid instalments moved (an award paid in part)."""
    if state == ReservationState.PAID:
        return 0, amount_fen
    return amount_fen - part_paid_fen, part_paid_fen


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


@dataclass(frozen=True)
class LineFigures:
    """A budget line's year and what its reservations hold, in total and per program."""

    line: BudgetLineRow
    reserved_fen: int  # held, not yet paid (includes committed_fen)
    committed_fen: int  # of reserved_fen: noticed awards (awarded or in a plan)
    paid_fen: int
    programs: dict[str, tuple[int, int]]  # program -> (reserved, paid)

    @property
    def available_fen(self) -> int:
        return self.line.total_fen - self.reserved_fen - self.paid_fen


def line_figures(session: Session, line: BudgetLineRow) -> LineFigures:
    rows = session.exec(
        select(
            ReservationRow.program_code,
            ReservationRow.state,
            func.coalesce(func.sum(ReservationRow.amount_fen), 0),
            func.coalesce(func.sum(ReservationRow.paid_fen), 0),
        )
        .where(col(ReservationRow.budget_line_code) == line.line_code)
        .where(col(ReservationRow.fiscal_year) == line.fiscal_year)
        .where(col(ReservationRow.state).in_([*HOLDING_RESERVATION_STATES, ReservationState.PAID]))
        .group_by(col(ReservationRow.program_code), col(ReservationRow.state))
    ).all()
    programs: dict[str, tuple[int, int]] = {}
    reserved_fen = committed_fen = paid_fen = 0
    for program, state, total, part_paid in rows:
        holding, paying = _held_and_paid(state, int(total), int(part_paid))
        held, paid_out = programs.get(program, (0, 0))
        paid_fen += paying
        reserved_fen += holding
        if state not in (ReservationState.PAID, ReservationState.RESERVED):
            committed_fen += holding
        programs[program] = (held + holding, paid_out + paying)
    return LineFigures(line, reserved_fen, committed_fen, paid_fen, dict(sorted(programs.items())))


def lock_budget_line(session: Session, line_code: str, fiscal_year: int) -> BudgetLineRow | None:
    """A budget line's year, locked until commit (as lock_budget: every reservation against the
    line, of whichever program, serialises on it)."""
    return session.exec(
        select(BudgetLineRow)
        .where(col(BudgetLineRow.line_code) == line_code)
        .where(col(BudgetLineRow.fiscal_year) == fiscal_year)
        .with_for_update()
    ).first()


def lock_budget_lines(session: Session, line_code: str) -> list[BudgetLineRow]:
    """Every year of a budget line, locked in year order."""
    return list(
        session.exec(
            select(BudgetLineRow)
            .where(col(BudgetLineRow.line_code) == line_code)
            .order_by(col(BudgetLineRow.fiscal_year))
            .with_for_update()
        ).all()
    )


def budget_lines(
    session: Session, fiscal_year: int = 0, fund_code: str = ""
) -> list[BudgetLineRow]:
    """Budget lines (of one year, of one fund's support plans), by fund, plan, line and year."""
    query = (
        select(BudgetLineRow)
        .join(
            SupportPlanRow,
            col(SupportPlanRow.support_plan_code) == col(BudgetLineRow.support_plan_code),
        )
        .order_by(
            col(SupportPlanRow.fund_code),
            col(SupportPlanRow.support_plan_code),
            col(BudgetLineRow.line_code),
            col(BudgetLineRow.fiscal_year),
        )
    )
    if fiscal_year:
        query = query.where(col(BudgetLineRow.fiscal_year) == fiscal_year)
    if fund_code:
        query = query.where(col(SupportPlanRow.fund_code) == fund_code)
    return list(session.exec(query).all())


def any_year_of_line(session: Session, line_code: str) -> BudgetLineRow | None:
    return session.exec(
        select(BudgetLineRow).where(col(BudgetLineRow.line_code) == line_code).limit(1)
    ).first()


def batch_allocations(session: Session, batch_id: str) -> list[BatchAllocationRow]:
    return list(
        session.exec(
            select(BatchAllocationRow)
            .where(col(BatchAllocationRow.batch_id) == batch_id)
            .order_by(col(BatchAllocationRow.position))
        ).all()
    )


def waitlisted(session: Session, program_code: str) -> dict[str, int]:
    """The program's awards whose last batch waitlisted them and that hold no reservation since:
    application -> requested fen."""
    rows = session.exec(
        select(BatchAllocationRow.application_id, BatchAllocationRow.requested_fen)
        .join(
            AllocationBatchRow,
            col(AllocationBatchRow.batch_id) == col(BatchAllocationRow.batch_id),
        )
        .where(col(AllocationBatchRow.program_code) == program_code)
        .where(col(BatchAllocationRow.state) == AllocationState.WAITLISTED)
        .where(col(BatchAllocationRow.application_id).not_in(select(ReservationRow.application_id)))
        .order_by(col(AllocationBatchRow.created_at), col(BatchAllocationRow.position))
    ).all()
    return {application_id: int(requested) for application_id, requested in rows}


def lock_reservation(session: Session, application_id: str) -> ReservationRow | None:
    return session.exec(
        select(ReservationRow)
        .where(col(ReservationRow.application_id) == application_id)
        .with_for_update()
    ).first()


def lock_reservations(session: Session, application_ids: list[str]) -> list[ReservationRow]:
    """The reservations of these applications that exist, locked in application order."""
    if not application_ids:
        return []
    return list(
        session.exec(
            select(ReservationRow)
            .where(col(ReservationRow.application_id).in_(sorted(application_ids)))
            .order_by(col(ReservationRow.application_id))
            .with_for_update()
        ).all()
    )


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


def awards_waiting_for_a_plan(
    session: Session,
    program_codes: list[str],
    line_code: str,
    *,
    fiscal_year: int = 0,
    awarded_before: datetime | None = None,
    limit: int = 0,
) -> list[tuple[ReservationRow, InstalmentRow | None]]:
    """The noticed awards no plan holds, locked: of these programs (empty: any) reserved against
    the budget line (its year when given; line "": a program's own budget), noticed before
    `awarded_before` when given; oldest award first, at most `limit` (0: all). An award paid in
    instalments waits by its released instalment, which comes with it (None for the others)."""
    released = (
        select(InstalmentRow.application_id)
        .where(col(InstalmentRow.state) == InstalmentState.RELEASED)
        .where(col(InstalmentRow.plan_id).is_(None))
    )
    # An award one of whose instalments came back waits for its corrected account.
    returned = select(InstalmentRow.application_id).where(
        col(InstalmentRow.state) == InstalmentState.RETURNED
    )
    query = (
        select(ReservationRow)
        .where(col(ReservationRow.state) == ReservationState.AWARDED)
        .where(col(ReservationRow.plan_id).is_(None))
        .where(
            or_(
                col(ReservationRow.instalments) <= 1,
                and_(
                    col(ReservationRow.application_id).in_(released),
                    col(ReservationRow.application_id).not_in(returned),
                ),
            )
        )
    )
    if program_codes:
        query = query.where(col(ReservationRow.program_code).in_(sorted(program_codes)))
    if line_code:
        query = query.where(col(ReservationRow.budget_line_code) == line_code)
        if fiscal_year:
            query = query.where(col(ReservationRow.fiscal_year) == fiscal_year)
    else:
        query = query.where(col(ReservationRow.budget_line_code).is_(None))
    if awarded_before is not None:
        query = query.where(col(ReservationRow.awarded_at) < awarded_before)
    query = query.order_by(col(ReservationRow.awarded_at), col(ReservationRow.application_id))
    if limit:
        query = query.limit(limit)
    awards = list(session.exec(query.with_for_update()).all())
    return [
        (award, released_instalment(session, award.application_id) if award.scheduled else None)
        for award in awards
    ]


def reservations_of(session: Session, application_ids: list[str]) -> list[ReservationRow]:
    """The reservations of these applications that exist (not locked), in application order."""
    if not application_ids:
        return []
    return list(
        session.exec(
            select(ReservationRow)
            .where(col(ReservationRow.application_id).in_(sorted(set(application_ids))))
            .order_by(col(ReservationRow.application_id))
        ).all()
    )


def plan_edit_by_request(session: Session, request_id: str) -> FundingPlanEditRow | None:
    return session.exec(
        select(FundingPlanEditRow).where(col(FundingPlanEditRow.request_id) == request_id)
    ).first()


def program_totals(session: Session, plan_ids: list[str]) -> dict[str, list[tuple[str, int, int]]]:
    """Each plan's (program, line count, amount) by program code (one query)."""
    if not plan_ids:
        return {}
    rows = session.exec(
        select(
            col(PaymentLineRow.plan_id),
            col(PaymentLineRow.program_code),
            func.count(),
            func.coalesce(func.sum(PaymentLineRow.amount_fen), 0),
        )
        .where(col(PaymentLineRow.plan_id).in_(plan_ids))
        .group_by(col(PaymentLineRow.plan_id), col(PaymentLineRow.program_code))
        .order_by(col(PaymentLineRow.plan_id), col(PaymentLineRow.program_code))
    ).all()
    totals: dict[str, list[tuple[str, int, int]]] = {}
    for plan_id, program, count, amount in rows:
        totals.setdefault(plan_id, []).append((program, int(count), int(amount)))
    return totals


def plans(
    session: Session,
    program_code: str = "",
    *,
    limit: int = 0,
    after: tuple[datetime, str] | None = None,
) -> list[FundingPlanRow]:
    """Funding plans, newest first; of one program when program_code is given; at most `limit`
    (0: all) after the plan `after` (its created_at and plan_id) in that order."""
    query = select(FundingPlanRow).order_by(
        col(FundingPlanRow.created_at).desc(), col(FundingPlanRow.plan_id)
    )
    if program_code:
        # A plan of several programs names none itself: its lines say which it holds.
        query = query.where(
            col(FundingPlanRow.plan_id).in_(
                select(PaymentLineRow.plan_id).where(
                    col(PaymentLineRow.program_code) == program_code
                )
            )
        )
    if after is not None:
        created_at, plan_id = after
        query = query.where(
            or_(
                col(FundingPlanRow.created_at) < created_at,
                and_(
                    col(FundingPlanRow.created_at) == created_at,
                    col(FundingPlanRow.plan_id) > plan_id,
                ),
            )
        )
    if limit:
        query = query.limit(limit)
    return list(session.exec(query).all())


def line_counts(session: Session, plan_ids: list[str]) -> dict[str, int]:
    """How many payment lines each plan named has (one query, whatever the plans' size)."""
    if not plan_ids:
        return {}
    rows = session.exec(
        select(col(PaymentLineRow.plan_id), func.count())
        .where(col(PaymentLineRow.plan_id).in_(plan_ids))
        .group_by(col(PaymentLineRow.plan_id))
    ).all()
    return {plan_id: count for plan_id, count in rows}


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
        query = query.where(col(PaymentLineRow.program_code) == program_code)
    query = query.order_by(col(FundingPlanRow.created_at).desc(), col(PaymentLineRow.line_id))
    return list(session.exec(query.limit(limit)).all())


def account_totals(session: Session, as_of: datetime | None = None) -> list[tuple[str, int, int]]:
    """Every account's (name, debit total, credit total), of the entries posted at or before
    `as_of` (None: all), by account name: one aggregate query, whatever the ledger's size."""
    query = (
        select(
            col(LedgerEntryRow.account),
            func.coalesce(func.sum(LedgerEntryRow.debit_fen), 0),
            func.coalesce(func.sum(LedgerEntryRow.credit_fen), 0),
        )
        .group_by(col(LedgerEntryRow.account))
        .order_by(col(LedgerEntryRow.account))
    )
    if as_of is not None:
        query = query.where(col(LedgerEntryRow.posted_at) <= as_of)
    return [(account, int(debit), int(credit)) for account, debit, credit in session.exec(query)]


def reservation_budget_keys(session: Session, program_code: str) -> set[str]:
    """The budgets the program's reservations hold money in (its own, or budget line years)."""
    rows = session.exec(
        select(ReservationRow.budget_line_code, ReservationRow.fiscal_year)
        .where(col(ReservationRow.program_code) == program_code)
        .distinct()
    ).all()
    return {
        line_key(line_code, year) if line_code and year else program_code
        for line_code, year in rows
    }


def award_journal_ids(
    application_id: str,
    line_ids: list[str],
    clawback_ids: tuple[str, ...] | list[str] = (),
    repayment_ids: tuple[str, ...] | list[str] = (),
) -> list[str]:
    """The journals that move an award's money: its reservation, its release, the payment of
    each of its payment lines, its clawbacks and their repayments (use_cases.py names them).
    The payable/unpayable journals of the lines and the reawards after returns are named by
    counters (award_entries adds them)."""
    return [
        f"reserve-{application_id}",
        f"release-{application_id}",
        *(f"pay-{line_id}" for line_id in line_ids),
        *(f"return-{line_id}" for line_id in line_ids),
        *(f"clawback-{clawback_id}" for clawback_id in clawback_ids),
        *(f"repay-{repayment_id}" for repayment_id in repayment_ids),
    ]


def award_entries(session: Session, application_id: str) -> list[LedgerEntryRow]:
    """The ledger entries of an award's journals, in the order they were posted."""
    lines = session.exec(
        select(PaymentLineRow.line_id, PaymentLineRow.ledger_moves).where(
            col(PaymentLineRow.application_id) == application_id
        )
    ).all()
    line_ids = [line_id for line_id, _ in lines]
    moves = [
        f"{kind}-{line_id}-{n}"
        for line_id, count in lines
        for n in range(1, count + 1)
        for kind in ("payable", "unpayable")
    ]
    reservation = session.get(ReservationRow, application_id)
    returns = reservation.returns if reservation is not None else 0
    moves += [f"reaward-{application_id}-{k}" for k in range(1, returns + 1)]
    clawback_ids = list(
        session.exec(
            select(ClawbackRow.clawback_id).where(col(ClawbackRow.application_id) == application_id)
        ).all()
    )
    repayment_ids = [row.repayment_id for row in repayments(session, clawback_ids)]
    journal_ids = award_journal_ids(application_id, line_ids, clawback_ids, repayment_ids) + moves
    return list(
        session.exec(
            select(LedgerEntryRow)
            .where(col(LedgerEntryRow.journal_id).in_(journal_ids))
            .order_by(col(LedgerEntryRow.posted_at), col(LedgerEntryRow.id))
        ).all()
    )


# Reconciliation ----------------------------------------------------------------------------------


class ReconciliationRunRow(SQLModel, table=True):
    """The last reconciliation of one Beijing day (reconciliation.py): its report."""

    __tablename__ = "reconciliation_run"

    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD
    gateway_count: int = 0
    gateway_total_fen: int = Field(default=0, sa_type=MONEY)
    ledger_count: int = 0
    ledger_total_fen: int = Field(default=0, sa_type=MONEY)
    matched_count: int = 0
    matched_total_fen: int = Field(default=0, sa_type=MONEY)
    exception_count: int = 0
    runs: int = 0
    reconciled_by: str = Field(default="", max_length=200)
    reconciled_at: datetime = Field(sa_type=TIME)


class ReconciliationExceptionRow(SQLModel, table=True):
    """One mismatch of a day's reconciliation: one per day, idempotency key and kind, so running
    the day again finds it again instead of adding another."""

    __tablename__ = "reconciliation_exception"
    __table_args__ = (
        UniqueConstraint("day", "idempotency_key", "kind", name="uq_reconciliation_exception"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=ROW_ID)
    day: str = Field(max_length=10, index=True)
    kind: str = Field(max_length=20)  # a ReconciliationKind
    state: str = Field(max_length=20, index=True)  # a ReconciliationExceptionState
    idempotency_key: str = Field(max_length=128)
    line_id: str = Field(default="", max_length=32)
    application_id: str = Field(default="", max_length=128)
    gateway_reference: str = Field(default="", max_length=128)
    gateway_amount_fen: int = Field(default=0, sa_type=MONEY)
    ledger_amount_fen: int = Field(default=0, sa_type=MONEY)
    gateway_payee: str = Field(default="", max_length=240)
    ledger_payee: str = Field(default="", max_length=240)
    found_at: datetime = Field(sa_type=TIME)
    resolution: str = Field(default="", max_length=20)  # a ReconciliationResolution
    resolution_note: str = Field(default="", max_length=500)
    resolved_by: str = Field(default="", max_length=200)
    resolved_at: datetime | None = Field(default=None, sa_type=TIME)


def settled_lines(session: Session, start: datetime, end: datetime) -> list[PaymentLineRow]:
    """The payment lines settled in [start, end) (PAID, or RETURNED since), by line id."""
    return list(
        session.exec(
            select(PaymentLineRow)
            .where(col(PaymentLineRow.state).in_([PaymentState.PAID, PaymentState.RETURNED]))
            .where(col(PaymentLineRow.paid_at) >= start)
            .where(col(PaymentLineRow.paid_at) < end)
            .order_by(col(PaymentLineRow.line_id))
        ).all()
    )


def paid_lines_of(session: Session, application_ids: list[str]) -> list[PaymentLineRow]:
    """The settled payment lines of these applications (PAID or RETURNED since), whatever day
    they were settled."""
    if not application_ids:
        return []
    return list(
        session.exec(
            select(PaymentLineRow)
            .where(col(PaymentLineRow.application_id).in_(sorted(set(application_ids))))
            .where(col(PaymentLineRow.state).in_([PaymentState.PAID, PaymentState.RETURNED]))
            .order_by(col(PaymentLineRow.line_id))
        ).all()
    )


def journal_amounts(session: Session, line_ids: list[str]) -> dict[str, int]:
    """What each line's payment journal (pay-<line>) moved into its paid account; a line whose
    journal is missing is absent."""
    if not line_ids:
        return {}
    rows = session.exec(
        select(col(LedgerEntryRow.journal_id), func.sum(LedgerEntryRow.debit_fen))
        .where(col(LedgerEntryRow.journal_id).in_([f"pay-{line_id}" for line_id in line_ids]))
        .where(col(LedgerEntryRow.account).startswith("paid:", autoescape=True))
        .group_by(col(LedgerEntryRow.journal_id))
    ).all()
    return {journal.removeprefix("pay-"): int(amount or 0) for journal, amount in rows}


def lines_of_applications(session: Session, application_ids: list[str]) -> list[PaymentLineRow]:
    """Every payment line of these applications, newest line id last."""
    if not application_ids:
        return []
    return list(
        session.exec(
            select(PaymentLineRow)
            .where(col(PaymentLineRow.application_id).in_(sorted(set(application_ids))))
            .order_by(col(PaymentLineRow.line_id))
        ).all()
    )


def day_exceptions(
    session: Session, day: str, *, lock: bool = False
) -> list[ReconciliationExceptionRow]:
    """A day's exceptions by id; locked until commit when asked (not in a read-only one)."""
    query = (
        select(ReconciliationExceptionRow)
        .where(col(ReconciliationExceptionRow.day) == day)
        .order_by(col(ReconciliationExceptionRow.id))
    )
    if lock:
        query = query.with_for_update()
    return list(session.exec(query).all())


def reconciliation_exceptions(
    session: Session, state: str | None, day: str, limit: int, after: tuple[str, int] | None
) -> list[ReconciliationExceptionRow]:
    """Exceptions newest day first, then by id; of one state and day when given; at most
    `limit` after (day, id)."""
    query = select(ReconciliationExceptionRow).order_by(
        col(ReconciliationExceptionRow.day).desc(), col(ReconciliationExceptionRow.id)
    )
    if state is not None:
        query = query.where(col(ReconciliationExceptionRow.state) == state)
    if day:
        query = query.where(col(ReconciliationExceptionRow.day) == day)
    if after is not None:
        after_day, after_id = after
        query = query.where(
            or_(
                col(ReconciliationExceptionRow.day) < after_day,
                and_(
                    col(ReconciliationExceptionRow.day) == after_day,
                    col(ReconciliationExceptionRow.id) > after_id,
                ),
            )
        )
    return list(session.exec(query.limit(limit)).all())


def lock_exception(session: Session, exception_id: int) -> ReconciliationExceptionRow | None:
    return session.exec(
        select(ReconciliationExceptionRow)
        .where(col(ReconciliationExceptionRow.id) == exception_id)
        .with_for_update()
    ).first()
