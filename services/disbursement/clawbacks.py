"""Clawbacks (追回) of paid awards: the disbursement service's use cases for them.

- A clawback is opened by finance against a PAID award, with a reason and an amount: at most what
  was paid less what the award's earlier clawbacks claim. It moves the amount from paid:K to
  clawback_receivable:K (journal `clawback-<id>`), so the award's budget K still balances and
  paid:K nets to what the enterprise keeps; and it announces ClawbackOpened, from which the
  intake consumer starts ClawbackWorkflow `clawback-<id>` (workflows/clawback.py) to put the
  enterprise on the credit list (财政资金追回失信名单) from the opening for the configured number
  of years (Settings.clawback_bar_years; the bar's end is fixed here, when the clawback opens).
  This service never calls the applications service itself: the bar is a durable workflow's
  activity, retried until the applications service takes it, idempotent with the clawback id
  as its request id.
- Repayments, full or partial, each idempotent with its request id, move money from the
  receivable to recovered:K (journal `repay-<repayment id>`); a repayment larger than what is
  outstanding is refused, and the clawback is SETTLED when the receivable reaches zero.

Each write commits its rows, its journal, its outbox event and its audit record together.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from grantflow.v1 import events_pb2
from services.common.db import now_utc, to_timestamp
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.common.unit_of_work import Transactions, UnitOfWork
from services.common.vocabulary import AuditAction, ClawbackState, ReservationState
from services.disbursement import store
from services.disbursement.commands import ListClawbacks, OpenClawback, RecordRepayment
from services.disbursement.store import ClawbackRepaymentRow, ClawbackRow, ReservationRow
from services.disbursement.use_cases import MAX_MEMO, SHANGHAI, finance_officer
from workflows.contracts import clawback_workflow_id

__all__ = ["ClawbackView", "Clawbacks", "clawback_workflow_id", "years_after"]

DEFAULT_BAR_YEARS = 3


def years_after(moment: datetime, years: int) -> datetime:
    """The same instant `years` calendar years later in Beijing time (29 Feb -> 28 Feb)."""
    local = moment.astimezone(SHANGHAI)
    try:
        later = local.replace(year=local.year + years)
    except ValueError:
        later = local.replace(year=local.year + years, day=28)
    return later.astimezone(moment.tzinfo)


@dataclass(frozen=True)
class ClawbackView:
    clawback: ClawbackRow
    repayments: list[ClawbackRepaymentRow]


class Clawbacks:
    def __init__(self, transactions: Transactions, *, bar_years: int = DEFAULT_BAR_YEARS) -> None:
        self.transactions = transactions
        self.bar_years = bar_years

    async def open(self, command: OpenClawback) -> ClawbackView:
        def work(unit: UnitOfWork) -> ClawbackView:
            session = unit.session
            # The award's lock first: a repeated request then finds what the first one wrote.
            reservation = store.lock_reservation(session, command.application_id)
            existing = store.clawback_by_request(session, command.request_id)
            if existing is not None:
                if existing.request_fingerprint != command.fingerprint:
                    raise AlreadyExists(
                        f"request_id {command.request_id} was already used for another clawback"
                    )
                return _view(session, existing)
            if reservation is None:
                raise NotFound(
                    f"application {command.application_id} has no award: nothing was paid"
                )
            if reservation.state != ReservationState.PAID:
                raise FailedPrecondition(
                    f"the award of application {command.application_id} is "
                    f"{reservation.state}, not paid: only a paid award can be clawed back"
                )
            claimed = sum(
                row.amount_fen for row in store.clawbacks(session, command.application_id)
            )
            left = reservation.amount_fen - claimed
            if command.amount_fen > left:
                raise InvalidArgument(
                    "amount_fen",
                    f"{command.amount_fen} fen is more than the {left} fen of the award that "
                    f"may still be clawed back (paid {reservation.amount_fen}, claimed by "
                    f"earlier clawbacks {claimed})",
                )
            now = now_utc()
            row = ClawbackRow(
                clawback_id=uuid.uuid4().hex,
                request_id=command.request_id,
                request_fingerprint=command.fingerprint,
                application_id=reservation.application_id,
                program_code=reservation.program_code,
                budget_key=reservation.budget_key,
                applicant_credit_code=reservation.applicant_credit_code,
                applicant_name=reservation.applicant_name,
                amount_fen=command.amount_fen,
                repaid_fen=0,
                reason=command.reason,
                state=ClawbackState.OPEN,
                opened_by=command.opened_by,
                opened_at=now,
                bar_years=self.bar_years,
                bar_until=years_after(now, self.bar_years),
                updated_at=now,
            )
            session.add(row)
            store.post_journal(
                session,
                f"clawback-{row.clawback_id}",
                f"追回 {reservation.application_id}: {command.reason}"[:MAX_MEMO],
                store.clawback_receivable(row.budget_key),
                store.paid(row.budget_key),
                row.amount_fen,
            )
            _announce_opened(unit, row, reservation)
            unit.audit(
                AuditAction.CLAWBACK_OPENED,
                row.application_id,
                finance_officer(command.opened_by),
                command.reason,
                details={
                    "clawback_id": row.clawback_id,
                    "amount_fen": row.amount_fen,
                    "paid_fen": reservation.amount_fen,
                    "applicant_credit_code": row.applicant_credit_code,
                    "bar_years": row.bar_years,
                    "bar_until": row.bar_until.isoformat(),
                },
                key=f"clawback-{row.clawback_id}",
            )
            return ClawbackView(row, [])

        return await self.transactions.write(work)

    async def repay(self, command: RecordRepayment) -> ClawbackView:
        def work(unit: UnitOfWork) -> ClawbackView:
            session = unit.session
            row = store.lock_clawback(session, command.clawback_id)
            if row is None:
                raise NotFound(f"clawback {command.clawback_id} not found")
            existing = store.repayment_by_request(session, command.request_id)
            if existing is not None:
                if (
                    existing.clawback_id != command.clawback_id
                    or existing.amount_fen != command.amount_fen
                ):
                    raise AlreadyExists(
                        f"request_id {command.request_id} was already used for another repayment"
                    )
                return _view(session, row)
            if row.state == ClawbackState.SETTLED:
                raise FailedPrecondition(
                    f"clawback {row.clawback_id} is settled: nothing is outstanding"
                )
            if command.amount_fen > row.outstanding_fen:
                raise InvalidArgument(
                    "amount_fen",
                    f"{command.amount_fen} fen is more than the {row.outstanding_fen} fen "
                    f"outstanding on clawback {row.clawback_id}",
                )
            now = now_utc()
            repayment = ClawbackRepaymentRow(
                repayment_id=uuid.uuid4().hex,
                request_id=command.request_id,
                clawback_id=row.clawback_id,
                amount_fen=command.amount_fen,
                recorded_by=command.recorded_by,
                recorded_at=now,
            )
            session.add(repayment)
            row.repaid_fen += command.amount_fen
            row.updated_at = now
            if row.outstanding_fen == 0:
                row.state = ClawbackState.SETTLED
                row.settled_at = now
            session.add(row)
            store.post_journal(
                session,
                f"repay-{repayment.repayment_id}",
                f"追回款退还 {row.application_id} (clawback {row.clawback_id})"[:MAX_MEMO],
                store.recovered(row.budget_key),
                store.clawback_receivable(row.budget_key),
                command.amount_fen,
            )
            unit.audit(
                AuditAction.CLAWBACK_REPAID,
                row.application_id,
                finance_officer(command.recorded_by),
                details={
                    "clawback_id": row.clawback_id,
                    "repayment_id": repayment.repayment_id,
                    "amount_fen": command.amount_fen,
                    "repaid_fen": row.repaid_fen,
                    "outstanding_fen": row.outstanding_fen,
                    "state": row.state,
                },
                key=f"repay-{command.request_id}",
            )
            session.flush()
            return _view(session, row)

        return await self.transactions.write(work)

    async def get(self, clawback_id: str) -> ClawbackView:
        def work(session: Session) -> ClawbackView:
            row = session.get(ClawbackRow, clawback_id)
            if row is None:
                raise NotFound(f"clawback {clawback_id} not found")
            return _view(session, row)

        return await self.transactions.read(work)

    async def list(self, query: ListClawbacks) -> list[ClawbackView]:
        def work(session: Session) -> list[ClawbackView]:
            rows = store.clawbacks(session, query.application_id, query.state, query.limit)
            repaid = store.repayments(session, [row.clawback_id for row in rows])
            return [
                ClawbackView(row, [r for r in repaid if r.clawback_id == row.clawback_id])
                for row in rows
            ]

        return await self.transactions.read(work)


def _view(session: Session, row: ClawbackRow) -> ClawbackView:
    return ClawbackView(row, store.repayments(session, [row.clawback_id]))


def _announce_opened(unit: UnitOfWork, row: ClawbackRow, reservation: ReservationRow) -> None:
    unit.announce(
        row.application_id,
        events_pb2.ClawbackOpened(
            clawback_id=row.clawback_id,
            application_id=row.application_id,
            program_code=row.program_code,
            applicant_credit_code=row.applicant_credit_code,
            applicant_name=reservation.applicant_name,
            amount_fen=row.amount_fen,
            reason=row.reason,
            opened_by=row.opened_by,
            opened_at=to_timestamp(row.opened_at),
            bar_until=to_timestamp(row.bar_until),
        ),
        key=f"clawback-{row.clawback_id}",
    )
