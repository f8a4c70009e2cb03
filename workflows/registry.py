"""The enterprise registry at the edge of the system (市场监管 registration and credit lists).

EnterpriseRegistry is the interface a real adapter implements. LocalEnterpriseRegistry is the
default: every valid credit code is a city-registered enterprise whose sector is read from the
code's registration-authority digits, except codes configured as barred (joint-punishment list)
or as registered elsewhere. It stands in for an external system, like the simulated treasury.
"""

from __future__ import annotations

from typing import Protocol

from stdnum.cn import uscc

from workflows.rules import EnterpriseRecord, Sector

# The first character of a USCC is the registration authority; 9 is market regulation
# (companies). The second is the kind of entity: 1 enterprise, 2 individual business, 3 coop.
_SECTOR_BY_KIND = {"1": Sector.INDUSTRY, "2": Sector.RETAIL, "3": Sector.OTHER}
# Shenzhen's administrative-division codes start 4403 (characters 3-6 of the credit code).
CITY_DIVISION_PREFIX = "4403"


class EnterpriseRegistry(Protocol):
    async def lookup(self, credit_code: str, applicant_name: str) -> EnterpriseRecord | None: ...


class LocalEnterpriseRegistry:
    def __init__(
        self,
        barred: set[str] | None = None,
        city_division_prefix: str = CITY_DIVISION_PREFIX,
        accept_all_divisions: bool = False,
    ) -> None:
        self.barred = {code.upper() for code in (barred or set())}
        self.city_division_prefix = city_division_prefix
        self.accept_all_divisions = accept_all_divisions

    async def lookup(self, credit_code: str, applicant_name: str) -> EnterpriseRecord | None:
        code = credit_code.upper()
        if not uscc.is_valid(code):
            return None
        in_city = self.accept_all_divisions or code[2:6].startswith(self.city_division_prefix)
        return EnterpriseRecord(
            credit_code=code,
            registered_name=applicant_name,
            sector=_SECTOR_BY_KIND.get(code[1], Sector.INDUSTRY),
            registered_in_city=in_city,
            barred_from_fiscal_funds=code in self.barred,
        )
