"""Each of the nine programs of the seed catalogue, run by the fourth-generation GrantWorkflow
with its real rule (services/applications/catalogue.json, pinned as the intake pins it): one
whole scenario per program from filing to paid, through every stage the program asks for
(experts, special audit, its departments' join policy, the notice batch, the funding plan), with
the amount the grant reports at each step; and the amount the workflow puts before the
departments in its first review round at the edges of the program's rule (below, at and above
each cap and threshold, an odd fen rounded down), where a filing that earns nothing is asked to
supplement and a tier program's low score is rejected.

The amount rules themselves (award_fen, audited_figures, instalments) are the unit tests' in
tests/unit/test_program_amounts.py; here they are seen through the workflow: the figures it
counts after an audit (就低原则), the enterprise's yearly cap from eligibility, the expert score,
the formal check's gate. The services are stand-ins (fakes.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

import pytest
from stdnum.cn import uscc
from temporalio.client import WorkflowHandle

from grantflow.sample import credit_code
from services.applications.catalogue import load_catalogue
from tests.workflows.fakes import FakeServices
from tests.workflows.grants import Harness, grant_input, pay
from workflows import contracts, reasons
from workflows.grant import GrantWorkflow
from workflows.models import GrantInput, GrantOutcome, GrantStatus, Timing
from workflows.rules import ProgramRuleModel

YUAN = 100
WAN = 10_000 * YUAN  # 万元, as notices print amounts
# The notice lasts its shortest (a second) and the batch closes soon after its one award.
FAST = Timing(notice_seconds=1, batch_seconds=0.1)
# An enterprise (a Shenzhen manufacturer in the stand-in registry), a social organisation and a
# public institution (a school): the registry tells them apart by the code's first character.
ENTERPRISE = credit_code(42)


def registered_body(authority: str, number: int) -> str:
    """A Shenzhen body's credit code issued by another authority (5 civil affairs: a social
    organisation; 1 the establishment office: a public institution)."""
    body = authority + credit_code(number)[1:17]
    return body + uscc.calc_check_digit(body)


SOCIAL_ORGANISATION = registered_body("5", 43)
SCHOOL = registered_body("1", 44)
# Stages in which the grant carries its award (what the applicant's status shows). Before them
# (expert review, special audit) it has none yet. IN_PAYMENT is left out: pay() sends the plan
# and its settlement together, so whether the grant reports it in between is a race.
AWARD_STAGES = ["IN_REVIEW", "AWAITING_NOTICE", "IN_NOTICE", "AWAITING_FUNDING_PLAN", "PAID"]


@cache
def catalogue_rule(code: str) -> ProgramRuleModel:
    """The program's current version from the seed catalogue, as the intake pins it to a grant
    (ProgramRuleModel.from_proto of the published rule)."""
    [rule] = [rule for rule in load_catalogue() if rule.code == code]
    return ProgramRuleModel.from_proto(rule)


def filing(
    code: str,
    figures: dict[str, int],
    *,
    applicant: str = ENTERPRISE,
    own_batcher: bool = False,
) -> GrantInput:
    rule = catalogue_rule(code)
    if own_batcher:
        # A program has one notice batcher, and it outlives the test that started it: a whole
        # run gets one of its own, so no other grant's batch (or timing) is mixed into it.
        rule = rule.model_copy(update={"code": f"{code}-{uuid.uuid4().hex[:6].upper()}"})
    return grant_input(
        rule=rule,
        figures=figures,
        applicant_credit_code=applicant,
        # Filed inside the program's window whatever today's date: the formal check judges it.
        submitted_at=rule.window_opens_at + timedelta(days=30),
        timing=FAST,
        process_generation=4,
    )


@dataclass
class Filed:
    """A started grant and the steps that drive it through its program's stages."""

    harness: Harness
    grant: GrantInput
    handle: WorkflowHandle[GrantWorkflow, GrantOutcome]

    @property
    def services(self) -> FakeServices:
        return self.harness.services

    async def experts_score(self, score_centi: int) -> None:
        grant = self.grant
        await self.harness.until(
            lambda: any(
                r.application_id == grant.application_id
                for r in self.services.expert_reviews.values()
            ),
            "the expert panel",
        )
        panel_id, request = next(
            (p, r)
            for p, r in self.services.expert_reviews.items()
            if r.application_id == grant.application_id
        )
        # The panel is drawn by the program's own settings (size, field, rubric, aggregation).
        assert request.review == grant.rule.expert_review
        await self.handle.execute_update(
            contracts.EXPERT_REVIEW_DONE,
            contracts.ExpertReviewDone(
                panel_id=panel_id, score_centi=score_centi, experts=request.review.panel_size
            ),
        )

    async def audit_confirms(self, audited_fen: int) -> None:
        grant = self.grant
        assert grant.rule.special_audit is not None
        figure = grant.rule.special_audit.audited_figure
        await self.harness.until(
            lambda: any(
                a.application_id == grant.application_id for a in self.services.audits.values()
            ),
            "the audit task",
        )
        task_id, audit = next(
            (t, a)
            for t, a in self.services.audits.items()
            if a.application_id == grant.application_id
        )
        assert (audit.figure, audit.declared_fen) == (figure, grant.figures[figure])
        await self.handle.execute_update(
            contracts.AUDIT_DONE,
            contracts.AuditDone(
                task_id=task_id, figure=figure, audited_fen=audited_fen, auditor="审计事务所"
            ),
        )

    async def first_round(self) -> tuple[int, dict[str, str]]:
        """The amount proposed to the departments in review round 1, and department -> task."""
        tasks = await self.harness.tasks_of_round(self.grant, 1)
        assert sorted(tasks) == sorted(self.grant.rule.review_departments)
        proposed = {self.services.tasks[t].proposed_amount_fen for t in tasks.values()}
        assert len(proposed) == 1, "every department reviews the same amount"
        return proposed.pop(), tasks

    async def decide(self, tasks: dict[str, str], department: str, decision: str) -> None:
        await self.harness.decide(self.handle, tasks[department], department, decision)

    async def status(self) -> GrantStatus:
        return await self.handle.query(contracts.GRANT_STATUS, result_type=GrantStatus)

    async def reaches(self, stage: str) -> None:
        await self.harness.until(
            lambda: stage in self.services.stages(self.grant.application_id), stage
        )

    def reported(self) -> list[tuple[str, int]]:
        """(stage, award) of every stage report the applicant was sent, in order."""
        return [
            (r.stage, r.award_amount_fen)
            for r in self.services.reports
            if r.application_id == self.grant.application_id and r.stage != "IN_PAYMENT"
        ]

    async def funded_and_paid(self, award_fen: int) -> GrantOutcome:
        """From the departments' approval on: the notice batch funds and notices the award, the
        grant waits for a funding plan with it, and the plan pays it."""
        await self.reaches("AWAITING_FUNDING_PLAN")
        [entry] = [
            e
            for n in self.services.notices
            for e in n.entries
            if e.application_id == self.grant.application_id
        ]
        assert entry.amount_fen == award_fen
        assert self.services.reserved[self.grant.application_id] == award_fen
        status = await self.status()
        assert (status.stage, status.award_amount_fen) == ("AWAITING_FUNDING_PLAN", award_fen)
        await pay(self.harness, self.grant)
        outcome = await self.handle.result()
        assert (outcome.stage, outcome.award_amount_fen) == ("PAID", award_fen)
        return outcome


