"""The registry's record and the rules read from it: the industry decides the size sector and
its measure (a 500-person software firm is large, not medium as when the sector was read from
the credit code), leasing firms are sized by total assets, and registration in Shenzhen follows
the registered address (深汕特别合作区 included), not the credit code's 4403 prefix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grantflow.sample import credit_code
from services.common.vocabulary import RegistrationKind, Sector
from workflows.enterprise import (
    SIZE_STANDARDS,
    Address,
    assess_size,
    enterprise_size,
    registered_in_shenzhen,
    sector_of_industry,
    size_measures,
)
from workflows.registry import LocalEnterpriseRegistry, load_registry_data

YUAN = 100
MILLION = 1_000_000 * YUAN
SHENSHAN = Address(
    province="广东省", city="深圳市", district="深汕特别合作区", division_code="441521"
)
GUANGZHOU = Address(province="广东省", city="广州市", district="天河区", division_code="440106")


@pytest.mark.parametrize(
    ("code", "sector"),
    [
        ("I65", Sector.SOFTWARE),
        ("I6510", Sector.SOFTWARE),
        ("I64", Sector.TRANSMISSION),
        ("C39", Sector.INDUSTRY),
        ("D44", Sector.INDUSTRY),
        ("F51", Sector.WHOLESALE),
        ("F52", Sector.RETAIL),
        ("G53", Sector.OTHER),  # railways are outside the table's 交通运输业
        ("G54", Sector.TRANSPORT),
        ("G59", Sector.WAREHOUSING),
        ("H62", Sector.CATERING),
        ("K701", Sector.REAL_ESTATE),
        ("K702", Sector.PROPERTY_MANAGEMENT),
        ("L71", Sector.LEASING),
        ("L72", Sector.LEASING),
        ("M73", Sector.OTHER),
        ("A01", Sector.AGRICULTURE),
        ("E47", Sector.CONSTRUCTION),
    ],
)
def test_industry_codes_map_to_the_2011_tables_sectors(code: str, sector: Sector) -> None:
    assert sector_of_industry(code) is sector


@pytest.mark.parametrize("code", ["", "I", "65", "I99", "C12", "Z01", "I6"])
def test_malformed_industry_codes_are_refused(code: str) -> None:
    with pytest.raises(ValueError):
        sector_of_industry(code)


def test_a_500_person_software_firm_is_large_not_medium() -> None:
    figures = {"staff_count": 500, "annual_revenue_fen": 200 * MILLION}
    software = assess_size(sector_of_industry("I65"), figures)
    assert (software.sme, software.size) == (False, "large")
    # What the old reading of the credit code made of it: industry, where 500 people is medium.
    assert assess_size(Sector.INDUSTRY, figures).size == "medium"
    assert assess_size(Sector.SOFTWARE, {**figures, "annual_revenue_fen": 99 * MILLION}).sme


def test_leasing_is_sized_by_total_assets_not_revenue() -> None:
    leasing = sector_of_industry("L71")
    assert size_measures(leasing) == ["staff_count", "total_assets_fen"]
    small_revenue = {"staff_count": 350, "annual_revenue_fen": 10 * MILLION}
    assert assess_size(leasing, {**small_revenue, "total_assets_fen": 1500 * MILLION}).size == (
        "large"
    )
    assert assess_size(leasing, {**small_revenue, "total_assets_fen": 50 * MILLION}).size == (
        "small"
    )
    unknown = assess_size(leasing, small_revenue)
    assert unknown.sme is None and unknown.missing == ["total_assets_fen"]
    # Fewer than 300 people is an SME whatever the assets; the class then needs them.
    few = assess_size(leasing, {"staff_count": 120})
    assert few.sme is True and few.size is None and few.missing == ["total_assets_fen"]


def test_the_table_lines_at_their_bounds() -> None:
    assert enterprise_size(Sector.SOFTWARE, 300, 100 * MILLION) == "large"
    assert enterprise_size(Sector.SOFTWARE, 299, 100 * MILLION) == "medium"
    assert enterprise_size(Sector.SOFTWARE, 100, 10 * MILLION) == "medium"
    assert enterprise_size(Sector.SOFTWARE, 10, MILLION // 2) == "small"
    assert enterprise_size(Sector.SOFTWARE, 9, 100 * MILLION - 1) == "micro"
    assert enterprise_size(Sector.LEASING, 300, 1200 * MILLION) == "large"
    assert enterprise_size(Sector.LEASING, 100, 80 * MILLION) == "medium"
    assert enterprise_size(Sector.AGRICULTURE, 10_000, 200 * MILLION - 1) == "medium"
    assert enterprise_size(Sector.REAL_ESTATE, 5, 100 * MILLION - 1) == "medium"


@given(
    sector=st.sampled_from(list(SIZE_STANDARDS)),
    staff=st.integers(0, 5000),
    revenue=st.integers(0, 10**12),
    assets=st.integers(0, 10**12),
)
def test_a_decided_size_needs_only_the_sectors_measures(
    sector: Sector, staff: int, revenue: int, assets: int
) -> None:
    everything = {"staff_count": staff, "annual_revenue_fen": revenue, "total_assets_fen": assets}
    full = assess_size(sector, everything)
    assert full.size is not None and full.sme == (full.size != "large")
    only = {m.value: everything[m.value] for m in size_measures(sector)}
    assert assess_size(sector, only) == full


def test_shenzhen_registration_follows_the_address() -> None:
    assert registered_in_shenzhen(Address(district="南山区", division_code="440305"))[0]
    inside, basis = registered_in_shenzhen(SHENSHAN)
    assert inside and "深汕特别合作区" in basis
    assert not registered_in_shenzhen(GUANGZHOU)[0]
    # A district merely called 深汕 elsewhere is not Shenzhen's.
    assert not registered_in_shenzhen(Address(district="深汕特别合作区", division_code="440106"))[0]
    assert not registered_in_shenzhen(None)[0]


async def test_the_local_registry_generates_deterministically_and_data_overrides(
    tmp_path: Path,
) -> None:
    shenzhen, moved, shenshan = credit_code(1), credit_code(2), credit_code(3, division="441500")
    path = tmp_path / "registry.json"
    path.write_text(
        json.dumps(
            {
                "enterprises": {
                    moved: {"address": GUANGZHOU.model_dump()},
                    shenshan: {"address": SHENSHAN.model_dump(), "industry_code": "I65"},
                    credit_code(4): {"registered": False},
                }
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    registry = LocalEnterpriseRegistry(load_registry_data(path))
    first = await registry.lookup(shenzhen, "深圳市甲公司")
    again = await LocalEnterpriseRegistry().lookup(shenzhen, "深圳市甲公司")
    assert first == again and first is not None
    assert first.registered_in_city and first.address and first.address.city == "深圳市"
    assert first.sector is Sector.INDUSTRY and first.industry_code.startswith("C")
    assert first.registration_kind is RegistrationKind.ENTERPRISE
    assert first.legal_representative and first.shareholders
    moved_record = await registry.lookup(moved, "乙公司")
    assert moved_record is not None and moved.startswith("914403")
    assert not moved_record.registered_in_city
    shenshan_record = await registry.lookup(shenshan, "丙公司")
    assert shenshan_record is not None and shenshan_record.registered_in_city
    assert shenshan_record.sector is Sector.SOFTWARE
    assert await registry.lookup(credit_code(4), "丁公司") is None
    assert await registry.lookup("91440300000000000X", "无效") is None
    # A code issued outside Shenzhen is generated outside it (unless every division is accepted).
    elsewhere = credit_code(5, division="440100")
    outside = await registry.lookup(elsewhere, "戊公司")
    assert outside is not None and not outside.registered_in_city
    accepted = await LocalEnterpriseRegistry(accept_all_divisions=True).lookup(elsewhere, "戊公司")
    assert accepted is not None and accepted.registered_in_city
    # The credit code's registration authority tells the kind of body.
    body = credit_code(6).replace("91", "51", 1)
    from stdnum.cn import uscc

    body = body[:-1] + uscc.calc_check_digit(body[:-1])
    organisation = await registry.lookup(body, "深圳市某协会")
    assert organisation is not None
    assert organisation.registration_kind is RegistrationKind.SOCIAL_ORGANISATION


def test_a_bad_data_file_fails_loudly_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    code = credit_code(7)
    path.write_text(json.dumps({"enterprises": {code: {"industry_code": "Q99"}}}))
    with pytest.raises(ValueError, match=code):
        load_registry_data(path)
    path.write_text(json.dumps({"enterprises": {code: {"industy_code": "I65"}}}))
    with pytest.raises(ValueError, match=code):
        load_registry_data(path)


def test_the_demo_registry_data_file_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "infra" / "local" / "registry.json"
    entries = load_registry_data(path)
    assert entries[credit_code(900)].industry_code == "I65"
    assert entries[credit_code(904)].registered is False
