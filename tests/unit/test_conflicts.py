"""Conflicts of interest between experts and applicants, and the local ConflictSource adapters."""

from __future__ import annotations

import json
from pathlib import Path

from grantflow.sample import credit_code
from services.review.conflicts import (
    ApplicantParties,
    ExpertProfile,
    Party,
    RegistryConflictSource,
    conflict_reason,
)
from workflows.registry import LocalEnterpriseRegistry

APPLICANT = credit_code(11)
HOLDING = credit_code(22)
UNREGISTERED = credit_code(33)


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


async def test_the_registry_adapter_reads_the_parties_of_the_registry_record(
    tmp_path: Path,
) -> None:
    data = tmp_path / "registry.json"
    data.write_text(
        json.dumps(
            {
                "enterprises": {
                    APPLICANT.lower(): {
                        "legal_representative": "李四",
                        "legal_representative_id": "ID-LI",
                        "shareholders": [
                            {"name": "王五", "person_id": "ID-WANG"},
                            {"name": "控股公司", "credit_code": HOLDING},
                        ],
                    },
                    UNREGISTERED: {"registered": False},
                }
            }
        ),
        "utf-8",
    )
    source = RegistryConflictSource(LocalEnterpriseRegistry.from_file(data))
    parties = await source.parties(APPLICANT)
    assert parties == ApplicantParties(
        credit_code=APPLICANT,
        legal_representative=Party("李四", "ID-LI"),
        shareholders=(Party("王五", "ID-WANG"), Party("控股公司", HOLDING)),
    )
    assert await source.parties(UNREGISTERED) is None
