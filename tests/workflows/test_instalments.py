"""A grant paid in instalments (TECH-MAJOR's rule: three, a year apart) on the time-skipping
server: the schedule fixed at the award, each instalment released only after its milestone and
paid once, in order, by a funding plan; a milestone confirmed after its due date (the grant shows
MILESTONE_OVERDUE meanwhile, and is not failed); confirmations out of order or of instalment 1
refused, a repeated one answered as the first; the grant continuing as new after each paid
instalment, and PAID only after the last; an instalment paid again after a return (退汇) told to
the grant changes nothing."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from tests.workflows.grants import TASK_QUEUE, Harness, grant_input, sme_cloud_rule
from workflows import contracts
from workflows.funding_plan import FundingPlanWorkflow
from workflows.grant import INSTALMENTS_PATCH
from workflows.models import GrantInput, GrantStatus, Timing
from workflows.rules import AmountRuleModel

# `RECORD_INSTALMENT_HISTORIES=1 pytest tests/workflows/test_instalments.py` writes the three runs
# of the grant below as replay histories (no embedded stack needed: the time-skipping server).
RECORD = "RECORD_INSTALMENT_HISTORIES"
HISTORIES = Path(__file__).parents[1] / "replay" / "histories"


def tech_major_grant() -> GrantInput:
    rule = sme_cloud_rule(
        amount_rule=AmountRuleModel(
            basis_figure="cloud_fee_paid_fen",
            rate_basis_points=5000,
            cap_fen=200_000,
            instalments=3,
        )
    )
    return grant_input(
        rule=rule.model_copy(update={"code": f"MAJOR-{rule.code[-6:]}"}),
        timing=Timing(notice_seconds=1, batch_seconds=0.5),
    )


async def confirm(handle: WorkflowHandle, number: int, by: str = "industry-reviewer") -> object:
    """As the applications service sends it (services/common/grant_workflows.py): an Update that
    reached a run as it continued as new ends without an answer, and is sent again."""
    for _ in range(5):
        try:
            return await handle.execute_update(
                contracts.CONFIRM_MILESTONE,
                contracts.ConfirmMilestone(
                    instalment=number, confirmed_by=by, note=f"验收 {number}"
                ),
                result_type=contracts.MilestoneConfirmed,
            )
        except WorkflowUpdateFailedError as error:
            if isinstance(error.cause, ApplicationError):
                raise
            print("update ended without an answer:", repr(error.cause))
            await asyncio.sleep(0.1)
    raise AssertionError("the grant never answered")


async def refused(handle: WorkflowHandle, number: int) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await confirm(handle, number)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def pay_instalment(harness: Harness, grant: GrantInput, number: int) -> None:
    line = f"line-{number}-{grant.application_id[:8]}"
    harness.services.line_instalments[line] = number
    harness.services.line_amounts[line] = 50_000
    plan = contracts.FundingPlanInput(
        plan_id=f"plan-{number}-{grant.application_id[:8]}",
        program_code=grant.rule.code,
        line_ids=[line],
        application_ids=[grant.application_id],
    )
    with harness.env.auto_time_skipping_disabled():
        await harness.env.client.execute_workflow(
            FundingPlanWorkflow.run, plan, id=f"plan-{plan.plan_id}", task_queue=TASK_QUEUE
        )


async def test_instalments_are_paid_in_order_each_after_its_milestone_one_confirmed_late(
    lone_harness: Harness,
) -> None:
    harness = lone_harness  # a year is skipped: on a server of its own
    grant = tech_major_grant()
    app = grant.application_id
    stages = lambda: harness.services.stages(app)  # noqa: E731
    handle = await harness.start(grant)
    first_run = handle.first_execution_run_id or handle.result_run_id
    await harness.approve_all(handle, grant)
    await harness.until(lambda: app in harness.services.schedules, "the award and its schedule")

    schedule = harness.services.schedules[app]
    assert [(p.number, p.amount_fen, p.milestone) for p in schedule] == [
        (1, 50_000, "award"),
        (2, 50_000, "acceptance"),
        (3, 50_000, "audit"),
    ]
    assert schedule[1].due_at - schedule[0].due_at == timedelta(days=365)
    assert schedule[2].due_at - schedule[0].due_at == timedelta(days=730)
    await harness.until(lambda: "AWAITING_FUNDING_PLAN" in stages(), "instalment 1 waits")

    # Instalment 1 comes with the award; instalment 2's milestone waits for its payment.
    assert "instalment 1" in (await refused(handle, 1)).message
    early = await refused(handle, 2)
    assert early.type == contracts.ERR_FAILED_PRECONDITION
    assert "第1期尚未拨付" in early.message
    assert (await refused(handle, 4)).type == contracts.ERR_NOT_FOUND

    await pay_instalment(harness, grant, 1)
    await harness.until(lambda: "INSTALMENTS" in stages(), "instalment 1 paid")
    assert harness.services.reports[-1].reason.startswith("分期支付中 1/3")
    first = harness.env.client.get_workflow_handle(handle.id, run_id=first_run)
    for _ in range(100):
        if (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
            break
        await asyncio.sleep(0.05)
    assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert harness.services.released_instalments == []

    # A year and a day later instalment 2's acceptance is overdue: shown, not failed.
    await harness.env.sleep(timedelta(days=366))
    await harness.until(lambda: "MILESTONE_OVERDUE" in stages(), "milestone overdue")
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert "已逾期" in harness.services.reports[-1].reason
    assert (await refused(handle, 3)).type == contracts.ERR_FAILED_PRECONDITION

    late = await confirm(handle, 2)
    again = await confirm(handle, 2, by="someone-else")
    assert isinstance(late, contracts.MilestoneConfirmed)
    assert isinstance(again, contracts.MilestoneConfirmed)
    assert late.late and not late.repeated
    assert again.repeated and again.confirmed_by == "industry-reviewer" == late.confirmed_by
    await harness.until(lambda: len(harness.services.released_instalments) == 1, "release 2")
    await pay_instalment(harness, grant, 2)
    await harness.until(lambda: stages().count("INSTALMENTS") == 2, "instalment 2 paid")

    confirmed = await confirm(handle, 3, by="finance-officer")
    assert isinstance(confirmed, contracts.MilestoneConfirmed)
    assert not confirmed.late  # its due date is two years after the award
    await harness.until(lambda: len(harness.services.released_instalments) == 2, "release 3")
    await pay_instalment(harness, grant, 3)
    outcome = await handle.result()
    assert (outcome.stage, outcome.award_amount_fen) == ("PAID", 150_000)

    # Each instalment paid once, in order, each after its milestone.
    assert harness.services.released_instalments == [
        (app, 2, "industry-reviewer"),
        (app, 3, "finance-officer"),
    ]
    paid = [line for line in harness.services.paid if line.endswith(app[:8])]
    assert paid == [f"line-{n}-{app[:8]}" for n in (1, 2, 3)]
    assert all(harness.services.payment_attempts[line] == 1 for line in paid)
    assert stages() == [
        "IN_REVIEW",
        "IN_NOTICE",
        "AWAITING_FUNDING_PLAN",
        "INSTALMENTS",
        "MILESTONE_OVERDUE",
        "AWAITING_FUNDING_PLAN",
        "INSTALMENTS",
        "AWAITING_FUNDING_PLAN",
        "PAID",
    ]
    assert stages().count("PAID") == 1
    reports = [r for r in harness.services.reports if r.application_id == app]
    assert len({r.event_id for r in reports}) == len(reports)
    assert [r.sequence for r in reports] == sorted(r.sequence for r in reports)

    # Three runs: one per instalment, the first marked with the fifth generation's patch.
    history = await handle.fetch_history()
    runs = [history]
    while True:
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            break
        history = await harness.env.client.get_workflow_handle(
            handle.id, run_id=started.continued_execution_run_id
        ).fetch_history()
        runs.insert(0, history)
    assert len(runs) == 3
    if os.environ.get(RECORD):
        # The replay tests' histories of this generation (tests/replay/histories).
        for number, run in enumerate(runs, start=1):
            (HISTORIES / f"grant-instalments_run{number}-v5.json").write_text(run.to_json())
    markers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert any(INSTALMENTS_PATCH.encode() in e.SerializeToString() for e in markers)


async def test_a_grant_paid_at_once_has_no_milestones(harness: Harness) -> None:
    grant = grant_input(timing=Timing(notice_seconds=1, batch_seconds=0.5))
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await harness.until(lambda: grant.application_id in harness.services.confirmed, "award")
    assert grant.application_id not in harness.services.schedules
    assert "不分期拨付" in (await refused(handle, 2)).message


async def test_an_instalment_paid_again_after_a_return_changes_nothing_on_the_grant(
    harness: Harness,
) -> None:
    """Instalment 1 came back (退汇) and a later plan paid it again: its PaymentSettled reaches a
    grant that counted instalment 1 already. Nothing changes: no report, still 1/3 paid, and
    instalment 2 is paid and counted as before."""
    grant = tech_major_grant()
    app = grant.application_id
    stages = lambda: harness.services.stages(app)  # noqa: E731
    handle = await harness.start(grant)
    await harness.approve_all(handle, grant)
    await harness.until(lambda: "AWAITING_FUNDING_PLAN" in stages(), "instalment 1 waits")
    await pay_instalment(harness, grant, 1)
    await harness.until(lambda: "INSTALMENTS" in stages(), "instalment 1 paid")

    async def pay_again(plan_id: str) -> None:
        line = f"line-again-{plan_id}"
        harness.services.line_instalments[line] = 1
        harness.services.line_amounts[line] = 50_000
        plan = contracts.FundingPlanInput(
            plan_id=plan_id,
            program_code=grant.rule.code,
            line_ids=[line],
            application_ids=[app],
        )
        with harness.env.auto_time_skipping_disabled():
            await harness.env.client.execute_workflow(
                FundingPlanWorkflow.run, plan, id=f"plan-{plan_id}", task_queue=TASK_QUEUE
            )

    def told() -> int:
        return len([r for r in harness.services.reports if r.application_id == app])

    # Paid again while the grant waits for instalment 2's milestone ...
    before = told()
    await pay_again(f"r1-{app[:8]}")
    status = await handle.query(contracts.GRANT_STATUS, result_type=GrantStatus)
    assert (status.stage, status.instalments) == ("INSTALMENTS", "1/3")
    assert told() == before

    # ... and while it waits for instalment 2's plan.
    await confirm(handle, 2)
    await harness.until(lambda: len(harness.services.released_instalments) == 1, "release 2")
    await harness.until(lambda: stages().count("AWAITING_FUNDING_PLAN") == 2, "2 waits")
    before = told()
    await pay_again(f"r2-{app[:8]}")
    status = await handle.query(contracts.GRANT_STATUS, result_type=GrantStatus)
    assert (status.stage, status.instalments) == ("AWAITING_FUNDING_PLAN", "1/3")
    assert told() == before

    await pay_instalment(harness, grant, 2)
    await harness.until(lambda: stages().count("INSTALMENTS") == 2, "instalment 2 paid")
    status = await handle.query(contracts.GRANT_STATUS, result_type=GrantStatus)
    assert status.instalments == "2/3"
    assert harness.services.reports[-1].reason.startswith("分期支付中 2/3")
    await handle.terminate("test done")
