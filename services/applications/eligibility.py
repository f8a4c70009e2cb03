"""The eligibility checks of an application, as pure functions over what the applications
service holds (the application, its pinned rule, the enterprise's other applications, the credit
list) and what the registry says. The use case (eligibility_use_cases.py) gathers the inputs in
one transaction and keeps each check's outcome and evidence with the application.

Choices made where DOMAIN.md is silent (docs/eligibility.md says the same for people):
- A project is the same project when both applications carry the same project code, or have the
  same title (trimmed, case and spacing ignored): project_code is optional, the title is the
  fallback.
- Duplicate funding: the same project in another application of the enterprise, in any program,
  that was filed earlier and is still alive, or that has an award (decided, noticed, in payment
  or paid) whenever it was filed. First come, first served: a later filing does not make an
  earlier one ineligible until it is awarded.
- Excluded programs (多头申报): the enterprise may not hold, in the same calendar year of filing,
  an application (by the same rule as above) in a program this program excludes, or in a program
  whose rule excludes this one, whatever the project. Judged per enterprise and year because the
  same project check is already duplicate funding.
- The yearly cap per enterprise counts the awards of the same program's other applications filed
  in the same calendar year (Asia/Shanghai) that are decided, noticed, in payment or paid.
- The credit list is judged at the moment of the check; the registry's own report of a bar
  counts as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from grantflow.v1 import common_pb2
from services.applications.store import ApplicationRecord, CreditListEntryRecord
from services.common.db import as_utc
from services.common.labels import label
from services.common.vocabulary import EligibilityCheck, GrantStage, RegistrationKind
from services.common.workdays import SHANGHAI
from workflows.enterprise import (
    MEASURE_LABELS,
    EnterpriseRecord,
    Measure,
    assess_size,
    industry_label,
    registered_in_shenzhen,
)

NO_CAP = -1
# Stages in which an application no longer competes for money.
ENDED = frozenset({GrantStage.REJECTED, GrantStage.WITHDRAWN})
# Stages in which an application holds an award (its award_amount_fen).
AWARDED = frozenset(
    {
        GrantStage.APPROVED,
        GrantStage.IN_NOTICE,
        GrantStage.AWAITING_FUNDING_PLAN,
        GrantStage.IN_PAYMENT,
        GrantStage.PAID,
        GrantStage.PAYMENT_FAILED,
        # Paid in instalments: the whole award is held between them.
        GrantStage.INSTALMENTS,
        GrantStage.MILESTONE_OVERDUE,
    }
)
SIZE_WORDS = {"large": "大型", "medium": "中型", "small": "小型", "micro": "微型"}
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class CheckOutcome:
    name: EligibilityCheck
    passed: bool
    reason_zh: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def evidence_json(self) -> str:
        return json.dumps(self.evidence, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class Eligibility:
    checks: list[CheckOutcome]
    remaining_year_cap_fen: int

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def yuan(fen: int) -> str:
    whole, cents = divmod(fen, 100)
    return f"{whole:,}.{cents:02d}元"


def _iso(at: datetime | None) -> str | None:
    return as_utc(at).isoformat() if at is not None else None


def stage_of(record: ApplicationRecord) -> GrantStage:
    return GrantStage.from_proto(record.status)


def project_title_key(title: str) -> str:
    return _SPACES.sub(" ", title.strip()).casefold()


def same_project(a: ApplicationRecord, b: ApplicationRecord) -> bool:
    if a.project_code and b.project_code and a.project_code.upper() == b.project_code.upper():
        return True
    return project_title_key(a.project_title) == project_title_key(b.project_title)


def competing(application: ApplicationRecord, other: ApplicationRecord) -> bool:
    """Whether another application of the enterprise stands in this one's way: awarded, or
    filed earlier and still alive."""
    stage = stage_of(other)
    if stage in AWARDED:
        return True
    if stage in ENDED or other.withdrawal_requested_at is not None:
        return False
    return (other.id or 0) < (application.id or 0)


def _summary(record: ApplicationRecord) -> dict[str, Any]:
    return {
        "application_id": record.application_id,
        "program_code": record.program_code,
        "status": stage_of(record).value,
        "project_code": record.project_code,
        "project_title": record.project_title,
        "submitted_at": _iso(record.submitted_at),
        "award_amount_fen": record.award_amount_fen,
    }


def filing_year(record: ApplicationRecord) -> int:
    return as_utc(record.submitted_at).astimezone(SHANGHAI).year


# The checks ---------------------------------------------------------------------------------


def registry_check(
    application: ApplicationRecord, enterprise: EnterpriseRecord | None
) -> CheckOutcome:
    name = EligibilityCheck.REGISTRY
    if enterprise is None:
        return CheckOutcome(
            name,
            False,
            "统一社会信用代码在企业登记信息中查询不到",
            {"credit_code": application.applicant_credit_code},
        )
    evidence = {
        "credit_code": enterprise.credit_code,
        "registered_name": enterprise.registered_name,
        "applicant_name": application.applicant_name,
        "industry_code": enterprise.industry_code,
        "sector": enterprise.sector.value,
        "registration_kind": enterprise.registration_kind.value,
        "address": enterprise.address.model_dump() if enterprise.address else None,
        "legal_representative": enterprise.legal_representative,
        "shareholders": [holder.model_dump() for holder in enterprise.shareholders],
    }
    if _SPACES.sub("", enterprise.registered_name) != _SPACES.sub("", application.applicant_name):
        return CheckOutcome(
            name,
            False,
            f"申报单位名称与登记名称“{enterprise.registered_name}”不一致",
            evidence,
        )
    return CheckOutcome(
        name,
        True,
        f"已登记：{enterprise.registered_name}，行业 {industry_label(enterprise.industry_code)}",
        evidence,
    )


def credit_check(
    entries: list[CreditListEntryRecord], enterprise: EnterpriseRecord | None, now: datetime
) -> CheckOutcome:
    valid = [entry for entry in entries if entry.valid_at(now)]
    registry_barred = bool(enterprise and enterprise.barred_from_fiscal_funds)
    evidence = {
        "checked_at": _iso(now),
        "entries": [
            {
                "entry_id": entry.entry_id,
                "list_name": entry.list_name,
                "reason": entry.reason,
                "source": entry.source,
                "valid_from": _iso(entry.valid_from),
                "valid_until": _iso(entry.valid_until),
            }
            for entry in valid
        ],
        "registry_barred": registry_barred,
    }
    if valid:
        entry = valid[0]
        until = (
            f"至 {as_utc(entry.valid_until).astimezone(SHANGHAI):%Y-%m-%d}"
            if entry.valid_until
            else "，未设截止日期"
        )
        return CheckOutcome(
            EligibilityCheck.CREDIT,
            False,
            f"申请单位列入{entry.list_name}（自 "
            f"{as_utc(entry.valid_from).astimezone(SHANGHAI):%Y-%m-%d}{until}），"
            "不得申请财政资金",
            evidence,
        )
    if registry_barred:
        return CheckOutcome(
            EligibilityCheck.CREDIT,
            False,
            "登记机关报告申请单位被列入失信联合惩戒名单，不得申请财政资金",
            evidence,
        )
    return CheckOutcome(EligibilityCheck.CREDIT, True, "信用名单中无有效记录", evidence)


def registration_check(enterprise: EnterpriseRecord | None) -> CheckOutcome:
    name = EligibilityCheck.REGISTRATION
    if enterprise is None:
        return CheckOutcome(name, False, "无登记信息，无法确认注册地")
    if enterprise.address is None:
        # A registry without address data answers only whether the body is the city's.
        passed = enterprise.registered_in_city
        reason = "登记机关确认在本市登记注册" if passed else "申请单位未在本市登记注册"
        return CheckOutcome(name, passed, reason, {"registered_in_city": passed})
    passed, basis = registered_in_shenzhen(enterprise.address)
    evidence = {"address": enterprise.address.model_dump(), "basis": basis}
    reason = basis if passed else f"申请单位未在深圳市登记注册：{basis}"
    return CheckOutcome(name, passed, reason, evidence)


def _kind_label(kind: str) -> str:
    try:
        return label(RegistrationKind(kind))
    except ValueError:
        return kind


def registration_kind_check(
    rule: common_pb2.ProgramRule, enterprise: EnterpriseRecord | None
) -> CheckOutcome:
    name = EligibilityCheck.REGISTRATION_KIND
    allowed = list(rule.eligible_registration_kinds) or [RegistrationKind.ENTERPRISE.value]
    if enterprise is None:
        return CheckOutcome(name, False, "无登记信息，无法确认单位类型", {"allowed": allowed})
    kind = enterprise.registration_kind
    evidence = {"registration_kind": kind.value, "allowed": allowed}
    words = "、".join(_kind_label(k) for k in allowed)
    if kind.value not in allowed:
        return CheckOutcome(
            name, False, f"申请单位类型为{label(kind)}，本计划仅受理{words}", evidence
        )
    return CheckOutcome(name, True, f"单位类型：{label(kind)}", evidence)


def size_check(
    rule: common_pb2.ProgramRule, figures: dict[str, int], enterprise: EnterpriseRecord | None
) -> CheckOutcome:
    name = EligibilityCheck.ENTERPRISE_SIZE
    if enterprise is None:
        if rule.sme_only:
            return CheckOutcome(name, False, "无登记信息，无法确认所属行业和企业规模")
        return CheckOutcome(name, True, "本计划不限企业规模")
    assessment = assess_size(enterprise.sector, figures)
    sector = label(enterprise.sector)
    evidence = {
        "industry_code": enterprise.industry_code,
        "sector": enterprise.sector.value,
        "measures": assessment.measures,
        "missing": assessment.missing,
        "sme": assessment.sme,
        "size": assessment.size,
        "sme_only": rule.sme_only,
    }
    missing_words = "、".join(MEASURE_LABELS[Measure(m)] + f"（{m}）" for m in assessment.missing)
    if not rule.sme_only:
        size = SIZE_WORDS.get(assessment.size or "", "未能确定规模")
        return CheckOutcome(name, True, f"本计划不限企业规模（{sector}：{size}）", evidence)
    if assessment.sme is None:
        return CheckOutcome(
            name, False, f"{sector}按{missing_words}划型，申报数据缺少该项", evidence
        )
    if not assessment.sme:
        return CheckOutcome(
            name,
            False,
            f"按{sector}标准属大型企业，本计划仅支持中小微企业",
            evidence,
        )
    size = SIZE_WORDS.get(assessment.size or "", "中小微")
    return CheckOutcome(name, True, f"按{sector}标准属{size}企业", evidence)


def duplicate_check(
    application: ApplicationRecord, others: list[ApplicationRecord]
) -> CheckOutcome:
    matches = [o for o in others if competing(application, o) and same_project(application, o)]
    evidence = {
        "project_code": application.project_code,
        "project_title": application.project_title,
        "matches": [_summary(o) for o in matches],
    }
    if matches:
        first = matches[0]
        return CheckOutcome(
            EligibilityCheck.DUPLICATE_FUNDING,
            False,
            f"同一项目已申报{first.program_code}（申请编号 {first.application_id}，"
            f"{label(stage_of(first))}），不得重复申请资助",
            evidence,
        )
    return CheckOutcome(
        EligibilityCheck.DUPLICATE_FUNDING, True, "未发现同一项目的其他申报或资助", evidence
    )


def exclusion_check(
    application: ApplicationRecord,
    rule: common_pb2.ProgramRule,
    others: list[ApplicationRecord],
    rule_of: Callable[[ApplicationRecord], common_pb2.ProgramRule | None],
) -> CheckOutcome:
    excluded = set(rule.excluded_programs)
    year = filing_year(application)
    matches = []
    for other in others:
        if filing_year(other) != year or not competing(application, other):
            continue
        other_rule = rule_of(other)
        excludes_us = other_rule is not None and rule.code in other_rule.excluded_programs
        if other.program_code in excluded or excludes_us:
            matches.append(other)
    evidence = {
        "excluded_programs": sorted(excluded),
        "year": year,
        "matches": [_summary(o) for o in matches],
    }
    if matches:
        first = matches[0]
        return CheckOutcome(
            EligibilityCheck.EXCLUDED_PROGRAMS,
            False,
            f"本计划与{first.program_code}不得同年申报（多头申报，申请编号 "
            f"{first.application_id}）",
            evidence,
        )
    reason = "无互斥计划的申报" if excluded else "本计划未规定互斥计划"
    return CheckOutcome(EligibilityCheck.EXCLUDED_PROGRAMS, True, reason, evidence)


def year_cap_check(
    application: ApplicationRecord, rule: common_pb2.ProgramRule, others: list[ApplicationRecord]
) -> tuple[CheckOutcome, int]:
    name = EligibilityCheck.ENTERPRISE_YEAR_CAP
    cap = rule.amount_rule.enterprise_year_cap_fen
    if cap <= 0:
        return CheckOutcome(name, True, "本计划不设企业年度资助上限", {"cap_fen": 0}), NO_CAP
    year = filing_year(application)
    awards = [
        o
        for o in others
        if o.program_code == application.program_code
        and filing_year(o) == year
        and stage_of(o) in AWARDED
        and o.award_amount_fen > 0
    ]
    used = sum(o.award_amount_fen for o in awards)
    remaining = max(0, cap - used)
    evidence = {
        "cap_fen": cap,
        "year": year,
        "used_fen": used,
        "remaining_fen": remaining,
        "awards": [_summary(o) for o in awards],
    }
    if remaining == 0:
        return (
            CheckOutcome(
                name,
                False,
                f"{year}年本计划对该企业的资助已达上限 {yuan(cap)}（已资助 {yuan(used)}）",
                evidence,
            ),
            0,
        )
    return (
        CheckOutcome(
            name,
            True,
            f"{year}年上限 {yuan(cap)}，已资助 {yuan(used)}，尚可资助 {yuan(remaining)}",
            evidence,
        ),
        remaining,
    )


def check_eligibility(
    application: ApplicationRecord,
    rule: common_pb2.ProgramRule,
    enterprise: EnterpriseRecord | None,
    credit_entries: list[CreditListEntryRecord],
    others: list[ApplicationRecord],
    rule_of: Callable[[ApplicationRecord], common_pb2.ProgramRule | None],
    now: datetime,
) -> Eligibility:
    """Every named check, in the vocabulary's order. others: the enterprise's other
    applications; rule_of: the rule version another application is pinned to."""
    others = [o for o in others if o.application_id != application.application_id]
    cap_check, remaining = year_cap_check(application, rule, others)
    checks = [
        registry_check(application, enterprise),
        credit_check(credit_entries, enterprise, now),
        registration_check(enterprise),
        registration_kind_check(rule, enterprise),
        size_check(rule, application.figures, enterprise),
        duplicate_check(application, others),
        exclusion_check(application, rule, others, rule_of),
        cap_check,
    ]
    return Eligibility(checks, remaining)
