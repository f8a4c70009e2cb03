"""What Grantflow knows of an applicant from the enterprise registry, and the pure rules read
from it: the industry (GB/T 4754-2017) and the size sector it falls in, the enterprise size by
the 2011 standard (工信部联企业〔2011〕300号) with the measure that standard uses for the
sector, and registration in Shenzhen from the registered address.

No I/O: the grant workflow and the applications service's eligibility checks both call it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from services.common.vocabulary import RegistrationKind, Sector

FEN_PER_YUAN = 100
WAN = 10_000 * FEN_PER_YUAN  # 万元 in fen: the 2011 table states money in 万元

Size = Literal["medium", "small", "micro", "large"]


class Measure(StrEnum):
    """The figures the size standard measures, named as the application's figures are."""

    STAFF = "staff_count"  # 从业人员
    REVENUE = "annual_revenue_fen"  # 营业收入
    ASSETS = "total_assets_fen"  # 资产总额


MEASURE_LABELS = {
    Measure.STAFF: "从业人员",
    Measure.REVENUE: "营业收入",
    Measure.ASSETS: "资产总额",
}

Criteria = tuple[tuple[Measure, int], ...]


@dataclass(frozen=True)
class SizeStandard:
    """One sector's line of the 2011 table: SME when any ceiling measure is below its bound;
    medium (small) when every medium (small) measure reaches its bound; micro otherwise."""

    ceiling: Criteria
    medium: Criteria
    small: Criteria


def _line(
    staff: int | None,
    money: Measure,
    ceiling: int,
    medium: tuple[int | None, int],
    small: tuple[int | None, int],
) -> SizeStandard:
    """A line "staff below A or money below B; medium: staff ≥ C and money ≥ D; small: …"
    (money in 万元; a staff bound of None: the line does not count staff)."""

    def criteria(staff_bound: int | None, money_bound: int) -> Criteria:
        money_criterion = ((money, money_bound * WAN),)
        if staff_bound is None:
            return money_criterion
        return ((Measure.STAFF, staff_bound), *money_criterion)

    return SizeStandard(
        ceiling=criteria(staff, ceiling),
        medium=criteria(*medium),
        small=criteria(*small),
    )


R, A, S = Measure.REVENUE, Measure.ASSETS, Measure.STAFF
# 工信部联企业〔2011〕300号, article 4, line by line.
SIZE_STANDARDS: dict[Sector, SizeStandard] = {
    Sector.AGRICULTURE: _line(None, R, 20000, (None, 500), (None, 50)),
    Sector.INDUSTRY: _line(1000, R, 40000, (300, 2000), (20, 300)),
    Sector.CONSTRUCTION: SizeStandard(
        ceiling=((R, 80000 * WAN), (A, 80000 * WAN)),
        medium=((R, 6000 * WAN), (A, 5000 * WAN)),
        small=((R, 300 * WAN), (A, 300 * WAN)),
    ),
    Sector.WHOLESALE: _line(200, R, 40000, (20, 5000), (5, 1000)),
    Sector.RETAIL: _line(300, R, 20000, (50, 500), (10, 100)),
    Sector.TRANSPORT: _line(1000, R, 30000, (300, 3000), (20, 200)),
    Sector.WAREHOUSING: _line(200, R, 30000, (100, 1000), (20, 100)),
    Sector.POSTAL: _line(1000, R, 30000, (300, 2000), (20, 100)),
    Sector.ACCOMMODATION: _line(300, R, 10000, (100, 2000), (10, 100)),
    Sector.CATERING: _line(300, R, 10000, (100, 2000), (10, 100)),
    Sector.TRANSMISSION: _line(2000, R, 100000, (100, 1000), (10, 100)),
    Sector.SOFTWARE: _line(300, R, 10000, (100, 1000), (10, 50)),
    Sector.REAL_ESTATE: SizeStandard(
        ceiling=((R, 200000 * WAN), (A, 10000 * WAN)),
        medium=((R, 1000 * WAN), (A, 5000 * WAN)),
        small=((R, 100 * WAN), (A, 2000 * WAN)),
    ),
    Sector.PROPERTY_MANAGEMENT: _line(1000, R, 5000, (300, 1000), (100, 500)),
    # Leasing and business services measure total assets, not revenue.
    Sector.LEASING: _line(300, A, 120000, (100, 8000), (10, 100)),
    Sector.OTHER: SizeStandard(ceiling=((S, 300),), medium=((S, 100),), small=((S, 10),)),
}
del R, A, S


