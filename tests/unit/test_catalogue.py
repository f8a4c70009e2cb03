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


def test_seed_catalogue_holds_the_domain_programs() -> None:
    rules = by_code()
    assert {"SME-CLOUD", "IIP-CROSS", "IIP-INDUSTRY"} <= set(rules)
    assert all(rule.version == 1 for rule in rules.values())

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
