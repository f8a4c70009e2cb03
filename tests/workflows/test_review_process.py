"""The fourth generation of GrantWorkflow on the time-skipping server: eligibility, expert review
with score tiers, special audit (就低原则), join policies, notices by batch with pro-rata cuts and
a waiting list, and objections upheld and dismissed. The services are stand-ins (fakes.py); the
integration tests run the same process on the real stack."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from grantflow.ops import replay_history
from services.common.vocabulary import AmountKind, JoinPolicy, OverBudgetPolicy
from tests.workflows.grants import Harness, grant_input, pay, sme_cloud_rule, withdraw
from workflows import contracts, reasons
from workflows.models import GrantInput, GrantStatus, Timing
from workflows.rules import (
    AmountRuleModel,
    ExpertReviewModel,
    RubricCriterionModel,
    ScoreTierModel,
    SpecialAuditModel,
)


def v4_grant(**overrides: object) -> GrantInput:
    """A grant of the fourth process."""
    return grant_input(process_generation=4, **overrides)


RUBRIC = [
    RubricCriterionModel(code="service", name="服务能力", max_points=60),
    RubricCriterionModel(code="effect", name="服务成效", max_points=40),
]
FAST = Timing(notice_seconds=1, batch_seconds=0.5)


def program(**overrides: object) -> str:
    """A program code of this test's own: each program has one notice batcher."""
    return f"P-{uuid.uuid4().hex[:8]}"


def demo_platform(**overrides: object) -> GrantInput:
    rule = sme_cloud_rule(
        code=program(),
        sme_only=False,
        required_figures=["firms_served"],
        amount_rule=AmountRuleModel(
            kind=AmountKind.SCORE_TIERS,
            tiers=[
                ScoreTierModel(min_score_centi=6000, amount_fen=30_000_000),
                ScoreTierModel(min_score_centi=8000, amount_fen=60_000_000),
                ScoreTierModel(min_score_centi=9000, amount_fen=100_000_000),
            ],
        ),
        expert_review=ExpertReviewModel(
            panel_size=3, field="public_service", rubric=RUBRIC, pass_score_centi=6000
        ),
    )
    values: dict[str, object] = {"rule": rule, "figures": {"firms_served": 250}, "timing": FAST}
    values.update(overrides)
    return v4_grant(**values)


async def experts_score(
    harness: Harness, handle: WorkflowHandle, grant: GrantInput, score: int
) -> None:
    await harness.until(
        lambda: any(
            r.application_id == grant.application_id
            for r in harness.services.expert_reviews.values()
        ),
        "the expert panel",
    )
    panel = next(
        p
        for p, r in harness.services.expert_reviews.items()
        if r.application_id == grant.application_id
    )
    await handle.execute_update(
        contracts.EXPERT_REVIEW_DONE,
        contracts.ExpertReviewDone(panel_id=panel, score_centi=score, experts=3),
    )


async def in_notice(harness: Harness, grant: GrantInput) -> None:
    await harness.until(
        lambda: "IN_NOTICE" in harness.services.stages(grant.application_id), "the notice"
    )


async def test_expert_score_picks_the_tier_and_a_low_score_rejects(harness: Harness) -> None:
    grant = demo_platform()
    handle = await harness.start(grant)
    await experts_score(harness, handle, grant, 8550)
    await harness.approve_all(handle, grant)
    await in_notice(harness, grant)
    assert harness.services.reserved[grant.application_id] == 60_000_000  # the 80–90 tier
    assert harness.services.stages(grant.application_id)[:2] == ["EXPERT_REVIEW", "EXPERT_REVIEW"]

    low = demo_platform()
    low_handle = await harness.start(low)
    await experts_score(harness, low_handle, low, 5999)
    outcome = await low_handle.result()
    assert outcome.stage == "REJECTED"
    assert outcome.reason == reasons.expert_score_too_low(5999, 6000)


