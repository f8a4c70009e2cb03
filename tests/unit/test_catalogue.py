"""The seed program catalogue and the checks a rule version passes before it is published."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grantflow.v1 import common_pb2
from services.applications.catalogue import (
    CATALOGUE_FILE,
    involves,
    load_catalogue,
    validate_rule,
)
from services.common.errors import InvalidArgument
from services.common.vocabulary import Department

SHANGHAI = timezone(timedelta(hours=8))


def by_code() -> dict[str, common_pb2.ProgramRule]:
    return {rule.code: rule for rule in load_catalogue()}


NINE = [
    "SME-CLOUD",
    "IIP-CROSS",
    "IIP-INDUSTRY",
    "TECH-INVEST",
    "TECH-SMART",
    "TECH-MAJOR",
    "SERVICE-EVENT",
    "DEMO-PLATFORM",
    "VOC-TUITION",
]


def test_seed_catalogue_holds_the_domain_programs() -> None:
    rules = by_code()
    assert list(rules) == NINE
    # The four programs of the first catalogue moved to version 2 when they gained the review
    # settings (version 1 stays published where it was); the five new ones start at 1.
    assert {code: rule.version for code, rule in rules.items()} == {
        code: 2 if code in ("SME-CLOUD", "IIP-CROSS", "IIP-INDUSTRY", "TECH-INVEST") else 1
        for code in NINE
    }

    sme = rules["SME-CLOUD"]
    assert sme.owner_department == common_pb2.DEPARTMENT_INDUSTRY
    assert list(sme.review_departments) == [
        common_pb2.DEPARTMENT_INDUSTRY,
        common_pb2.DEPARTMENT_FINANCE,
    ]
    assert sme.amount_rule.basis_figure == "cloud_fee_paid_fen"
    assert sme.amount_rule.rate_basis_points == 5000
    assert sme.amount_rule.cap_fen == 200_000  # 2,000 yuan
    assert list(sme.required_figures) == ["cloud_fee_paid_fen", "staff_count", "annual_revenue_fen"]
    assert sme.sme_only
    assert (sme.notice_working_days, sme.supplement_working_days, sme.review_working_days) == (
        7,
        5,
        10,
    )
    assert sme.window_opens_at.ToDatetime(tzinfo=SHANGHAI) == datetime(2026, 1, 1, tzinfo=SHANGHAI)
    assert sme.window_closes_at.ToDatetime(tzinfo=SHANGHAI) == datetime(
        2027, 12, 31, 18, tzinfo=SHANGHAI
    )

    assert rules["IIP-CROSS"].amount_rule.cap_fen == 1_000_000_000  # 10 million yuan
    assert rules["IIP-INDUSTRY"].amount_rule.cap_fen == 300_000_000  # 3 million yuan
    for code in ("IIP-CROSS", "IIP-INDUSTRY"):
        assert rules[code].amount_rule.basis_figure == "platform_investment_fen"
        assert rules[code].amount_rule.rate_basis_points == 3000
        assert not rules[code].sme_only


def changed(**changes: Any) -> common_pb2.ProgramRule:
    rule = common_pb2.ProgramRule()
    rule.CopyFrom(by_code()["SME-CLOUD"])
    for path, value in changes.items():
        target: Any = rule
        *parents, leaf = path.split("__")
        for parent in parents:
            target = getattr(target, parent)
        if isinstance(value, list):
            target.ClearField(leaf)
            getattr(target, leaf).extend(value)
        else:
            setattr(target, leaf, value)
    return rule


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"code": "sme-cloud"}, "rule.code"),
        ({"code": "S"}, "rule.code"),
        ({"version": -1}, "rule.version"),
        ({"name": "   "}, "rule.name"),
        ({"owner_department": 99}, "rule.owner_department"),
        ({"review_departments": [1, 1]}, "rule.review_departments[1]"),
        ({"review_departments": [1, 0]}, "rule.review_departments[1]"),
        ({"window_closes_at__seconds": 0}, "rule.window_closes_at"),
        ({"required_figures": ["cloud_fee_paid_fen", "Bad"]}, "rule.required_figures[1]"),
        ({"required_figures": ["staff_count"]}, "rule.amount_rule.basis_figure"),
        ({"amount_rule__basis_figure": ""}, "rule.amount_rule.basis_figure"),
        ({"amount_rule__cap_fen": -1}, "rule.amount_rule.cap_fen"),
        ({"amount_rule__cap_fen": 10**13}, "rule.amount_rule.cap_fen"),
        ({"amount_rule__minimum_basis_fen": -1}, "rule.amount_rule.minimum_basis_fen"),
        ({"review_working_days": 366}, "rule.review_working_days"),
    ],
)
def test_an_invalid_rule_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_rule(changed(**changes))
    assert info.value.field == field


def test_a_rule_without_window_or_amount_rule_is_refused() -> None:
    missing: Any
    for missing, field in [
        ("window_opens_at", "rule.window_opens_at"),
        ("window_closes_at", "rule.window_closes_at"),
        ("amount_rule", "rule.amount_rule"),
    ]:
        rule = changed()
        rule.ClearField(missing)
        with pytest.raises(InvalidArgument) as info:
            validate_rule(rule)
        assert info.value.field == field


@given(rate=st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_rate_is_accepted_exactly_between_one_basis_point_and_one_hundred_percent(
    rate: int,
) -> None:
    rule = changed(amount_rule__rate_basis_points=rate)
    if 1 <= rate <= 10_000:
        assert validate_rule(rule).amount_rule.rate_basis_points == rate
    else:
        with pytest.raises(InvalidArgument) as info:
            validate_rule(rule)
        assert info.value.field == "rule.amount_rule.rate_basis_points"


def test_validation_trims_the_name_and_leaves_the_input_alone() -> None:
    rule = changed(name="  SME cloud  ")
    assert validate_rule(rule).name == "SME cloud"
    assert rule.name == "  SME cloud  "


def test_a_broken_catalogue_file_fails_naming_the_entry(tmp_path: Path) -> None:
    document = json.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))
    document["programs"][1]["amount_rule"]["cap_fen"] = 0
    broken = tmp_path / "catalogue.json"
    broken.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ValueError, match=r"programs\[1\]\.amount_rule\.cap_fen"):
        load_catalogue(broken)


def test_a_program_involves_its_owner_and_its_reviewers_only() -> None:
    sme = by_code()["SME-CLOUD"]
    assert involves(sme, Department.INDUSTRY)
    assert involves(sme, Department.FINANCE)
    assert not involves(sme, Department.HR)
    assert not involves(sme, None)

    owned_only = common_pb2.ProgramRule()
    owned_only.CopyFrom(sme)
    owned_only.owner_department = common_pb2.DEPARTMENT_HR
    owned_only.review_departments[:] = [common_pb2.DEPARTMENT_FINANCE]
    assert involves(owned_only, Department.HR)
    assert involves(owned_only, Department.FINANCE)
    assert not involves(owned_only, Department.INDUSTRY)


YUAN = 100


def test_every_program_carries_its_review_settings() -> None:
    rules = by_code()
    for code, rule in rules.items():
        assert rule.description, code
        assert rule.budget_line_code, code
        assert rule.over_budget_policy != common_pb2.OVER_BUDGET_POLICY_UNSPECIFIED, code
        assert rule.join_policy != common_pb2.JOIN_POLICY_UNSPECIFIED, code
        assert rule.required_documents, code
        assert rule.eligible_registration_kinds, code
        assert rule.renotice_after_dismissed_objection, code
        # Every co-reviewing department has its own due date; finance co-reviews every program.
        assert [r.department for r in rule.department_reviews] == list(rule.review_departments)
        assert all(r.due_working_days > 0 for r in rule.department_reviews)
        assert common_pb2.DEPARTMENT_FINANCE in rule.review_departments, code
        assert rule.window_opens_at.ToDatetime(tzinfo=SHANGHAI) <= datetime(
            2026, 11, 28, tzinfo=SHANGHAI
        ), code
        assert rule.window_closes_at.ToDatetime(tzinfo=SHANGHAI) >= datetime(
            2027, 12, 31, tzinfo=SHANGHAI
        ), code

    experts = {code for code, rule in rules.items() if rule.expert_review.panel_size}
    assert experts == {"IIP-CROSS", "IIP-INDUSTRY", "TECH-MAJOR", "DEMO-PLATFORM"}
    audited = {code: r.special_audit.audited_figure for code, r in rules.items()}
    assert {code for code, figure in audited.items() if figure} == {
        "IIP-CROSS",
        "IIP-INDUSTRY",
        "TECH-INVEST",
        "TECH-MAJOR",
    }
    assert audited["TECH-INVEST"] == "completed_investment_fen"

    voc = rules["VOC-TUITION"]
    assert voc.owner_department == common_pb2.DEPARTMENT_HR
    assert list(voc.review_departments) == [common_pb2.DEPARTMENT_HR, common_pb2.DEPARTMENT_FINANCE]
    assert voc.amount_rule.kind == common_pb2.AMOUNT_KIND_PER_UNIT
    assert voc.amount_rule.unit_figure == "eligible_students"
    assert voc.amount_rule.amount_per_unit_fen == 4_000 * YUAN

    assert list(rules["SERVICE-EVENT"].eligible_registration_kinds) == ["social_organisation"]
    assert list(rules["TECH-INVEST"].excluded_programs) == ["IND-INVEST"]
    assert rules["TECH-INVEST"].amount_rule.enterprise_year_cap_fen == 10_000_000 * YUAN
    assert rules["TECH-SMART"].amount_rule.minimum_basis_fen == 5_000_000 * YUAN
    assert rules["TECH-MAJOR"].amount_rule.instalments == 3
    assert rules["TECH-MAJOR"].join_policy == common_pb2.JOIN_POLICY_ALL_APPROVE
    platform = rules["DEMO-PLATFORM"]
    assert platform.amount_rule.kind == common_pb2.AMOUNT_KIND_SCORE_TIERS
    assert [t.min_score_centi for t in platform.amount_rule.tiers] == [6000, 8000, 9000]
    assert (platform.join_policy, platform.quorum) == (common_pb2.JOIN_POLICY_QUORUM, 2)
    for code in experts:
        assert sum(c.max_points for c in rules[code].expert_review.rubric) == 100


def test_every_program_draws_on_a_budget_line_of_both_fiscal_years() -> None:
    from grantflow.budget_seed import configured_lines

    lines = configured_lines()
    amounts = {(line.line_code, line.fiscal_year): line.total_fen for line in lines}
    rules = by_code()
    for code, rule in rules.items():
        assert (rule.budget_line_code, 2026) in amounts, code
        assert (rule.budget_line_code, 2027) in amounts, code
    # The three lines of the bureau's reply letter (DOMAIN.md), in fen.
    assert amounts[("SME-SUPPORT", 2026)] == 380_000_000 * YUAN
    assert amounts[("IIP", 2026)] == 100_000_000 * YUAN
    assert amounts[("TECH-TRANSFORM", 2026)] == 1_340_000_000 * YUAN
    # VOC-TUITION's line is the HR bureau's fund: one department, one special fund.
    voc_line = rules["VOC-TUITION"].budget_line_code
    assert {line.department for line in lines if line.line_code == voc_line} == {Department.HR}
    assert {line.fund_code for line in lines if line.department == Department.INDUSTRY} == {
        "SZ-IIT"
    }


def variant(code: str, change: Any) -> common_pb2.ProgramRule:
    rule = common_pb2.ProgramRule()
    rule.CopyFrom(by_code()[code])
    change(rule)
    return rule


def _set_trimmed_mean_on_three(rule: common_pb2.ProgramRule) -> None:
    rule.expert_review.panel_size = 3
    rule.expert_review.aggregation = common_pb2.SCORE_AGGREGATION_TRIMMED_MEAN


@pytest.mark.parametrize(
    ("code", "change", "field"),
    [
        ("SME-CLOUD", lambda r: setattr(r.amount_rule, "kind", 9), "rule.amount_rule.kind"),
        ("SME-CLOUD", lambda r: r.amount_rule.tiers.add(), "rule.amount_rule.tiers"),
        (
            "IIP-CROSS",
            lambda r: setattr(r.expert_review.rubric[3], "max_points", 25),
            "rule.expert_review.rubric",
        ),
        (
            "IIP-CROSS",
            lambda r: setattr(r.expert_review.rubric[1], "code", "technology"),
            "rule.expert_review.rubric[1].code",
        ),
        ("IIP-CROSS", _set_trimmed_mean_on_three, "rule.expert_review.aggregation"),
        (
            "IIP-CROSS",
            lambda r: setattr(r.expert_review, "pass_score_centi", 10_001),
            "rule.expert_review.pass_score_centi",
        ),
        (
            "IIP-CROSS",
            lambda r: setattr(r.expert_review, "field", "Industrial Internet"),
            "rule.expert_review.field",
        ),
        (
            "IIP-CROSS",
            lambda r: setattr(r.special_audit, "audited_figure", "staff_count"),
            "rule.special_audit.audited_figure",
        ),
        (
            "TECH-INVEST",
            lambda r: setattr(r.special_audit, "due_working_days", 0),
            "rule.special_audit.due_working_days",
        ),
        (
            "DEMO-PLATFORM",
            lambda r: setattr(r.amount_rule.tiers[2], "min_score_centi", 8000),
            "rule.amount_rule.tiers[2].min_score_centi",
        ),
        (
            "DEMO-PLATFORM",
            lambda r: setattr(r.amount_rule.tiers[1], "amount_fen", 100),
            "rule.amount_rule.tiers[1].amount_fen",
        ),
        (
            "DEMO-PLATFORM",
            lambda r: setattr(r.amount_rule, "cap_fen", 80_000_000),
            "rule.amount_rule.tiers[2].amount_fen",
        ),
        ("DEMO-PLATFORM", lambda r: r.ClearField("expert_review"), "rule.expert_review"),
        ("DEMO-PLATFORM", lambda r: setattr(r, "quorum", 4), "rule.quorum"),
        ("TECH-MAJOR", lambda r: setattr(r, "quorum", 1), "rule.quorum"),
        (
            "TECH-MAJOR",
            lambda r: setattr(r.department_reviews[0], "department", common_pb2.DEPARTMENT_HR),
            "rule.department_reviews[0].department",
        ),
        (
            "TECH-MAJOR",
            lambda r: setattr(r.department_reviews[1], "due_working_days", 400),
            "rule.department_reviews[1].due_working_days",
        ),
        (
            "TECH-MAJOR",
            lambda r: setattr(r.amount_rule, "instalments", 4),
            "rule.amount_rule.instalments",
        ),
        (
            "TECH-INVEST",
            lambda r: setattr(r.amount_rule, "enterprise_year_cap_fen", 100),
            "rule.amount_rule.enterprise_year_cap_fen",
        ),
        (
            "TECH-INVEST",
            lambda r: r.excluded_programs.append("TECH-INVEST"),
            "rule.excluded_programs[1]",
        ),
        (
            "TECH-INVEST",
            lambda r: r.excluded_programs.append("ind invest"),
            "rule.excluded_programs[1]",
        ),
        (
            "VOC-TUITION",
            lambda r: setattr(r.amount_rule, "amount_per_unit_fen", 0),
            "rule.amount_rule.amount_per_unit_fen",
        ),
        (
            "VOC-TUITION",
            lambda r: setattr(r.amount_rule, "unit_figure", "students"),
            "rule.amount_rule.unit_figure",
        ),
        (
            "VOC-TUITION",
            lambda r: setattr(r.amount_rule, "basis_figure", "eligible_students"),
            "rule.amount_rule.basis_figure",
        ),
        (
            "SERVICE-EVENT",
            lambda r: r.eligible_registration_kinds.append("company"),
            "rule.eligible_registration_kinds[1]",
        ),
        (
            "SERVICE-EVENT",
            lambda r: r.required_documents.append("申报书"),
            "rule.required_documents[3]",
        ),
        ("SERVICE-EVENT", lambda r: setattr(r, "budget_line_code", "x"), "rule.budget_line_code"),
        ("SERVICE-EVENT", lambda r: setattr(r, "over_budget_policy", 7), "rule.over_budget_policy"),
        ("SERVICE-EVENT", lambda r: setattr(r, "join_policy", 7), "rule.join_policy"),
        ("SERVICE-EVENT", lambda r: setattr(r, "description", "长" * 2001), "rule.description"),
    ],
)
def test_a_malformed_program_version_is_refused_naming_the_field(
    code: str, change: Any, field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_rule(variant(code, change))
    assert info.value.field == field


def test_validate_program_lists_every_problem_of_a_version() -> None:
    from workflows.rules import validate_program

    assert all(validate_program(rule) == [] for rule in load_catalogue())

    def spoil(rule: common_pb2.ProgramRule) -> None:
        rule.expert_review.rubric[0].max_points = 90
        rule.quorum = 5
        rule.special_audit.audited_figure = "unknown_fen"

    fields = [field for field, _ in validate_program(variant("IIP-CROSS", spoil))]
    assert fields == ["quorum", "expert_review.rubric", "special_audit.audited_figure"]


def test_rules_published_before_the_kinds_read_as_ratio_and_cap() -> None:
    from workflows.rules import ProgramRuleModel

    old = variant(
        "SME-CLOUD",
        lambda r: (
            [
                r.ClearField(name)
                for name in (
                    "budget_line_code",
                    "over_budget_policy",
                    "join_policy",
                    "department_reviews",
                    "required_documents",
                    "eligible_registration_kinds",
                    "description",
                    "renotice_after_dismissed_objection",
                )
            ]
            and r.amount_rule.ClearField("kind")
        ),
    )
    model = ProgramRuleModel.from_proto(old)
    assert model.amount_rule.kind == "ratio_cap"
    assert model.over_budget_policy == "waiting_list"
    assert model.join_policy == "any_reject"
    assert model.expert_review is None and model.special_audit is None
    assert model.amount_rule.instalments == 1
    assert model.department_due_working_days("finance") == 10
    # A rule serialised by an earlier worker (recorded in a history) loads with the defaults.
    recorded = model.model_dump(
        mode="json",
        include={
            "code",
            "version",
            "name",
            "owner_department",
            "review_departments",
            "window_opens_at",
            "window_closes_at",
            "required_figures",
        },
    )
    recorded["amount_rule"] = {
        "basis_figure": "cloud_fee_paid_fen",
        "rate_basis_points": 5000,
        "cap_fen": 200_000,
        "minimum_basis_fen": 0,
    }
    assert ProgramRuleModel.model_validate(recorded).amount_rule == model.amount_rule
