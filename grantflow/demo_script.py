"""The demo's script: which applications are filed, in which program, and what each of the people
involved does with them (grantflow/demo.py drives it through the real APIs).

Eight of the nine programs take part (TECH-MAJOR's instalments belong to the finance side and
are not paid by one plan yet). Between them they show every stage of the process: the formal
check asking for a missing figure (补正), eligibility, expert panels scoring against a rubric,
a special audit lowering the figure (就低原则), department co-review with a quorum, a reviewer
returning an application or approving less, rejections, a withdrawal, objections upheld and
dismissed during the public notice, and an over-budget notice batch whose last award waits for a
later batch (轮候). The first twelve scenarios alone show all of it but the rarer variants.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from grantflow.sample import PUBLIC_INSTITUTION, SOCIAL_ORGANISATION
from grantflow.v1 import common_pb2

S = common_pb2

# What happens to an application, in the words the demo's summary prints.
KINDS = {
    "paid": "批准并拨付",
    "paid_lower": "核减后拨付",
    "audit_lower": "审计核减后拨付",
    "rejected": "部门审查不予通过",
    "returned": "退回补充材料后通过",
    "incomplete": "申报不完整，补正后通过",
    "withdrawn": "评审中撤回",
    "objection_upheld": "公示期举报成立，资助取消",
    "objection_dismissed": "公示期异议不成立，重新公示后拨付",
    "low_score": "专家评分未达标",
    "below_threshold": "投资额未达门槛，补正后通过",
    "waitlisted": "预算不足，进入轮候",
}


@dataclass(frozen=True)
class Scenario:
    kind: str  # a key of KINDS
    program: str
    figures: dict[str, int]
    expected: int  # the stage the demo ends the application in
    authority: str = "9"  # the applicant's registration authority (grantflow/sample.py)
    expert_share: int = 85  # the experts' scores as a share of each criterion's points (%)
    audited_share: int = 100  # the audited figure as a share of the declared one (%)
    # Another scenario's index whose review comes first (the over-budget batch's order).
    after: int | None = None
    departments: tuple[str, ...] = field(default_factory=tuple)  # who decides, if not all
    # The figures the applicant gives when the formal check asks for a supplement (补正): one
    # left out at filing (incomplete), or corrected (below the program's threshold).
    supplemented: dict[str, int] = field(default_factory=dict)


def _sme(index: int) -> dict[str, int]:
    return {
        "cloud_fee_paid_fen": 150_000 + 25_000 * (index % 13),
        "staff_count": 20 + 7 * index,
        "annual_revenue_fen": (5 + index) * 100_000_000,
    }


_DEMO_PLATFORM = {
    "served_enterprises": 320,
    "satisfaction_basis_points": 9200,
    "service_revenue_fen": 1_200_000_000,
    "partner_agencies": 14,
    "external_experts": 36,
}
PAID, REJECTED, WITHDRAWN, WAITLISTED = (
    S.GRANT_STAGE_PAID,
    S.GRANT_STAGE_REJECTED,
    S.GRANT_STAGE_WITHDRAWN,
    S.GRANT_STAGE_WAITLISTED,
)
QUORUM = ("industry", "finance")  # DEMO-PLATFORM: two of its three departments suffice

SCRIPT: list[Scenario] = [
    Scenario("paid", "SME-CLOUD", _sme(0), PAID),
    Scenario(
        "audit_lower",
        "IIP-CROSS",
        {"platform_investment_fen": 2_000_000_000},
        PAID,
        audited_share=90,
    ),
    Scenario(
        "paid", "VOC-TUITION", {"eligible_students": 1500}, PAID, authority=PUBLIC_INSTITUTION
    ),
    Scenario("rejected", "SME-CLOUD", _sme(3), REJECTED),
    Scenario("paid", "DEMO-PLATFORM", _DEMO_PLATFORM, PAID, departments=QUORUM),
    Scenario(
        "paid",
        "VOC-TUITION",
        {"eligible_students": 1200},
        PAID,
        authority=PUBLIC_INSTITUTION,
        after=2,
    ),
    Scenario(
        "objection_upheld", "TECH-INVEST", {"completed_investment_fen": 5_000_000_000}, REJECTED
    ),
    Scenario("withdrawn", "SME-CLOUD", _sme(7), WITHDRAWN),
    Scenario("objection_dismissed", "TECH-SMART", {"smart_investment_fen": 3_000_000_000}, PAID),
    # The line (职业教育 1200万) holds 3,000 students' 4,000 yuan: the third school waits.
    Scenario(
        "waitlisted",
        "VOC-TUITION",
        {"eligible_students": 800},
        WAITLISTED,
        authority=PUBLIC_INSTITUTION,
        after=5,
    ),
    Scenario("returned", "SME-CLOUD", _sme(10), PAID),
    Scenario(
        "paid",
        "SERVICE-EVENT",
        {"event_cost_fen": 60_000_000, "participant_count": 450},
        PAID,
        authority=SOCIAL_ORGANISATION,
    ),
    Scenario("paid", "IIP-INDUSTRY", {"platform_investment_fen": 1_500_000_000}, PAID),
    Scenario("paid_lower", "SME-CLOUD", _sme(13), PAID),
    Scenario(
        "low_score", "DEMO-PLATFORM", _DEMO_PLATFORM, REJECTED, expert_share=50, departments=QUORUM
    ),
    Scenario("paid", "TECH-INVEST", {"completed_investment_fen": 3_000_000_000}, PAID),
    Scenario(
        "incomplete",
        "SME-CLOUD",
        _sme(16),
        PAID,
        supplemented={"cloud_fee_paid_fen": 180_000},
    ),
    # TECH-SMART funds intelligent upgrades from 5 million yuan: 4 million is asked to be
    # corrected, and the investment's full invoices bring it to 5.2 million.
    Scenario(
        "below_threshold",
        "TECH-SMART",
        {"smart_investment_fen": 400_000_000},
        PAID,
        supplemented={"smart_investment_fen": 520_000_000},
    ),
    Scenario("paid", "SME-CLOUD", _sme(18), PAID),
    Scenario("paid", "IIP-CROSS", {"platform_investment_fen": 1_200_000_000}, PAID),
    Scenario("rejected", "SME-CLOUD", _sme(20), REJECTED),
    Scenario("paid", "TECH-SMART", {"smart_investment_fen": 6_000_000_000}, PAID),
    Scenario("paid", "SME-CLOUD", _sme(22), PAID),
    Scenario("paid", "DEMO-PLATFORM", _DEMO_PLATFORM, PAID, expert_share=93, departments=QUORUM),
]


def scenarios(count: int) -> list[Scenario]:
    """The script's first `count` scenarios (1 to all of them). Not repeated: a second round
    would meet budget lines the first has spent (the waiting list would grow)."""
    if not 1 <= count <= len(SCRIPT):
        raise ValueError(f"the demo has 1 to {len(SCRIPT)} applications, not {count}")
    result = []
    for scenario in SCRIPT[:count]:
        if scenario.kind == "incomplete":  # filed without the figures it supplements
            figures = {k: v for k, v in scenario.figures.items() if k not in scenario.supplemented}
            scenario = replace(scenario, figures=figures)
        result.append(scenario)
    return result
