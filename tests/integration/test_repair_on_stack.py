"""Repairs on the whole embedded stack (the real worker, services, review tasks, budget and the
applicant's status): a grant rejected by mistake is moved back to review and the applicant sees
it in review again with new tasks for the reviewers; a cancellation with compensation gives the
money back to the budget and tells the applicant the repair's reason; both only after a second
ops user approved."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from grantflow.demo import seed_catalogue
from grantflow.v1 import common_pb2, disbursement_pb2, repair_pb2, review_pb2
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.vocabulary import Department, Role
from tests.actors import Actors
from tests.stack_fixture import running_stack

pytestmark = pytest.mark.integration
S = common_pb2


async def repaired(
    asker: ServiceClients, approver: ServiceClients, request: repair_pb2.RequestRepairRequest
) -> repair_pb2.Repair:
    asked = await asker.repairs.RequestRepair(request)
    assert asked.state == repair_pb2.REPAIR_STATE_AWAITING_APPROVAL
    ref = repair_pb2.RepairRef(repair_id=asked.repair_id)
    await approver.repairs.ApproveRepair(ref)
    for _ in range(600):
        repair = await asker.repairs.GetRepair(ref)
        if repair.state == repair_pb2.REPAIR_STATE_COMPLETED:
            return repair
        await asyncio.sleep(0.1)
    raise AssertionError(f"repair {asked.repair_id} did not complete")


async def test_move_back_and_cancel_on_the_real_stack(tmp_path: Path) -> None:
    with running_stack(tmp_path, notice_period_seconds=1.0) as stack:
        settings = stack.settings
        await seed_catalogue(settings)
        actors = Actors(settings)
        wang = ServiceClients(settings, mint_token(settings.auth_secret, "ops.wang", Role.OPS))
        li = ServiceClients(settings, mint_token(settings.auth_secret, "ops.li", Role.OPS))
        try:
            rejected, awarded = await asyncio.gather(
                actors.submit_sme_cloud(1), actors.submit_sme_cloud(2)
            )
            await actors.wait_for([rejected, awarded], {S.GRANT_STAGE_IN_REVIEW})
            finance = actors.reviewers[Department.FINANCE]
            task = await actors.open_task(rejected, Department.FINANCE)
            await finance.review.ClaimTask(review_pb2.ClaimTaskRequest(task_id=task.task_id))
            await finance.review.DecideTask(
                review_pb2.DecideTaskRequest(
                    task_id=task.task_id,
                    decision=review_pb2.REVIEW_DECISION_REJECT,
                    reason="误判：材料不全",
                )
            )
            await actors.wait_for([rejected], {S.GRANT_STAGE_REJECTED})

            moved = await repaired(
                wang,
                li,
                repair_pb2.RequestRepairRequest(
                    request_id=f"repair-{uuid.uuid4().hex}",
                    action=repair_pb2.REPAIR_ACTION_MOVE_TO_STAGE,
                    application_id=rejected,
                    stage=S.GRANT_STAGE_IN_REVIEW,
                    reason="财政局误驳回，退回联审",
                ),
            )
            assert moved.results[0].state == repair_pb2.GRANT_REPAIR_STATE_DONE, moved.results
            # The applicant sees the grant in review again; reviewers have new tasks.
            await actors.wait_for([rejected], {S.GRANT_STAGE_IN_REVIEW})
            again = await actors.open_task(rejected, Department.FINANCE)
            assert again.task_id != task.task_id
            await actors.approve(rejected)
            await actors.wait_for([rejected], {S.GRANT_STAGE_AWAITING_FUNDING_PLAN})

            await actors.approve(awarded)
            await actors.wait_for([awarded], {S.GRANT_STAGE_AWAITING_FUNDING_PLAN})
            budget = disbursement_pb2.GetProgramBudgetRequest(program_code="SME-CLOUD")
            before = await actors.maker.disbursement.GetProgramBudget(budget)
            cancelled = await repaired(
                wang,
                li,
                repair_pb2.RequestRepairRequest(
                    request_id=f"repair-{uuid.uuid4().hex}",
                    action=repair_pb2.REPAIR_ACTION_CANCEL,
                    application_id=awarded,
                    reason="企业已注销，撤销资助",
                ),
            )
            assert cancelled.results[0].state == repair_pb2.GRANT_REPAIR_STATE_DONE
            status = await actors.status(awarded)
            assert (status.status, status.status_reason) == (
                S.GRANT_STAGE_WITHDRAWN,
                "企业已注销，撤销资助",
            )
            after = await actors.maker.disbursement.GetProgramBudget(budget)
            given_back = after.available_fen - before.available_fen
            assert given_back == before.reserved_fen - after.reserved_fen > 0
        finally:
            await wang.close()
            await li.close()
            await actors.close()