async def test_an_audit_below_the_declared_figure_lowers_the_amount(harness: Harness) -> None:
    rule = sme_cloud_rule(
        code=program(),
        sme_only=False,
        required_figures=["platform_investment_fen"],
        amount_rule=AmountRuleModel(
            basis_figure="platform_investment_fen", rate_basis_points=3000, cap_fen=300_000_000
        ),
        special_audit=SpecialAuditModel(audited_figure="platform_investment_fen"),
    )
    grant = v4_grant(rule=rule, figures={"platform_investment_fen": 1_000_000_000}, timing=FAST)
    handle = await harness.start(grant)
    await harness.until(lambda: bool(harness.services.audits), "the audit task")
    task_id, audit = next(iter(harness.services.audits.items()))
    assert (audit.figure, audit.declared_fen) == ("platform_investment_fen", 1_000_000_000)
    await handle.execute_update(
        contracts.AUDIT_DONE,
        contracts.AuditDone(
            task_id=task_id, figure="platform_investment_fen", audited_fen=600_000_001, auditor="a"
        ),
    )
    tasks = await harness.tasks_of_round(grant, 1)
    # The departments review the amount computed from the audited figure: 30 % of 6,000,000.01
    # yuan, the odd fen rounded down.
    assert {harness.services.tasks[t].proposed_amount_fen for t in tasks.values()} == {180_000_000}


async def test_a_quorum_decides_and_the_last_department_is_told(harness: Harness) -> None:
    rule = sme_cloud_rule(
        code=program(),
        review_departments=["industry", "finance", "hr"],
        join_policy=JoinPolicy.QUORUM,
        quorum=2,
    )
    grant = v4_grant(rule=rule, timing=FAST)
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)
    await harness.decide(handle, tasks["finance"], "finance", "reject", reason="not convinced")
    await harness.decide(handle, tasks["industry"], "industry", "approve")
    await harness.decide(handle, tasks["hr"], "hr", "approve", amount=100_000)
    await in_notice(harness, grant)
    assert harness.services.reserved[grant.application_id] == 100_000


async def test_all_approve_waits_for_every_department(harness: Harness) -> None:
    rule = sme_cloud_rule(code=program(), join_policy=JoinPolicy.ALL_APPROVE)
    grant = v4_grant(rule=rule, timing=FAST)
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)
    await harness.decide(handle, tasks["industry"], "industry", "reject", reason="too small")
    # Under ALL_APPROVE the finance bureau still decides: nothing is cancelled yet.
    assert tasks["finance"] not in harness.services.cancelled_tasks
    await harness.decide(handle, tasks["finance"], "finance", "approve")
    outcome = await handle.result()
    assert (outcome.stage, outcome.reason) == (
        "REJECTED",
        "市工业和信息化局审查不予通过：too small",
    )


async def decided_batch(
    harness: Harness, rule_code: str, policy: OverBudgetPolicy, fees: list[int]
) -> list[tuple[GrantInput, WorkflowHandle]]:
    rule = sme_cloud_rule(code=rule_code, over_budget_policy=policy)
    grants = []
    for fee in fees:
        figures = {"cloud_fee_paid_fen": fee, "staff_count": 50, "annual_revenue_fen": 10**9}
        grant = v4_grant(
            rule=rule, figures=figures, timing=Timing(notice_seconds=1, batch_seconds=5)
        )
        handle = await harness.start(grant)
        grants.append((grant, handle))
    for grant, handle in grants:
        await harness.approve_all(handle, grant)
    return grants


async def test_an_over_budget_batch_is_cut_pro_rata(harness: Harness) -> None:
    harness.services.budget_fen = 150_001
    grants = await decided_batch(
        harness, program(), OverBudgetPolicy.PRO_RATA, [100_000, 200_000, 300_000]
    )
    for grant, _ in grants:
        await in_notice(harness, grant)
    # Awards 50,000 + 100,000 + 150,000 fen against 150,001 left: each cut by the same ratio.
    assert [harness.services.reserved[g.application_id] for g, _ in grants] == [
        25_000,
        50_000,
        75_000,
    ]
    [notice] = harness.services.notices
    assert len(notice.entries) == 3
    report = next(
        r
        for r in harness.services.reports
        if r.application_id == grants[0][0].application_id and r.stage == "IN_NOTICE"
    )
    assert "按比例核减" in report.reason