def size_measures(sector: Sector) -> list[Measure]:
    """The figures the sector's line of the table reads, in the table's order."""
    seen: list[Measure] = []
    standard = SIZE_STANDARDS[sector]
    for measure, _ in (*standard.ceiling, *standard.medium, *standard.small):
        if measure not in seen:
            seen.append(measure)
    return seen


@dataclass(frozen=True)
class SizeAssessment:
    """The size class where the figures decide it. sme is None when a measure the decision
    needs is missing (named in `missing`); size is None also when the enterprise is an SME but
    its class needs a missing measure."""

    sector: Sector
    sme: bool | None
    size: Size | None
    measures: dict[str, int] = field(default_factory=dict)  # the figures read
    missing: list[str] = field(default_factory=list)


def _meets(criteria: Criteria, known: dict[Measure, int]) -> bool | None:
    """True if every criterion is met, False if a known one is not, None if unknown ones decide."""
    if any(measure in known and known[measure] < bound for measure, bound in criteria):
        return False
    if all(measure in known for measure, _ in criteria):
        return True
    return None


def assess_size(sector: Sector, figures: dict[str, int]) -> SizeAssessment:
    """The enterprise's size by the 2011 standard from the application's figures."""
    standard = SIZE_STANDARDS[sector]
    known = {measure: figures[measure.value] for measure in Measure if measure.value in figures}
    read = {m.value: v for m, v in known.items() if m in size_measures(sector)}

    def missing(criteria: Criteria) -> list[str]:
        return [m.value for m, _ in criteria if m not in known]

    ceiling = standard.ceiling
    if any(m in known and known[m] < bound for m, bound in ceiling):
        sme = True
    elif all(m in known for m, _ in ceiling):
        return SizeAssessment(sector, False, "large", read)
    else:
        return SizeAssessment(sector, None, None, read, missing(ceiling))
    for size, criteria in (("medium", standard.medium), ("small", standard.small)):
        met = _meets(criteria, known)
        if met is None:
            return SizeAssessment(sector, sme, None, read, missing(criteria))
        if met:
            return SizeAssessment(sector, sme, size, read)  # type: ignore[arg-type]
    return SizeAssessment(sector, sme, "micro", read)


def enterprise_size(sector: Sector, staff: int, money_fen: int) -> Size:
    """The size class from staff and the sector's money measure (revenue, or total assets for
    leasing and business services; both for construction and real estate)."""
    assessment = assess_size(
        sector,
        {
            Measure.STAFF.value: staff,
            Measure.REVENUE.value: money_fen,
            Measure.ASSETS.value: money_fen,
        },
    )
    assert assessment.size is not None  # every measure is known
    return assessment.size


# Industry (国民经济行业分类 GB/T 4754-2017): a section letter, then the division's two digits
# and optionally the group's and class's (e.g. "I65", "K701", "C3911").
INDUSTRY_CODE = re.compile(r"^([A-T])(\d{2})(\d{1,2})?$")
# The divisions each section holds.
SECTION_DIVISIONS: dict[str, tuple[int, int]] = {
    "A": (1, 5), "B": (6, 12), "C": (13, 43), "D": (44, 46), "E": (47, 50), "F": (51, 52),
    "G": (53, 60), "H": (61, 62), "I": (63, 65), "J": (66, 69), "K": (70, 70), "L": (71, 72),
    "M": (73, 75), "N": (76, 79), "O": (80, 82), "P": (83, 83), "Q": (84, 85), "R": (86, 90),
    "S": (91, 96), "T": (97, 97),
}  # fmt: skip
SECTION_NAMES = {
    "A": "农、林、牧、渔业", "B": "采矿业", "C": "制造业",
    "D": "电力、热力、燃气及水生产和供应业", "E": "建筑业", "F": "批发和零售业",
    "G": "交通运输、仓储和邮政业", "H": "住宿和餐饮业", "I": "信息传输、软件和信息技术服务业",
    "J": "金融业", "K": "房地产业", "L": "租赁和商务服务业", "M": "科学研究和技术服务业",
    "N": "水利、环境和公共设施管理业", "O": "居民服务、修理和其他服务业", "P": "教育",
    "Q": "卫生和社会工作", "R": "文化、体育和娱乐业", "S": "公共管理、社会保障和社会组织",
    "T": "国际组织",
}  # fmt: skip
# Divisions whose sector is not their section's (the 2011 table splits F, G, H, I and K).
_DIVISION_SECTORS = {
    51: Sector.WHOLESALE, 52: Sector.RETAIL,
    53: Sector.OTHER,  # railway transport: the table's 交通运输业 leaves it out
    54: Sector.TRANSPORT, 55: Sector.TRANSPORT, 56: Sector.TRANSPORT, 57: Sector.TRANSPORT,
    58: Sector.TRANSPORT, 59: Sector.WAREHOUSING, 60: Sector.POSTAL,
    61: Sector.ACCOMMODATION, 62: Sector.CATERING,
    63: Sector.TRANSMISSION, 64: Sector.TRANSMISSION, 65: Sector.SOFTWARE,
}  # fmt: skip
_SECTION_SECTORS = {
    "A": Sector.AGRICULTURE, "B": Sector.INDUSTRY, "C": Sector.INDUSTRY, "D": Sector.INDUSTRY,
    "E": Sector.CONSTRUCTION, "L": Sector.LEASING,
}  # fmt: skip


