"""The figures an application declares (申报数据), as people read and type them: each figure's
Chinese and English name and its unit (yuan for *_fen, per cent for basis points, a count).

The program rules name figures only by their code (services/applications/catalogue.json), so
their names live here, where a person reads them, shared by the applicant's form and the
reviewers' file; an unknown figure still shows, by its code.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.i18n import pick
from grantflow.format import yuan


@dataclass(frozen=True)
class Figure:
    """How a person reads and types one of the rule's figures. `unit` is how it is typed:
    "yuan" (stored in fen), "percent" (stored in basis points) or a count's noun."""

    name: str
    zh: str
    en: str
    unit: str  # "yuan", "percent", or a count's unit ("人", "家", "名")

    @property
    def scaled(self) -> bool:
        """Typed with up to two decimals and stored ×100 (fen, basis points)."""
        return self.unit in ("yuan", "percent")

    def unit_text(self, lang: str) -> str:
        if self.unit == "yuan":
            return pick(lang, "元", "yuan")
        if self.unit == "percent":
            return "%"
        return pick(lang, self.unit, COUNT_UNITS_EN.get(self.unit, ""))

    def label(self, lang: str) -> str:
        return pick(lang, self.zh, self.en)

    def show(self, value: int, lang: str) -> str:
        """A stored value as the person typed it: yuan, per cent, or the count."""
        if self.unit == "yuan":
            return yuan(value)
        if self.unit == "percent":
            return f"{hundredths(value)}%"
        return f"{value:,} {self.unit_text(lang)}".strip()

    def typed(self, value: int) -> str:
        """A stored value as the form's input shows it (no grouping, no currency sign)."""
        return hundredths(value) if self.scaled else str(value)


COUNT_UNITS_EN = {"人": "persons", "家": "organisations", "名": "experts", "个": ""}

# The catalogue's figures (services/applications/catalogue.json; the enterprise-size figures of
# workflows/enterprise.py). The rule names figures only by their code, so their Chinese names
# live here, where a person reads them; an unknown figure still shows, by its code.
FIGURES: dict[str, Figure] = {
    figure.name: figure
    for figure in (
        Figure("cloud_fee_paid_fen", "云服务实际支付费用", "Cloud fee actually paid", "yuan"),
        Figure("staff_count", "从业人员", "Staff", "人"),
        Figure("annual_revenue_fen", "营业收入（上年度）", "Annual revenue", "yuan"),
        Figure("total_assets_fen", "资产总额", "Total assets", "yuan"),
        Figure("platform_investment_fen", "平台建设投资", "Platform investment", "yuan"),
        Figure(
            "completed_investment_fen",
            "上年度完成技术改造投资额",
            "Investment completed last year",
            "yuan",
        ),
        Figure("smart_investment_fen", "智能化改造投资额", "Smart-upgrade investment", "yuan"),
        Figure(
            "fixed_asset_investment_fen",
            "已完成固定资产投资额",
            "Completed fixed-asset investment",
            "yuan",
        ),
        Figure("event_cost_fen", "活动实际支出", "Event's actual cost", "yuan"),
        Figure("participant_count", "参加人数", "Participants", "人"),
        Figure("served_enterprises", "上年度服务企业数", "Enterprises served last year", "家"),
        Figure("satisfaction_basis_points", "服务满意度", "Satisfaction", "percent"),
        Figure("service_revenue_fen", "服务收入", "Service revenue", "yuan"),
        Figure("partner_agencies", "合作服务机构数", "Partner agencies", "家"),
        Figure("external_experts", "外部专家数", "External experts", "名"),
        Figure("eligible_students", "符合条件的学生数", "Eligible students", "人"),
    )
}


def figure(name: str) -> Figure:
    known = FIGURES.get(name)
    if known is not None:
        return known
    if name.endswith("_fen"):
        return Figure(name, name, name, "yuan")
    if name.endswith("_basis_points"):
        return Figure(name, name, name, "percent")
    return Figure(name, name, name, "个")


def hundredths(value: int) -> str:
    """An integer of hundredths as a decimal: 150050 -> "1500.50", 9000 -> "90"."""
    sign = "-" if value < 0 else ""
    whole, part = divmod(abs(value), 100)
    return f"{sign}{whole}" if part == 0 else f"{sign}{whole}.{part:02d}"
