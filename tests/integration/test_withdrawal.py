"""Withdrawal tells the truth, on the real stack: WithdrawApplication answers what the grant
decided. An application in review is withdrawn at once (the answer already shows WITHDRAWN and
the budget has its money back); an award a funding plan holds, even a draft one, is refused with
the grant's reason, and is then paid as planned."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from grantflow.demo import seed_catalogue
from grantflow.v1 import applications_pb2, common_pb2, disbursement_pb2
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.vocabulary import Role
from tests.actors import Actors
from tests.stack_fixture import running_stack
from workflows import reasons

pytestmark = pytest.mark.integration
S = common_pb2


async def test_withdrawal_answers_what_the_grant_decided(tmp_path: Path) -> None:
    with running_stack(tmp_path, notice_period_seconds=1.0) as stack:
        settings = stack.settings
        await seed_catalogue(settings)
        actors = Actors(settings)
        ops = ServiceClients(settings, mint_token(settings.auth_secret, "ops.test", Role.OPS))
        try:
            in_review, in_plan = await asyncio.gather(
                actors.submit_sme_cloud(1), actors.submit_sme_cloud(2)
            )
            await actors.wait_for([in_review, in_plan], {S.GRANT_STAGE_IN_REVIEW})
            budget_before = await actors.maker.disbursement.GetProgramBudget(
                disbursement_pb2.GetProgramBudgetRequest(program_code="SME-CLOUD")
            )

            withdrawn = await ops.applications.WithdrawApplication(
                applications_pb2.WithdrawApplicationRequest(
                    application_id=in_review, reason="项目取消"
                )
            )
            # The answer comes once the grant honoured it: the status already says so.
            assert (withdrawn.status, withdrawn.status_reason) == (
                S.GRANT_STAGE_WITHDRAWN,
                "项目取消",
            )

            await actors.approve(in_plan)
            await actors.wait_for([in_plan], {S.GRANT_STAGE_AWAITING_FUNDING_PLAN})
            draft = await actors.maker.disbursement.CreateFundingPlan(
                disbursement_pb2.CreateFundingPlanRequest(
                    request_id="plan-withdrawal-test", program_code="SME-CLOUD", title="batch 1"
                )
            )
            assert [line.application_id for line in draft.lines] == [in_plan]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ops.applications.WithdrawApplication(
                    applications_pb2.WithdrawApplicationRequest(application_id=in_plan)
                )
            assert (refused.value.code(), refused.value.details()) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                reasons.IN_A_FUNDING_PLAN,
            )
            assert (await actors.status(in_plan)).status == S.GRANT_STAGE_AWAITING_FUNDING_PLAN

            await actors.checker.disbursement.ApproveFundingPlan(
                disbursement_pb2.ApproveFundingPlanRequest(plan_id=draft.plan_id)
            )
            await actors.wait_for([in_plan], {S.GRANT_STAGE_PAID})
            budget_after = await actors.maker.disbursement.GetProgramBudget(
                disbursement_pb2.GetProgramBudgetRequest(program_code="SME-CLOUD")
            )
        finally:
            await ops.close()
            await actors.close()
        # Only the paid award left the budget: the withdrawn one never held anything back.
        paid = draft.lines[0].amount_fen
        assert budget_after.paid_fen == budget_before.paid_fen + paid
        assert budget_after.available_fen == budget_before.available_fen - paid
