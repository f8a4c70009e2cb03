"""A cancelled draft plan on the real stack (Temporal, Kafka, the three services): the grants it
held never learnt of it and still wait for a plan; an award it held can be withdrawn again (its
reservation is released), and the next plan takes the other award and pays it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from grantflow.demo import seed_catalogue
from grantflow.v1 import applications_pb2, common_pb2, disbursement_pb2
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.vocabulary import Role
from tests.actors import Actors
from tests.stack_fixture import running_stack

pytestmark = pytest.mark.integration
S = common_pb2


async def test_a_cancelled_plans_awards_are_paid_by_a_later_plan(tmp_path: Path) -> None:
    with running_stack(tmp_path, notice_period_seconds=1.0) as stack:
        settings = stack.settings
        await seed_catalogue(settings)
        actors = Actors(settings)
        ops = ServiceClients(settings, mint_token(settings.auth_secret, "ops.test", Role.OPS))
        try:
            kept, withdrawn = await asyncio.gather(
                actors.submit_sme_cloud(1), actors.submit_sme_cloud(2)
            )
            await actors.wait_for([kept, withdrawn], {S.GRANT_STAGE_IN_REVIEW})
            await asyncio.gather(actors.approve(kept), actors.approve(withdrawn))
            await actors.wait_for([kept, withdrawn], {S.GRANT_STAGE_AWAITING_FUNDING_PLAN})

            draft = await actors.maker.disbursement.CreateFundingPlan(
                disbursement_pb2.CreateFundingPlanRequest(
                    request_id="plan-cancel-test-1", program_code="SME-CLOUD", title="batch 1"
                )
            )
            assert sorted(line.application_id for line in draft.lines) == sorted([kept, withdrawn])
            cancelled = await actors.checker.disbursement.CancelFundingPlan(
                disbursement_pb2.CancelFundingPlanRequest(
                    plan_id=draft.plan_id, reason="名单需重新核对"
                )
            )
            assert cancelled.state == disbursement_pb2.PLAN_STATE_CANCELLED

            # The award is in no plan again: the applicant's withdrawal is honoured now.
            answer = await ops.applications.WithdrawApplication(
                applications_pb2.WithdrawApplicationRequest(
                    application_id=withdrawn, reason="企业放弃资助"
                )
            )
            assert answer.status == S.GRANT_STAGE_WITHDRAWN
            funds = await ops.disbursement.GetApplicationFunds(
                disbursement_pb2.GetApplicationFundsRequest(application_id=withdrawn)
            )
            assert funds.reservation.state == disbursement_pb2.RESERVATION_STATE_RELEASED

            plan = await actors.fund()  # made by maker.test, approved by checker.test
            assert [line.application_id for line in plan.lines] == [kept]
            await actors.wait_for([kept], {S.GRANT_STAGE_PAID})
            paid = await ops.disbursement.GetApplicationFunds(
                disbursement_pb2.GetApplicationFundsRequest(application_id=kept)
            )
            assert paid.reservation.state == disbursement_pb2.RESERVATION_STATE_PAID
            assert [p.plan_id for p in paid.plans] == [draft.plan_id, plan.plan_id]
            assert [p.lines[0].state for p in paid.plans] == [
                disbursement_pb2.PAYMENT_STATE_CANCELLED,
                disbursement_pb2.PAYMENT_STATE_PAID,
            ]
        finally:
            await ops.close()
            await actors.close()
