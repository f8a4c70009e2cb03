"""The payment gateway interface: how the disbursement service hands money to the outside world.

The simulated treasury (treasury.py) is the default adapter; a real bank or treasury adapter
implements the same Protocol. Its errors tell the caller what is safe to do next:
GatewayUnavailable means nothing happened; GatewayTimeout means the outcome is unknown (the
payment may have been made), so only a retry with the same idempotency key is safe;
GatewayRejected is permanent. find_payment answers what happened to a key, so a payment whose
answer was lost is never mistaken for one that was not made.

The idempotency key belongs to the award, not to a payment line (award_payment_key): a line given
up after a lost answer may still be paid late, and the award's line in a later plan must then get
that payment back instead of paying the award a second time.

statement(day) is the gateway's daily statement (对账单): what it paid on one Beijing calendar
day, which reconciliation (reconciliation.py) compares with the ledger.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from services.common.config import Settings

# Gateways take keys of at most this many characters (the simulated treasury's column).
MAX_KEY = 128
AWARD_KEY_PREFIX = "award-"
# Statement days are Beijing calendar days.
BEIJING = ZoneInfo("Asia/Shanghai")


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The instants [start, end) of a Beijing calendar day, in UTC (as every time is stored:
    SQLite keeps the wall clock of what it is given)."""
    start = datetime.combine(day, time(), tzinfo=BEIJING)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=BEIJING)
    return start.astimezone(UTC), end.astimezone(UTC)


def beijing_day(instant: datetime) -> date:
    """The Beijing calendar day of a timezone-aware instant."""
    return instant.astimezone(BEIJING).date()


@dataclass(frozen=True)
class GatewayPayment:
    """One payment the gateway made: a line of its daily statement."""

    idempotency_key: str
    reference: str
    payee_credit_code: str
    payee_name: str
    amount_fen: int
    paid_at: datetime


def award_payment_key(application_id: str, instalment: int = 1, reissue: int = 0) -> str:
    """The idempotency key of the payment of an application's award, the same in every plan.

    An award paid at once has one key ("award-<id>"); an award paid in instalments has one per
    instalment, instalment 1 keeping the award's key (so payments made before instalments
    existed stay found) and instalment n > 1 appending "-i<n>"; a payment made again after the
    treasury returned it appends "-r<k>". Keys too long for the gateway are replaced by the
    SHA-256 of what follows the prefix, so the key stays one per payment.
    """
    suffix = (f"-i{instalment}" if instalment > 1 else "") + (f"-r{reissue}" if reissue else "")
    key = AWARD_KEY_PREFIX + application_id + suffix
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256((application_id + suffix).encode()).hexdigest()
    return AWARD_KEY_PREFIX + "sha256-" + digest


class GatewayError(Exception):
    """Base of every gateway failure."""


class GatewayUnavailable(GatewayError):
    """Transient: the gateway could not be reached or refused to start; nothing was paid."""


class GatewayTimeout(GatewayError):
    """The answer was lost: the payment may or may not have been made. Retry with the same key."""


class GatewayRejected(GatewayError):
    """Permanent: the gateway refuses this payment (closed account, bad details, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaymentGateway(Protocol):
    async def pay(
        self, idempotency_key: str, payee_credit_code: str, payee_name: str, amount_fen: int
    ) -> str:
        """Pays amount_fen to the payee once per idempotency_key; returns the gateway reference.

        Calling again with a key that was already paid returns the first reference and pays
        nothing.
        """
        ...

    async def find_payment(self, idempotency_key: str) -> str | None:
        """The reference of the payment made under this key, or None if none was made.

        A status query, asked before giving up on a payment whose outcome was unknown.
        """
        ...

    async def statement(self, day: date) -> list[GatewayPayment]:
        """The daily statement: every payment made on this Beijing calendar day, by time.

        Raises GatewayUnavailable when the gateway cannot answer.
        """
        ...

    async def close(self) -> None:
        """Releases connections; the gateway is not used afterwards."""
        ...


def make_gateway(settings: Settings) -> PaymentGateway:
    """The gateway chosen by configuration (PAYMENT_GATEWAY; only "simulated" exists yet)."""
    kind = settings.payment_gateway
    if kind == "simulated":
        from services.disbursement.treasury import SimulatedTreasury

        return SimulatedTreasury.from_settings(settings)
    raise ValueError(f"unknown payment gateway {kind!r}; known: simulated")