def parse_industry(code: str) -> tuple[str, int, str]:
    """(section, division, group digits) of an industry code; ValueError if it is none."""
    match = INDUSTRY_CODE.match(code.strip().upper())
    if match is None:
        raise ValueError(f"{code!r} is not a GB/T 4754 industry code such as I65 or K701")
    section, division, rest = match.group(1), int(match.group(2)), match.group(3) or ""
    low, high = SECTION_DIVISIONS[section]
    if not low <= division <= high:
        raise ValueError(f"{code!r}: division {division:02d} is not in section {section}")
    return section, division, rest


def sector_of_industry(code: str) -> Sector:
    """The 2011 table's sector of an industry code (GB/T 4754-2017)."""
    section, division, rest = parse_industry(code)
    if division in _DIVISION_SECTORS:
        return _DIVISION_SECTORS[division]
    if division == 70:  # 房地产业: development (701) and property management (702) have lines
        return {"1": Sector.REAL_ESTATE, "2": Sector.PROPERTY_MANAGEMENT}.get(
            rest[:1], Sector.OTHER
        )
    return _SECTION_SECTORS.get(section, Sector.OTHER)


def industry_label(code: str) -> str:
    """The industry code with its section's name, e.g. "I65（信息传输、软件和信息技术服务业）"."""
    try:
        section, _, _ = parse_industry(code)
    except ValueError:
        return code
    return f"{code}（{SECTION_NAMES[section]}）"


class Address(BaseModel):
    """A registered address (住所) as the registry holds it."""

    province: str = ""
    city: str = ""
    district: str = ""
    division_code: str = ""  # administrative division (GB/T 2260), 6 digits
    detail: str = ""

    def text(self) -> str:
        return f"{self.province}{self.city}{self.district}{self.detail}"


# Shenzhen's administrative divisions start 4403.
SHENZHEN_DIVISION_PREFIX = "4403"
# Areas Shenzhen administers whose division codes are another city's: the 深汕特别合作区 has no
# division code of its own; its enterprises are registered under Shanwei's (4415) with the
# area as their district.
SHENZHEN_AREAS_ELSEWHERE = {"深汕特别合作区": "4415"}


def registered_in_shenzhen(address: Address | None) -> tuple[bool, str]:
    """Whether a registered address is in Shenzhen, and why (in Chinese, for the evidence)."""
    if address is None or not address.division_code:
        return False, "登记信息中没有住所的行政区划代码"
    if address.division_code.startswith(SHENZHEN_DIVISION_PREFIX):
        return True, f"住所行政区划代码 {address.division_code} 属深圳市"
    prefix = SHENZHEN_AREAS_ELSEWHERE.get(address.district)
    if prefix is not None and address.division_code.startswith(prefix):
        return True, f"住所位于{address.district}，由深圳市管理"
    return False, f"住所行政区划代码 {address.division_code}（{address.text()}）不属深圳市"


class Shareholder(BaseModel):
    name: str
    credit_code: str = ""  # an enterprise shareholder's; empty for a natural person
    person_id: str = ""  # a natural person's identity number, where the registry gives it
    share_basis_points: int = 0  # 10000 = the whole capital


class EnterpriseRecord(BaseModel):
    """What the enterprise registry knows of an applicant. `sector` and `registered_in_city`
    are derived by the registry adapter (from the industry and the address) and kept as fields
    because grants recorded before the richer record read them; the fields after them have
    defaults for the same reason."""

    credit_code: str
    registered_name: str
    sector: Sector
    registered_in_city: bool
    # The registry itself reports a bar (e.g. a joint-punishment feed); the bureau's own credit
    # list is data of the applications service (CheckEligibility's credit check).
    barred_from_fiscal_funds: bool
    industry_code: str = ""  # GB/T 4754-2017, e.g. "I65"
    registration_kind: RegistrationKind = RegistrationKind.ENTERPRISE
    address: Address | None = None
    legal_representative: str = ""
    legal_representative_id: str = ""  # the identity number, where the registry gives it
    shareholders: list[Shareholder] = []
