"""SimulatedTreasury, the default payment gateway: pays once per key, fails and times out on demand."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from stdnum.cn import uscc

from services.common.config import Settings
from services.common.db import now_utc
from services.disbursement.gateway import (
    MAX_KEY,
    PENDING,
    RETURNED,
    SETTLED,
    GatewayPending,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    PayeeAccount,
    PaymentGateway,
    award_payment_key,
    make_gateway,
)
from services.disbursement.treasury import SimulatedTreasury


def credit_code(n: int) -> str:
    base = f"91440300MA5F{n:05d}"
    return base + uscc.calc_check_digit(base)


PAYEE = credit_code(1)
OTHER = credit_code(2)


async def test_a_repeated_key_returns_the_first_reference_and_never_pays_again(
    database_url: str,
) -> None:
    treasury = SimulatedTreasury(database_url)
    try:
        first = await treasury.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 150_000)
        again = await treasury.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 150_000)
        other = await treasury.pay("line-2", OTHER, "Nanshan Robotics Ltd", 80_000)
        payments = await treasury.list_payments()
    finally:
        await treasury.close()
    assert again == first
    assert other != first
    assert sorted((p.idempotency_key, p.amount_fen) for p in payments) == [
        ("line-1", 150_000),
        ("line-2", 80_000),
    ]
    assert next(p for p in payments if p.idempotency_key == "line-1").reference == first


async def test_every_award_has_one_key_the_treasury_accepts(tmp_path: Path) -> None:
    assert award_payment_key("app-1") == "award-app-1"
    longest = [f"{n}" + "a" * 127 for n in range(2)]  # application ids go up to 128 characters
    keys = [award_payment_key(application_id) for application_id in longest]
    assert keys[0] != keys[1]
    assert keys[0] == award_payment_key(longest[0])  # the same award, the same key, every time
    assert all(len(key) <= MAX_KEY for key in keys)
    treasury = SimulatedTreasury(f"sqlite:///{tmp_path / 't.db'}")
    try:
        references = [await treasury.pay(key, PAYEE, "Shenzhen Cloud Ltd", 100) for key in keys]
        assert [await treasury.find_payment(key) for key in keys] == references
    finally:
        await treasury.close()


async def test_idempotency_survives_a_restart_of_the_treasury(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'treasury.db'}"
    before = SimulatedTreasury(url)
    reference = await before.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 150_000)
    await before.close()
    after = SimulatedTreasury(url)
    try:
        assert await after.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 150_000) == reference
        assert len(await after.list_payments()) == 1
    finally:
        await after.close()


async def test_concurrent_calls_with_one_key_pay_once(database_url: str) -> None:
    treasury = SimulatedTreasury(database_url)
    try:
        references = await asyncio.gather(
            *(treasury.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 150_000) for _ in range(8))
        )
        payments = await treasury.list_payments()
    finally:
        await treasury.close()
    assert len(set(references)) == 1
    assert [p.reference for p in payments] == [references[0]]


async def test_a_key_reused_for_another_payment_is_rejected(tmp_path: Path) -> None:
    treasury = SimulatedTreasury(f"sqlite:///{tmp_path / 't.db'}")
    try:
        await treasury.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 150_000)
        with pytest.raises(GatewayRejected):
            await treasury.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 999_999)
        with pytest.raises(GatewayRejected):
            await treasury.pay("line-1", OTHER, "Shenzhen Cloud Ltd", 150_000)
        payments = await treasury.list_payments()
    finally:
        await treasury.close()
    assert [(p.payee_credit_code, p.amount_fen) for p in payments] == [(PAYEE, 150_000)]


async def test_refused_payees_and_non_positive_amounts_are_rejected_without_paying(
    tmp_path: Path,
) -> None:
    treasury = SimulatedTreasury(f"sqlite:///{tmp_path / 't.db'}", rejected_payees={OTHER})
    try:
        with pytest.raises(GatewayRejected, match="refuses"):
            await treasury.pay("line-1", OTHER, "Closed Account Ltd", 10_000)
        with pytest.raises(GatewayRejected):
            await treasury.pay("line-2", PAYEE, "Shenzhen Cloud Ltd", 0)
        assert await treasury.list_payments() == []
    finally:
        await treasury.close()


async def test_failure_rate_one_fails_before_anything_is_paid(tmp_path: Path) -> None:
    treasury = SimulatedTreasury(f"sqlite:///{tmp_path / 't.db'}", failure_rate=1.0)
    try:
        for _ in range(3):
            with pytest.raises(GatewayUnavailable):
                await treasury.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 150_000)
        assert await treasury.list_payments() == []
    finally:
        await treasury.close()


async def test_timeout_rate_one_pays_then_loses_the_answer_and_a_retry_learns_it(
    tmp_path: Path,
) -> None:
    treasury = SimulatedTreasury(f"sqlite:///{tmp_path / 't.db'}", timeout_rate=1.0)
    try:
        with pytest.raises(GatewayTimeout):
            await treasury.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 150_000)
        paid = await treasury.list_payments()
        assert [p.idempotency_key for p in paid] == ["line-1"]
        assert await treasury.find_payment("line-1") == paid[0].reference
        assert await treasury.find_payment("line-2") is None
        # The retry finds the payment already made: it answers, and pays nothing more.
        assert await treasury.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 150_000) == (
            paid[0].reference
        )
        assert len(await treasury.list_payments()) == 1
    finally:
        await treasury.close()


async def _outcomes(url: str, seed: int) -> list[str]:
    treasury = SimulatedTreasury(url, failure_rate=0.3, timeout_rate=0.3, seed=seed)
    outcomes = []
    try:
        for n in range(60):
            try:
                await treasury.pay(f"line-{n}", PAYEE, "Shenzhen Cloud Ltd", 1_000 + n)
                outcomes.append("paid")
            except GatewayUnavailable:
                outcomes.append("unavailable")
            except GatewayTimeout:
                outcomes.append("timeout")
        recorded = {p.idempotency_key for p in await treasury.list_payments()}
    finally:
        await treasury.close()
    # What failed before paying left no trace; what timed out was paid all the same.
    assert recorded == {f"line-{n}" for n, o in enumerate(outcomes) if o != "unavailable"}
    return outcomes


async def test_rates_with_a_seed_are_reproducible_and_roughly_honoured(tmp_path: Path) -> None:
    first = await _outcomes(f"sqlite:///{tmp_path / 'a.db'}", seed=42)
    second = await _outcomes(f"sqlite:///{tmp_path / 'b.db'}", seed=42)
    other_seed = await _outcomes(f"sqlite:///{tmp_path / 'c.db'}", seed=7)
    assert first == second
    assert first != other_seed
    # 60 draws at 30 %: far outside 5..35 would mean the rate is ignored.
    assert 5 <= first.count("unavailable") <= 35
    assert 3 <= first.count("timeout") <= 30
    assert first.count("paid") >= 10


def test_rates_outside_zero_to_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SimulatedTreasury(f"sqlite:///{tmp_path / 't.db'}", failure_rate=1.5)


async def test_the_configured_gateway_is_the_simulated_treasury_with_its_settings(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path, treasury_failure_rate=1.0, treasury_timeout_rate=0.0, treasury_seed=3
    )
    gateway: PaymentGateway = make_gateway(settings)
    try:
        assert isinstance(gateway, SimulatedTreasury)
        with pytest.raises(GatewayUnavailable):
            await gateway.pay("line-1", PAYEE, "Shenzhen Cloud Ltd", 100)
    finally:
        await gateway.close()
    # Its own database, apart from the service's (data/treasury.db by default).
    assert (tmp_path / "treasury.db").exists()


# Receiving accounts, late settlement and returns (退汇) -------------------------------------------

ACCOUNT = PayeeAccount("Shenzhen Cloud Ltd", "400000000000000001", "102584000016", "工行深圳分行")
NEW_ACCOUNT = PayeeAccount(
    "Shenzhen Cloud Ltd", "600000000000000002", "105584000012", "建行深圳分行"
)


def test_award_keys_per_instalment_and_reissue_keep_the_old_key() -> None:
    assert award_payment_key("app-1") == "award-app-1"
    assert award_payment_key("app-1", instalment=1, reissue=0) == "award-app-1"
    assert award_payment_key("app-1", instalment=2) == "award-app-1-i2"
    assert award_payment_key("app-1", reissue=1) == "award-app-1-r1"
    assert award_payment_key("app-1", instalment=3, reissue=2) == "award-app-1-i3-r2"
    long = "x" * 200
    assert len(award_payment_key(long, reissue=1)) <= MAX_KEY
    assert award_payment_key(long, reissue=1) != award_payment_key(long)


async def test_a_late_payment_is_pending_until_it_settles_and_is_on_no_statement_before(
    tmp_path: Path,
) -> None:
    treasury = SimulatedTreasury(
        f"sqlite:///{tmp_path / 't.db'}", settle_delay_rate=1.0, settle_delay_s=3600
    )
    try:
        with pytest.raises(GatewayPending) as accepted:
            await treasury.pay("award-1", PAYEE, "Shenzhen Cloud Ltd", 100, ACCOUNT)
        status = await treasury.payment_status("award-1")
        assert status is not None and status.state == PENDING and status.settled_at is None
        assert status.account == ACCOUNT and status.reference == accepted.value.reference
        # Asked again with the same key: the same payment, still settling; nothing new.
        with pytest.raises(GatewayPending):
            await treasury.pay("award-1", PAYEE, "Shenzhen Cloud Ltd", 100, ACCOUNT)
        assert await treasury.list_payments() == []
        assert await treasury.find_payment("award-1") == accepted.value.reference
        await treasury.settle_now("award-1")
        settled = await treasury.payment_status("award-1")
        assert settled is not None and settled.state == SETTLED
        [line] = await treasury.list_payments()
        assert (line.account_number, line.bank_code, line.state) == (
            ACCOUNT.account_number,
            ACCOUNT.bank_code,
            SETTLED,
        )
    finally:
        await treasury.close()


async def test_a_closed_first_account_is_returned_and_a_corrected_one_is_paid(
    tmp_path: Path,
) -> None:
    treasury = SimulatedTreasury(f"sqlite:///{tmp_path / 't.db'}", returned_payees={PAYEE})
    since = now_utc()
    try:
        await treasury.pay("award-1", PAYEE, "Shenzhen Cloud Ltd", 100, ACCOUNT)
        await treasury.pay("award-2", OTHER, "Nanshan Robotics Ltd", 100, ACCOUNT)
        [returned] = await treasury.returns(since)
        assert (returned.idempotency_key, returned.state) == ("award-1", RETURNED)
        assert returned.return_reason and returned.returned_at is not None
        statement = {p.idempotency_key: p for p in await treasury.list_payments()}
        assert statement["award-1"].state == RETURNED and statement["award-2"].state == SETTLED
        # The same payee's corrected account is paid and stays paid.
        await treasury.pay("award-1-r1", PAYEE, "Shenzhen Cloud Ltd", 100, NEW_ACCOUNT)
        again = await treasury.payment_status("award-1-r1")
        assert again is not None and again.state == SETTLED
        assert [r.idempotency_key for r in await treasury.returns(since)] == ["award-1"]
    finally:
        await treasury.close()


async def test_a_treasury_database_of_an_older_version_gets_the_new_columns(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE treasury_payment (idempotency_key VARCHAR(128) PRIMARY KEY, "
                "reference VARCHAR(64) UNIQUE NOT NULL, payee_credit_code VARCHAR(32) NOT NULL, "
                "payee_name VARCHAR(200) NOT NULL, amount_fen BIGINT NOT NULL, "
                "paid_at TIMESTAMP NOT NULL)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO treasury_payment VALUES ('award-old', 'TRSOLD', :payee, 'Old Ltd', "
                "500, '2026-01-05 02:00:00')"
            ),
            {"payee": PAYEE},
        )
    engine.dispose()
    treasury = SimulatedTreasury(url)
    try:
        old = await treasury.payment_status("award-old")
        assert old is not None and old.state == SETTLED and old.account is None
        await treasury.pay("award-new", PAYEE, "New Ltd", 100, ACCOUNT)
        assert len(await treasury.list_payments()) == 2
    finally:
        await treasury.close()
