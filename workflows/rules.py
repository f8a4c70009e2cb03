"""Program rules as data, and the pure functions that apply them: award amounts, required
figures and the automated formal check (enterprise size and the registry's record are in
workflows/enterprise.py).

Everything here is deterministic and free of I/O, so the grant workflow may call it directly.
A rule version is pinned to an application when it is filed (see ProgramRuleModel.from_proto).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from grantflow.v1 import common_pb2
from services.common.vocabulary import Department, Sector
from workflows.enterprise import (
    EnterpriseRecord,
    Measure,
    Size,
    assess_size,
    enterprise_size,
)

__all__ = ["EnterpriseRecord", "Sector", "Size", "enterprise_size"]

FEN_PER_YUAN = 100
BASIS_POINTS = 10_000


class AmountRuleModel(BaseModel):
    basis_figure: str
    rate_basis_points: int
    cap_fen: int
    minimum_basis_fen: int = 0


class ProgramRuleModel(BaseModel):
    code: str
    version: int
    name: str
    owner_department: str
    review_departments: list[str]
    window_opens_at: datetime
    window_closes_at: datetime
    amount_rule: AmountRuleModel
    required_figures: list[str]
    sme_only: bool = False
    notice_working_days: int = 7
    supplement_working_days: int = 5
    review_working_days: int = 10

    @classmethod
    def from_proto(cls, rule: common_pb2.ProgramRule) -> ProgramRuleModel:
        return cls(
            code=rule.code,
            version=rule.version,
            name=rule.name,
            # A department outside the vocabulary is a VocabularyError: the filing's event is
            # dead-lettered rather than started as a grant no one can review.
            owner_department=Department.from_proto(rule.owner_department),
            review_departments=[Department.from_proto(d) for d in rule.review_departments],
            window_opens_at=rule.window_opens_at.ToDatetime(tzinfo=UTC),
            window_closes_at=rule.window_closes_at.ToDatetime(tzinfo=UTC),
            amount_rule=AmountRuleModel(
                basis_figure=rule.amount_rule.basis_figure,
                rate_basis_points=rule.amount_rule.rate_basis_points,
                cap_fen=rule.amount_rule.cap_fen,
                minimum_basis_fen=rule.amount_rule.minimum_basis_fen,
            ),
            required_figures=list(rule.required_figures),
            sme_only=rule.sme_only,
            notice_working_days=rule.notice_working_days or 7,
            supplement_working_days=rule.supplement_working_days or 5,
            review_working_days=rule.review_working_days or 10,
        )


def award_fen(rule: AmountRuleModel, figures: dict[str, int], requested_fen: int = 0) -> int:
    """min(basis × rate, cap), and never more than the applicant asked for; integer fen, floored."""
    basis = figures.get(rule.basis_figure, 0)
    if basis <= 0 or basis < rule.minimum_basis_fen:
        return 0
    amount = min(basis * rule.rate_basis_points // BASIS_POINTS, rule.cap_fen)
    if requested_fen > 0:
        amount = min(amount, requested_fen)
    return amount


def missing_figures(rule: ProgramRuleModel, figures: dict[str, int]) -> list[str]:
    return [name for name in rule.required_figures if name not in figures]


class FormalCheck(BaseModel):
    outcome: Literal["pass", "supplement", "reject"]
    reasons: list[str] = []


def formal_check(
    rule: ProgramRuleModel,
    figures: dict[str, int],
    filed_at: datetime,
    enterprise: EnterpriseRecord | None,
) -> FormalCheck:
    """合规性初审: window, registry and credit, required figures, SME status where asked. The
    reasons are shown to the applicant, so they are written in Chinese for a person."""
    if enterprise is None:
        return FormalCheck(outcome="reject", reasons=["统一社会信用代码在企业登记信息中查询不到"])
    if not rule.window_opens_at <= filed_at <= rule.window_closes_at:
        return FormalCheck(outcome="reject", reasons=["申报时间不在本计划申报期内"])
    if enterprise.barred_from_fiscal_funds:
        return FormalCheck(
            outcome="reject", reasons=["申请单位被列入失信联合惩戒名单，不得申请财政资金"]
        )
    if not enterprise.registered_in_city:
        return FormalCheck(outcome="reject", reasons=["申请单位未在本市登记注册"])
    missing = missing_figures(rule, figures)
    if missing:
        return FormalCheck(outcome="supplement", reasons=[f"缺少申报数据：{'、'.join(missing)}"])
    if rule.sme_only:
        # The sector's measure: revenue, or total assets for leasing and business services.
        size = assess_size(
            enterprise.sector,
            {
                Measure.STAFF.value: figures.get(Measure.STAFF.value, 0),
                Measure.REVENUE.value: figures.get(Measure.REVENUE.value, 0),
                **{k: v for k, v in figures.items() if k == Measure.ASSETS.value},
            },
        )
        if size.sme is None:
            return FormalCheck(
                outcome="supplement",
                reasons=[f"企业规模需按{'、'.join(size.missing)}划型，缺少申报数据"],
            )
        if not size.sme:
            return FormalCheck(outcome="reject", reasons=["申请单位不属于中小微企业"])
    if award_fen(rule.amount_rule, figures) <= 0:
        return FormalCheck(
            outcome="supplement",
            reasons=[f"申报数据 {rule.amount_rule.basis_figure} 未达到资助条件"],
        )
    return FormalCheck(outcome="pass")
