"""Receiving accounts (收款账户): where an award's money goes, confirmed before its first payment.

- The applicant of the award (its token's enterprise is the award's credit code) confirms the
  account once: the account name must be the enterprise's registered name the award carries
  (全角/半角 brackets and surrounding spaces aside), the account number 8-32 digits, the bank
  code a CNAPS 联行号 of 12 digits, the bank's name given. Bad input is INVALID_ARGUMENT naming
  the field, before anything is written.
- A change of a confirmed account is proposed (by the applicant or a finance officer) and is in
  force only once a finance officer other than the proposer approves it (maker-checker); until
  then the confirmed account stays in force, and a later proposal replaces one still waiting.
- Payments take the account in force at their first attempt (use_cases.execute_line). An award
  whose payment came back (退汇, RETURNED) waits for a plan again when a change is approved:
  journal reaward-<application>-<k> moves its money from returned:K back to reserved:K, and the
  next plan pays it with the key award-<id>-r<k>. Of an award paid in instalments, the
  instalments that came back are released again (their keys award-<id>[-i<n>]-r<k>, k counted
  per instalment).

Every write commits its row, its audit record and its outbox event together; creating calls are
idempotent per request id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import Session, col, select

from grantflow.v1 import events_pb2
from services.common.auth import Principal
from services.common.db import now_utc
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.unit_of_work import Transactions, UnitOfWork
from services.common.vocabulary import (
    AccountState,
    AuditAction,
    InstalmentState,
    ReservationState,
    Role,
)
from services.disbursement import store
from services.disbursement.commands import (
    AccountDetails,
    ApproveAccountChange,
    ConfirmAccount,
    ProposeAccountChange,
)
from services.disbursement.gateway import PayeeAccount
from services.disbursement.store import ReceivingAccountRow, ReservationRow

ACCOUNT_DIGITS = re.compile(r"[0-9]{8,32}")
CNAPS = re.compile(r"[0-9]{12}")
MAX_NAME, MAX_BANK_NAME = 200, 200
# Full-width brackets and spaces a registered name may be written with either way.
NAME_FORMS = str.maketrans({"（": "(", "）": ")", "\u3000": " "})


def same_name(given: str, registered: str) -> bool:
    """Whether an account name is the registered name (brackets and spacing aside)."""

    def norm(name: str) -> str:
        return " ".join(name.translate(NAME_FORMS).split())

    return norm(given) == norm(registered)


def checked_details(field: str, details: AccountDetails) -> AccountDetails:
    """The account's format checked, spaces taken out of the number (INVALID_ARGUMENT naming
    `field`.<part>); the name's match with the award is the use case's check."""
    name = " ".join(details.account_name.split())
    if not name:
        raise InvalidArgument(f"{field}.account_name", "is required (户名: the registered name)")
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"{field}.account_name", f"is longer than {MAX_NAME} characters")
    number = "".join(details.account_number.split())
    if not ACCOUNT_DIGITS.fullmatch(number):
        raise InvalidArgument(
            f"{field}.account_number", "must be 8 to 32 digits (账号: digits only)"
        )
    if len(set(number)) == 1:
        raise InvalidArgument(f"{field}.account_number", "is one digit repeated: not an account")
    bank_code = details.bank_code.strip()
    if not CNAPS.fullmatch(bank_code):
        raise InvalidArgument(
            f"{field}.bank_code", "must be the 12-digit CNAPS bank code (开户行联行号)"
        )
    if bank_code.startswith("000"):
        raise InvalidArgument(f"{field}.bank_code", "names no bank (its first 3 digits are 000)")
    bank_name = " ".join(details.bank_name.split())
    if not bank_name:
        raise InvalidArgument(f"{field}.bank_name", "is required (开户行名称)")
    if len(bank_name) > MAX_BANK_NAME:
        raise InvalidArgument(f"{field}.bank_name", f"is longer than {MAX_BANK_NAME} characters")
    return AccountDetails(name, number, bank_code, bank_name)


def payee_account(row: ReceivingAccountRow) -> PayeeAccount:
    return PayeeAccount(row.account_name, row.account_number, row.bank_code, row.bank_name)


def tail(number: str) -> str:
    """The last four digits: what events and logs show of an account number."""
    return number[-4:]


@dataclass(frozen=True)
class AccountsView:
    application_id: str
    applicant_name: str
    history: list[ReceivingAccountRow]

    @property
    def current(self) -> ReceivingAccountRow | None:
        return next((r for r in self.history if r.state == AccountState.CONFIRMED), None)

    @property
    def proposed(self) -> ReceivingAccountRow | None:
        return next((r for r in self.history if r.state == AccountState.PROPOSED), None)


def _own(caller: Principal, reservation: ReservationRow) -> None:
    """An applicant acts only for its own enterprise's award."""
    if caller.role == Role.APPLICANT and (
        caller.enterprise.strip().upper() != reservation.applicant_credit_code
    ):
        raise PermissionDenied(
            f"application {reservation.application_id} is not your enterprise's: an applicant "
            "gives only its own award's receiving account"
        )


