"""GrantWorkflow on the time-skipping server: every path of a grant's life, the validators that
guard reviewers' updates, and the compensation when an award falls away."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from services.common.vocabulary import Decision
from tests.replay.test_replay_histories import patches
from tests.workflows.fakes import BARRED
from tests.workflows.grants import TASK_QUEUE, Harness, grant_input, pay, withdraw
from workflows import contracts, reasons
from workflows.funding_plan import PAYMENT_ATTEMPTS, SETTLEMENT_PATCH, FundingPlanWorkflow
from workflows.models import FundingPlanOutcome, GrantInput, Timing


async def test_approved_grant_is_noticed_for_seven_working_days_then_paid(harness: Harness) -> None:
    grant = grant_input()
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await harness.until(
        lambda: "IN_NOTICE" in harness.services.stages(grant.application_id), "notice"
    )
    # The notice is a durable timer of 7 working days: after 4 calendar days nothing moved.
    await harness.env.sleep(timedelta(days=4))
    await asyncio.sleep(0.3)
    assert grant.application_id not in harness.services.confirmed
    await harness.env.sleep(timedelta(days=12))
    await harness.until(
        lambda: grant.application_id in harness.services.confirmed, "notice to expire"
    )
    await pay(harness, grant)
    outcome = await handle.result()
    assert outcome.stage == "PAID"
    # 50 % of 3,000 yuan paid is 1,500 yuan: under the 2,000-yuan cap.
    assert outcome.award_amount_fen == 150_000
    assert harness.services.reserved[grant.application_id] == 150_000
    # Only stages that tell the applicant something new are reported: the formal check and the
    # approval pass in the same instant as the review and the notice begin.
    assert harness.services.stages(grant.application_id) == [
        "IN_REVIEW",
        "IN_NOTICE",
        "AWAITING_FUNDING_PLAN",
        "IN_PAYMENT",
        "PAID",
    ]
    sequences = [r.sequence for r in harness.services.reports]
    assert sequences == sorted(sequences)


async def test_lowest_approved_amount_is_awarded(harness: Harness) -> None:
    grant = grant_input(timing=Timing(notice_seconds=1))
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)
    await harness.decide(handle, tasks["industry"], "industry", "approve", amount=120_000)
    await harness.decide(handle, tasks["finance"], "finance", "approve")
    await harness.until(
        lambda: "AWAITING_FUNDING_PLAN" in harness.services.stages(grant.application_id), "award"
    )
    assert harness.services.reserved[grant.application_id] == 120_000
    await pay(harness, grant)
    assert (await handle.result()).award_amount_fen == 120_000


async def test_rejection_by_one_department_cancels_the_other_task(harness: Harness) -> None:
    grant = grant_input()
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)
    await harness.decide(handle, tasks["finance"], "finance", "reject", reason="duplicate funding")
    outcome = await handle.result()
    assert outcome.stage == "REJECTED"
    assert outcome.reason == "市财政局审查不予通过：duplicate funding"
    assert outcome.award_amount_fen == 0
    # Only the task still open is cancelled, never the one whose decision ended the round.
    assert harness.services.cancelled_tasks == [tasks["industry"]]
    assert grant.application_id not in harness.services.reserved


async def test_return_for_supplement_then_new_round_on_new_figures(harness: Harness) -> None:
    grant = grant_input(timing=Timing(notice_seconds=1))
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)
    await harness.decide(
        handle, tasks["industry"], "industry", "return", reason="invoice for the fee is missing"
    )
    await harness.until(
        lambda: "AWAITING_SUPPLEMENT" in harness.services.stages(grant.application_id),
        "supplement request",
    )
    figures = dict(grant.figures, cloud_fee_paid_fen=200_000)
    await handle.signal(
        contracts.SUPPLEMENT, contracts.Supplement(figures=figures, supplement_count=1)
    )
    await harness.approve_all(handle, grant, round_=2)
    await harness.until(
        lambda: grant.application_id in harness.services.confirmed, "award after supplement"
    )
    await pay(harness, grant)
    outcome = await handle.result()
    assert outcome.stage == "PAID"
    assert outcome.award_amount_fen == 100_000  # 50 % of the corrected 2,000 yuan


async def test_missing_figures_without_supplement_before_deadline_is_rejected(
    harness: Harness,
) -> None:
    figures = {"cloud_fee_paid_fen": 300_000}
    grant = grant_input(figures=figures)
    handle = await harness.start(grant)
    outcome = await handle.result()  # time skips through the 5-working-day deadline
    assert outcome.stage == "REJECTED"
    assert outcome.reason == reasons.NO_SUPPLEMENT
    assert "AWAITING_SUPPLEMENT" in harness.services.stages(grant.application_id)
    assert not harness.services.tasks or all(
        t.application_id != grant.application_id for t in harness.services.tasks.values()
    )


async def test_withdrawal_during_notice_releases_the_reservation(harness: Harness) -> None:
    grant = grant_input()
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await harness.until(
        lambda: "IN_NOTICE" in harness.services.stages(grant.application_id), "notice"
    )
    await withdraw(handle, "project cancelled")
    outcome = await handle.result()
    assert (outcome.stage, outcome.reason) == ("WITHDRAWN", "project cancelled")
    assert grant.application_id in harness.services.released
    assert grant.application_id not in harness.services.reserved


async def test_withdrawal_of_an_award_in_a_funding_plan_is_refused_with_the_reason(
    harness: Harness,
) -> None:
    grant = grant_input(timing=Timing(notice_seconds=1))
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await harness.until(lambda: grant.application_id in harness.services.confirmed, "award")
    harness.services.in_plan.add(grant.application_id)  # a draft plan took it
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            contracts.WITHDRAW_APPLICATION, contracts.Withdraw(reason="changed our mind")
        )
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == contracts.ERR_FAILED_PRECONDITION
    assert refused.value.cause.message == reasons.IN_A_FUNDING_PLAN
    # Nothing was given up: the grant still waits for its payment.
    assert grant.application_id in harness.services.reserved
    await handle.signal(
        contracts.FUNDING_PLAN_ASSIGNED,
        contracts.FundingPlanAssigned(plan_id="plan-1", line_id=f"line-{grant.application_id}"),
    )
    await harness.until(
        lambda: "IN_PAYMENT" in harness.services.stages(grant.application_id), "payment"
    )
    # While the money goes out, a withdrawal is refused by the validator, before it is taken.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(contracts.WITHDRAW_APPLICATION, contracts.Withdraw())
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.message == "申请处于“资金拨付中”阶段，不能撤回"
    await pay(harness, grant)
    assert (await handle.result()).stage == "PAID"


async def test_a_withdrawal_filed_before_the_grant_started_arrives_as_a_signal(
    harness: Harness,
) -> None:
    grant = grant_input()
    handle = await harness.start(grant)
    await handle.signal(contracts.WITHDRAW, contracts.Withdraw(reason="filed by mistake"))
    outcome = await handle.result()
    assert (outcome.stage, outcome.reason) == ("WITHDRAWN", "filed by mistake")


async def test_budget_exhausted_rejects_without_reservation(harness: Harness) -> None:
    harness.services.budget_fen = 1_000
    grant = grant_input()
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    outcome = await handle.result()
    # Told as a person would be told, without a status code or the service's figures.
    assert (outcome.stage, outcome.reason) == ("REJECTED", reasons.NO_BUDGET)
    assert grant.application_id not in harness.services.reserved


async def test_barred_applicant_is_rejected_at_formal_check(harness: Harness) -> None:
    grant = grant_input(applicant_credit_code=BARRED)
    outcome = await (await harness.start(grant)).result()
    assert outcome.stage == "REJECTED"
    assert outcome.reason.startswith("形式审查未通过") and "失信联合惩戒" in outcome.reason


async def test_large_enterprise_is_not_eligible_for_an_sme_program(harness: Harness) -> None:
    figures = {"cloud_fee_paid_fen": 300_000, "staff_count": 5000, "annual_revenue_fen": 10**12}
    outcome = await (await harness.start(grant_input(figures=figures))).result()
    assert outcome.stage == "REJECTED"
    assert "不属于中小微企业" in outcome.reason


async def test_decision_validators_refuse_foreign_unknown_decided_and_excessive(
    harness: Harness,
) -> None:
    grant = grant_input()
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)

    async def refused(update: str, payload: object) -> ApplicationError:
        with pytest.raises(WorkflowUpdateFailedError) as failure:
            await handle.execute_update(update, payload)
        assert isinstance(failure.value.cause, ApplicationError)
        return failure.value.cause

    def decision(task_id: str, department: str = "industry", **values: object) -> object:
        return contracts.DecideReviewTask.model_validate(
            {
                "task_id": task_id,
                "reviewer": "ind-1",
                "department": department,
                "decision": "approve",
                **values,
            }
        )

    error = await refused(contracts.DECIDE_REVIEW_TASK, decision(tasks["industry"], "hr"))
    assert error.type == contracts.ERR_PERMISSION_DENIED
    error = await refused(contracts.DECIDE_REVIEW_TASK, decision("no-such-task"))
    assert error.type == contracts.ERR_NOT_FOUND
    error = await refused(
        contracts.DECIDE_REVIEW_TASK,
        decision(tasks["industry"], approved_amount_fen=150_001),
    )
    assert (error.type, error.message) == (
        contracts.ERR_FAILED_PRECONDITION,
        "approved amount exceeds the proposed amount",
    )
    await handle.execute_update(contracts.DECIDE_REVIEW_TASK, decision(tasks["industry"]))
    # After the decision the task is no longer open, for anyone.
    error = await refused(
        contracts.DECIDE_REVIEW_TASK, decision(tasks["industry"], decision="reject")
    )
    assert error.type == contracts.ERR_FAILED_PRECONDITION
    assert "decided" in error.message
    await withdraw(handle, "test over")
    assert (await handle.result()).stage == "WITHDRAWN"


async def test_failed_payment_waits_for_a_later_plan(harness: Harness) -> None:
    grant = grant_input(timing=Timing(notice_seconds=1))
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await harness.until(lambda: grant.application_id in harness.services.confirmed, "award")
    await handle.signal(
        contracts.FUNDING_PLAN_ASSIGNED, contracts.FundingPlanAssigned(plan_id="p1", line_id="l1")
    )
    await handle.signal(
        contracts.PAYMENT_FAILED,
        contracts.PaymentFailed(plan_id="p1", line_id="l1", reason="account closed"),
    )
    await harness.until(
        lambda: "PAYMENT_FAILED" in harness.services.stages(grant.application_id), "failure"
    )
    await pay(harness, grant, plan_id="p2")
    outcome = await handle.result()
    assert outcome.stage == "PAID"
    assert outcome.plan_id == "p2"


async def test_funding_plan_pays_lines_reports_failures_and_tells_grants(harness: Harness) -> None:
    grants = [grant_input(timing=Timing(notice_seconds=1)) for _ in range(3)]
    handles = [await harness.start(g) for g in grants]
    for handle, grant in zip(handles, grants, strict=True):
        await harness.approve_all(handle, grant)
    await harness.until(
        lambda: all(g.application_id in harness.services.confirmed for g in grants), "awards"
    )
    lines = [f"line-{i}" for i in range(3)]
    harness.services.refuse_payment_lines = {"line-2"}
    plan = contracts.FundingPlanInput(
        plan_id="plan-x",
        program_code="SME-CLOUD",
        line_ids=lines,
        application_ids=[g.application_id for g in grants],
    )
    # Without skipping time: the grant of the failed line waits with no timer, and skipping
    # would run it into its execution timeout.
    with harness.env.auto_time_skipping_disabled():
        result = await harness.env.client.execute_workflow(
            FundingPlanWorkflow.run, plan, id="plan-plan-x", task_queue=TASK_QUEUE
        )
    assert (result.paid_lines, result.failed_lines) == (2, 1)
    assert harness.services.failed_lines == ["line-2"]
    assert harness.services.completed_plans == ["plan-x"]
    await harness.until(
        lambda: "PAYMENT_FAILED" in harness.services.stages(grants[2].application_id),
        "failed line reported to its grant",
    )
    # The grant of the failed line waits for a later plan, so it can still be withdrawn. (Done
    # before awaiting any result: the test server skips time while a result is awaited.)
    await withdraw(handles[2], "gave up")
    assert (await handles[2].result()).stage == "WITHDRAWN"
    assert (await handles[0].result()).stage == "PAID"
    assert (await handles[1].result()).stage == "PAID"


async def test_a_reviewers_long_reason_does_not_break_the_grant(harness: Harness) -> None:
    grant = grant_input()
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)
    await harness.decide(handle, tasks["finance"], "finance", "reject", reason="重复申报。" * 200)
    outcome = await handle.result()
    assert outcome.stage == "REJECTED"
    assert 0 < len(outcome.reason) <= 1000 and outcome.reason.endswith("…")


async def test_a_decision_arriving_while_tasks_are_cancelled_is_refused(harness: Harness) -> None:
    harness.services.cancel_delay_s = 1.0
    grant = grant_input()
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)
    await harness.decide(handle, tasks["finance"], "finance", "reject", reason="not eligible")
    # The industry task was cancelled in the grant before the review service heard of it: a
    # decision arriving now is refused, by the validator while the grant still runs, or because
    # the grant has closed (the review service tells the reviewer it is no longer in review).
    with pytest.raises((WorkflowUpdateFailedError, RPCError)) as refused:
        await handle.execute_update(
            contracts.DECIDE_REVIEW_TASK,
            contracts.DecideReviewTask(
                task_id=tasks["industry"],
                reviewer="ind-1",
                department="industry",
                decision=Decision.APPROVE,
            ),
        )
    if isinstance(refused.value, WorkflowUpdateFailedError):
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == contracts.ERR_FAILED_PRECONDITION
    else:
        assert isinstance(refused.value, RPCError)
        assert refused.value.status == RPCStatusCode.NOT_FOUND
    assert (await handle.result()).stage == "REJECTED"
    assert harness.services.cancelled_tasks == [tasks["industry"]]


async def test_payment_signals_arriving_together_are_all_honoured(harness: Harness) -> None:
    grant = grant_input(timing=Timing(notice_seconds=1))
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await harness.until(lambda: grant.application_id in harness.services.confirmed, "award")
    # A worker catching up sees these in one go: p1 failed, then p2 assigned and paid (sent in
    # that order, as one plan's run ends before the next plan is made).
    signals: list[tuple[str, object]] = [
        (
            contracts.FUNDING_PLAN_ASSIGNED,
            contracts.FundingPlanAssigned(plan_id="p1", line_id="l1"),
        ),
        (
            contracts.PAYMENT_FAILED,
            contracts.PaymentFailed(plan_id="p1", line_id="l1", reason="bank down"),
        ),
        (
            contracts.FUNDING_PLAN_ASSIGNED,
            contracts.FundingPlanAssigned(plan_id="p2", line_id="l2"),
        ),
        (
            contracts.PAYMENT_SETTLED,
            contracts.PaymentSettled(
                plan_id="p2", line_id="l2", amount_fen=100, gateway_reference="r"
            ),
        ),
    ]
    for name, payload in signals:
        await handle.signal(name, payload)
    outcome = await handle.result()
    assert (outcome.stage, outcome.plan_id) == ("PAID", "p2")
    # The applicant was told of the failed plan too, before the one that paid (whether it was
    # also told that each plan was paying depends on how the signals were batched).
    stages = harness.services.stages(grant.application_id)
    told = [s for s in stages if s in ("PAYMENT_FAILED", "PAID")]
    assert told == ["PAYMENT_FAILED", "PAID"] and stages[-1] == "PAID"


async def test_overdue_review_is_reminded_then_escalated(harness: Harness) -> None:
    grant = grant_input()
    handle = await harness.start(grant)
    tasks = await harness.tasks_of_round(grant, 1)
    await harness.decide(handle, tasks["industry"], "industry", "approve")
    mine = [r for r in harness.services.reminders if r[0] == grant.application_id]
    assert mine == []
    # 10 working days pass without the finance decision: a reminder for its task only.
    await harness.env.sleep(timedelta(days=16))
    await harness.until(
        lambda: any(r[0] == grant.application_id for r in harness.services.reminders), "reminder"
    )
    mine = [r for r in harness.services.reminders if r[0] == grant.application_id]
    assert mine == [(grant.application_id, 1, [tasks["finance"]])]
    # Another review period: escalation.
    await harness.env.sleep(timedelta(days=16))
    await harness.until(
        lambda: len([r for r in harness.services.reminders if r[0] == grant.application_id]) == 2,
        "escalation",
    )
    mine = [r for r in harness.services.reminders if r[0] == grant.application_id]
    assert mine[1] == (grant.application_id, 2, [tasks["finance"]])
    # The grant still goes on once finance decides.
    await harness.decide(handle, tasks["finance"], "finance", "reject", reason="late but no")
    assert (await handle.result()).stage == "REJECTED"


async def noticed_grants(harness: Harness, count: int) -> list[GrantInput]:
    grants = [grant_input(timing=Timing(notice_seconds=1)) for _ in range(count)]
    for grant in grants:
        await harness.approve_all(await harness.start(grant), grant)
    await harness.until(
        lambda: all(g.application_id in harness.services.confirmed for g in grants), "awards"
    )
    return grants


async def run_plan(harness: Harness, plan_id: str, grants: list[GrantInput]) -> FundingPlanOutcome:
    plan = contracts.FundingPlanInput(
        plan_id=plan_id,
        program_code="SME-CLOUD",
        line_ids=[f"{plan_id}-line-{i}" for i in range(len(grants))],
        application_ids=[g.application_id for g in grants],
    )
    return await harness.env.client.execute_workflow(
        FundingPlanWorkflow.run, plan, id=f"plan-{plan_id}", task_queue=TASK_QUEUE
    )


async def test_a_line_paid_despite_lost_answers_is_settled_through_more_gateway_failures(
    harness: Harness,
) -> None:
    grants = await noticed_grants(harness, 1)
    # Every answer lost, but the gateway paid: marking the line failed is refused, and settling
    # it meets two more gateway failures. The plan keeps settling it; it never fails the run.
    harness.services.gateway_timeouts["lost-line-0"] = PAYMENT_ATTEMPTS + 2
    harness.services.paid_despite_timeouts.add("lost-line-0")
    result = await run_plan(harness, "lost", grants)
    assert (result.paid_lines, result.failed_lines) == (1, 0)
    assert harness.services.payment_attempts["lost-line-0"] == PAYMENT_ATTEMPTS + 3
    await harness.until(
        lambda: "PAID" in harness.services.stages(grants[0].application_id), "paid grant"
    )


async def test_a_settling_payment_is_polled_until_it_settles_and_never_failed(
    harness: Harness,
) -> None:
    grants = await noticed_grants(harness, 1)
    # Accepted, settling for far more answers than a line's attempts: late settlement is no
    # failure; the line is polled (status query first) until the gateway says settled.
    harness.services.settling["late-line-0"] = PAYMENT_ATTEMPTS + 4
    result = await run_plan(harness, "late", grants)
    assert (result.paid_lines, result.failed_lines) == (1, 0)
    assert harness.services.payment_attempts["late-line-0"] == PAYMENT_ATTEMPTS + 5
    assert harness.services.failed_lines == []
    assert harness.services.paid == {"late-line-0": 100}
    await harness.until(
        lambda: "PAID" in harness.services.stages(grants[0].application_id), "paid grant"
    )
    # The line was paid by the plan's chunk workflow: the marker is in its history.
    chunk = harness.env.client.get_workflow_handle(contracts.plan_chunk_workflow_id("late", 0))
    assert SETTLEMENT_PATCH in patches(await chunk.fetch_history())


async def test_an_unreachable_disbursement_service_costs_a_line_nothing(harness: Harness) -> None:
    grants = await noticed_grants(harness, 1)
    # Far more failed calls than a line's attempts: the service was down, not the gateway.
    harness.services.unreachable["out-line-0"] = 12
    result = await run_plan(harness, "out", grants)
    assert (result.paid_lines, result.failed_lines) == (1, 0)
    assert harness.services.payment_attempts["out-line-0"] == 13
    assert harness.services.failed_lines == []


async def test_gateway_timeouts_are_tried_again_then_the_line_is_failed(harness: Harness) -> None:
    grants = await noticed_grants(harness, 2)
    harness.services.gateway_timeouts = {"gw-line-0": 3, "gw-line-1": 99}
    result = await run_plan(harness, "gw", grants)
    assert (result.paid_lines, result.failed_lines) == (1, 1)
    # A line survives a few gateway timeouts; one that keeps timing out is given up after
    # PAYMENT_ATTEMPTS answers and reported to its grant.
    assert harness.services.payment_attempts["gw-line-0"] == 4
    assert harness.services.payment_attempts["gw-line-1"] == PAYMENT_ATTEMPTS
    assert harness.services.failed_lines == ["gw-line-1"]
    await harness.until(
        lambda: "PAYMENT_FAILED" in harness.services.stages(grants[1].application_id),
        "failure told to the grant",
    )