async def file(harness: Harness, grant: GrantInput) -> Filed:
    return Filed(harness, grant, await harness.start(grant))


async def reviewed_amount(
    harness: Harness,
    grant: GrantInput,
    *,
    score_centi: int = 7_500,
    audited_fen: int | None = None,
) -> int:
    """What the workflow proposes to the departments in its first round, after the experts (an
    advisory score unless the program's tiers or pass score use it) and the audit (confirming the
    declared figure unless told otherwise); the grant is then stopped."""
    filed = await file(harness, grant)
    rule = grant.rule
    if rule.expert_review is not None:
        await filed.experts_score(score_centi)
    if rule.special_audit is not None:
        declared = grant.figures[rule.special_audit.audited_figure]
        await filed.audit_confirms(declared if audited_fen is None else audited_fen)
    amount, _ = await filed.first_round()
    await filed.handle.terminate("the first round's amount is all this test looks at")
    return amount


def path(checks: list[str], award_fen: int) -> list[tuple[str, int]]:
    """The stage reports of a grant paid in full: its program's checks, then the award stages."""
    return [(stage, 0) for stage in checks] + [(stage, award_fen) for stage in AWARD_STAGES]


# ------------------------------------------------------------ each program, filing to paid


async def test_sme_cloud_pays_half_the_cloud_fee_with_the_odd_fen_rounded_down(
    harness: Harness,
) -> None:
    fee = 2_345 * YUAN + 67  # 2,345.67 yuan paid to the cloud platform
    grant = filing(
        "SME-CLOUD",
        {"cloud_fee_paid_fen": fee, "staff_count": 50, "annual_revenue_fen": 2_000 * WAN},
        own_batcher=True,
    )
    filed = await file(harness, grant)
    amount, _ = await filed.first_round()
    assert amount == 117_283  # 1,172.835 yuan: the half fen is dropped
    await harness.approve_all(filed.handle, grant)
    await filed.funded_and_paid(117_283)
    assert filed.reported() == path([], 117_283)


