"""The enterprise registry at the edge of the system (市场监管 registration data).

EnterpriseRegistry is the interface a real adapter implements: given a credit code, the record
the registry holds (industry, registered address, kind of body, legal representative,
shareholders), or None if it knows no such code. LocalEnterpriseRegistry stands in for it, like
the simulated treasury: every valid credit code is a registered body whose record is generated
deterministically from the code, unless a data file (REGISTRY_DATA_FILE) says otherwise for that
code. What the generated record says:
- the kind of body from the code's registration authority (its first character): 9 market
  regulation (an enterprise), 5 civil affairs (a social organisation), 1 the establishment
  office (a public institution), anything else other;
- the address in the division the code names (characters 3-8): a Shenzhen district for 4403
  codes, else the province and city the division names (REGISTRY_ACCEPT_ALL_DIVISIONS puts
  every generated address in Shenzhen);
- an enterprise's industry is a manufacturing division picked by the code (so its size is
  measured as industry's), a social organisation's S95, a public institution's M73;
- a legal representative and two natural-person shareholders with made-up names.
A data file gives real-looking records for tests and the demo (a software firm, a leasing firm,
an enterprise in 深汕特别合作区, one that moved away from Shenzhen …).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict
from stdnum.cn import uscc

from services.common.vocabulary import RegistrationKind
from workflows.enterprise import (
    Address,
    EnterpriseRecord,
    Shareholder,
    parse_industry,
    registered_in_shenzhen,
    sector_of_industry,
)


class EnterpriseRegistry(Protocol):
    async def lookup(self, credit_code: str, applicant_name: str) -> EnterpriseRecord | None: ...


class RegistryEntry(BaseModel):
    """One credit code's record in a data file; fields left out are generated."""

    model_config = ConfigDict(extra="forbid")

    registered: bool = True  # false: the registry knows no such code
    registered_name: str | None = None
    industry_code: str | None = None
    registration_kind: RegistrationKind | None = None
    address: Address | None = None
    legal_representative: str | None = None
    legal_representative_id: str | None = None
    shareholders: list[Shareholder] | None = None
    barred_from_fiscal_funds: bool | None = None


def load_registry_data(path: Path) -> dict[str, RegistryEntry]:
    """A data file: {"enterprises": {"<credit code>": {<RegistryEntry fields>}, …}}. A bad file
    fails loudly, naming the entry."""
    document = json.loads(path.read_text(encoding="utf-8"))
    entries: dict[str, RegistryEntry] = {}
    for code, values in document.get("enterprises", {}).items():
        try:
            entry = RegistryEntry.model_validate(values)
            if entry.industry_code is not None:
                parse_industry(entry.industry_code)
        except ValueError as error:
            raise ValueError(f"{path}: enterprises[{code}]: {error}") from error
        entries[code.strip().upper()] = entry
    return entries


_KIND_BY_AUTHORITY = {
    "9": RegistrationKind.ENTERPRISE,
    "5": RegistrationKind.SOCIAL_ORGANISATION,
    "1": RegistrationKind.PUBLIC_INSTITUTION,
}
_MANUFACTURING = ("C39", "C38", "C34", "C35", "C40", "C29")
_INDUSTRY_BY_KIND = {
    RegistrationKind.SOCIAL_ORGANISATION: "S95",
    RegistrationKind.PUBLIC_INSTITUTION: "M73",
    RegistrationKind.OTHER: "S95",
}
SHENZHEN_DISTRICTS = {
    "440303": "罗湖区", "440304": "福田区", "440305": "南山区", "440306": "宝安区",
    "440307": "龙岗区", "440308": "盐田区", "440309": "龙华区", "440310": "坪山区",
    "440311": "光明区",
}  # fmt: skip
# Province and city names of the divisions the demo and the tests use; others print the code.
_PROVINCES = {"11": "北京市", "31": "上海市", "44": "广东省"}
_CITIES = {"4401": "广州市", "4403": "深圳市", "4404": "珠海市", "4406": "佛山市",
           "4413": "惠州市", "4415": "汕尾市", "4419": "东莞市", "4420": "中山市"}  # fmt: skip
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = ("伟", "芳", "娜", "敏", "静", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "华")


def _digest(code: str) -> bytes:
    return hashlib.sha256(code.encode("ascii")).digest()


