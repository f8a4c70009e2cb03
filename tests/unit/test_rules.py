"""Program rules: award amounts (property-based), enterprise size by the 2011 standard, and the
automated formal check."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from workflows.rules import (
    AmountRuleModel,
    EnterpriseRecord,
    ProgramRuleModel,
    Sector,
    award_fen,
    enterprise_size,
    formal_check,
)

SME_CLOUD = AmountRuleModel(
    basis_figure="cloud_fee_paid_fen", rate_basis_points=5000, cap_fen=200_000
)
IIP_CROSS = AmountRuleModel(
    basis_figure="platform_investment_fen", rate_basis_points=3000, cap_fen=1_000_000_000
)
fen = st.integers(min_value=0, max_value=10**12)


@given(basis=fen, requested=fen)
def test_award_never_exceeds_rate_cap_or_request(basis: int, requested: int) -> None:
    award = award_fen(IIP_CROSS, {"platform_investment_fen": basis}, requested)
    assert 0 <= award <= IIP_CROSS.cap_fen
    assert award * 10_000 <= basis * IIP_CROSS.rate_basis_points  # never above 30 %
    if requested:
        assert award <= requested
    assert isinstance(award, int)


@given(basis=fen)
def test_award_is_the_floored_rate_until_the_cap(basis: int) -> None:
    award = award_fen(SME_CLOUD, {"cloud_fee_paid_fen": basis})
    assert award == min(basis // 2, 200_000)


def test_sme_cloud_examples_from_the_rules() -> None:
    # 50 % of the fee actually paid, at most 2,000 yuan.
    assert award_fen(SME_CLOUD, {"cloud_fee_paid_fen": 300_000}) == 150_000
    assert award_fen(SME_CLOUD, {"cloud_fee_paid_fen": 1_000_000}) == 200_000
    assert award_fen(SME_CLOUD, {"cloud_fee_paid_fen": 3}) == 1  # floored, integer fen
    assert award_fen(SME_CLOUD, {}) == 0


def test_minimum_basis_makes_small_projects_ineligible() -> None:
    # TECH-SMART: only if the intelligent-transformation investment was at least 5 million yuan.
    rule = AmountRuleModel(
        basis_figure="investment_fen",
        rate_basis_points=2000,
        cap_fen=2_000_000_000,
        minimum_basis_fen=500_000_000,
    )
    assert award_fen(rule, {"investment_fen": 499_999_999}) == 0
    assert award_fen(rule, {"investment_fen": 500_000_000}) == 100_000_000


MILLION_YUAN = 100_000_000  # fen


def test_enterprise_size_by_the_2011_standard() -> None:
    assert enterprise_size(Sector.INDUSTRY, 1000, 400 * MILLION_YUAN) == "large"
    # SME if staff below 1000 OR revenue below 400 M.
    assert enterprise_size(Sector.INDUSTRY, 1500, 399 * MILLION_YUAN) == "medium"
    assert enterprise_size(Sector.INDUSTRY, 300, 20 * MILLION_YUAN) == "medium"
    assert enterprise_size(Sector.INDUSTRY, 299, 20 * MILLION_YUAN) == "small"
    assert enterprise_size(Sector.INDUSTRY, 20, 3 * MILLION_YUAN) == "small"
    assert enterprise_size(Sector.INDUSTRY, 19, 3 * MILLION_YUAN) == "micro"
    assert enterprise_size(Sector.SOFTWARE, 10, MILLION_YUAN // 2) == "small"
    assert enterprise_size(Sector.OTHER, 299, 10**15) == "medium"
    assert enterprise_size(Sector.OTHER, 300, 0) == "large"


@given(staff=st.integers(0, 10_000), money=fen, sector=st.sampled_from(list(Sector)))
def test_more_staff_and_money_never_make_an_enterprise_smaller(
    staff: int, money: int, sector: Sector
) -> None:
    order = ["micro", "small", "medium", "large"]
    base = order.index(enterprise_size(sector, staff, money))
    assert order.index(enterprise_size(sector, staff + 50, money)) >= base or base == 3
    assert order.index(enterprise_size(sector, staff, money + MILLION_YUAN)) >= base or base == 3


def rule(**overrides: object) -> ProgramRuleModel:
    values: dict[str, object] = {
        "code": "SME-CLOUD",
        "version": 1,
        "name": "SME cloud",
        "owner_department": "industry",
        "review_departments": ["industry", "finance"],
        "window_opens_at": datetime(2026, 1, 1, tzinfo=UTC),
        "window_closes_at": datetime(2026, 12, 31, tzinfo=UTC),
        "amount_rule": SME_CLOUD,
        "required_figures": ["cloud_fee_paid_fen", "staff_count", "annual_revenue_fen"],
        "sme_only": True,
    }
    values.update(overrides)
    return ProgramRuleModel.model_validate(values)


def company(**overrides: object) -> EnterpriseRecord:
    values: dict[str, object] = {
        "credit_code": "91440300000000001H",
        "registered_name": "Example",
        "sector": Sector.INDUSTRY,
        "registered_in_city": True,
        "barred_from_fiscal_funds": False,
    }
    values.update(overrides)
    return EnterpriseRecord.model_validate(values)


FIGURES = {"cloud_fee_paid_fen": 300_000, "staff_count": 40, "annual_revenue_fen": 10**9}
FILED = datetime(2026, 6, 1, tzinfo=UTC)


def test_formal_check_passes_a_complete_eligible_application() -> None:
    assert formal_check(rule(), FIGURES, FILED, company()).outcome == "pass"


def test_formal_check_rejects_and_asks_for_supplements() -> None:
    assert (
        formal_check(rule(), FIGURES, datetime(2027, 1, 2, tzinfo=UTC), company()).outcome
        == "reject"
    )
    assert formal_check(rule(), FIGURES, FILED, None).outcome == "reject"
    barred = formal_check(rule(), FIGURES, FILED, company(barred_from_fiscal_funds=True))
    assert barred.outcome == "reject" and "失信联合惩戒" in barred.reasons[0]
    elsewhere = formal_check(rule(), FIGURES, FILED, company(registered_in_city=False))
    assert elsewhere.outcome == "reject"
    missing = formal_check(rule(), {"cloud_fee_paid_fen": 1}, FILED, company())
    assert missing.outcome == "supplement"
    assert "staff_count" in missing.reasons[0] and "annual_revenue_fen" in missing.reasons[0]
    large = dict(FIGURES, staff_count=5000, annual_revenue_fen=10**12)
    assert formal_check(rule(), large, FILED, company()).outcome == "reject"
    assert formal_check(rule(sme_only=False), large, FILED, company()).outcome == "pass"