async def test_a_waitlisted_award_is_funded_and_noticed_in_a_later_batch(harness: Harness) -> None:
    harness.services.budget_fen = 120_000
    code = program()
    first, second = await decided_batch(
        harness, code, OverBudgetPolicy.WAITING_LIST, [200_000, 200_000]
    )
    await in_notice(harness, first[0])
    await harness.until(
        lambda: "WAITLISTED" in harness.services.stages(second[0].application_id), "waitlisted"
    )
    assert second[0].application_id not in harness.services.reserved
    # The line is raised; the next batch (closed by an officer) funds the waiting award first.
    harness.services.budget_fen = 10**9
    batcher = harness.env.client.get_workflow_handle(contracts.notice_batcher_id(code))
    await batcher.signal(contracts.CLOSE_NOTICE_BATCH)
    await in_notice(harness, second[0])
    assert harness.services.reserved[second[0].application_id] == 100_000
    assert [len(n.entries) for n in harness.services.notices] == [1, 1]
    assert harness.services.notices[0].batch_id != harness.services.notices[1].batch_id


async def lodge(handle: WorkflowHandle, objection_id: str) -> None:
    await handle.execute_update(
        contracts.OBJECTION_LODGED,
        contracts.ObjectionLodged(objection_id=objection_id, kind="report"),
    )


async def test_an_upheld_objection_ends_the_award_and_releases_its_money(harness: Harness) -> None:
    grant = v4_grant(
        rule=sme_cloud_rule(code=program()), timing=Timing(notice_seconds=3600, batch_seconds=0.5)
    )
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await in_notice(harness, grant)
    await lodge(handle, "obj-1")
    await handle.execute_update(
        contracts.OBJECTION_DECIDED,
        contracts.ObjectionDecided(
            objection_id="obj-1", upheld=True, consequence="fall_away", reason="项目已获其他资助"
        ),
    )
    outcome = await handle.result()
    assert (outcome.stage, outcome.reason) == (
        "REJECTED",
        reasons.objection_upheld("项目已获其他资助"),
    )
    assert grant.application_id in harness.services.released
    assert grant.application_id not in harness.services.confirmed


async def test_a_dismissed_objection_is_noticed_again_in_a_later_batch(harness: Harness) -> None:
    rule = sme_cloud_rule(code=program(), renotice_after_dismissed_objection=True)
    # A notice of three seconds, in real time: the objection is lodged and decided within it.
    grant = v4_grant(rule=rule, timing=Timing(notice_seconds=3, batch_seconds=0.5))
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await in_notice(harness, grant)
    await lodge(handle, "obj-2")
    await handle.execute_update(
        contracts.OBJECTION_DECIDED,
        contracts.ObjectionDecided(objection_id="obj-2", upheld=False, reason="举报不实"),
    )
    # The notice runs its course, then the award is noticed again with the money it has.
    await harness.until(lambda: len(harness.services.notices) == 2, "the second notice")
    again = harness.services.notices[1].entries[0]
    assert (again.application_id, again.renotice) == (grant.application_id, True)
    assert len(harness.services.allocations) == 1  # its money was not allocated twice
    await harness.until(lambda: grant.application_id in harness.services.confirmed, "the award")
    await pay(harness, grant)
    assert (await handle.result()).stage == "PAID"


async def test_a_withdrawal_before_the_notice_leaves_the_batch_and_keeps_no_money(
    harness: Harness,
) -> None:
    grant = v4_grant(
        rule=sme_cloud_rule(code=program()), timing=Timing(notice_seconds=1, batch_seconds=3600)
    )
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await harness.until(
        lambda: "AWAITING_NOTICE" in harness.services.stages(grant.application_id), "awaiting"
    )
    await withdraw(handle, "project cancelled")
    outcome = await handle.result()
    assert outcome.stage == "WITHDRAWN"
    assert harness.services.left_batches == [grant.application_id]
    assert grant.application_id not in harness.services.reserved


async def test_an_ineligible_application_is_rejected_with_the_checks_reasons(
    harness: Harness,
) -> None:
    grant = v4_grant(rule=sme_cloud_rule(code=program()), timing=FAST)
    harness.services.ineligible[grant.application_id] = ["同一项目已获市级其他专项资助（多头申报）"]
    outcome = await (await harness.start(grant)).result()
    assert outcome.stage == "REJECTED"
    assert outcome.reason == reasons.eligibility_failed(
        ["同一项目已获市级其他专项资助（多头申报）"]
    )


async def test_the_yearly_cap_limits_the_amount(harness: Harness) -> None:
    grant = v4_grant(rule=sme_cloud_rule(code=program()), timing=FAST)
    harness.services.year_cap_left[grant.application_id] = 70_000
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)
    assert {harness.services.tasks[t].proposed_amount_fen for t in tasks.values()} == {70_000}
    await handle.cancel()


