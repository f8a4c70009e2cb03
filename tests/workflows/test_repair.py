"""Repairs on a real Temporal dev server (resets, visibility queries and the activity API are
not in the time-skipping server): each named action on a live grant, four eyes on the actions
that move money or reverse a decision, a batch over a visibility query with pause and resume, and
dry runs that change nothing. The grants' service calls are the workflow tests' stand-ins; the
repairs' own activities are the real ones, talking to this Temporal."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from grantflow.ops import replay_closed
from grantflow.sample import credit_code
from services.common.vocabulary import ErrorType, GrantStage
from tests.replay.test_replay_histories import GrantWorkflowWithAnUnpatchedChange
from tests.workflows.fakes import FakeServices
from tests.workflows.grants import grant_input
from workflows import contracts
from workflows.funding_plan import FundingPlanChunkWorkflow, FundingPlanWorkflow
from workflows.grant import APPLICANT_KEY, PENDING_KEY, PROGRAM_KEY, STAGE_KEY, GrantWorkflow
from workflows.models import GrantInput, GrantOutcome, GrantStatus, Timing
from workflows.repair import RepairActivities, RepairWorkflow
from workflows.repair_actions import RepairActions
from workflows.repair_contracts import (
    APPROVE_REPAIR,
    PAUSE_REPAIR,
    REPAIR_PROGRESS,
    RESUME_REPAIR,
    Approval,
    AuditNote,
    GrantRepairState,
    RepairAction,
    RepairInput,
    RepairParams,
    RepairProgress,
    RepairState,
    repair_workflow_id,
)
from workflows.worker import workflow_runner

QUEUE = "repair-tests"


class MemoryAuditPort:
    """The audit port keeping notes in memory, once per request id (the applications service's
    chain behind the real port is covered by tests/integration/test_repair_service.py)."""

    def __init__(self) -> None:
        self.notes: dict[str, AuditNote] = {}

    async def record(self, note: AuditNote) -> None:
        self.notes.setdefault(note.request_id, note)


REQUESTER, APPROVER = "ops.wang", "ops.li"


@pytest_asyncio.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=[STAGE_KEY, PROGRAM_KEY, APPLICANT_KEY, PENDING_KEY],
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@dataclass
class Ops:
    client: Client
    services: FakeServices
    audit: MemoryAuditPort
    queue: str = QUEUE
    lines: Any = None

    async def start_grant(self, grant: GrantInput) -> WorkflowHandle[Any, GrantOutcome]:
        return await self.client.start_workflow(
            GrantWorkflow.run,
            grant,
            id=contracts.grant_workflow_id(grant.application_id),
            task_queue=self.queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(STAGE_KEY, GrantStage.SUBMITTED.value),
                    SearchAttributePair(PROGRAM_KEY, grant.rule.code),
                    SearchAttributePair(APPLICANT_KEY, grant.applicant_credit_code),
                    SearchAttributePair(PENDING_KEY, []),
                ]
            ),
        )

    async def until(self, check: Callable[[], Any], what: str) -> None:
        for _ in range(600):
            if await check() if asyncio.iscoroutinefunction(check) else check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    async def status(self, grant: GrantInput) -> GrantStatus:
        handle = self.client.get_workflow_handle(contracts.grant_workflow_id(grant.application_id))
        return await handle.query(contracts.GRANT_STATUS, result_type=GrantStatus)

    async def at_stage(self, grant: GrantInput, stage: GrantStage) -> None:
        async def there() -> bool:
            return (await self.status(grant)).stage == stage

        await self.until(there, f"{grant.application_id} at {stage}")

    async def decide(self, grant: GrantInput, department: str, decision: str) -> None:
        async def tasks_known() -> bool:
            return department in (await self.status(grant)).open_tasks.values()

        await self.until(tasks_known, f"an open {department} task")
        status = await self.status(grant)
        task_id = next(t for t, d in status.open_tasks.items() if d == department)
        handle = self.client.get_workflow_handle(contracts.grant_workflow_id(grant.application_id))
        await handle.execute_update(
            contracts.DECIDE_REVIEW_TASK,
            contracts.DecideReviewTask(
                task_id=task_id,
                reviewer=f"{department}.reviewer",
                department=department,
                decision=decision,  # type: ignore[arg-type]
                reason=f"{decision} by {department}",
            ),
        )

    async def awarded(self, grant: GrantInput) -> None:
        """A grant approved by both departments, past its notice, waiting for a funding plan."""
        await self.start_grant(grant)
        for department in grant.rule.review_departments:
            await self.decide(grant, department, "approve")
        await self.at_stage(grant, GrantStage.AWAITING_FUNDING_PLAN)

    async def request(
        self, action: RepairAction, *application_ids: str, query: str = "", **extra: Any
    ) -> WorkflowHandle[Any, RepairProgress]:
        repair_id = uuid.uuid4().hex
        return await self.client.start_workflow(
            RepairWorkflow.run,
            RepairInput(
                repair_id=repair_id,
                action=action,
                reason=extra.pop("reason", "运维修复：测试"),
                requested_by=REQUESTER,
                application_ids=list(application_ids),
                query=query,
                **extra,
            ),
            id=repair_workflow_id(repair_id),
            task_queue=self.queue,
        )

    async def approve(self, repair: WorkflowHandle[Any, RepairProgress], by: str) -> None:
        await repair.execute_update(APPROVE_REPAIR, Approval(approved_by=by))

    def audited(self, repair_id: str) -> list[tuple[str, str]]:
        return sorted(
            (note.action, note.subject)
            for note in self.audit.notes.values()
            if note.details.get("repair_id") == repair_id
        )


@dataclass
class FakeLines:
    """The disbursement service's RetryPaymentLine, at the edge: the line becomes payable (the
    gateway will take it) unless its award went elsewhere."""

    services: FakeServices
    reopened: list[tuple[str, str, str]] = field(default_factory=list)

    async def reopen(self, plan_id: str, line_id: str, reason: str) -> None:
        self.reopened.append((plan_id, line_id, reason))
        self.services.refuse_payment_lines.discard(line_id)


@pytest_asyncio.fixture
async def ops(dev_server: WorkflowEnvironment) -> AsyncIterator[Ops]:
    services = FakeServices()
    audit = MemoryAuditPort()
    lines = FakeLines(services)
    repairs = RepairActivities(RepairActions(dev_server.client, lines, QUEUE), audit)
    async with Worker(
        dev_server.client,
        task_queue=QUEUE,
        workflows=[GrantWorkflow, FundingPlanWorkflow, FundingPlanChunkWorkflow, RepairWorkflow],
        activities=[*services.activities(), *repairs.all()],  # type: ignore[list-item]
        workflow_runner=workflow_runner(),
    ):
        yield Ops(dev_server.client, services, audit, lines=lines)


def quick(**overrides: Any) -> GrantInput:
    return grant_input(timing=Timing(notice_seconds=0.5), **overrides)


async def refusal(call: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await call
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_a_money_move_runs_only_after_a_second_ops_person_approves(ops: Ops) -> None:
    grant = quick()
    await ops.awarded(grant)
    assert grant.application_id in ops.services.reserved
    repair = await ops.request(RepairAction.CANCEL, grant.application_id, reason="重复申报，撤销")

    progress = await repair.query(REPAIR_PROGRESS, result_type=RepairProgress)
    assert progress.state == RepairState.AWAITING_APPROVAL
    # The requester cannot be the second pair of eyes.
    refused = await refusal(ops.approve(repair, REQUESTER))
    assert refused.type == ErrorType.PERMISSION_DENIED
    # Nothing moved while it waits.
    assert (await ops.status(grant)).stage == GrantStage.AWAITING_FUNDING_PLAN
    assert grant.application_id in ops.services.reserved

    await ops.approve(repair, APPROVER)
    result = await repair.result()
    assert (result.state, result.approved_by, result.done) == (RepairState.COMPLETED, APPROVER, 1)
    assert result.results[0].state == GrantRepairState.DONE
    # Compensation: the reservation is released and the applicant is told why.
    assert grant.application_id not in ops.services.reserved
    outcome = await ops.client.get_workflow_handle(
        contracts.grant_workflow_id(grant.application_id), result_type=GrantOutcome
    ).result()
    assert (outcome.stage, outcome.reason) == (GrantStage.WITHDRAWN, "重复申报，撤销")
    assert ops.services.stages(grant.application_id)[-1] == GrantStage.WITHDRAWN
    # A repair that ran takes no further approval.
    with pytest.raises(RPCError):
        await ops.approve(repair, "ops.zhao")
    repair_id = result.repair_id
    assert ops.audited(repair_id) == sorted(
        (f"repair.cancel.{step}", grant.application_id)
        for step in ("requested", "approved", "executed")
    )


async def test_reopening_a_decided_review_gives_the_department_a_new_task(ops: Ops) -> None:
    grant = quick()
    await ops.start_grant(grant)
    await ops.decide(grant, "industry", "approve")  # finance has not decided yet
    before = await ops.status(grant)
    assert set(before.open_tasks.values()) == {"finance"}

    repair = await ops.request(
        RepairAction.REOPEN_REVIEW,
        grant.application_id,
        params=RepairParams(department="industry"),
        reason="工信局审核人员有利益冲突",
    )
    await ops.approve(repair, APPROVER)
    result = await repair.result()
    assert result.results[0].state == GrantRepairState.DONE, result.results[0].detail

    after = await ops.status(grant)
    assert set(after.open_tasks.values()) == {"industry", "finance"}
    assert after.review_round == 1
    new_task = next(t for t, d in after.open_tasks.items() if d == "industry")
    assert new_task in result.results[0].detail
    assert ops.services.tasks[new_task].request_id.endswith("-reopen1")
    # The round now waits for the new industry decision as well.
    await ops.decide(grant, "finance", "approve")
    await asyncio.sleep(0.3)
    assert (await ops.status(grant)).stage == GrantStage.IN_REVIEW
    await ops.decide(grant, "industry", "approve")
    await ops.at_stage(grant, GrantStage.AWAITING_FUNDING_PLAN)


async def test_moving_a_rejected_grant_back_to_review_resets_it_to_where_review_began(
    ops: Ops,
) -> None:
    grant = quick()
    await ops.start_grant(grant)
    await ops.decide(grant, "finance", "reject")
    handle = ops.client.get_workflow_handle(
        contracts.grant_workflow_id(grant.application_id), result_type=GrantOutcome
    )
    assert (await handle.result()).stage == GrantStage.REJECTED
    first_tasks = set(ops.services.tasks)
    rejected = ops.services.reports[-1]

    preview = await ops.request(
        RepairAction.MOVE_TO_STAGE,
        grant.application_id,
        params=RepairParams(stage="IN_REVIEW"),
        dry_run=True,
    )
    previewed = await preview.result()
    assert previewed.state == RepairState.PREVIEWED
    assert "IN_REVIEW" in previewed.results[0].detail
    assert (await ops.status(grant)).stage == GrantStage.REJECTED  # the dry run changed nothing

    repair = await ops.request(
        RepairAction.MOVE_TO_STAGE,
        grant.application_id,
        params=RepairParams(stage="IN_REVIEW"),
        reason="财政局误驳回，退回联审",
    )
    await ops.approve(repair, APPROVER)
    result = await repair.result()
    assert result.results[0].state == GrantRepairState.DONE, result.results[0].detail

    # The new run redoes the review round: new tasks, and a report the status takes (its
    # sequence follows the rejection's).
    await ops.at_stage(grant, GrantStage.IN_REVIEW)
    status = await ops.status(grant)
    assert set(status.open_tasks.values()) == {"industry", "finance"}
    assert not set(status.open_tasks) & first_tasks
    again = [r for r in ops.services.reports if r.application_id == grant.application_id][-1]
    assert again.stage == GrantStage.IN_REVIEW and again.sequence > rejected.sequence
    for department in grant.rule.review_departments:
        await ops.decide(grant, department, "approve")
    await ops.at_stage(grant, GrantStage.AWAITING_FUNDING_PLAN)


async def test_resume_tries_a_failing_payment_again_now(ops: Ops) -> None:
    grant = quick()
    await ops.awarded(grant)
    line = f"line-{grant.application_id}"
    ops.services.gateway_timeouts[line] = 1  # the grant is told its plan is paying
    plan_id = uuid.uuid4().hex
    await ops.client.start_workflow(
        FundingPlanWorkflow.run,
        contracts.FundingPlanInput(
            plan_id=plan_id,
            program_code=grant.rule.code,
            line_ids=[line],
            application_ids=[grant.application_id],
        ),
        id=contracts.plan_workflow_id(plan_id),
        task_queue=ops.queue,
    )
    await ops.at_stage(grant, GrantStage.IN_PAYMENT)
    ops.services.unreachable[line] = 10_000  # then the disbursement service goes away
    await ops.until(lambda: ops.services.payment_attempts.get(line, 0) >= 4, "failing attempts")

    # Resume moves no money that was not approved already: it needs no second approval.
    ops.services.unreachable[line] = 0
    repair = await ops.request(RepairAction.RESUME, grant.application_id)
    result = await repair.result()
    assert result.results[0].state == GrantRepairState.DONE, result.results[0].detail
    assert "pay_line_v3" in result.results[0].detail
    await ops.at_stage(grant, GrantStage.PAID)


async def test_a_batch_over_a_query_runs_grant_by_grant_and_can_be_paused(ops: Ops) -> None:
    applicant = credit_code(70_000 + uuid.uuid4().int % 10_000)
    grants = [quick(applicant_credit_code=applicant) for _ in range(3)]
    for grant in grants:
        await ops.start_grant(grant)
        await ops.at_stage(grant, GrantStage.IN_REVIEW)
    query = f"ApplicantCreditCode = '{applicant}' AND GrantStage = 'IN_REVIEW'"

    async def listed() -> bool:
        found = await RepairActions(ops.client).targets(query, 100)
        return len(found) == 3

    await ops.until(listed, "the grants in visibility")

    dry = await ops.request(RepairAction.CANCEL, query=query, dry_run=True)
    preview = await dry.result()
    assert sorted(r.application_id for r in preview.results) == sorted(
        g.application_id for g in grants
    )
    assert all(r.state == GrantRepairState.PENDING for r in preview.results)
    for grant in grants:  # nothing changed
        assert (await ops.status(grant)).stage == GrantStage.IN_REVIEW
    assert not ops.audited(preview.repair_id)

    repair = await ops.request(RepairAction.CANCEL, query=query, reason="企业注销，批量撤销")
    await repair.signal(PAUSE_REPAIR)
    await ops.approve(repair, APPROVER)

    async def paused() -> bool:
        progress = await repair.query(REPAIR_PROGRESS, result_type=RepairProgress)
        return progress.state == RepairState.PAUSED

    await ops.until(paused, "the batch paused")
    progress = await repair.query(REPAIR_PROGRESS, result_type=RepairProgress)
    assert (progress.total, progress.done) == (3, 0)
    for grant in grants:
        assert (await ops.status(grant)).stage == GrantStage.IN_REVIEW

    await repair.signal(RESUME_REPAIR)
    result = await repair.result()
    assert (result.state, result.total, result.done, result.failed) == (
        RepairState.COMPLETED,
        3,
        3,
        0,
    )
    for grant in grants:
        await ops.at_stage(grant, GrantStage.WITHDRAWN)
    audited = ops.audited(result.repair_id)
    assert ("repair.cancel.requested", result.repair_id) in audited
    assert ("repair.cancel.approved", result.repair_id) in audited
    assert ("repair.cancel.executed", result.repair_id) in audited
    for grant in grants:
        assert ("repair.cancel.executed", grant.application_id) in audited


async def test_retrying_a_failed_payment_line_needs_four_eyes_and_pays_it_once(ops: Ops) -> None:
    grant = quick()
    await ops.awarded(grant)
    line = f"line-{grant.application_id}"
    ops.services.refuse_payment_lines.add(line)  # the bank refuses the account
    plan_id = uuid.uuid4().hex
    plan = contracts.FundingPlanInput(
        plan_id=plan_id,
        program_code=grant.rule.code,
        line_ids=[line],
        application_ids=[grant.application_id],
    )
    await ops.client.execute_workflow(
        FundingPlanWorkflow.run,
        plan,
        id=contracts.plan_workflow_id(plan_id),
        task_queue=ops.queue,
    )
    await ops.at_stage(grant, GrantStage.PAYMENT_FAILED)
    assert (await ops.status(grant)).failed_lines == {plan_id: line}

    repair = await ops.request(
        RepairAction.RETRY_PAYMENT, grant.application_id, reason="账户已恢复，重新支付"
    )
    assert (await refusal(ops.approve(repair, REQUESTER))).type == ErrorType.PERMISSION_DENIED
    assert not ops.lines.reopened  # nothing moved without the second pair of eyes
    await ops.approve(repair, APPROVER)
    result = await repair.result()
    assert result.results[0].state == GrantRepairState.DONE, result.results[0].detail
    assert ops.lines.reopened == [(plan_id, line, "账户已恢复，重新支付")]

    await ops.at_stage(grant, GrantStage.PAID)
    assert ops.services.paid == {line: 100}
    assert (await ops.status(grant)).failed_lines == {}
    # The plan completes again once its chunk has reported the line (after the grant is told).
    await ops.until(lambda: ops.services.completed_plans.count(plan_id) == 2, "the plan again")
    assert ops.audited(result.repair_id) == sorted(
        (f"repair.retry_payment.{step}", grant.application_id)
        for step in ("requested", "approved", "executed")
    )


async def test_ops_replay_sample_replays_recently_closed_lives_from_the_server(ops: Ops) -> None:
    grant = quick()
    await ops.start_grant(grant)
    await ops.decide(grant, "finance", "reject")
    await ops.client.get_workflow_handle(contracts.grant_workflow_id(grant.application_id)).result()

    async def listed() -> bool:
        return any(
            r.workflow_id.endswith(grant.application_id)
            for r in await replay_closed(ops.client, 50)
        )

    await ops.until(listed, "the closed grant in visibility")
    # Whatever else this server closed (grants reset by repairs, a plan run again) replays too.
    reports = await replay_closed(ops.client, 50)
    assert reports and all(r.error == "" for r in reports), [r for r in reports if r.error]

    # A change to the grant without workflow.patched is caught on the same sample.
    careless = Replayer(
        workflows=[
            GrantWorkflowWithAnUnpatchedChange,
            FundingPlanWorkflow,
            FundingPlanChunkWorkflow,
        ],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    caught = await replay_closed(ops.client, 50, replaying=careless)
    broken = [r for r in caught if r.workflow_id.startswith("grant-")]
    assert broken and all("nondetermin" in r.error.lower() for r in broken)
