"""Conflicts of interest (利益冲突回避) between experts and applicants: the ConflictSource port,
its local adapters, and the one rule deciding whether an expert is in conflict.

An expert is in conflict with an applicant when he declared it (the applicant's credit code among
his declared conflicts), when his employer is the applicant, or when the registry names him as
the applicant's legal representative or one of its shareholders, or names his employer as a
shareholder. What the registry knows comes through `ConflictSource`: the enterprise registry's
record of the applicant (another part of Grantflow enriches that record with the legal
representative and shareholders). Two adapters stand in for it locally:
`RegistryConflictSource` reads any registry whose records carry `legal_representative` and
`shareholders`, `FileConflictSource` a JSON file of the same facts (infra/local/registry_parties.json).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Party:
    """A person or enterprise a registry record names: a name, and an identifier when known
    (a person's identity number as the registry holds it, an enterprise's credit code)."""

    name: str
    identifier: str = ""


@dataclass(frozen=True)
class ApplicantParties:
    credit_code: str
    legal_representative: Party | None = None
    shareholders: tuple[Party, ...] = field(default_factory=tuple)


class ConflictSource(Protocol):
    """What the enterprise registry says about an applicant's people (None: nothing known)."""

    async def parties(self, credit_code: str) -> ApplicantParties | None: ...


class NoConflictSource:
    """A registry that knows nobody: only declared conflicts and employers count."""

    async def parties(self, credit_code: str) -> ApplicantParties | None:
        return None


def _party(value: Any) -> Party | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return Party(name=value)
    if isinstance(value, dict):
        name = str(value.get("name", ""))
        identifier = str(
            value.get("identifier") or value.get("id") or value.get("credit_code") or ""
        )
        return Party(name=name, identifier=identifier) if name or identifier else None
    name = str(getattr(value, "name", "") or "")
    identifier = str(
        getattr(value, "identifier", "")
        or getattr(value, "id_number", "")
        or getattr(value, "credit_code", "")
        or ""
    )
    return Party(name=name, identifier=identifier) if name or identifier else None


def _parties(values: Iterable[Any]) -> tuple[Party, ...]:
    return tuple(party for party in map(_party, values) if party is not None)


class FileConflictSource:
    """A JSON file: {credit code: {"legal_representative": {"name", "identifier"} or a name,
    "shareholders": [the same]}}. Read once; a missing file knows nobody."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, ApplicantParties] | None = None

    def _load(self) -> dict[str, ApplicantParties]:
        if self._records is None:
            raw = json.loads(self.path.read_text("utf-8")) if self.path.is_file() else {}
            self._records = {
                code.upper(): ApplicantParties(
                    credit_code=code.upper(),
                    legal_representative=_party(entry.get("legal_representative")),
                    shareholders=_parties(entry.get("shareholders", [])),
                )
                for code, entry in raw.items()
            }
        return self._records

    async def parties(self, credit_code: str) -> ApplicantParties | None:
        return self._load().get(credit_code.upper())


class RegistryConflictSource:
    """The enterprise registry's own record (workflows/registry.py's EnterpriseRegistry), when it
    carries `legal_representative` and `shareholders`; otherwise the fallback's."""

    def __init__(self, registry: Any, fallback: ConflictSource | None = None) -> None:
        self.registry = registry
        self.fallback = fallback or NoConflictSource()

    async def parties(self, credit_code: str) -> ApplicantParties | None:
        record = await self.registry.lookup(credit_code, "")
        if record is None or not hasattr(record, "shareholders"):
            return await self.fallback.parties(credit_code)
        return ApplicantParties(
            credit_code=credit_code.upper(),
            legal_representative=_party(getattr(record, "legal_representative", None)),
            shareholders=_parties(getattr(record, "shareholders", None) or ()),
        )


@dataclass(frozen=True)
class ExpertProfile:
    expert_id: str
    name: str
    employer_credit_code: str
    declared_conflicts: tuple[str, ...]
    person_id: str = ""


def _same_person(expert: ExpertProfile, party: Party) -> bool:
    # Identifiers decide when both sides have one; names alone match only without them.
    if expert.person_id and party.identifier:
        return expert.person_id.upper() == party.identifier.upper()
    return bool(party.name) and party.name == expert.name


def conflict_reason(
    expert: ExpertProfile, applicant_credit_code: str, parties: ApplicantParties | None
) -> str:
    """Why the expert may not review the applicant ("" if he may), in Chinese then English."""
    applicant = applicant_credit_code.upper()
    if applicant in {code.upper() for code in expert.declared_conflicts}:
        return "专家已申报与申请单位存在利益关系 (declared conflict of interest with the applicant)"
    employer = expert.employer_credit_code.upper()
    if employer and employer == applicant:
        return "专家的工作单位即申请单位 (the expert's employer is the applicant)"
    if parties is None:
        return ""
    if parties.legal_representative and _same_person(expert, parties.legal_representative):
        return "专家是申请单位的法定代表人 (the expert is the applicant's legal representative)"
    for shareholder in parties.shareholders:
        if _same_person(expert, shareholder):
            return "专家是申请单位的股东 (the expert is a shareholder of the applicant)"
        if employer and shareholder.identifier.upper() == employer:
            return "专家的工作单位是申请单位的股东 (the expert's employer is a shareholder of the applicant)"
    return ""
