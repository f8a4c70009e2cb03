"""SimulatedTreasury: the default payment gateway, a local stand-in for treasury centralised
payment (国库集中支付) with its own database.

It stands for an external system, so it keeps its own table in its own database
(settings.treasury_database_url, default data/treasury.db) and shares nothing with the
disbursement database. It pays once per idempotency key, and can be told to fail: a failure
(GatewayUnavailable) happens before anything is paid; a timeout (GatewayTimeout) happens after the
payment was recorded, as if the answer was lost on the way back.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import BigInteger, DateTime
from sqlmodel import Field, Session, SQLModel, col, select

from services.common.config import Settings
from services.common.db import Database, as_utc, now_utc
from services.common.unit_of_work import Transactions
from services.disbursement.gateway import (
    MAX_KEY,
    GatewayPayment,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    day_bounds,
)


class TreasuryPayment(SQLModel, table=True):
    __tablename__ = "treasury_payment"

    idempotency_key: str = Field(primary_key=True, max_length=MAX_KEY)
    reference: str = Field(max_length=64, unique=True)
    payee_credit_code: str = Field(max_length=32)
    payee_name: str = Field(max_length=200)
    amount_fen: int = Field(sa_type=BigInteger)
    paid_at: datetime = Field(sa_type=DateTime(timezone=True))


# One payment the treasury made, for reconciliation (the gateway's statement line).
TreasuryRecord = GatewayPayment


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
    ) -> None:
        for name, rate in (("failure_rate", failure_rate), ("timeout_rate", timeout_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        self.failure_rate = failure_rate
        self.timeout_rate = timeout_rate
        # Payees whose accounts the treasury refuses (closed, frozen): a permanent rejection.
        self.rejected_payees = frozenset(rejected_payees)
        self._rng = random.Random(seed)
        self._db = Database(database_url)
        SQLModel.metadata.create_all(
            self._db.engine,
            tables=[TreasuryPayment.__table__],  # type: ignore[attr-defined]
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> SimulatedTreasury:
        options: dict[str, object] = {
            "failure_rate": settings.treasury_failure_rate,
            "timeout_rate": settings.treasury_timeout_rate,
            "seed": settings.treasury_seed,
            "rejected_payees": [
                code.strip()
                for code in settings.treasury_rejected_payees.split(",")
                if code.strip()
            ],
        }
        options.update(overrides)
        return cls(settings.database_url("treasury"), **options)  # type: ignore[arg-type]

    async def pay(
        self, idempotency_key: str, payee_credit_code: str, payee_name: str, amount_fen: int
    ) -> str:
        # Both rolls are drawn on every call so a seed gives the same sequence whatever the rates.
        fails = self._rng.random() < self.failure_rate
        times_out = self._rng.random() < self.timeout_rate
        if fails:
            raise GatewayUnavailable("treasury unavailable (simulated)")
        if not idempotency_key or len(idempotency_key) > MAX_KEY:
            raise GatewayRejected(f"idempotency key must be 1-{MAX_KEY} characters")
        if amount_fen <= 0:
            raise GatewayRejected("amount must be positive")
        if payee_credit_code in self.rejected_payees:
            raise GatewayRejected(f"payee account {payee_credit_code} refuses payments")
        wanted = (payee_credit_code, payee_name, amount_fen)

        def record(session: Session) -> tuple[str, bool]:
            existing = session.get(TreasuryPayment, idempotency_key)
            if existing is not None:
                if (existing.payee_credit_code, existing.payee_name, existing.amount_fen) != wanted:
                    raise GatewayRejected("idempotency key was already used for another payment")
                return existing.reference, False
            reference = "TRS" + uuid.uuid4().hex[:20].upper()
            session.add(
                TreasuryPayment(
                    idempotency_key=idempotency_key,
                    reference=reference,
                    payee_credit_code=payee_credit_code,
                    payee_name=payee_name,
                    amount_fen=amount_fen,
                    paid_at=now_utc(),
                )
            )
            return reference, True

        # A concurrent call with the same key may win the insert; the retry answers its payment.
        reference, fresh = await Transactions(self._db).write(lambda unit: record(unit.session))
        if fresh and times_out:
            raise GatewayTimeout("treasury answer lost (simulated); the payment was made")
        return reference

    async def find_payment(self, idempotency_key: str) -> str | None:
        def work(session: Session) -> str | None:
            row = session.get(TreasuryPayment, idempotency_key)
            return row.reference if row is not None else None

        return await self._db.run_read(work)

    async def list_payments(self) -> list[TreasuryRecord]:
        return await self._payments(None)

    async def statement(self, day: date) -> list[GatewayPayment]:
        """What the treasury paid on this Beijing day, by time (its 对账单)."""
        return await self._payments(day)

    async def _payments(self, day: date | None) -> list[TreasuryRecord]:
        def work(session: Session) -> list[TreasuryRecord]:
            query = select(TreasuryPayment).order_by(
                col(TreasuryPayment.paid_at), col(TreasuryPayment.idempotency_key)
            )
            if day is not None:
                start, end = day_bounds(day)
                query = query.where(col(TreasuryPayment.paid_at) >= start).where(
                    col(TreasuryPayment.paid_at) < end
                )
            return [
                TreasuryRecord(
                    idempotency_key=row.idempotency_key,
                    reference=row.reference,
                    payee_credit_code=row.payee_credit_code,
                    payee_name=row.payee_name,
                    amount_fen=row.amount_fen,
                    paid_at=as_utc(row.paid_at),
                )
                for row in session.exec(query).all()
            ]

        return await self._db.run_read(work)

    async def close(self) -> None:
        await asyncio.to_thread(self._db.dispose)