async def test_iip_cross_platform_is_scored_audited_and_capped_at_10_million_yuan(
    harness: Harness,
) -> None:
    investment = 4_000 * WAN  # 40 million yuan: 30 % would be 12 million
    grant = filing("IIP-CROSS", {"platform_investment_fen": investment}, own_batcher=True)
    filed = await file(harness, grant)
    await filed.experts_score(7_820)  # advisory: the departments decide
    await filed.audit_confirms(investment)
    amount, _ = await filed.first_round()
    assert amount == 1_000 * WAN
    await harness.approve_all(filed.handle, grant)
    await filed.funded_and_paid(1_000 * WAN)
    assert filed.reported() == path(
        ["EXPERT_REVIEW", "EXPERT_REVIEW", "SPECIAL_AUDIT"], 1_000 * WAN
    )


async def test_iip_industry_platform_is_paid_on_the_lower_audited_investment(
    harness: Harness,
) -> None:
    grant = filing("IIP-INDUSTRY", {"platform_investment_fen": 800 * WAN}, own_batcher=True)
    filed = await file(harness, grant)
    await filed.experts_score(6_950)
    # The auditor confirms 7,654,321.01 yuan of the 8 million declared: the lower counts, and
    # 30 % of it is 2,296,296.303 yuan, the odd part of a fen dropped.
    await filed.audit_confirms(765_432_101)
    amount, _ = await filed.first_round()
    assert amount == 229_629_630
    await harness.approve_all(filed.handle, grant)
    await filed.funded_and_paid(229_629_630)
    assert filed.reported() == path(
        ["EXPERT_REVIEW", "EXPERT_REVIEW", "SPECIAL_AUDIT"], 229_629_630
    )


async def test_tech_invest_pays_10_percent_within_what_the_enterprise_year_cap_leaves(
    harness: Harness,
) -> None:
    investment = 5_000 * WAN  # 10 % is 5 million yuan
    grant = filing("TECH-INVEST", {"completed_investment_fen": investment}, own_batcher=True)
    # Awards of the year already hold 7 of the enterprise's 10 million yuan (eligibility says).
    harness.services.year_cap_left[grant.application_id] = 300 * WAN
    filed = await file(harness, grant)
    await filed.audit_confirms(investment)
    amount, _ = await filed.first_round()
    assert amount == 300 * WAN
    await harness.approve_all(filed.handle, grant)
    await filed.funded_and_paid(300 * WAN)
    assert filed.reported() == path(["SPECIAL_AUDIT"], 300 * WAN)