async def test_a_missing_required_document_is_asked_for_before_any_review(
    harness: Harness,
) -> None:
    rule = sme_cloud_rule(code=program(), required_documents=["申报书", "云服务合同"])
    grant = v4_grant(rule=rule, timing=FAST, document_names=["申报书"])
    handle = await harness.start(grant)
    await harness.until(
        lambda: "AWAITING_SUPPLEMENT" in harness.services.stages(grant.application_id),
        "the request for the contract",
    )
    asked = [r for r in harness.services.reports if r.application_id == grant.application_id]
    assert "缺少申报材料：云服务合同" in asked[-1].reason
    assert harness.services.task_ids(grant.application_id, 1) == {}
    # The supplement carries every document the application now holds.
    await handle.signal(
        contracts.SUPPLEMENT,
        contracts.Supplement(
            figures=grant.figures, supplement_count=1, document_names=["申报书", "云服务合同"]
        ),
    )
    tasks = await harness.tasks_of_round(grant, 1)
    assert set(tasks) == {"industry", "finance"}
    await handle.cancel()


async def test_an_award_with_an_objection_open_never_waits_for_a_funding_plan(
    lone_harness: Harness,
) -> None:
    """资助计划 hold out objected grants: an award is put before a funding plan only by
    ConfirmAward (its reservation AWARDED, "awaiting a plan"), which the grant calls once its
    notice has ended with no objection open and none upheld; an upheld one never confirms it
    (test_an_upheld_objection_ends_the_award_and_releases_its_money). So while an objection is
    open, past the notice's end, no plan can take the award; no objection is taken once the
    notice has closed; a dismissed one lets the award wait for a plan."""
    harness = lone_harness  # hours are skipped: on a server of its own
    grant = v4_grant(
        rule=sme_cloud_rule(code=program()), timing=Timing(notice_seconds=3600, batch_seconds=0.5)
    )
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await in_notice(harness, grant)
    await lodge(handle, "obj-open")
    await harness.env.sleep(timedelta(hours=3))  # the notice has long closed
    status = await handle.query(contracts.GRANT_STATUS, result_type=GrantStatus)
    assert status.stage == "IN_NOTICE"
    assert grant.application_id not in harness.services.confirmed
    assert grant.application_id in harness.services.reserved  # still only reserved
    with pytest.raises(WorkflowUpdateFailedError) as late:
        await lodge(handle, "obj-late")
    assert "closed" in str(late.value.cause)

    await handle.execute_update(
        contracts.OBJECTION_DECIDED,
        contracts.ObjectionDecided(objection_id="obj-open", upheld=False, reason="异议不成立"),
    )
    await harness.until(lambda: grant.application_id in harness.services.confirmed, "the award")
    await pay(harness, grant)
    assert (await handle.result()).stage == "PAID"


async def test_a_batch_tells_its_grants_together_not_one_workflow_task_each(
    harness: Harness,
) -> None:
    """A city batch runs to thousands of awards: told one after the other, each grant cost the
    batcher a workflow task of its own (most of an hour for 2,886 under load). The grants of a
    batch are now told by signals sent together."""
    code = program()
    grants = await decided_batch(harness, code, OverBudgetPolicy.PRO_RATA, [100_000] * 12)
    for grant, _ in grants:
        await in_notice(harness, grant)
    # The batch's run: the batcher's latest run, or the one it continued from.
    client = harness.env.client
    history = await client.get_workflow_handle(contracts.notice_batcher_id(code)).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    if started.continued_execution_run_id:
        history = await client.get_workflow_handle(
            contracts.notice_batcher_id(code), run_id=started.continued_execution_run_id
        ).fetch_history()
    signalled = [
        i
        for i, e in enumerate(history.events)
        if e.HasField("signal_external_workflow_execution_initiated_event_attributes")
    ]
    assert len(signalled) == 12
    tasks_between = [
        e
        for e in history.events[signalled[0] : signalled[-1]]
        if e.HasField("workflow_task_completed_event_attributes")
    ]
    assert tasks_between == []  # one workflow task sent all twelve
    assert (await replay_history(history)).error == ""  # and the batch's run replays