def _person(digest: bytes, offset: int) -> str:
    return (
        _SURNAMES[digest[offset] % len(_SURNAMES)]
        + _GIVEN[digest[offset + 1] % len(_GIVEN)]
        + _GIVEN[digest[offset + 2] % len(_GIVEN)]
    )


def generated_address(code: str, *, in_shenzhen: bool) -> Address:
    """The address a code's division suggests (or a Shenzhen one when in_shenzhen)."""
    digest = _digest(code)
    division = code[2:8]
    if in_shenzhen or division.startswith("4403"):
        if division not in SHENZHEN_DISTRICTS:
            districts = sorted(SHENZHEN_DISTRICTS)
            division = districts[digest[0] % len(districts)]
        return Address(
            province="广东省",
            city="深圳市",
            district=SHENZHEN_DISTRICTS[division],
            division_code=division,
            detail=f"科技路{digest[1] % 200 + 1}号",
        )
    return Address(
        province=_PROVINCES.get(division[:2], f"（{division[:2]}）"),
        city=_CITIES.get(division[:4], f"（{division[:4]}）"),
        division_code=division,
        detail=f"工业大道{digest[1] % 200 + 1}号",
    )


class LocalEnterpriseRegistry:
    def __init__(
        self,
        entries: Mapping[str, RegistryEntry | Mapping[str, Any]] | None = None,
        *,
        barred: set[str] | None = None,
        accept_all_divisions: bool = False,
    ) -> None:
        """entries: records (or parts of them) by credit code, over the generated ones; barred:
        codes the registry reports barred from fiscal funds (a test's shorthand for entries)."""
        self.entries = {
            code.strip().upper(): RegistryEntry.model_validate(entry)
            for code, entry in (entries or {}).items()
        }
        for code in barred or set():
            entry = self.entries.get(code.upper(), RegistryEntry())
            self.entries[code.upper()] = entry.model_copy(update={"barred_from_fiscal_funds": True})
        self.accept_all_divisions = accept_all_divisions

    @classmethod
    def from_file(
        cls, path: Path | None, *, accept_all_divisions: bool = False
    ) -> LocalEnterpriseRegistry:
        return cls(
            load_registry_data(path) if path is not None else None,
            accept_all_divisions=accept_all_divisions,
        )

    async def lookup(self, credit_code: str, applicant_name: str) -> EnterpriseRecord | None:
        return self.record(credit_code, applicant_name)

    def record(self, credit_code: str, applicant_name: str) -> EnterpriseRecord | None:
        code = credit_code.strip().upper()
        if not uscc.is_valid(code):
            return None
        entry = self.entries.get(code, RegistryEntry())
        if not entry.registered:
            return None
        digest = _digest(code)
        kind = entry.registration_kind or _KIND_BY_AUTHORITY.get(code[0], RegistrationKind.OTHER)
        industry = entry.industry_code or (
            _MANUFACTURING[digest[2] % len(_MANUFACTURING)]
            if kind == RegistrationKind.ENTERPRISE
            else _INDUSTRY_BY_KIND[kind]
        )
        address = entry.address or generated_address(code, in_shenzhen=self.accept_all_divisions)
        representative = entry.legal_representative or _person(digest, 3)
        shareholders = entry.shareholders
        if shareholders is None:
            shareholders = (
                [
                    Shareholder(name=representative, share_basis_points=6000),
                    Shareholder(name=_person(digest, 6), share_basis_points=4000),
                ]
                if kind == RegistrationKind.ENTERPRISE
                else []
            )
        in_city, _ = registered_in_shenzhen(address)
        return EnterpriseRecord(
            credit_code=code,
            registered_name=entry.registered_name or applicant_name,
            sector=sector_of_industry(industry),
            registered_in_city=in_city,
            barred_from_fiscal_funds=bool(entry.barred_from_fiscal_funds),
            industry_code=industry.upper(),
            registration_kind=kind,
            address=address,
            legal_representative=representative,
            legal_representative_id=entry.legal_representative_id or "",
            shareholders=shareholders,
        )


def registry_from_settings(settings: Any) -> LocalEnterpriseRegistry:
    """The registry the settings name: the local one, with REGISTRY_DATA_FILE's records."""
    path = Path(settings.registry_data_file) if settings.registry_data_file else None
    return LocalEnterpriseRegistry.from_file(
        path, accept_all_divisions=settings.registry_accept_all_divisions
    )
