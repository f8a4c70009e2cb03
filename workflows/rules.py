"""Program rules as data, and the pure functions that apply them: award amounts of every kind
(ratio with cap and minimum, score tiers, per unit; yearly caps and instalments), the check a rule
version passes before it is published (validate_program), required figures and documents, and the
automated formal check (enterprise size and the registry's record are in workflows/enterprise.py).

Everything here is deterministic and free of I/O, so the grant workflow may call it directly.
A rule version is pinned to an application when it is filed (see ProgramRuleModel.from_proto).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from grantflow.v1 import common_pb2
from services.common.vocabulary import (
    AmountKind,
    Department,
    JoinPolicy,
    OverBudgetPolicy,
    RegistrationKind,
    ScoreAggregation,
    Sector,
    VocabularyError,
)
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
FULL_SCORE_CENTI = 10_000  # 100 points, in hundredths of a point
RUBRIC_POINTS = 100
MAX_FEN = 10**12  # as services/common/validation.MAX_FEN: ten billion yuan
MAX_WORKING_DAYS = 365
# Major projects are paid in instalments after each audit, over at most three years (DOMAIN.md).
MAX_INSTALMENTS = 3
MAX_PANEL_SIZE = 15
TRIMMED_MEAN_MIN_PANEL = 5  # dropping the highest and lowest leaves at least three scores
PROGRAM_CODE = re.compile(r"^[A-Z][A-Z0-9-]{1,31}$")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ScoreTierModel(BaseModel):
    min_score_centi: int
    amount_fen: int


class AmountRuleModel(BaseModel):
    """A program's amount rule. Every field has a default so that rules serialised before the
    amount kinds existed (always ratio-and-cap) still load from recorded histories."""

    basis_figure: str = ""
    rate_basis_points: int = 0
    cap_fen: int = 0
    minimum_basis_fen: int = 0
    kind: AmountKind = AmountKind.RATIO_CAP
    tiers: list[ScoreTierModel] = []
    unit_figure: str = ""
    amount_per_unit_fen: int = 0
    enterprise_year_cap_fen: int = 0  # 0 = no cap on an enterprise's awards of a year
    instalments: int = 1

    @classmethod
    def from_proto(cls, rule: common_pb2.AmountRule) -> AmountRuleModel:
        return cls(
            basis_figure=rule.basis_figure,
            rate_basis_points=rule.rate_basis_points,
            cap_fen=rule.cap_fen,
            minimum_basis_fen=rule.minimum_basis_fen,
            kind=AmountKind.from_proto(rule.kind) if rule.kind else AmountKind.RATIO_CAP,
            tiers=[
                ScoreTierModel(min_score_centi=t.min_score_centi, amount_fen=t.amount_fen)
                for t in rule.tiers
            ],
            unit_figure=rule.unit_figure,
            amount_per_unit_fen=rule.amount_per_unit_fen,
            enterprise_year_cap_fen=rule.enterprise_year_cap_fen,
            instalments=rule.instalments or 1,
        )

    @property
    def figure(self) -> str:
        """The declared figure the amount grows with ("" for score tiers)."""
        if self.kind == AmountKind.PER_UNIT:
            return self.unit_figure
        if self.kind == AmountKind.SCORE_TIERS:
            return ""
        return self.basis_figure


class RubricCriterionModel(BaseModel):
    code: str
    name: str
    max_points: int


class ExpertReviewModel(BaseModel):
    panel_size: int
    field: str
    rubric: list[RubricCriterionModel]
    aggregation: ScoreAggregation = ScoreAggregation.MEAN
    pass_score_centi: int = 0  # 0: the score is advisory (the decision is the department's)
    due_working_days: int = 10


class SpecialAuditModel(BaseModel):
    audited_figure: str
    due_working_days: int = 20


class DepartmentReviewModel(BaseModel):
    department: Department
    due_working_days: int = 0  # 0: the program's review_working_days


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
    # Issue 6: every field below has a default, so rules pinned to grants before they existed
    # (recorded in histories) still load, and mean what they meant then.
    budget_line_code: str = ""
    over_budget_policy: OverBudgetPolicy = OverBudgetPolicy.WAITING_LIST
    join_policy: JoinPolicy = JoinPolicy.ANY_REJECT
    quorum: int = 0
    department_reviews: list[DepartmentReviewModel] = []
    expert_review: ExpertReviewModel | None = None
    special_audit: SpecialAuditModel | None = None
    required_documents: list[str] = []
    excluded_programs: list[str] = []
    renotice_after_dismissed_objection: bool = False
    eligible_registration_kinds: list[RegistrationKind] = []
    description: str = ""

    @classmethod
    def from_proto(cls, rule: common_pb2.ProgramRule) -> ProgramRuleModel:
        expert = rule.expert_review
        audit = rule.special_audit
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
            amount_rule=AmountRuleModel.from_proto(rule.amount_rule),
            required_figures=list(rule.required_figures),
            sme_only=rule.sme_only,
            notice_working_days=rule.notice_working_days or 7,
            supplement_working_days=rule.supplement_working_days or 5,
            review_working_days=rule.review_working_days or 10,
            budget_line_code=rule.budget_line_code,
            over_budget_policy=(
                OverBudgetPolicy.from_proto(rule.over_budget_policy)
                if rule.over_budget_policy
                else OverBudgetPolicy.WAITING_LIST
            ),
            join_policy=(
                JoinPolicy.from_proto(rule.join_policy)
                if rule.join_policy
                else JoinPolicy.ANY_REJECT
            ),
            quorum=rule.quorum,
            department_reviews=[
                DepartmentReviewModel(
                    department=Department.from_proto(r.department),
                    due_working_days=r.due_working_days,
                )
                for r in rule.department_reviews
            ],
            expert_review=(
                ExpertReviewModel(
                    panel_size=expert.panel_size,
                    field=expert.field,
                    rubric=[
                        RubricCriterionModel(code=c.code, name=c.name, max_points=c.max_points)
                        for c in expert.rubric
                    ],
                    aggregation=(
                        ScoreAggregation.from_proto(expert.aggregation)
                        if expert.aggregation
                        else ScoreAggregation.MEAN
                    ),
                    pass_score_centi=expert.pass_score_centi,
                    due_working_days=expert.due_working_days or rule.review_working_days or 10,
                )
                if expert.panel_size > 0
                else None
            ),
            special_audit=(
                SpecialAuditModel(
                    audited_figure=audit.audited_figure,
                    due_working_days=audit.due_working_days or rule.review_working_days or 10,
                )
                if audit.audited_figure
                else None
            ),
            required_documents=list(rule.required_documents),
            excluded_programs=list(rule.excluded_programs),
            renotice_after_dismissed_objection=rule.renotice_after_dismissed_objection,
            eligible_registration_kinds=[
                RegistrationKind.parse(kind) for kind in rule.eligible_registration_kinds
            ],
            description=rule.description,
        )

    def department_due_working_days(self, department: str) -> int:
        """The working days a co-reviewing department has for its review."""
        for review in self.department_reviews:
            if review.department == department and review.due_working_days > 0:
                return review.due_working_days
        return self.review_working_days


def award_fen(
    rule: AmountRuleModel,
    figures: dict[str, int],
    requested_fen: int = 0,
    *,
    score_centi: int | None = None,
    remaining_year_cap_fen: int = -1,
) -> int:
    """The award in integer fen, floored (an odd fen rounds down), never more than the applicant
    asked for nor than the enterprise's yearly cap allows.

    RATIO_CAP: min(basis × rate, cap), 0 below the minimum basis. SCORE_TIERS: the amount of the
    highest tier the aggregated expert score reaches (0 before the experts have scored).
    PER_UNIT: units × amount per unit, capped where a cap is set. remaining_year_cap_fen is what
    the enterprise's other awards of the year leave of enterprise_year_cap_fen (−1: unknown or no
    cap; eligibility answers it)."""
    if rule.kind == AmountKind.SCORE_TIERS:
        if score_centi is None:
            return 0
        reached = [t.amount_fen for t in rule.tiers if score_centi >= t.min_score_centi]
        if not reached:
            return 0
        amount = max(reached)
        if rule.cap_fen > 0:
            amount = min(amount, rule.cap_fen)
    elif rule.kind == AmountKind.PER_UNIT:
        units = figures.get(rule.unit_figure, 0)
        if units <= 0:
            return 0
        amount = units * rule.amount_per_unit_fen
        if rule.cap_fen > 0:
            amount = min(amount, rule.cap_fen)
    else:
        basis = figures.get(rule.basis_figure, 0)
        if basis <= 0 or basis < rule.minimum_basis_fen:
            return 0
        amount = min(basis * rule.rate_basis_points // BASIS_POINTS, rule.cap_fen)
    if rule.enterprise_year_cap_fen > 0:
        amount = min(amount, rule.enterprise_year_cap_fen)
    if remaining_year_cap_fen >= 0:
        amount = min(amount, remaining_year_cap_fen)
    if requested_fen > 0:
        amount = min(amount, requested_fen)
    return amount


def audited_figures(figures: dict[str, int], figure: str, audited_fen: int) -> dict[str, int]:
    """The figures with the audited one applied by the lower-figure rule (就低原则): where the
    audit and the declaration differ, the lower counts."""
    declared = figures.get(figure)
    return {**figures, figure: audited_fen if declared is None else min(declared, audited_fen)}


def instalment_amounts(rule: AmountRuleModel, award: int) -> list[int]:
    """The award split into the rule's yearly instalments, in fen: equal parts, the fen that do
    not divide evenly paid with the last, so the parts always add up to the award."""
    count = max(rule.instalments, 1)
    part = award // count
    return [part] * (count - 1) + [award - part * (count - 1)]


# A later instalment is due this long after the one before it: yearly, so three instalments
# span at most three years from the award (DOMAIN.md: ≤ 3 years).
INSTALMENT_INTERVAL = timedelta(days=365)


class ScheduledInstalment(BaseModel):
    """One part of an award paid in instalments, fixed when the award is final."""

    number: int  # 1..count
    count: int
    amount_fen: int
    milestone: str  # a Milestone: award (instalment 1), acceptance, audit (the last)
    due_at: datetime


def instalment_schedule(
    rule: AmountRuleModel, award: int, awarded_at: datetime
) -> list[ScheduledInstalment]:
    """The schedule of an award: instalment 1 at the award itself; each later one a year after
    the one before, released by the project's acceptance (项目验收), the last by its special
    audit (专项审计). Empty for a rule paid at once."""
    amounts = instalment_amounts(rule, award)
    count = len(amounts)
    if count <= 1 or award < count:  # not a fen for every instalment: paid at once
        return []
    return [
        ScheduledInstalment(
            number=number,
            count=count,
            amount_fen=amount,
            milestone="award" if number == 1 else "audit" if number == count else "acceptance",
            due_at=awarded_at + INSTALMENT_INTERVAL * (number - 1),
        )
        for number, amount in enumerate(amounts, start=1)
    ]


Problem = tuple[str, str]  # (field path inside the rule, reason)


def _term_problem(
    field: str,
    vocabulary: type[AmountKind | OverBudgetPolicy | JoinPolicy | ScoreAggregation],
    number: int,
) -> list[Problem]:
    if number == 0:
        return []  # UNSPECIFIED: the documented default
    try:
        vocabulary.from_proto(number)
    except VocabularyError:
        return [(field, f"must be one of {', '.join(vocabulary)}")]
    return []


def _fen_problem(field: str, value: int, *, required: bool) -> list[Problem]:
    if value < 0:
        return [(field, "must not be negative")]
    if required and value == 0:
        return [(field, "must be greater than zero")]
    if value > MAX_FEN:
        return [(field, f"exceeds the maximum of {MAX_FEN} fen")]
    return []


def _days_problem(field: str, value: int, *, required: bool = True) -> list[Problem]:
    if value == 0 and not required:
        return []
    if value < 1:
        return [(field, "must be at least 1 working day")]
    if value > MAX_WORKING_DAYS:
        return [(field, f"must be at most {MAX_WORKING_DAYS} working days")]
    return []


def _amount_problems(rule: common_pb2.ProgramRule) -> list[Problem]:
    amount = rule.amount_rule
    figures = set(rule.required_figures)
    problems = _term_problem("amount_rule.kind", AmountKind, amount.kind)
    if problems:
        return problems
    kind = AmountKind.from_proto(amount.kind) if amount.kind else AmountKind.RATIO_CAP

    def unused(name: str, present: bool) -> None:
        if present:
            problems.append((f"amount_rule.{name}", f"is not used by a {kind} rule"))

    if kind == AmountKind.RATIO_CAP:
        if not amount.basis_figure:
            problems.append(("amount_rule.basis_figure", "is required"))
        elif amount.basis_figure not in figures:
            problems.append(
                ("amount_rule.basis_figure", "must be one of the rule's required_figures")
            )
        if not 1 <= amount.rate_basis_points <= BASIS_POINTS:
            problems.append(
                ("amount_rule.rate_basis_points", "must be between 1 and 10000 basis points")
            )
        problems += _fen_problem("amount_rule.cap_fen", amount.cap_fen, required=True)
        problems += _fen_problem(
            "amount_rule.minimum_basis_fen", amount.minimum_basis_fen, required=False
        )
        unused("tiers", bool(amount.tiers))
        unused("unit_figure", bool(amount.unit_figure))
        unused("amount_per_unit_fen", bool(amount.amount_per_unit_fen))
    elif kind == AmountKind.SCORE_TIERS:
        problems += _fen_problem("amount_rule.cap_fen", amount.cap_fen, required=True)
        if not amount.tiers:
            problems.append(("amount_rule.tiers", "needs at least one tier"))
        previous: common_pb2.ScoreTier | None = None
        for index, tier in enumerate(amount.tiers):
            field = f"amount_rule.tiers[{index}]"
            if not 0 <= tier.min_score_centi <= FULL_SCORE_CENTI:
                problems.append(
                    (f"{field}.min_score_centi", "must be between 0 and 10000 (100 points)")
                )
            elif previous is not None and tier.min_score_centi <= previous.min_score_centi:
                problems.append(
                    (f"{field}.min_score_centi", "tiers must be in ascending order of score")
                )
            problems += _fen_problem(f"{field}.amount_fen", tier.amount_fen, required=True)
            if previous is not None and tier.amount_fen < previous.amount_fen:
                problems.append(
                    (f"{field}.amount_fen", "must not be less than the amount of the tier below")
                )
            if 0 < amount.cap_fen < tier.amount_fen:
                problems.append((f"{field}.amount_fen", "exceeds the rule's cap_fen"))
            previous = tier
        if rule.expert_review.panel_size <= 0:
            problems.append(("expert_review", "a score_tiers rule needs an expert review to score"))
        unused("basis_figure", bool(amount.basis_figure))
        unused("rate_basis_points", bool(amount.rate_basis_points))
        unused("minimum_basis_fen", bool(amount.minimum_basis_fen))
        unused("unit_figure", bool(amount.unit_figure))
        unused("amount_per_unit_fen", bool(amount.amount_per_unit_fen))
    else:  # PER_UNIT
        if not amount.unit_figure:
            problems.append(("amount_rule.unit_figure", "is required"))
        elif amount.unit_figure not in figures:
            problems.append(
                ("amount_rule.unit_figure", "must be one of the rule's required_figures")
            )
        elif amount.unit_figure.endswith("_fen"):
            problems.append(("amount_rule.unit_figure", "must be a count, not an amount in fen"))
        problems += _fen_problem(
            "amount_rule.amount_per_unit_fen", amount.amount_per_unit_fen, required=True
        )
        problems += _fen_problem("amount_rule.cap_fen", amount.cap_fen, required=False)
        unused("basis_figure", bool(amount.basis_figure))
        unused("rate_basis_points", bool(amount.rate_basis_points))
        unused("minimum_basis_fen", bool(amount.minimum_basis_fen))
        unused("tiers", bool(amount.tiers))
    problems += _fen_problem(
        "amount_rule.enterprise_year_cap_fen", amount.enterprise_year_cap_fen, required=False
    )
    if 0 < amount.enterprise_year_cap_fen < amount.cap_fen:
        problems.append(
            (
                "amount_rule.enterprise_year_cap_fen",
                "must not be less than cap_fen (one award would exceed the yearly cap)",
            )
        )
    if not 0 <= amount.instalments <= MAX_INSTALMENTS:
        problems.append(
            ("amount_rule.instalments", f"must be between 1 and {MAX_INSTALMENTS} (0 reads as 1)")
        )
    return problems


def _review_problems(rule: common_pb2.ProgramRule) -> list[Problem]:
    problems = _term_problem("over_budget_policy", OverBudgetPolicy, rule.over_budget_policy)
    join = _term_problem("join_policy", JoinPolicy, rule.join_policy)
    problems += join
    departments = set(rule.review_departments)
    if not join and rule.join_policy == JoinPolicy.QUORUM.to_proto():
        if not 1 <= rule.quorum <= len(departments):
            problems.append(
                ("quorum", f"must be between 1 and the {len(departments)} review_departments")
            )
    elif rule.quorum:
        problems.append(("quorum", "is only for the quorum join policy"))
    seen: set[int] = set()
    for index, review in enumerate(rule.department_reviews):
        field = f"department_reviews[{index}]"
        if review.department not in departments:
            problems.append((f"{field}.department", "must be one of the review_departments"))
        elif review.department in seen:
            problems.append((f"{field}.department", "is listed twice"))
        seen.add(review.department)
        problems += _days_problem(
            f"{field}.due_working_days", review.due_working_days, required=False
        )

    expert = rule.expert_review
    if rule.HasField("expert_review") and expert.panel_size <= 0:
        if expert.field or expert.rubric or expert.pass_score_centi or expert.due_working_days:
            problems.append(("expert_review.panel_size", "must be at least 1 expert"))
    elif expert.panel_size > 0:
        if expert.panel_size > MAX_PANEL_SIZE:
            problems.append(
                ("expert_review.panel_size", f"must be at most {MAX_PANEL_SIZE} experts")
            )
        if not IDENTIFIER.match(expert.field):
            problems.append(
                ("expert_review.field", "must name the expert pool's field, e.g. manufacturing")
            )
        if not expert.rubric:
            problems.append(("expert_review.rubric", "needs at least one criterion"))
        codes: set[str] = set()
        for index, criterion in enumerate(expert.rubric):
            field = f"expert_review.rubric[{index}]"
            if not IDENTIFIER.match(criterion.code):
                problems.append((f"{field}.code", "must be a lower-case identifier"))
            elif criterion.code in codes:
                problems.append((f"{field}.code", "is listed twice"))
            codes.add(criterion.code)
            if not criterion.name.strip() or len(criterion.name) > 100:
                problems.append((f"{field}.name", "is required (at most 100 characters)"))
            if not 1 <= criterion.max_points <= RUBRIC_POINTS:
                problems.append((f"{field}.max_points", "must be between 1 and 100 points"))
        total = sum(c.max_points for c in expert.rubric)
        if expert.rubric and total != RUBRIC_POINTS:
            problems.append(
                ("expert_review.rubric", f"max_points must add up to 100 (they add up to {total})")
            )
        aggregation = _term_problem(
            "expert_review.aggregation", ScoreAggregation, expert.aggregation
        )
        problems += aggregation
        if (
            not aggregation
            and expert.aggregation == ScoreAggregation.TRIMMED_MEAN.to_proto()
            and expert.panel_size < TRIMMED_MEAN_MIN_PANEL
        ):
            problems.append(
                (
                    "expert_review.aggregation",
                    f"a trimmed mean needs a panel of at least {TRIMMED_MEAN_MIN_PANEL} experts",
                )
            )
        if not 0 <= expert.pass_score_centi <= FULL_SCORE_CENTI:
            problems.append(
                ("expert_review.pass_score_centi", "must be between 0 and 10000 (100 points)")
            )
        problems += _days_problem("expert_review.due_working_days", expert.due_working_days)

    audit = rule.special_audit
    if audit.audited_figure:
        if audit.audited_figure not in rule.required_figures:
            problems.append(
                ("special_audit.audited_figure", "must be one of the rule's required_figures")
            )
        elif not audit.audited_figure.endswith("_fen"):
            problems.append(
                ("special_audit.audited_figure", "must be an amount in fen (a name ending _fen)")
            )
        problems += _days_problem("special_audit.due_working_days", audit.due_working_days)
    elif audit.due_working_days:
        problems.append(("special_audit.audited_figure", "is required for a special audit"))
    return problems


def _list_problems(rule: common_pb2.ProgramRule) -> list[Problem]:
    problems: list[Problem] = []
    # A program without a line keeps a budget of its own (the disbursement service's choice).
    if rule.budget_line_code and not PROGRAM_CODE.match(rule.budget_line_code):
        problems.append(
            (
                "budget_line_code",
                "must be 2-32 characters: an upper-case letter, then A-Z, 0-9 or -",
            )
        )
    if len(rule.required_documents) > 30:
        problems.append(("required_documents", "has more than 30 entries"))
    documents: set[str] = set()
    for index, name in enumerate(rule.required_documents):
        if not name.strip() or len(name) > 200 or name != name.strip():
            problems.append(
                (f"required_documents[{index}]", "must be a document name (1-200 characters)")
            )
        elif name in documents:
            problems.append((f"required_documents[{index}]", "is listed twice"))
        documents.add(name)
    excluded: set[str] = set()
    for index, code in enumerate(rule.excluded_programs):
        if not PROGRAM_CODE.match(code):
            problems.append((f"excluded_programs[{index}]", "is not a program code"))
        elif code == rule.code:
            problems.append((f"excluded_programs[{index}]", "a program cannot exclude itself"))
        elif code in excluded:
            problems.append((f"excluded_programs[{index}]", "is listed twice"))
        excluded.add(code)
    kinds: set[str] = set()
    for index, kind in enumerate(rule.eligible_registration_kinds):
        if kind not in RegistrationKind.__members__.values():
            problems.append(
                (
                    f"eligible_registration_kinds[{index}]",
                    f"must be one of {', '.join(RegistrationKind)}",
                )
            )
        elif kind in kinds:
            problems.append((f"eligible_registration_kinds[{index}]", "is listed twice"))
        kinds.add(kind)
    if len(rule.description) > 2000:
        problems.append(("description", "is longer than 2000 characters"))
    return problems


def validate_program(rule: common_pb2.ProgramRule) -> list[Problem]:
    """Every problem of a rule version's amount rule, review settings and lists, as (field,
    reason) with the field's path inside the rule (e.g. "expert_review.rubric[1].max_points").
    Empty when the version may be published. The catalogue's publish check adds the basics
    (code, name, departments, window, figures) and refuses with the first problem."""
    return _amount_problems(rule) + _review_problems(rule) + _list_problems(rule)


def missing_figures(rule: ProgramRuleModel, figures: dict[str, int]) -> list[str]:
    return [name for name in rule.required_figures if name not in figures]


def missing_documents(rule: ProgramRuleModel, document_names: list[str]) -> list[str]:
    """The rule's required documents the application does not carry (by name)."""
    carried = set(document_names)
    return [name for name in rule.required_documents if name not in carried]


class FormalCheck(BaseModel):
    outcome: Literal["pass", "supplement", "reject"]
    reasons: list[str] = []


def formal_check(
    rule: ProgramRuleModel,
    figures: dict[str, int],
    filed_at: datetime,
    enterprise: EnterpriseRecord | None,
    document_names: list[str] | None = None,
) -> FormalCheck:
    """合规性初审: window, registry and credit, required figures (and the required documents
    when the caller passes the application's document names), SME status where asked. The
    reasons are shown to the applicant, so they are written in Chinese for a person.

    A score-tiers rule's amount waits for the experts, so only the figures are checked here."""
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
    if document_names is not None:
        absent = missing_documents(rule, document_names)
        if absent:
            return FormalCheck(outcome="supplement", reasons=[f"缺少申报材料：{'、'.join(absent)}"])
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
    if (
        rule.amount_rule.kind != AmountKind.SCORE_TIERS
        and award_fen(rule.amount_rule, figures) <= 0
    ):
        return FormalCheck(
            outcome="supplement",
            reasons=[f"申报数据 {rule.amount_rule.figure} 未达到资助条件"],
        )
    return FormalCheck(outcome="pass")