async def test_tech_smart_pays_20_percent_of_the_intelligent_investment(harness: Harness) -> None:
    investment = 1_234 * WAN + 5_678 * YUAN + 91  # 12,345,678.91 yuan, above the 5 million floor
    grant = filing("TECH-SMART", {"smart_investment_fen": investment}, own_batcher=True)
    filed = await file(harness, grant)
    amount, _ = await filed.first_round()
    assert amount == 246_913_578  # 2,469,135.782 yuan
    await harness.approve_all(filed.handle, grant)
    await filed.funded_and_paid(246_913_578)
    assert filed.reported() == path([], 246_913_578)


async def test_tech_major_is_capped_at_50_million_yuan_once_every_department_approves(
    harness: Harness,
) -> None:
    investment = 30_000 * WAN  # 300 million yuan: 20 % would be 60 million
    grant = filing("TECH-MAJOR", {"fixed_asset_investment_fen": investment}, own_batcher=True)
    filed = await file(harness, grant)
    await filed.experts_score(8_800)
    await filed.audit_confirms(investment)
    amount, tasks = await filed.first_round()
    assert amount == 5_000 * WAN
    # All must approve: the finance bureau's approval alone decides nothing.
    await filed.decide(tasks, "finance", "approve")
    status = await filed.status()
    assert (status.stage, status.pending_departments) == ("IN_REVIEW", ["industry"])
    await filed.decide(tasks, "industry", "approve")
    # Paid in three instalments (tests/workflows/test_instalments.py follows one to the end):
    # the first with the award, then the grant waits for the next milestone.
    await filed.reaches("AWAITING_FUNDING_PLAN")
    schedule = harness.services.schedules[grant.application_id]
    assert [p.amount_fen for p in schedule] == [1_666_666_666, 1_666_666_666, 1_666_666_668]
    await pay(harness, grant)
    await filed.reaches("INSTALMENTS")
    status = await filed.status()
    assert (status.instalments, status.award_amount_fen) == ("1/3", 5_000 * WAN)
    paid_once = path(["EXPERT_REVIEW", "EXPERT_REVIEW", "SPECIAL_AUDIT"], 5_000 * WAN)
    assert filed.reported() == [*paid_once[:-1], ("INSTALMENTS", 5_000 * WAN)]


async def test_service_event_pays_half_the_event_cost_to_a_social_organisation(
    harness: Harness,
) -> None:
    grant = filing(
        "SERVICE-EVENT",
        {"event_cost_fen": 60 * WAN, "participant_count": 800},
        applicant=SOCIAL_ORGANISATION,
        own_batcher=True,
    )
    filed = await file(harness, grant)
    amount, _ = await filed.first_round()
    assert amount == 30 * WAN
    await harness.approve_all(filed.handle, grant)
    await filed.funded_and_paid(30 * WAN)
    assert filed.reported() == path([], 30 * WAN)


DEMO_FIGURES = {
    "served_enterprises": 240,
    "satisfaction_basis_points": 9_300,
    "service_revenue_fen": 700 * WAN,
    "partner_agencies": 12,
    "external_experts": 25,
}


