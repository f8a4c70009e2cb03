"""The award of each of the nine programs of the seed catalogue at the edges of its rule: below,
at and above every cap and threshold, an odd fen rounded down; and, where they fit, properties
that hold for every basis (never above the cap, never above rate × basis, monotone)."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.applications.catalogue import load_catalogue
from workflows.rules import (
    AmountRuleModel,
    ProgramRuleModel,
    audited_figures,
    award_fen,
    formal_check,
    instalment_amounts,
)

YUAN = 100
WAN = 10_000 * YUAN  # 万元, as notices print amounts


@cache
def program(code: str) -> ProgramRuleModel:
    [rule] = [rule for rule in load_catalogue() if rule.code == code]
    return ProgramRuleModel.from_proto(rule)


def amount(code: str) -> AmountRuleModel:
    return program(code).amount_rule


RATIO_PROGRAMS = [
    "SME-CLOUD",
    "IIP-CROSS",
    "IIP-INDUSTRY",
    "TECH-INVEST",
    "TECH-SMART",
    "TECH-MAJOR",
    "SERVICE-EVENT",
]


def award(code: str, basis: int, requested: int = 0, **keywords: int) -> int:
    rule = amount(code)
    return award_fen(rule, {rule.basis_figure: basis}, requested, **keywords)


# (program, basis in fen, award in fen): below, at and above the cap; an odd fen.
@pytest.mark.parametrize(
    ("code", "basis", "expected"),
    [
        # SME-CLOUD: 50 % of the fee paid, at most 2,000 yuan.
        ("SME-CLOUD", 399_998, 199_999),
        ("SME-CLOUD", 399_999, 199_999),  # 199,999.5 fen rounds down
        ("SME-CLOUD", 400_000, 2_000 * YUAN),
        ("SME-CLOUD", 400_001, 2_000 * YUAN),
        ("SME-CLOUD", 3, 1),
        ("SME-CLOUD", 1, 0),
        # IIP-CROSS: 30 % of the platform investment, at most 10 million yuan.
        ("IIP-CROSS", 3_333_333_333, 999_999_999),  # 999,999,999.9 rounds down
        ("IIP-CROSS", 3_333_333_334, 1_000 * WAN),
        ("IIP-CROSS", 4_000_000_000, 1_000 * WAN),
        ("IIP-CROSS", 7, 2),
        # IIP-INDUSTRY: 30 %, at most 3 million yuan.
        ("IIP-INDUSTRY", 999_999_999, 299_999_999),
        ("IIP-INDUSTRY", 1_000_000_000, 300 * WAN),
        ("IIP-INDUSTRY", 1_000_000_001, 300 * WAN),
        # TECH-INVEST: 10 % of last year's completed investment, at most 10 million yuan.
        ("TECH-INVEST", 9_999_999_999, 999_999_999),
        ("TECH-INVEST", 10_000_000_000, 1_000 * WAN),
        ("TECH-INVEST", 10_000_000_010, 1_000 * WAN),
        ("TECH-INVEST", 19, 1),
        # TECH-SMART: 20 %, at most 20 million yuan, nothing below an investment of 5 million.
        ("TECH-SMART", 499_999_999, 0),
        ("TECH-SMART", 500_000_000, 100_000_000),
        ("TECH-SMART", 500_000_003, 100_000_000),  # 100,000,000.6 rounds down
        ("TECH-SMART", 9_999_999_999, 1_999_999_999),
        ("TECH-SMART", 10_000_000_000, 2_000 * WAN),
        ("TECH-SMART", 10_000_000_005, 2_000 * WAN),
        # TECH-MAJOR: 20 % of the completed fixed-asset investment, at most 50 million yuan.
        ("TECH-MAJOR", 24_999_999_999, 4_999_999_999),
        ("TECH-MAJOR", 25_000_000_000, 5_000 * WAN),
        ("TECH-MAJOR", 30_000_000_000, 5_000 * WAN),
        # SERVICE-EVENT (configurable; chosen): 50 % of the event's cost, at most 500,000 yuan.
        ("SERVICE-EVENT", 99_999_999, 49_999_999),
        ("SERVICE-EVENT", 100_000_000, 50 * WAN),
        ("SERVICE-EVENT", 100_000_001, 50 * WAN),
    ],
)
def test_ratio_programs_at_their_caps_and_thresholds(code: str, basis: int, expected: int) -> None:
    assert award(code, basis) == expected


def test_what_was_asked_for_bounds_the_award() -> None:
    assert award("SME-CLOUD", 400_000, requested=150_000) == 150_000
    assert award("SME-CLOUD", 400_000, requested=250_000) == 200_000
    assert award("TECH-SMART", 499_999_999, requested=1) == 0  # the threshold still holds


def test_tech_invest_caps_an_enterprise_year_across_its_applications() -> None:
    # 10 million yuan per enterprise per year: what the enterprise's other awards of the year
    # leave (eligibility answers remaining_year_cap_fen) bounds the next one.
    first = award("TECH-INVEST", 6_000_000_000)
    assert first == 600 * WAN
    remaining = amount("TECH-INVEST").enterprise_year_cap_fen - first
    assert award("TECH-INVEST", 6_000_000_000, remaining_year_cap_fen=remaining) == 400 * WAN
    assert award("TECH-INVEST", 3_000_000_000, remaining_year_cap_fen=remaining) == 300 * WAN
    assert award("TECH-INVEST", 6_000_000_000, remaining_year_cap_fen=0) == 0
    assert award("TECH-INVEST", 6_000_000_000, remaining_year_cap_fen=-1) == 600 * WAN


def test_tech_major_is_paid_in_three_instalments_that_add_up() -> None:
    assert amount("TECH-MAJOR").instalments == 3
    assert instalment_amounts(amount("TECH-MAJOR"), 5_000 * WAN) == [
        1_666_666_666,
        1_666_666_666,
        1_666_666_668,
    ]
    assert instalment_amounts(amount("TECH-INVEST"), 12_345) == [12_345]


@given(award_fen_=st.integers(0, 10**12), instalments=st.integers(1, 3))
def test_instalments_always_add_up_to_the_award(award_fen_: int, instalments: int) -> None:
    rule = amount("TECH-MAJOR").model_copy(update={"instalments": instalments})
    parts = instalment_amounts(rule, award_fen_)
    assert len(parts) == instalments
    assert sum(parts) == award_fen_
    assert max(parts) - min(parts) < instalments


def test_an_audit_lower_than_the_declaration_lowers_the_award() -> None:
    # 就低原则: IIP-CROSS declares 40 million yuan, the audit confirms 20 million.
    rule = amount("IIP-CROSS")
    declared = {"platform_investment_fen": 4_000 * WAN}
    assert award_fen(rule, declared) == 1_000 * WAN
    audited = audited_figures(declared, "platform_investment_fen", 2_000 * WAN)
    assert award_fen(rule, audited) == 600 * WAN
    # An audit above the declaration changes nothing: the lower figure counts.
    assert audited_figures(declared, "platform_investment_fen", 5_000 * WAN) == declared


@pytest.mark.parametrize(
    ("score_centi", "expected"),
    [
        (None, 0),  # not scored yet
        (0, 0),
        (5_999, 0),
        (6_000, 30 * WAN),
        (7_999, 30 * WAN),
        (8_000, 60 * WAN),
        (8_999, 60 * WAN),
        (9_000, 100 * WAN),
        (10_000, 100 * WAN),
    ],
)
def test_demo_platform_tiers_by_expert_score(score_centi: int | None, expected: int) -> None:
    assert award_fen(amount("DEMO-PLATFORM"), {}, score_centi=score_centi) == expected


def test_a_tier_award_is_bounded_by_what_was_asked_for() -> None:
    assert award_fen(amount("DEMO-PLATFORM"), {}, 45 * WAN, score_centi=9_500) == 45 * WAN


@pytest.mark.parametrize(
    ("students", "expected"),
    [(0, 0), (-1, 0), (1, 4_000 * YUAN), (2_800, 1_120 * WAN), (2_801, 1_120 * WAN + 4_000 * YUAN)],
)
def test_voc_tuition_pays_per_student(students: int, expected: int) -> None:
    assert award_fen(amount("VOC-TUITION"), {"eligible_students": students}) == expected


@given(score=st.integers(0, 10_000), higher=st.integers(0, 10_000))
def test_a_higher_score_never_earns_less_nor_above_the_cap(score: int, higher: int) -> None:
    rule = amount("DEMO-PLATFORM")
    low, high = sorted((score, higher))
    assert award_fen(rule, {}, score_centi=low) <= award_fen(rule, {}, score_centi=high)
    assert award_fen(rule, {}, score_centi=high) <= rule.cap_fen


@given(
    code=st.sampled_from(RATIO_PROGRAMS),
    basis=st.integers(0, 10**12),
    more=st.integers(0, 10**12),
    requested=st.integers(0, 10**12),
)
def test_ratio_awards_stay_under_cap_and_rate_and_grow_with_the_basis(
    code: str, basis: int, more: int, requested: int
) -> None:
    rule = amount(code)
    got = award(code, basis, requested)
    assert 0 <= got <= rule.cap_fen
    assert got * 10_000 <= basis * rule.rate_basis_points  # never above rate × basis
    if rule.enterprise_year_cap_fen:
        assert got <= rule.enterprise_year_cap_fen
    if requested:
        assert got <= requested
    assert award(code, basis) <= award(code, basis + more)  # monotone in the basis
    if basis < rule.minimum_basis_fen:
        assert got == 0


@given(students=st.integers(0, 100_000), more=st.integers(0, 100_000))
def test_per_unit_awards_are_exact_and_monotone(students: int, more: int) -> None:
    rule = amount("VOC-TUITION")
    assert award_fen(rule, {"eligible_students": students}) == students * 4_000 * YUAN
    assert award_fen(rule, {"eligible_students": students}) <= award_fen(
        rule, {"eligible_students": students + more}
    )


def test_the_formal_check_waits_for_the_experts_on_a_tier_program() -> None:
    from datetime import UTC, datetime

    from workflows.rules import EnterpriseRecord, Sector

    platform = EnterpriseRecord(
        credit_code="91440300000000001H",
        registered_name="平台",
        sector=Sector.OTHER,
        registered_in_city=True,
        barred_from_fiscal_funds=False,
    )
    figures = {
        "served_enterprises": 240,
        "satisfaction_basis_points": 9_300,
        "service_revenue_fen": 700 * WAN,
        "partner_agencies": 12,
        "external_experts": 5,
    }
    filed = datetime(2026, 12, 1, tzinfo=UTC)
    rule = program("DEMO-PLATFORM")
    assert formal_check(rule, figures, filed, platform).outcome == "pass"
    # The documents are checked when the caller passes the application's document names.
    missing = formal_check(rule, figures, filed, platform, document_names=["申报书"])
    assert missing.outcome == "supplement" and "示范平台认定文件" in missing.reasons[0]
    carried = list(rule.required_documents)
    assert formal_check(rule, figures, filed, platform, document_names=carried).outcome == "pass"
    # A school with no eligible student has nothing to claim: asked to supplement, by name.
    voc = formal_check(program("VOC-TUITION"), {"eligible_students": 0}, filed, platform)
    assert voc.outcome == "supplement" and "eligible_students" in voc.reasons[0]
