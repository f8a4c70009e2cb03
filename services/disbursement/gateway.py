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

A payment goes to the recipient's confirmed receiving account (收款账户, PayeeAccount). The
gateway may accept a payment without settling it at once (GatewayPending: "accepted, settling";
the money is not final yet): payment_status(key) then says PENDING, later SETTLED, and, for a
payment the recipient's bank sent back after settlement (退汇: account closed, name mismatch),
RETURNED with the reason. An unknown or pending outcome is always resolved by payment_status
before anything is submitted again; returns(since) lists the payments returned since a moment.

statement(day) is the gateway's daily statement (对账单): what it settled on one Beijing
calendar day (each line with its account and its state now, a returned one RETURNED), which
reconciliation (reconciliation.py) compares with the ledger.
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


# What became of a payment the gateway accepted (PaymentStatus.state, GatewayPayment.state).
PENDING, SETTLED, RETURNED = "pending", "settled", "returned"


@dataclass(frozen=True)
class PayeeAccount:
    """The receiving account (收款账户) a payment goes to."""

    account_name: str  # 户名: the enterprise's registered name
    account_number: str  # 账号
    bank_code: str  # 开户行联行号 (CNAPS, 12 digits)
    bank_name: str  # 开户行名称

    def describe(self) -> str:
        return f"{self.account_name} {self.bank_name} {self.account_number}".strip()


@dataclass(frozen=True)
class GatewayPayment:
    """One payment the gateway settled: a line of its daily statement."""

    idempotency_key: str
    reference: str
    payee_credit_code: str
    payee_name: str
    amount_fen: int
    paid_at: datetime  # when it settled
    account_number: str = ""
    bank_code: str = ""
    account_name: str = ""
    state: str = SETTLED  # SETTLED, or RETURNED when the recipient's bank sent it back since
    returned_at: datetime | None = None
    return_reason: str = ""


@dataclass(frozen=True)
class PaymentStatus:
    """The gateway's answer to a status query: what became of the payment made under a key."""

    idempotency_key: str
    reference: str
    state: str  # PENDING, SETTLED or RETURNED
    amount_fen: int
    payee_credit_code: str
    payee_name: str
    account: PayeeAccount | None
    accepted_at: datetime
    settled_at: datetime | None  # set once SETTLED (and kept when RETURNED)
    returned_at: datetime | None = None
    return_reason: str = ""


def award_payment_key(application_id: str, instalment: int = 1, reissue: int = 0) -> str:
    """The idempotency key of the payment of an application's award, the same in every plan.

    Instalment 1 and reissue 0 give "award-<id>", the key of every payment made before
    instalments and returns existed; instalment n > 1 appends "-i<n>"; the k-th payment again
    after returned payments (退汇) appends "-r<k>", so a reissue is a new payment, and one per
    return. A key too long for the gateway is replaced by the SHA-256 of the whole key (after
    the prefix), so the key stays one per award, instalment and reissue.
    """
    if instalment < 1 or reissue < 0:
        raise ValueError(f"instalment {instalment} must be >= 1 and reissue {reissue} >= 0")
    body = application_id
    if instalment > 1:
        body += f"-i{instalment}"
    if reissue:
        body += f"-r{reissue}"
    key = AWARD_KEY_PREFIX + body
    if len(key) <= MAX_KEY:
        return key
    return AWARD_KEY_PREFIX + "sha256-" + hashlib.sha256(body.encode()).hexdigest()


class GatewayError(Exception):
    """Base of every gateway failure."""


class GatewayUnavailable(GatewayError):
    """Transient: the gateway could not be reached or refused to start; nothing was paid."""


class GatewayTimeout(GatewayError):
    """The answer was lost: the payment may or may not have been made. Retry with the same key."""


class GatewayPending(GatewayError):
    """Accepted, settling: the payment was taken under its key but the money is not final yet.

    Never resubmit as a new payment: ask payment_status(key) later (PENDING, SETTLED or
    RETURNED); paying again with the same key answers the same."""

    def __init__(self, reference: str) -> None:
        super().__init__(f"payment {reference} accepted, settling")
        self.reference = reference


class GatewayRejected(GatewayError):
    """Permanent: the gateway refuses this payment (closed account, bad details, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaymentGateway(Protocol):
    async def pay(
        self,
        idempotency_key: str,
        payee_credit_code: str,
        payee_name: str,
        amount_fen: int,
        account: PayeeAccount | None = None,
    ) -> str:
        """Pays amount_fen to the payee's account once per idempotency_key; returns the gateway
        reference of a settled payment, raises GatewayPending for one accepted but settling.

        Calling again with a key that was already used answers the first payment (its reference,
        or GatewayPending while it settles) and pays nothing.
        """
        ...

    async def find_payment(self, idempotency_key: str) -> str | None:
        """The reference of the payment made under this key (pending, settled or returned), or
        None if none was made.

        A status query, asked before giving up on a payment whose outcome was unknown.
        """
        ...

    async def payment_status(self, idempotency_key: str) -> PaymentStatus | None:
        """What became of the payment made under this key; None if none was made."""
        ...

    async def returns(self, since: datetime) -> list[PaymentStatus]:
        """The payments returned (退汇) at or after `since`, oldest return first."""
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
