"""The comparison of a day's gateway statement with the ledger (reconciliation.compare), and the
simulated treasury's statement of a Beijing day."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

from services.common.vocabulary import ReconciliationKind
from services.disbursement.gateway import (
    RETURNED,
    GatewayPayment,
    award_payment_key,
    beijing_day,
    day_bounds,
)
from services.disbursement.reconciliation import (
    SettledLine,
    application_of_key,
    compare,
)
from services.disbursement.treasury import SimulatedTreasury, TreasuryPayment

PAYEE, NAME = "91440300MA5F000019", "深圳云科技有限公司"
WHEN = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def paid(app: str, amount: int, payee: str = PAYEE, name: str = NAME) -> GatewayPayment:
    return GatewayPayment(award_payment_key(app), f"TRS-{app}", payee, name, amount, WHEN)


def settled(app: str, amount: int, line: str = "", payee: str = PAYEE) -> SettledLine:
    return SettledLine(
        award_payment_key(app), line or f"line-{app}", app, amount, payee, NAME, f"TRS-{app}"
    )


def kinds(outcome_findings: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(f.kind, f.application_id) for f in outcome_findings]


def test_a_day_where_everything_matches() -> None:
    outcome = compare(
        [paid("A", 100), paid("B", 250)], [settled("A", 100), settled("B", 250)], {}, {}
    )
    assert outcome.findings == []
    assert (outcome.matched_count, outcome.matched_total_fen) == (2, 350)
    assert (outcome.gateway_count, outcome.gateway_total_fen) == (2, 350)
    assert (outcome.ledger_count, outcome.ledger_total_fen) == (2, 350)


def test_returns_and_accounts_are_compared() -> None:
    """A returned payment (退汇) matches the ledger's RETURNED line; a return only one side knows
    is STATUS_DIFFERS; accounts are compared where both sides name one."""
    returned = replace(paid("BACK", 100), state=RETURNED, account_number="4001")
    outcome = compare(
        [
            returned,
            replace(paid("NEWS", 200), state=RETURNED),
            replace(paid("ACC", 300), account_number="4002"),
            replace(paid("OLD", 400), account_number="4003"),
        ],
        [
            replace(settled("BACK", 100), returned=True, account_number="4001"),
            settled("NEWS", 200),
            replace(settled("ACC", 300), account_number="9999"),
            settled("OLD", 400),  # paid before accounts: not compared
        ],
        {},
        {},
    )
    assert kinds(outcome.findings) == [
        (ReconciliationKind.STATUS_DIFFERS, "NEWS"),
        (ReconciliationKind.PAYEE_DIFFERS, "ACC"),
    ]
    assert outcome.matched_count == 2


def test_each_kind_of_mismatch() -> None:
    outcome = compare(
        [
            paid("LOST", 100),  # the answer was lost; no line settled
            paid("LATE", 200),  # settled on another day
            paid("MORE", 300),
            paid("WHO", 400, payee="91440300MA5F000027"),
            paid("OK", 500),
        ],
        [settled("MORE", 310), settled("WHO", 400), settled("OK", 500), settled("GHOST", 600)],
        {award_payment_key("LATE"): [settled("LATE", 200)]},
        {},
    )
    assert kinds(outcome.findings) == [
        (ReconciliationKind.NOT_IN_LEDGER, "LOST"),
        (ReconciliationKind.DAY_DIFFERS, "LATE"),
        (ReconciliationKind.AMOUNT_DIFFERS, "MORE"),
        (ReconciliationKind.PAYEE_DIFFERS, "WHO"),
        (ReconciliationKind.NOT_AT_GATEWAY, "GHOST"),
    ]
    lost, late, more, who, ghost = outcome.findings
    assert (lost.gateway_amount_fen, lost.ledger_amount_fen, lost.line_id) == (100, 0, "")
    assert (late.gateway_amount_fen, late.ledger_amount_fen, late.line_id) == (
        200,
        200,
        "line-LATE",
    )
    assert (more.gateway_amount_fen, more.ledger_amount_fen) == (300, 310)
    assert who.gateway_payee.startswith("91440300MA5F000027")
    assert (ghost.gateway_amount_fen, ghost.ledger_amount_fen) == (0, 600)
    assert (outcome.matched_count, outcome.matched_total_fen) == (1, 500)
    assert (outcome.gateway_total_fen, outcome.ledger_total_fen) == (1500, 1810)


def test_a_line_settled_today_for_a_payment_of_another_day_differs_by_day() -> None:
    outcome = compare([], [settled("LATE", 200)], {}, {award_payment_key("LATE"): "TRS-LATE"})
    [finding] = outcome.findings
    assert finding.kind == ReconciliationKind.DAY_DIFFERS
    assert (finding.gateway_reference, finding.ledger_amount_fen) == ("TRS-LATE", 200)


def test_an_award_settled_twice_in_the_ledger_differs_in_amount() -> None:
    outcome = compare(
        [paid("A", 100)], [settled("A", 100, "line-1"), settled("A", 100, "line-2")], {}, {}
    )
    [finding] = outcome.findings
    assert finding.kind == ReconciliationKind.AMOUNT_DIFFERS
    assert (finding.gateway_amount_fen, finding.ledger_amount_fen) == (100, 200)


def test_amount_and_payee_both_differing_are_two_exceptions() -> None:
    outcome = compare([paid("A", 100, payee="91440300MA5F000027")], [settled("A", 90)], {}, {})
    assert [f.kind for f in outcome.findings] == [
        ReconciliationKind.AMOUNT_DIFFERS,
        ReconciliationKind.PAYEE_DIFFERS,
    ]


def test_keys_name_their_application_unless_hashed() -> None:
    assert application_of_key(award_payment_key("APP-1")) == "APP-1"
    assert application_of_key(award_payment_key("X" * 200)) == ""
    assert application_of_key("someone-else") == ""


def test_beijing_days() -> None:
    start, end = day_bounds(date(2026, 11, 27))
    assert start == datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert beijing_day(datetime(2026, 11, 26, 16, 0, tzinfo=UTC)) == date(2026, 11, 27)
    assert beijing_day(datetime(2026, 11, 26, 15, 59, tzinfo=UTC)) == date(2026, 11, 26)


async def test_the_treasury_statement_holds_the_payments_of_one_beijing_day(
    tmp_path: Path,
) -> None:
    treasury = SimulatedTreasury(f"sqlite:///{tmp_path / 'treasury.db'}")
    try:
        today = beijing_day(datetime.now(UTC))
        reference = await treasury.pay("award-TODAY", PAYEE, NAME, 1_000)
        # Two payments either side of the Beijing midnight that began 2026-11-27.
        with treasury._db.session() as session:
            for key, when in (
                ("award-EVE", datetime(2026, 11, 26, 15, 59, 59, tzinfo=UTC)),
                ("award-MORNING", datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC)),
            ):
                session.add(
                    TreasuryPayment(
                        idempotency_key=key,
                        reference=f"TRS-{key}",
                        payee_credit_code=PAYEE,
                        payee_name=NAME,
                        amount_fen=500,
                        paid_at=when,
                    )
                )
            session.commit()
        assert [p.idempotency_key for p in await treasury.statement(date(2026, 11, 27))] == [
            "award-MORNING"
        ]
        assert [p.idempotency_key for p in await treasury.statement(date(2026, 11, 26))] == [
            "award-EVE"
        ]
        [made] = await treasury.statement(today)
        assert (made.reference, made.amount_fen, made.paid_at.tzinfo) == (reference, 1_000, UTC)
    finally:
        await treasury.close()