async def test_demo_platform_pays_the_score_tier_once_two_of_three_departments_approve(
    harness: Harness,
) -> None:
    grant = filing("DEMO-PLATFORM", DEMO_FIGURES, own_batcher=True)
    filed = await file(harness, grant)
    await filed.experts_score(8_550)  # the 80–90 points tier
    amount, tasks = await filed.first_round()
    assert amount == 60 * WAN
    # A quorum of 2 of 3: the finance bureau's rejection alone does not end the grant.
    await filed.decide(tasks, "finance", "reject")
    await filed.decide(tasks, "industry", "approve")
    status = await filed.status()
    assert (status.stage, status.pending_departments) == ("IN_REVIEW", ["hr"])
    await filed.decide(tasks, "hr", "approve")
    await filed.funded_and_paid(60 * WAN)
    assert filed.reported() == path(["EXPERT_REVIEW", "EXPERT_REVIEW"], 60 * WAN)


async def test_voc_tuition_pays_4000_yuan_per_eligible_student_to_a_school(
    harness: Harness,
) -> None:
    grant = filing("VOC-TUITION", {"eligible_students": 260}, applicant=SCHOOL, own_batcher=True)
    filed = await file(harness, grant)
    amount, tasks = await filed.first_round()
    assert amount == 260 * 4_000 * YUAN
    assert sorted(tasks) == ["finance", "hr"]  # the HR bureau owns it, finance co-reviews
    await harness.approve_all(filed.handle, grant)
    await filed.funded_and_paid(260 * 4_000 * YUAN)
    assert filed.reported() == path([], 260 * 4_000 * YUAN)


# ------------------------------------------- the amount reviewed, at the edges of each rule


@pytest.mark.parametrize(
    ("fee", "expected"),
    [
        pytest.param(399_999, 199_999, id="below-the-cap-odd-fen-down"),
        pytest.param(400_000, 2_000 * YUAN, id="at-the-cap"),
        pytest.param(400_001, 2_000 * YUAN, id="above-the-cap"),
    ],
)
async def test_sme_cloud_reviews_half_the_fee_up_to_2000_yuan(
    harness: Harness, fee: int, expected: int
) -> None:
    figures = {"cloud_fee_paid_fen": fee, "staff_count": 50, "annual_revenue_fen": 2_000 * WAN}
    assert await reviewed_amount(harness, filing("SME-CLOUD", figures)) == expected


@pytest.mark.parametrize(
    ("declared", "audited", "expected"),
    [
        pytest.param(3_333_333_333, 3_333_333_333, 999_999_999, id="below-the-cap-odd-fen-down"),
        pytest.param(3_333_333_334, 3_333_333_334, 1_000 * WAN, id="at-the-cap"),
        pytest.param(4_000_000_000, 4_000_000_000, 1_000 * WAN, id="above-the-cap"),
        pytest.param(4_000_000_000, 3_333_333_333, 999_999_999, id="audit-brings-it-under"),
        pytest.param(3_333_333_333, 4_000_000_000, 999_999_999, id="audit-above-the-declared"),
    ],
)
async def test_iip_cross_reviews_30_percent_of_the_lower_investment_up_to_10_million_yuan(
    harness: Harness, declared: int, audited: int, expected: int
) -> None:
    grant = filing("IIP-CROSS", {"platform_investment_fen": declared})
    assert await reviewed_amount(harness, grant, audited_fen=audited) == expected


@pytest.mark.parametrize(
    ("declared", "audited", "expected"),
    [
        pytest.param(999_999_999, 999_999_999, 299_999_999, id="below-the-cap-odd-fen-down"),
        pytest.param(1_000_000_000, 1_000_000_000, 300 * WAN, id="at-the-cap"),
        pytest.param(1_000_000_001, 1_000_000_001, 300 * WAN, id="above-the-cap"),
        pytest.param(1_500_000_000, 999_999_999, 299_999_999, id="audit-brings-it-under"),
    ],
)
async def test_iip_industry_reviews_30_percent_of_the_lower_investment_up_to_3_million_yuan(
    harness: Harness, declared: int, audited: int, expected: int
) -> None:
    grant = filing("IIP-INDUSTRY", {"platform_investment_fen": declared})
    assert await reviewed_amount(harness, grant, audited_fen=audited) == expected