def _award(session: Session, application_id: str, caller: Principal) -> ReservationRow:
    reservation = store.lock_reservation(session, application_id)
    if reservation is None:
        raise NotFound(f"application {application_id} has no award: nothing is to be paid")
    _own(caller, reservation)
    if reservation.state == ReservationState.RELEASED:
        raise FailedPrecondition(
            f"the award of application {application_id} was released: nothing is to be paid"
        )
    return reservation


def _named(field: str, details: AccountDetails, reservation: ReservationRow) -> None:
    if not same_name(details.account_name, reservation.applicant_name):
        raise InvalidArgument(
            f"{field}.account_name",
            f"must be the enterprise's registered name {reservation.applicant_name!r} "
            "(户名须与单位登记名称一致)",
        )


@dataclass(frozen=True)
class PendingChange:
    """A change waiting for approval, with its award and the account it would replace."""

    award: ReservationRow
    proposed: ReceivingAccountRow
    current: ReceivingAccountRow | None


class ReceivingAccounts:
    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    async def pending(self, program_code: str, limit: int) -> list[PendingChange]:
        """The changes waiting for a second finance officer, oldest proposal first."""

        def work(session: Session) -> list[PendingChange]:
            return [
                PendingChange(award, proposed, current)
                for award, proposed, current in store.pending_account_changes(
                    session, program_code, limit
                )
            ]

        return await self.transactions.read(work)

    async def get(self, application_id: str, caller: Principal) -> AccountsView:
        def work(session: Session) -> AccountsView:
            reservation = session.get(ReservationRow, application_id)
            if reservation is None:
                raise NotFound(f"application {application_id} has no award")
            _own(caller, reservation)
            return AccountsView(
                application_id,
                reservation.applicant_name,
                store.receiving_accounts(session, application_id),
            )

        return await self.transactions.read(work)

    async def confirm(self, command: ConfirmAccount) -> AccountsView:
        caller = command.caller
        if caller.role != Role.APPLICANT:
            raise PermissionDenied(
                "the recipient confirms its receiving account itself (an applicant of the "
                "award's enterprise); finance proposes a change instead"
            )

        def work(unit: UnitOfWork) -> AccountsView:
            session = unit.session
            reservation = _award(session, command.application_id, caller)
            history = store.receiving_accounts(session, command.application_id, lock=True)
            replay = self._replayed(session, command.request_id, command.fingerprint)
            if replay is not None:
                return self._view(session, reservation)
            _named("account", command.account, reservation)
            if any(row.state == AccountState.CONFIRMED for row in history):
                raise FailedPrecondition(
                    f"the receiving account of application {command.application_id} is "
                    "confirmed already: a different one is a change, approved by finance "
                    "(ProposeAccountChange)"
                )
            row = self._add(
                unit,
                command.application_id,
                history,
                command.account,
                AccountState.CONFIRMED,
                command.request_id,
                command.fingerprint,
                caller,
                "",
            )
            unit.announce(
                command.application_id,
                events_pb2.ReceivingAccountConfirmed(
                    application_id=row.application_id,
                    version=row.version,
                    account_name=row.account_name,
                    account_number_tail=tail(row.account_number),
                    bank_code=row.bank_code,
                    confirmed_by=caller.subject,
                ),
                key=f"account-{row.application_id}-{row.version}",
            )
            unit.audit(
                AuditAction.ACCOUNT_CONFIRMED,
                row.application_id,
                caller,
                details=_details(row),
                key=f"account-{row.application_id}-{row.version}",
            )
            return self._view(session, reservation)

        return await self.transactions.write(work)

    async def propose(self, command: ProposeAccountChange) -> AccountsView:
        caller = command.caller
        if caller.role not in (Role.APPLICANT, Role.FINANCE):
            raise PermissionDenied("only the award's applicant or finance proposes a change")

        def work(unit: UnitOfWork) -> AccountsView:
            session = unit.session
            reservation = _award(session, command.application_id, caller)
            history = store.receiving_accounts(session, command.application_id, lock=True)
            if self._replayed(session, command.request_id, command.fingerprint) is not None:
                return self._view(session, reservation)
            _named("account", command.account, reservation)
            current = next((r for r in history if r.state == AccountState.CONFIRMED), None)
            if current is None:
                raise FailedPrecondition(
                    f"application {command.application_id} has no confirmed receiving account "
                    "to change: the applicant confirms one first (ConfirmReceivingAccount)"
                )
            if (current.account_number, current.bank_code) == (
                command.account.account_number,
                command.account.bank_code,
            ):
                raise FailedPrecondition(
                    "that account is the one in force already: nothing to change"
                )
            for waiting in history:
                if waiting.state == AccountState.PROPOSED:
                    waiting.state = AccountState.WITHDRAWN
                    session.add(waiting)
            row = self._add(
                unit,
                command.application_id,
                history,
                command.account,
                AccountState.PROPOSED,
                command.request_id,
                command.fingerprint,
                caller,
                command.reason,
            )
            unit.announce(
                command.application_id,
                events_pb2.ReceivingAccountChangeProposed(
                    application_id=row.application_id,
                    version=row.version,
                    account_number_tail=tail(row.account_number),
                    bank_code=row.bank_code,
                    proposed_by=caller.subject,
                    reason=command.reason,
                ),
                key=f"account-{row.application_id}-{row.version}",
            )
            unit.audit(
                AuditAction.ACCOUNT_CHANGE_PROPOSED,
                row.application_id,
                caller,
                command.reason,
                details=_details(row) | {"in_force_version": current.version},
                key=f"account-{row.application_id}-{row.version}",
            )
            return self._view(session, reservation)

        return await self.transactions.write(work)

    async def approve(self, command: ApproveAccountChange) -> AccountsView:
        approver = Principal(subject=command.approver, role=Role.FINANCE)

        def work(unit: UnitOfWork) -> AccountsView:
            session = unit.session
            reservation = _award(session, command.application_id, approver)
            history = store.receiving_accounts(session, command.application_id, lock=True)
            row = next((r for r in history if r.version == command.version), None)
            if row is None:
                raise NotFound(
                    f"application {command.application_id} has no receiving account version "
                    f"{command.version}"
                )
            if row.state == AccountState.CONFIRMED and row.approved_by == command.approver:
                return self._view(session, reservation)  # approved already, by this officer
            if row.state != AccountState.PROPOSED:
                raise FailedPrecondition(
                    f"receiving account version {command.version} of application "
                    f"{command.application_id} is {row.state}, not a change waiting for approval"
                )
            if row.given_by == command.approver:
                raise PermissionDenied(
                    f"{command.approver} proposed this change: a second finance officer must "
                    "approve it (变更收款账户须另一名财务人员审批)"
                )
            now = now_utc()
            previous = next((r for r in history if r.state == AccountState.CONFIRMED), None)
            if previous is not None:
                previous.state = AccountState.SUPERSEDED
                session.add(previous)
                session.flush()  # one CONFIRMED at a time
            row.state = AccountState.CONFIRMED
            row.approved_by = command.approver
            row.approved_at = now
            session.add(row)
            reawarded = _reaward(
                unit, reservation, f"receiving account changed to version {row.version}"
            )
            unit.announce(
                command.application_id,
                events_pb2.ReceivingAccountChangeApproved(
                    application_id=row.application_id,
                    version=row.version,
                    account_number_tail=tail(row.account_number),
                    bank_code=row.bank_code,
                    proposed_by=row.given_by,
                    approved_by=command.approver,
                ),
                key=f"account-{row.application_id}-{row.version}-approved",
            )
            unit.audit(
                AuditAction.ACCOUNT_CHANGE_APPROVED,
                row.application_id,
                approver,
                details=_details(row)
                | {
                    "proposed_by": row.given_by,
                    "superseded_version": previous.version if previous else 0,
                    "payable_again": reawarded,
                },
                key=f"account-{row.application_id}-{row.version}-approved",
            )
            return self._view(session, reservation)

        return await self.transactions.write(work)

    @staticmethod
    def _replayed(
        session: Session, request_id: str, fingerprint: str
    ) -> ReceivingAccountRow | None:
        existing = store.account_by_request(session, request_id)
        if existing is not None and existing.request_fingerprint != fingerprint:
            raise AlreadyExists(
                f"request_id {request_id} was already used for another receiving account"
            )
        return existing

    @staticmethod
    def _add(
        unit: UnitOfWork,
        application_id: str,
        history: list[ReceivingAccountRow],
        account: AccountDetails,
        state: AccountState,
        request_id: str,
        fingerprint: str,
        caller: Principal,
        reason: str,
    ) -> ReceivingAccountRow:
        row = ReceivingAccountRow(
            application_id=application_id,
            version=max((r.version for r in history), default=0) + 1,
            state=state,
            account_name=account.account_name,
            account_number=account.account_number,
            bank_code=account.bank_code,
            bank_name=account.bank_name,
            request_id=request_id,
            request_fingerprint=fingerprint,
            given_by=caller.subject,
            given_by_role=str(caller.role),
            given_at=now_utc(),
            reason=reason,
        )
        unit.session.add(row)
        unit.session.flush()
        return row

    @staticmethod
    def _view(session: Session, reservation: ReservationRow) -> AccountsView:
        return AccountsView(
            reservation.application_id,
            reservation.applicant_name,
            list(
                session.exec(
                    select(ReceivingAccountRow)
                    .where(col(ReceivingAccountRow.application_id) == reservation.application_id)
                    .order_by(col(ReceivingAccountRow.version))
                ).all()
            ),
        )


