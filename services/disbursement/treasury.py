"""SimulatedTreasury: the default payment gateway, a local stand-in for treasury centralised
payment (国库集中支付) with its own database.

It stands for an external system, so it keeps its own table in its own database
(settings.treasury_database_url, default data/treasury.db) and shares nothing with the
disbursement database; its schema is created (and its newer columns added) when it starts. It
pays once per idempotency key, to the receiving account it is given, and can be told to
misbehave:
- a failure (GatewayUnavailable) happens before anything is paid;
- a timeout (GatewayTimeout) happens after the payment was recorded, as if the answer was lost;
- late settlement: the payment is accepted (GatewayPending) and settles settle_delay_s later;
- returns (退汇): a settled payment is sent back return_delay_s after it settled, by rate
  (return_rate) or because the payee's account is closed (returned_payees: the first account a
  listed payee is paid to is closed; a corrected account is paid).
States are kept as instants (paid_at when it settles, returned_at when it comes back), so a
payment becomes SETTLED or RETURNED when its time passes, whoever asks.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from sqlalchemy import BigInteger, DateTime, inspect, text
from sqlmodel import Field, Session, SQLModel, col, select

from services.common.config import Settings
from services.common.db import Database, as_utc, now_utc
from services.common.unit_of_work import Transactions
from services.disbursement.gateway import (
    MAX_KEY,
    PENDING,
    RETURNED,
    SETTLED,
    GatewayPayment,
    GatewayPending,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    PayeeAccount,
    PaymentStatus,
    day_bounds,
)

# Why the simulated treasury sends a payment back.
ACCOUNT_CLOSED = "收款账户已销户 (account closed, simulated)"


class TreasuryPayment(SQLModel, table=True):
    __tablename__ = "treasury_payment"

    idempotency_key: str = Field(primary_key=True, max_length=MAX_KEY)
    reference: str = Field(max_length=64, unique=True)
    payee_credit_code: str = Field(max_length=32)
    payee_name: str = Field(max_length=200)
    amount_fen: int = Field(sa_type=BigInteger)
    paid_at: datetime = Field(sa_type=DateTime(timezone=True))  # settles at (may be ahead)
    # Added with receiving accounts, late settlement and returns (nullable: older rows).
    account_name: str | None = Field(default=None, max_length=200)
    account_number: str | None = Field(default=None, max_length=40)
    bank_code: str | None = Field(default=None, max_length=12)
    bank_name: str | None = Field(default=None, max_length=200)
    accepted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    returned_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    return_reason: str | None = Field(default=None, max_length=200)


# Columns a treasury database made before them lacks: added when the treasury starts.
ADDED_COLUMNS = {
    "account_name": "VARCHAR(200)",
    "account_number": "VARCHAR(40)",
    "bank_code": "VARCHAR(12)",
    "bank_name": "VARCHAR(200)",
    "accepted_at": "TIMESTAMP WITH TIME ZONE",
    "returned_at": "TIMESTAMP WITH TIME ZONE",
    "return_reason": "VARCHAR(200)",
}

# One payment the treasury settled, for reconciliation (the gateway's statement line).
TreasuryRecord = GatewayPayment


def _state(row: TreasuryPayment, now: datetime) -> str:
    if row.returned_at is not None and as_utc(row.returned_at) <= now:
        return RETURNED
    return SETTLED if as_utc(row.paid_at) <= now else PENDING


def _account(row: TreasuryPayment) -> PayeeAccount | None:
    if not row.account_number:
        return None
    return PayeeAccount(
        row.account_name or "", row.account_number, row.bank_code or "", row.bank_name or ""
    )


def _status(row: TreasuryPayment, now: datetime) -> PaymentStatus:
    state = _state(row, now)
    return PaymentStatus(
        idempotency_key=row.idempotency_key,
        reference=row.reference,
        state=state,
        amount_fen=row.amount_fen,
        payee_credit_code=row.payee_credit_code,
        payee_name=row.payee_name,
        account=_account(row),
        accepted_at=as_utc(row.accepted_at or row.paid_at),
        settled_at=as_utc(row.paid_at) if state != PENDING else None,
        returned_at=as_utc(row.returned_at) if state == RETURNED and row.returned_at else None,
        return_reason=(row.return_reason or "") if state == RETURNED else "",
    )


class SimulatedTreasury:
    """A PaymentGateway backed by a local database; idempotent per key."""

    def __init__(
        self,
        database_url: str,
        *,
        failure_rate: float = 0.0,
        timeout_rate: float = 0.0,
        seed: int | None = None,
        rejected_payees: Iterable[str] = (),
        settle_delay_rate: float = 0.0,
        settle_delay_s: float = 60.0,
        return_rate: float = 0.0,
        return_delay_s: float = 0.0,
        returned_payees: Iterable[str] = (),
    ) -> None:
        for name, rate in (
            ("failure_rate", failure_rate),
            ("timeout_rate", timeout_rate),
            ("settle_delay_rate", settle_delay_rate),
            ("return_rate", return_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        if settle_delay_s < 0 or return_delay_s < 0:
            raise ValueError("delays must not be negative")
        self.failure_rate = failure_rate
        self.timeout_rate = timeout_rate
        self.settle_delay_rate = settle_delay_rate
        self.settle_delay = timedelta(seconds=settle_delay_s)
        self.return_rate = return_rate
        self.return_delay = timedelta(seconds=return_delay_s)
        # Payees whose accounts the treasury refuses (closed, frozen): a permanent rejection.
        self.rejected_payees = frozenset(rejected_payees)
        # Payees whose first account is closed: paid, then returned; a corrected account is paid.
        self.returned_payees = frozenset(returned_payees)
        self._rng = random.Random(seed)
        # Its own sequence, so a seed gives the failures and timeouts it gave before these.
        self._later_rng = random.Random(None if seed is None else seed + 1)
        self._db = Database(database_url)
        SQLModel.metadata.create_all(
            self._db.engine,
            tables=[TreasuryPayment.__table__],  # type: ignore[attr-defined]
        )
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """A treasury database made by an older version gets the newer columns (nullable)."""
        have = {
            column["name"] for column in inspect(self._db.engine).get_columns("treasury_payment")
        }
        missing = [name for name in ADDED_COLUMNS if name not in have]
        if not missing:
            return
        sqlite = self._db.engine.dialect.name == "sqlite"
        with self._db.engine.begin() as connection:
            for name in missing:
                kind = (
                    "TIMESTAMP" if sqlite and "TIME" in ADDED_COLUMNS[name] else ADDED_COLUMNS[name]
                )
                connection.execute(text(f"ALTER TABLE treasury_payment ADD COLUMN {name} {kind}"))

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> SimulatedTreasury:
        def codes(value: str) -> list[str]:
            return [code.strip() for code in value.split(",") if code.strip()]

        options: dict[str, object] = {
            "failure_rate": settings.treasury_failure_rate,
            "timeout_rate": settings.treasury_timeout_rate,
            "seed": settings.treasury_seed,
            "rejected_payees": codes(settings.treasury_rejected_payees),
            "settle_delay_rate": settings.treasury_settle_delay_rate,
            "settle_delay_s": settings.treasury_settle_delay_s,
            "return_rate": settings.treasury_return_rate,
            "return_delay_s": settings.treasury_return_delay_s,
            "returned_payees": codes(settings.treasury_returned_payees),
        }
        options.update(overrides)
        return cls(settings.database_url("treasury"), **options)  # type: ignore[arg-type]

    async def pay(
        self,
        idempotency_key: str,
        payee_credit_code: str,
        payee_name: str,
        amount_fen: int,
        account: PayeeAccount | None = None,
    ) -> str:
        # Both rolls are drawn on every call so a seed gives the same sequence whatever the rates.
        fails = self._rng.random() < self.failure_rate
        times_out = self._rng.random() < self.timeout_rate
        late = self._later_rng.random() < self.settle_delay_rate
        returned = self._later_rng.random() < self.return_rate
        if fails:
            raise GatewayUnavailable("treasury unavailable (simulated)")
        if not idempotency_key or len(idempotency_key) > MAX_KEY:
            raise GatewayRejected(f"idempotency key must be 1-{MAX_KEY} characters")
        if amount_fen <= 0:
            raise GatewayRejected("amount must be positive")
        if payee_credit_code in self.rejected_payees:
            raise GatewayRejected(f"payee account {payee_credit_code} refuses payments")
        wanted = (payee_credit_code, payee_name, amount_fen)

        def record(session: Session) -> tuple[TreasuryPayment, bool]:
            existing = session.get(TreasuryPayment, idempotency_key)
            if existing is not None:
                if (existing.payee_credit_code, existing.payee_name, existing.amount_fen) != wanted:
                    raise GatewayRejected("idempotency key was already used for another payment")
                return existing, False
            now = now_utc()
            settles = now + self.settle_delay if late else now
            reason = ""
            if account is not None and self._first_account_closed(
                session, payee_credit_code, account.account_number
            ):
                reason = ACCOUNT_CLOSED
            elif returned:
                reason = ACCOUNT_CLOSED
            row = TreasuryPayment(
                idempotency_key=idempotency_key,
                reference="TRS" + uuid.uuid4().hex[:20].upper(),
                payee_credit_code=payee_credit_code,
                payee_name=payee_name,
                amount_fen=amount_fen,
                paid_at=settles,
                account_name=account.account_name if account else None,
                account_number=account.account_number if account else None,
                bank_code=account.bank_code if account else None,
                bank_name=account.bank_name if account else None,
                accepted_at=now,
                returned_at=settles + self.return_delay if reason else None,
                return_reason=reason or None,
            )
            session.add(row)
            return row, True

        # A concurrent call with the same key may win the insert; the retry answers its payment.
        row, fresh = await Transactions(self._db).write(lambda unit: record(unit.session))
        if fresh and times_out:
            raise GatewayTimeout("treasury answer lost (simulated); the payment was made")
        if _state(row, now_utc()) == PENDING:
            raise GatewayPending(row.reference)
        return row.reference

    def _first_account_closed(self, session: Session, payee: str, account_number: str) -> bool:
        """A payee of returned_payees: whether account_number is its first account (closed)."""
        if payee not in self.returned_payees:
            return False
        first = session.exec(
            select(TreasuryPayment.account_number)
            .where(col(TreasuryPayment.payee_credit_code) == payee)
            .where(col(TreasuryPayment.account_number).is_not(None))
            .order_by(col(TreasuryPayment.accepted_at))
            .limit(1)
        ).first()
        return first is None or first == account_number

    async def find_payment(self, idempotency_key: str) -> str | None:
        def work(session: Session) -> str | None:
            row = session.get(TreasuryPayment, idempotency_key)
            return row.reference if row is not None else None

        return await self._db.run_read(work)

    async def payment_status(self, idempotency_key: str) -> PaymentStatus | None:
        def work(session: Session) -> PaymentStatus | None:
            row = session.get(TreasuryPayment, idempotency_key)
            return _status(row, now_utc()) if row is not None else None

        return await self._db.run_read(work)

    async def returns(self, since: datetime) -> list[PaymentStatus]:
        def work(session: Session) -> list[PaymentStatus]:
            now = now_utc()
            rows = session.exec(
                select(TreasuryPayment)
                .where(col(TreasuryPayment.returned_at) >= since)
                .where(col(TreasuryPayment.returned_at) <= now)
                .order_by(col(TreasuryPayment.returned_at), col(TreasuryPayment.idempotency_key))
            ).all()
            return [_status(row, now) for row in rows]

        return await self._db.run_read(work)

    # Tests and demos steer the simulated bank with these (a real gateway has none).

    async def return_payment(self, idempotency_key: str, reason: str = ACCOUNT_CLOSED) -> None:
        """Sends a settled payment back now (退汇), as the recipient's bank would."""

        def work(session: Session) -> None:
            row = session.get(TreasuryPayment, idempotency_key)
            if row is None:
                raise KeyError(idempotency_key)
            now = now_utc()
            if as_utc(row.paid_at) > now:
                row.paid_at = now  # a payment settles before it can come back
            row.returned_at, row.return_reason = now, reason
            session.add(row)

        await Transactions(self._db).write(lambda unit: work(unit.session))

    async def settle_now(self, idempotency_key: str) -> None:
        """A payment still settling settles now."""

        def work(session: Session) -> None:
            row = session.get(TreasuryPayment, idempotency_key)
            if row is None:
                raise KeyError(idempotency_key)
            now = now_utc()
            if as_utc(row.paid_at) > now:
                if row.returned_at is not None:
                    row.returned_at = now + (as_utc(row.returned_at) - as_utc(row.paid_at))
                row.paid_at = now
                session.add(row)

        await Transactions(self._db).write(lambda unit: work(unit.session))

    async def list_payments(self) -> list[TreasuryRecord]:
        return await self._payments(None)

    async def statement(self, day: date) -> list[GatewayPayment]:
        """What the treasury settled on this Beijing day, by time (its 对账单), each payment in
        its state now (a returned one RETURNED, with when and why); pending ones are not on it."""
        return await self._payments(day)

    async def _payments(self, day: date | None) -> list[TreasuryRecord]:
        def work(session: Session) -> list[TreasuryRecord]:
            now = now_utc()
            query = (
                select(TreasuryPayment)
                .where(col(TreasuryPayment.paid_at) <= now)
                .order_by(col(TreasuryPayment.paid_at), col(TreasuryPayment.idempotency_key))
            )
            if day is not None:
                start, end = day_bounds(day)
                query = query.where(col(TreasuryPayment.paid_at) >= start).where(
                    col(TreasuryPayment.paid_at) < end
                )
            records = []
            for row in session.exec(query).all():
                state = _state(row, now)
                records.append(
                    TreasuryRecord(
                        idempotency_key=row.idempotency_key,
                        reference=row.reference,
                        payee_credit_code=row.payee_credit_code,
                        payee_name=row.payee_name,
                        amount_fen=row.amount_fen,
                        paid_at=as_utc(row.paid_at),
                        account_number=row.account_number or "",
                        bank_code=row.bank_code or "",
                        account_name=row.account_name or "",
                        state=state,
                        returned_at=(
                            as_utc(row.returned_at)
                            if state == RETURNED and row.returned_at
                            else None
                        ),
                        return_reason=(row.return_reason or "") if state == RETURNED else "",
                    )
                )
            return records

        return await self._db.run_read(work)

    async def close(self) -> None:
        await asyncio.to_thread(self._db.dispose)
