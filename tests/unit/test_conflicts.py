"""Conflicts of interest between experts and applicants, and the local ConflictSource adapters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from services.review.conflicts import (
    ApplicantParties,
    ExpertProfile,
    FileConflictSource,
    Party,
    RegistryConflictSource,
    conflict_reason,
)

APPLICANT = "91440300MA5F000011"
HOLDING = "91440300MA5F000022"


def expert(**fields: object) -> ExpertProfile:
    values: dict[str, object] = {
        "expert_id": "e1",
        "name": "张三",
        "employer_credit_code": "91440300MA5F000099",
        "declared_conflicts": (),
    }
    values.update(fields)
    return ExpertProfile(**values)  # type: ignore[arg-type]


PARTIES = ApplicantParties(
    credit_code=APPLICANT,
    legal_representative=Party("李四", "ID-LI"),
    shareholders=(Party("王五"), Party("控股公司", HOLDING)),
)


def test_each_kind_of_conflict_is_found_and_named() -> None:
    assert "申报" in conflict_reason(expert(declared_conflicts=(APPLICANT,)), APPLICANT, None)
    assert "工作单位即申请单位" in conflict_reason(
        expert(employer_credit_code=APPLICANT), APPLICANT, None
    )
    assert "法定代表人" in conflict_reason(expert(person_id="ID-LI"), APPLICANT, PARTIES)
    # Known only by name in the registry: the name decides.
    assert "股东" in conflict_reason(expert(name="王五"), APPLICANT, PARTIES)
    assert "工作单位是申请单位的股东" in conflict_reason(
        expert(employer_credit_code=HOLDING), APPLICANT, PARTIES
    )
    # The same name with another identity number is someone else.
    assert conflict_reason(expert(name="李四", person_id="ID-OTHER"), APPLICANT, PARTIES) == ""
    assert conflict_reason(expert(), APPLICANT, PARTIES) == ""


async def test_the_file_adapter_reads_parties_and_knows_nobody_without_a_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "parties.json"
    path.write_text(
        json.dumps({APPLICANT.lower(): {"legal_representative": "李四", "shareholders": []}}),
        "utf-8",
    )
    parties = await FileConflictSource(path).parties(APPLICANT)
    assert parties is not None and parties.legal_representative == Party("李四")
    assert await FileConflictSource(tmp_path / "missing.json").parties(APPLICANT) is None


@dataclass
class EnrichedRecord:
    legal_representative: str
    shareholders: list[dict[str, str]]


class EnrichedRegistry:
    async def lookup(self, credit_code: str, applicant_name: str) -> EnrichedRecord:
        return EnrichedRecord("李四", [{"name": "控股公司", "credit_code": HOLDING}])


class PlainRegistry:
    async def lookup(self, credit_code: str, applicant_name: str) -> object:
        return object()


async def test_the_registry_adapter_reads_an_enriched_record_else_falls_back(
    tmp_path: Path,
) -> None:
    parties = await RegistryConflictSource(EnrichedRegistry()).parties(APPLICANT)
    assert parties is not None
    assert parties.shareholders == (Party("控股公司", HOLDING),)
    assert await RegistryConflictSource(PlainRegistry()).parties(APPLICANT) is None