@pytest.mark.parametrize(
    ("investment", "year_cap_left", "expected"),
    [
        pytest.param(9_999_999_999, -1, 999_999_999, id="below-the-cap-odd-fen-down"),
        pytest.param(10_000_000_000, -1, 1_000 * WAN, id="at-the-cap"),
        pytest.param(10_000_000_010, -1, 1_000 * WAN, id="above-the-cap"),
        pytest.param(6_000_000_000, 400 * WAN, 400 * WAN, id="year-cap-left-below-the-award"),
        pytest.param(6_000_000_000, 600 * WAN, 600 * WAN, id="year-cap-left-at-the-award"),
        pytest.param(6_000_000_000, 600 * WAN + 1, 600 * WAN, id="year-cap-left-above-the-award"),
    ],
)
async def test_tech_invest_reviews_10_percent_up_to_10_million_yuan_a_year(
    harness: Harness, investment: int, year_cap_left: int, expected: int
) -> None:
    grant = filing("TECH-INVEST", {"completed_investment_fen": investment})
    harness.services.year_cap_left[grant.application_id] = year_cap_left
    assert await reviewed_amount(harness, grant) == expected


@pytest.mark.parametrize(
    ("investment", "expected"),
    [
        pytest.param(500_000_000, 100_000_000, id="at-the-5-million-floor"),
        pytest.param(500_000_003, 100_000_000, id="above-the-floor-odd-fen-down"),
        pytest.param(9_999_999_999, 1_999_999_999, id="below-the-cap"),
        pytest.param(10_000_000_000, 2_000 * WAN, id="at-the-cap"),
        pytest.param(10_000_000_005, 2_000 * WAN, id="above-the-cap"),
    ],
)
async def test_tech_smart_reviews_20_percent_from_5_million_up_to_20_million_yuan(
    harness: Harness, investment: int, expected: int
) -> None:
    grant = filing("TECH-SMART", {"smart_investment_fen": investment})
    assert await reviewed_amount(harness, grant) == expected


@pytest.mark.parametrize(
    ("declared", "audited", "expected"),
    [
        pytest.param(24_999_999_999, 24_999_999_999, 4_999_999_999, id="below-the-cap-odd-fen"),
        pytest.param(25_000_000_000, 25_000_000_000, 5_000 * WAN, id="at-the-cap"),
        pytest.param(25_000_000_001, 25_000_000_001, 5_000 * WAN, id="above-the-cap"),
        pytest.param(30_000_000_000, 24_999_999_999, 4_999_999_999, id="audit-brings-it-under"),
    ],
)
async def test_tech_major_reviews_20_percent_of_the_lower_investment_up_to_50_million_yuan(
    harness: Harness, declared: int, audited: int, expected: int
) -> None:
    grant = filing("TECH-MAJOR", {"fixed_asset_investment_fen": declared})
    assert await reviewed_amount(harness, grant, audited_fen=audited) == expected


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        pytest.param(99_999_999, 49_999_999, id="below-the-cap-odd-fen-down"),
        pytest.param(100_000_000, 50 * WAN, id="at-the-cap"),
        pytest.param(100_000_001, 50 * WAN, id="above-the-cap"),
    ],
)
async def test_service_event_reviews_half_the_cost_up_to_500000_yuan(
    harness: Harness, cost: int, expected: int
) -> None:
    grant = filing(
        "SERVICE-EVENT",
        {"event_cost_fen": cost, "participant_count": 300},
        applicant=SOCIAL_ORGANISATION,
    )
    assert await reviewed_amount(harness, grant) == expected


