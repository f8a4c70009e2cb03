"""Reconciliation (对账): the payment gateway's daily statement against the ledger.

For one Beijing calendar day the gateway's statement (gateway.statement(day): what it paid that
day, by idempotency key) is compared with the payment lines the ledger settled that day (state
PAID, paid_at within the day, each with its journal `pay-<line id>`), matched by the award's
idempotency key (gateway.award_payment_key). A key is matched when both sides have it with the
same amount (the journal's, not the line's) and the same payee. Otherwise:

- NOT_IN_LEDGER: the gateway paid it, no line of the award was ever settled (a lost answer not
  yet settled, or a payment nobody asked for);
- NOT_AT_GATEWAY: the ledger settled it, the gateway never paid the key;
- DAY_DIFFERS: both sides have it, but the other side on another day (a lost answer settled the
  next day; the payment then shows on both days, each once);
- AMOUNT_DIFFERS, PAYEE_DIFFERS: both sides have it with a different amount or payee (one
  exception each when both differ); the payee is the credit code and name, and the receiving
  account number where both sides name one;
- STATUS_DIFFERS: the gateway returned the payment (退汇) and the ledger has it paid, or the
  ledger has it returned and the gateway does not.

A payment returned after settlement stays on the statement of the day it settled, RETURNED, and
matches the ledger's RETURNED line (use_cases.reconcile_day records the returns a statement
shows before comparing, and settles the lines still settling that it shows settled). A payment
still settling is on no statement and settled on no line: no exception.

The amounts of an exception are each side's for the key: the gateway's from the day's
statement, the ledger's from its settled line(s) of whichever day; 0 where a side has none.
This module only compares; use_cases.py gathers both sides and keeps the exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from services.common.vocabulary import ReconciliationKind
from services.disbursement.gateway import AWARD_KEY_PREFIX, RETURNED, GatewayPayment

HASHED_KEY_PREFIX = AWARD_KEY_PREFIX + "sha256-"
KEY_SUFFIX = re.compile(r"(-i[0-9]+)?(-r[0-9]+)?$")


def application_of_key(idempotency_key: str) -> str:
    """The application whose award the key pays; "" when the key does not say (another
    system's key, or a long application id replaced by its hash)."""
    if not idempotency_key.startswith(AWARD_KEY_PREFIX) or idempotency_key.startswith(
        HASHED_KEY_PREFIX
    ):
        return ""
    # An instalment's or a reissue's key carries its suffix after the id (gateway.py).
    return KEY_SUFFIX.sub("", idempotency_key.removeprefix(AWARD_KEY_PREFIX))


def payee(credit_code: str, name: str, account_number: str = "") -> str:
    return f"{credit_code} {name} {account_number}".strip()


@dataclass(frozen=True)
class SettledLine:
    """A payment line the ledger settled: the ledger's side of one payment."""

    idempotency_key: str
    line_id: str
    application_id: str
    amount_fen: int  # what its journal pay-<line id> moved; 0 when the journal is missing
    payee_credit_code: str
    payee_name: str
    gateway_reference: str = ""
    account_number: str = ""
    returned: bool = False  # the ledger recorded the payment's return (退汇)

    @property
    def payee(self) -> str:
        return payee(self.payee_credit_code, self.payee_name, self.account_number)


@dataclass(frozen=True)
class Finding:
    """One exception: what is wrong with one key on the day."""

    kind: ReconciliationKind
    idempotency_key: str
    line_id: str = ""
    application_id: str = ""
    gateway_reference: str = ""
    gateway_amount_fen: int = 0
    ledger_amount_fen: int = 0
    gateway_payee: str = ""
    ledger_payee: str = ""


@dataclass
class Outcome:
    """A day's comparison: the report's figures and the exceptions found."""

    gateway_count: int = 0
    gateway_total_fen: int = 0
    ledger_count: int = 0
    ledger_total_fen: int = 0
    matched_count: int = 0
    matched_total_fen: int = 0
    findings: list[Finding] = field(default_factory=list)


def compare(
    statement: Sequence[GatewayPayment],
    settled: Sequence[SettledLine],
    settled_elsewhere: Mapping[str, Sequence[SettledLine]],
    paid_elsewhere: Mapping[str, str],
) -> Outcome:
    """Compares a day's gateway statement with the lines the ledger settled that day.

    settled_elsewhere: for keys on the statement but settled on no line that day, the lines
    settled for them on other days; paid_elsewhere: for keys settled that day but absent from
    the statement, the gateway's reference of their payment on another day (find_payment).
    """
    outcome = Outcome(
        gateway_count=len(statement),
        gateway_total_fen=sum(p.amount_fen for p in statement),
        ledger_count=len(settled),
        ledger_total_fen=sum(line.amount_fen for line in settled),
    )
    ledger: dict[str, list[SettledLine]] = {}
    for line in settled:
        ledger.setdefault(line.idempotency_key, []).append(line)
    seen: set[str] = set()

    for payment in statement:
        key = payment.idempotency_key
        seen.add(key)
        lines = ledger.get(key)
        same_day = lines is not None
        if lines is None:
            lines = list(settled_elsewhere.get(key, ()))
        if not lines:
            outcome.findings.append(
                Finding(
                    ReconciliationKind.NOT_IN_LEDGER,
                    key,
                    application_id=application_of_key(key),
                    gateway_reference=payment.reference,
                    gateway_amount_fen=payment.amount_fen,
                    gateway_payee=payee(payment.payee_credit_code, payment.payee_name),
                )
            )
            continue
        first = lines[0]
        ledger_fen = sum(line.amount_fen for line in lines)
        # Accounts are compared where both sides name one (payments made before accounts had
        # none).
        compared = first.account_number if payment.account_number else ""
        gateway_payee = payee(
            payment.payee_credit_code,
            payment.payee_name,
            payment.account_number if first.account_number else "",
        )
        found = Finding(
            ReconciliationKind.DAY_DIFFERS,
            key,
            line_id=first.line_id,
            application_id=first.application_id,
            gateway_reference=payment.reference,
            gateway_amount_fen=payment.amount_fen,
            ledger_amount_fen=ledger_fen,
            gateway_payee=gateway_payee,
            ledger_payee=payee(first.payee_credit_code, first.payee_name, compared),
        )
        kinds = []
        if not same_day:
            kinds.append(ReconciliationKind.DAY_DIFFERS)
        if ledger_fen != payment.amount_fen:
            kinds.append(ReconciliationKind.AMOUNT_DIFFERS)
        if any(
            payee(line.payee_credit_code, line.payee_name, compared) != gateway_payee
            for line in lines
        ):
            kinds.append(ReconciliationKind.PAYEE_DIFFERS)
        if (payment.state == RETURNED) != any(line.returned for line in lines):
            kinds.append(ReconciliationKind.STATUS_DIFFERS)
        if not kinds:
            outcome.matched_count += 1
            outcome.matched_total_fen += payment.amount_fen
        for kind in kinds:
            outcome.findings.append(replace(found, kind=kind))

    for key, lines in ledger.items():
        if key in seen:
            continue
        first = lines[0]
        reference = paid_elsewhere.get(key, "")
        outcome.findings.append(
            Finding(
                ReconciliationKind.DAY_DIFFERS if reference else ReconciliationKind.NOT_AT_GATEWAY,
                key,
                line_id=first.line_id,
                application_id=first.application_id,
                gateway_reference=reference,
                ledger_amount_fen=sum(line.amount_fen for line in lines),
                ledger_payee=first.payee,
            )
        )
    return outcome
