"""What the grant workflow tests share: a program rule and a grant's input, and a harness that
starts grants, waits for what the stand-in services saw, and decides review tasks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from grantflow.sample import credit_code
from tests.workflows.fakes import FakeServices
from workflows import contracts
from workflows.grant import GrantWorkflow
from workflows.models import GrantInput, GrantOutcome, GrantStatus, Timing
from workflows.rules import AmountRuleModel, ProgramRuleModel

TASK_QUEUE = "grant-tests"


def sme_cloud_rule(**overrides: object) -> ProgramRuleModel:
    values: dict[str, object] = {
        "code": "SME-CLOUD",
        "version": 1,
        "name": "SME cloud adoption subsidy",
        "owner_department": "industry",
        "review_departments": ["industry", "finance"],
        "window_opens_at": datetime(2020, 1, 1, tzinfo=UTC),
        "window_closes_at": datetime(2099, 1, 1, tzinfo=UTC),
        "amount_rule": AmountRuleModel(
            basis_figure="cloud_fee_paid_fen", rate_basis_points=5000, cap_fen=200_000
        ),
        "required_figures": ["cloud_fee_paid_fen", "staff_count", "annual_revenue_fen"],
        "sme_only": True,
    }
    values.update(overrides)
    return ProgramRuleModel.model_validate(values)


def grant_input(**overrides: object) -> GrantInput:
    values: dict[str, object] = {
        "application_id": uuid.uuid4().hex,
        # Each program has one notice batcher: a code of its own keeps tests apart.
        "rule": sme_cloud_rule(code=f"SME-CLOUD-{uuid.uuid4().hex[:6]}"),
        "applicant_credit_code": credit_code(42),
        "applicant_name": "Shenzhen Example Tech Co., Ltd.",
        "project_title": "Move ERP to the cloud",
        "figures": {
            "cloud_fee_paid_fen": 300_000,
            "staff_count": 50,
            "annual_revenue_fen": 2_000_000_000,
        },
        "submitted_at": datetime.now(UTC),
        "timing": Timing(batch_seconds=0.5),
    }
    values.update(overrides)
    return GrantInput.model_validate(values)


@dataclass
class Harness:
    env: WorkflowEnvironment
    services: FakeServices

    async def start(self, grant: GrantInput) -> WorkflowHandle[GrantWorkflow, GrantOutcome]:
        return await self.env.client.start_workflow(
            GrantWorkflow.run,
            grant,
            id=contracts.grant_workflow_id(grant.application_id),
            task_queue=TASK_QUEUE,
        )

    async def until(self, check: Callable[[], bool], what: str) -> None:
        for _ in range(400):
            if check():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def tasks_of_round(self, grant: GrantInput, round_: int) -> dict[str, str]:
        expected = len(grant.rule.review_departments)
        await self.until(
            lambda: len(self.services.task_ids(grant.application_id, round_)) == expected,
            f"review round {round_}",
        )
        handle = self.env.client.get_workflow_handle(
            contracts.grant_workflow_id(grant.application_id)
        )
        # The workflow knows the tasks once the activities' results are recorded.
        for _ in range(200):
            status = await handle.query(contracts.GRANT_STATUS, result_type=GrantStatus)
            if status.review_round == round_ and len(status.open_tasks) == expected:
                break
            await asyncio.sleep(0.02)
        return self.services.task_ids(grant.application_id, round_)

    async def decide(
        self,
        handle: WorkflowHandle,
        task_id: str,
        department: str,
        decision: str,
        *,
        reviewer: str | None = None,
        amount: int = 0,
        reason: str = "",
    ) -> None:
        # The review service has judged the claim; the grant judges the decision.
        reviewer = reviewer or f"{department}-reviewer"
        await handle.execute_update(
            contracts.DECIDE_REVIEW_TASK,
            contracts.DecideReviewTask(
                task_id=task_id,
                reviewer=reviewer,
                department=department,
                decision=decision,  # type: ignore[arg-type]
                approved_amount_fen=amount,
                reason=reason or f"{decision} by {department}",
            ),
        )

    async def approve_all(self, handle: WorkflowHandle, grant: GrantInput, round_: int = 1) -> None:
        for department, task_id in (await self.tasks_of_round(grant, round_)).items():
            await self.decide(handle, task_id, department, "approve")


async def pay(harness: Harness, grant: GrantInput, plan_id: str = "plan-1") -> None:
    handle = harness.env.client.get_workflow_handle(
        contracts.grant_workflow_id(grant.application_id)
    )
    await handle.signal(
        contracts.FUNDING_PLAN_ASSIGNED,
        contracts.FundingPlanAssigned(plan_id=plan_id, line_id=f"line-{grant.application_id}"),
    )
    await handle.signal(
        contracts.PAYMENT_SETTLED,
        contracts.PaymentSettled(
            plan_id=plan_id,
            line_id=f"line-{grant.application_id}",
            amount_fen=100,
            gateway_reference="ref-1",
        ),
    )


async def withdraw(handle: WorkflowHandle, reason: str) -> None:
    """Withdraws, the way a withdrawal filed before the grant started arrives (a signal). The
    Update that answers the applicant is tested on the real server (tests/integration): the
    time-skipping test server loses an Update whose workflow closes in the same task."""
    await handle.signal(contracts.WITHDRAW, contracts.Withdraw(reason=reason))