def _details(row: ReceivingAccountRow) -> dict[str, object]:
    return {
        "version": row.version,
        "state": row.state,
        "account_name": row.account_name,
        "account_number_tail": tail(row.account_number),
        "bank_code": row.bank_code,
        "bank_name": row.bank_name,
    }


def _reaward(unit: UnitOfWork, reservation: ReservationRow, why: str) -> bool:
    """A returned award waits for a plan again: its money back from returned:K to reserved:K
    (journal reaward-<application>-<k>, k its returns so far), the award AWARDED in no plan.
    Of an award paid in instalments, what came back is its returned instalments: they are
    RELEASED again (one journal for them all), and the award, unless a plan holds a later
    instalment, waits for a plan. Whether anything had come back."""
    session = unit.session
    now = now_utc()
    parts = store.returned_instalments(session, reservation.application_id)
    if reservation.scheduled:
        amount = sum(part.amount_fen for part in parts)
    elif reservation.state == ReservationState.RETURNED:
        amount = reservation.amount_fen
    else:
        return False
    if not amount:
        return False
    store.post_journal(
        session,
        f"reaward-{reservation.application_id}-{reservation.returns}",
        f"退汇后重新待拨 {reservation.application_id}: {why}"[:500],
        store.reserved(reservation.budget_key),
        store.returned(reservation.budget_key),
        amount,
    )
    for part in parts:
        part.state = InstalmentState.RELEASED
        part.plan_id = None
        part.released_at = part.updated_at = now
        session.add(part)
    if reservation.state == ReservationState.RETURNED:
        reservation.state = ReservationState.AWARDED
        reservation.plan_id = None
    reservation.updated_at = now
    session.add(reservation)
    return True


reaward = _reaward