@pytest.mark.parametrize(
    ("score_centi", "expected"),
    [
        pytest.param(6_000, 30 * WAN, id="at-60-points"),
        pytest.param(7_999, 30 * WAN, id="below-80-points"),
        pytest.param(8_000, 60 * WAN, id="at-80-points"),
        pytest.param(8_999, 60 * WAN, id="below-90-points"),
        pytest.param(9_000, 100 * WAN, id="at-90-points"),
        pytest.param(10_000, 100 * WAN, id="full-marks-at-the-cap"),
    ],
)
async def test_demo_platform_reviews_the_tier_its_expert_score_reaches(
    harness: Harness, score_centi: int, expected: int
) -> None:
    grant = filing("DEMO-PLATFORM", DEMO_FIGURES)
    assert await reviewed_amount(harness, grant, score_centi=score_centi) == expected


@pytest.mark.parametrize(
    ("students", "expected"),
    [
        pytest.param(1, 4_000 * YUAN, id="one-student"),
        pytest.param(2_801, 1_120 * WAN + 4_000 * YUAN, id="no-cap-however-many"),
    ],
)
async def test_voc_tuition_reviews_4000_yuan_for_each_student(
    harness: Harness, students: int, expected: int
) -> None:
    grant = filing("VOC-TUITION", {"eligible_students": students}, applicant=SCHOOL)
    assert await reviewed_amount(harness, grant) == expected


# ------------------------------------------------------------------ below every threshold


@pytest.mark.parametrize(
    ("code", "figures", "applicant"),
    [
        pytest.param(
            "SME-CLOUD",
            {"cloud_fee_paid_fen": 1, "staff_count": 50, "annual_revenue_fen": 2_000 * WAN},
            ENTERPRISE,
            id="SME-CLOUD-half-of-one-fen",
        ),
        pytest.param(
            "IIP-INDUSTRY", {"platform_investment_fen": 3}, ENTERPRISE, id="IIP-INDUSTRY-3-fen"
        ),
        pytest.param(
            "TECH-SMART",
            {"smart_investment_fen": 499_999_999},
            ENTERPRISE,
            id="TECH-SMART-below-the-5-million-floor",
        ),
        pytest.param("VOC-TUITION", {"eligible_students": 0}, SCHOOL, id="VOC-TUITION-no-student"),
    ],
)
async def test_a_filing_that_earns_nothing_is_asked_to_supplement_before_any_review(
    harness: Harness, code: str, figures: dict[str, int], applicant: str
) -> None:
    grant = filing(code, figures, applicant=applicant)
    filed = await file(harness, grant)
    await filed.reaches("AWAITING_SUPPLEMENT")
    [report] = [r for r in harness.services.reports if r.application_id == grant.application_id]
    figure = grant.rule.amount_rule.figure
    assert report.reason == reasons.supplement_needed([f"申报数据 {figure} 未达到资助条件"])
    # Nobody's time is spent on it: no expert panel, no audit, no review task.
    assert not harness.services.expert_reviews
    assert not harness.services.audits
    assert not harness.services.tasks
    await filed.handle.terminate("the supplement request is all this test looks at")


async def test_tech_smart_is_reviewed_once_a_supplement_reaches_the_5_million_floor(
    harness: Harness,
) -> None:
    grant = filing("TECH-SMART", {"smart_investment_fen": 499_999_999})
    filed = await file(harness, grant)
    await filed.reaches("AWAITING_SUPPLEMENT")
    await filed.handle.signal(
        contracts.SUPPLEMENT,
        contracts.Supplement(figures={"smart_investment_fen": 500_000_000}, supplement_count=1),
    )
    amount, _ = await filed.first_round()
    assert amount == 100 * WAN
    await filed.handle.terminate("the reviewed amount is all this test looks at")


async def test_demo_platform_rejects_a_score_below_60_points(harness: Harness) -> None:
    grant = filing("DEMO-PLATFORM", DEMO_FIGURES)
    filed = await file(harness, grant)
    await filed.experts_score(5_999)
    outcome = await filed.handle.result()
    assert (outcome.stage, outcome.award_amount_fen) == ("REJECTED", 0)
    assert outcome.reason == reasons.expert_score_too_low(5_999, 6_000)
    assert not harness.services.tasks
