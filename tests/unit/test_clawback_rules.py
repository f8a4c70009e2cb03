"""Clawback (追回) rules without a database: the bar's end in calendar years, the ledger's names
of the receivable and recovery accounts, and the movements of their journals."""

from __future__ import annotations

from datetime import UTC, datetime

from services.disbursement import store
from services.disbursement.clawbacks import years_after
from services.disbursement.use_cases import CLAWBACK, PAYMENT, REPAYMENT, movement_of


def test_the_bar_ends_the_same_moment_years_later_in_beijing_time() -> None:
    opened = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)  # 10:30 on 1 March in Beijing
    assert years_after(opened, 3) == datetime(2029, 3, 1, 2, 30, tzinfo=UTC)
    leap = datetime(2028, 2, 29, 1, 0, tzinfo=UTC)
    assert years_after(leap, 1) == datetime(2029, 2, 28, 1, 0, tzinfo=UTC)


def test_the_clawback_accounts_belong_to_the_awards_budget() -> None:
    assert store.account_kind(store.clawback_receivable("SME-CLOUD")) == (
        store.CLAWBACK_RECEIVABLE,
        "SME-CLOUD",
    )
    assert store.account_kind(store.recovered("L:2026")) == (store.RECOVERED, "L:2026")


def test_clawback_and_repayment_journals_are_told_apart_from_payments() -> None:
    assert movement_of("clawback-abc") == CLAWBACK
    assert movement_of("repay-abc") == REPAYMENT
    assert movement_of("pay-abc") == PAYMENT
    assert movement_of("budget-X-1") == ""
