"""Conflicts of interest (利益冲突回避) between experts and applicants: the ConflictSource port,
its adapter over the enterprise registry, and the one rule deciding whether an expert is in conflict.

An expert is in conflict with an applicant when he declared it (the applicant's credit code among
his declared conflicts), when his employer is the applicant, or when the registry names him as
the applicant's legal representative or one of its shareholders, or names his employer as a
shareholder. What the registry knows comes through `ConflictSource`: the enterprise registry's
record of the applicant (its legal representative and shareholders, with identity numbers and
credit codes where it gives them), read by `RegistryConflictSource`; locally that is the
generated registry with REGISTRY_DATA_FILE's records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from workflows.registry import EnterpriseRegistry


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


class RegistryConflictSource:
    """The enterprise registry's record of the applicant (workflows/registry.py's
    EnterpriseRegistry, the one eligibility reads): its legal representative and shareholders,
    with the identity numbers and credit codes the registry gives."""

    def __init__(self, registry: EnterpriseRegistry) -> None:
        self.registry = registry

    async def parties(self, credit_code: str) -> ApplicantParties | None:
        record = await self.registry.lookup(credit_code, "")
        if record is None:
            return None
        representative = (
            Party(record.legal_representative, record.legal_representative_id)
            if record.legal_representative or record.legal_representative_id
            else None
        )
        return ApplicantParties(
            credit_code=credit_code.upper(),
            legal_representative=representative,
            shareholders=tuple(
                Party(holder.name, holder.credit_code or holder.person_id)
                for holder in record.shareholders
            ),
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
