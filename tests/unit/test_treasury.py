"""SimulatedTreasury, the default payment gateway: pays once per key, fails and times out on demand."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from stdnum.cn import uscc

from services.common.config import Settings
from services.disbursement.gateway import (
    MAX_KEY,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
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
