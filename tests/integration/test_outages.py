"""An outage of a service is waited out, never counted as a payment failure: while the
disbursement service cannot be reached, a payment run keeps trying its lines, and once it is
back every line is paid (only the payment gateway's own answers count against a line)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.service import RPCError

from grantflow.demo import seed_catalogue
from grantflow.v1 import common_pb2, disbursement_pb2
from services.common.config import Settings
from services.common.temporal import connect_temporal
from tests.actors import Actors
from tests.stack_fixture import running_stack
from workflows import contracts

pytestmark = pytest.mark.integration
GRANTS = 4
# Longer than the six attempts the first generation gave a line (at 0, 1, 3, 7, 15 and 25 s).
OUTAGE_SECONDS = 27


async def started(settings: Settings, workflow_id: str, timeout: float = 60.0) -> None:
    client = await connect_temporal(settings)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await client.get_workflow_handle(workflow_id).describe()
            return
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_payment_run_waits_out_an_unreachable_disbursement_service(
    tmp_path: Path,
) -> None:
    with running_stack(tmp_path, notice_period_seconds=1.0) as stack:
        settings = stack.settings
        await seed_catalogue(settings)
        actors = Actors(settings)
        try:
            ids = await asyncio.gather(*[actors.submit_sme_cloud(i) for i in range(GRANTS)])
            await actors.wait_for(ids, {common_pb2.GRANT_STAGE_IN_REVIEW})
            await asyncio.gather(*[actors.approve(a) for a in ids])
            await actors.wait_for(ids, {common_pb2.GRANT_STAGE_AWAITING_FUNDING_PLAN})
            # The plan's run is started while no worker runs, then the service goes down and
            # the worker comes back: every payment of the run meets the outage.
            stack.kill("worker")
            plan = await actors.fund()
            await started(settings, contracts.plan_workflow_id(plan.plan_id))
            stack.kill("disbursement")
            stack.start(["worker"])
            await asyncio.sleep(OUTAGE_SECONDS)
            stack.start(["disbursement"])
            stack.wait_ready(60, names=["disbursement"])
            await actors.wait_for(ids, {common_pb2.GRANT_STAGE_PAID}, timeout=120)
            plan_now = await actors.maker.disbursement.GetFundingPlan(
                disbursement_pb2.GetFundingPlanRequest(plan_id=plan.plan_id)
            )
        finally:
            await actors.close()
        assert plan_now.state == disbursement_pb2.PLAN_STATE_COMPLETED
        assert [line.state for line in plan_now.lines] == [
            disbursement_pb2.PAYMENT_STATE_PAID
        ] * GRANTS
