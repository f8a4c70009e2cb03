"""RepairService over gRPC, served by the real applications service, with the repairs running
on a real Temporal dev server: the caller's token is who asks and who approves, so four eyes
holds between two authenticated ops users; bad requests are refused naming the field."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from grantflow.ops import replay_closed
from grantflow.sample import credit_code
from grantflow.v1 import audit_pb2, common_pb2, repair_pb2, repair_pb2_grpc
from services.common.auth import mint_token
from services.common.clients import ServiceClients, system_token
from services.common.vocabulary import GrantStage, Role
from tests.integration._applications_server import ApplicationsHarness, applications_service
from tests.workflows.fakes import FakeServices
from tests.workflows.test_repair import MemoryAuditPort, Ops, quick
from workflows.funding_plan import FundingPlanChunkWorkflow, FundingPlanWorkflow
from workflows.grant import APPLICANT_KEY, PENDING_KEY, PROGRAM_KEY, STAGE_KEY, GrantWorkflow
from workflows.repair import RepairActivities, RepairWorkflow
from workflows.repair_actions import RepairActions
from workflows.repair_audit import ApplicationsAuditPort
from workflows.worker import workflow_runner

pytestmark = pytest.mark.integration
QUEUE = "grantflow"  # the service starts repairs on the configured task queue


@dataclass
class Stack:
    ops: Ops
    service: ApplicationsHarness
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def stub(self, subject: str, role: str = Role.OPS, department: str = "") -> Any:
        token = mint_token(self.service.settings.auth_secret, subject, role, department=department)
        channel = grpc.aio.insecure_channel(
            self.service.settings.applications_address,
            interceptors=[_Bearer(token)],
        )
        self.channels.append(channel)  # a channel nobody holds is closed when collected
        return repair_pb2_grpc.RepairServiceStub(channel)


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        details = details._replace(metadata=tuple(details.metadata or ()) + self.metadata)
        return await continuation(details, request)


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """Temporal, the applications service (RepairService, AuditService), and a worker whose
    repairs record on that service's audit chain with the system's token."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=[STAGE_KEY, PROGRAM_KEY, APPLICANT_KEY, PENDING_KEY],
        dev_server_log_level="error",
    )
    try:
        address = env.client.service_client.config.target_host
        async with applications_service(
            f"sqlite:///{tmp_path / 'applications.db'}", tmp_path, temporal_address=address
        ) as service:
            settings = service.settings
            async with ServiceClients(settings, system_token(settings)) as system:
                services = FakeServices()
                repairs = RepairActivities(RepairActions(env.client), ApplicationsAuditPort(system))
                async with Worker(
                    env.client,
                    task_queue=QUEUE,
                    workflows=[
                        GrantWorkflow,
                        FundingPlanWorkflow,
                        FundingPlanChunkWorkflow,
                        RepairWorkflow,
                    ],
                    activities=[*services.activities(), *repairs.all()],  # type: ignore[list-item]
                    workflow_runner=workflow_runner(),
                ):
                    stack = Stack(
                        Ops(env.client, services, MemoryAuditPort(), queue=QUEUE), service
                    )
                    try:
                        yield stack
                    finally:
                        for channel in stack.channels:
                            await channel.close()
    finally:
        await env.shutdown()


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def cancel(application_id: str = "", **fields: Any) -> repair_pb2.RequestRepairRequest:
    values: dict[str, Any] = {
        "request_id": f"repair-{uuid.uuid4().hex}",
        "action": repair_pb2.REPAIR_ACTION_CANCEL,
        "application_id": application_id,
        "reason": "申报材料造假，撤销资助",
    }
    values.update(fields)
    return repair_pb2.RequestRepairRequest(**values)


async def until_state(stub: Any, repair_id: str, state: int) -> repair_pb2.Repair:
    for _ in range(300):
        repair = await stub.GetRepair(repair_pb2.RepairRef(repair_id=repair_id))
        if repair.state == state:
            return repair
        await asyncio.sleep(0.05)
    raise AssertionError(f"repair {repair_id} never reached {state}")


async def test_four_eyes_rest_on_two_authenticated_ops_users(stack: Stack) -> None:
    grant = quick()
    await stack.ops.awarded(grant)
    wang, li = stack.stub("ops.wang"), stack.stub("ops.li")

    asked = await wang.RequestRepair(cancel(grant.application_id))
    assert (asked.state, asked.requested_by, asked.needs_approval) == (
        repair_pb2.REPAIR_STATE_AWAITING_APPROVAL,
        "ops.wang",
        True,
    )
    ref = repair_pb2.RepairRef(repair_id=asked.repair_id)
    own = await refused(wang.ApproveRepair(ref))
    assert own.code() == grpc.StatusCode.PERMISSION_DENIED
    assert grant.application_id in stack.ops.services.reserved  # nothing moved

    approved = await li.ApproveRepair(ref)
    assert approved.approved_by == "ops.li"
    done = await until_state(wang, asked.repair_id, repair_pb2.REPAIR_STATE_COMPLETED)
    assert [(r.application_id, r.state) for r in done.results] == [
        (grant.application_id, repair_pb2.GRANT_REPAIR_STATE_DONE)
    ]
    assert grant.application_id not in stack.ops.services.reserved
    await stack.ops.at_stage(grant, GrantStage.WITHDRAWN)

    again = await refused(stack.stub("ops.zhao").ApproveRepair(ref))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = await wang.ListRepairs(repair_pb2.ListRepairsRequest())
    assert asked.repair_id in [r.repair_id for r in listed.repairs]

    # Each step is on the applications service's audit chain, with who asked and who approved.
    settings = stack.service.settings
    async with ServiceClients(
        settings, mint_token(settings.auth_secret, "ops.zhao", Role.OPS)
    ) as ops:
        trail = await ops.audit["applications"].ListAuditEntries(
            audit_pb2.ListAuditEntriesRequest(subject=grant.application_id)
        )
        chain = await ops.audit["applications"].VerifyAuditChain(
            audit_pb2.VerifyAuditChainRequest()
        )
    repair_entries = [e for e in trail.entries if e.action.startswith("repair.")]
    assert [e.action for e in repair_entries] == [
        "repair.cancel.requested",
        "repair.cancel.approved",
        "repair.cancel.executed",
    ]
    assert all(e.reason == "申报材料造假，撤销资助" for e in repair_entries)
    details = json.loads(repair_entries[1].details_json)
    assert (details["requested_by"], details["approved_by"]) == ("ops.wang", "ops.li")
    assert chain.intact


async def test_a_dry_run_answers_the_preview_and_changes_nothing(stack: Stack) -> None:
    grant = quick()
    await stack.ops.start_grant(grant)
    await stack.ops.at_stage(grant, GrantStage.IN_REVIEW)
    preview = await stack.stub("ops.wang").RequestRepair(cancel(grant.application_id, dry_run=True))
    assert (preview.state, preview.dry_run, preview.total) == (
        repair_pb2.REPAIR_STATE_PREVIEWED,
        True,
        1,
    )
    assert "撤销" in preview.results[0].detail
    assert (await stack.ops.status(grant)).stage == GrantStage.IN_REVIEW
    assert not stack.ops.services.cancelled


async def test_bad_requests_are_refused_naming_the_field(stack: Stack) -> None:
    wang = stack.stub("ops.wang")
    cases = [
        (cancel("a1b2c3d4", reason="  "), "reason"),
        (cancel("a1b2c3d4", query="GrantStage = 'IN_REVIEW'"), "application_id"),
        (cancel(""), "application_id"),
        (cancel("a1b2c3d4", action=repair_pb2.REPAIR_ACTION_UNSPECIFIED), "action"),
        (cancel("a1b2c3d4", action=repair_pb2.REPAIR_ACTION_REOPEN_REVIEW), "department"),
        (cancel("a1b2c3d4", action=repair_pb2.REPAIR_ACTION_MOVE_TO_STAGE), "stage"),
        (
            cancel(
                "a1b2c3d4",
                action=repair_pb2.REPAIR_ACTION_MOVE_TO_STAGE,
                stage=common_pb2.GRANT_STAGE_SUBMITTED,
            ),
            "stage",
        ),
    ]
    for request, named in cases:
        error = await refused(wang.RequestRepair(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, named
        assert named in (error.details() or ""), (named, error.details())
    reviewer = stack.stub("li", Role.REVIEWER, department="industry")
    denied = await refused(reviewer.RequestRepair(cancel("a1b2c3d4")))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED


async def grantflow(stack: Stack, *args: str) -> tuple[int, str]:
    """The CLI as an operator runs it, against this test's applications service."""
    env = {
        **os.environ,
        "APPLICATIONS_ADDRESS": stack.service.settings.applications_address,
        "TEMPORAL_ADDRESS": stack.ops.client.service_client.config.target_host,
        "AUTH_SECRET": stack.service.settings.auth_secret,
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "grantflow"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_cli_asks_approves_and_shows_a_batch(stack: Stack) -> None:
    applicant = credit_code(80_000 + uuid.uuid4().int % 10_000)
    grants = [quick(applicant_credit_code=applicant) for _ in range(2)]
    for grant in grants:
        await stack.ops.start_grant(grant)
        await stack.ops.at_stage(grant, GrantStage.IN_REVIEW)
    query = f"ApplicantCreditCode = '{applicant}'"
    for _ in range(200):
        if len(await RepairActions(stack.ops.client).targets(query, 10)) == 2:
            break
        await asyncio.sleep(0.05)

    code, output = await grantflow(stack, "ops", "repair", "cancel", "--reason", "x")
    assert code == 2, output  # neither an application nor a query

    code, output = await grantflow(
        stack, "ops", "repair", "cancel", "--query", query, "--reason", "企业注销", "--dry-run"
    )
    assert code == 0, output
    assert "预览" in output and all(g.application_id in output for g in grants)

    code, output = await grantflow(
        stack, "ops", "repair", "cancel", "--query", query, "--reason", "企业注销",
        "--user", "ops.wang",
    )  # fmt: skip
    assert code == 0, output
    assert "等待第二位运维人员审批" in output
    match = re.search(r"修复 ([A-Za-z0-9_.:-]+)：", output)
    assert match, output
    repair_id = match.group(1)

    code, output = await grantflow(
        stack, "ops", "repair", "approve", repair_id, "--user", "ops.wang"
    )
    assert code == 1 and "无权限" in output, output
    code, output = await grantflow(stack, "ops", "repair", "approve", repair_id, "--user", "ops.li")
    assert code == 0, output
    assert "已完成" in output and output.count("完成") >= 3, output
    for grant in grants:
        await stack.ops.at_stage(grant, GrantStage.WITHDRAWN)
    code, output = await grantflow(stack, "ops", "repair", "list")
    assert code == 0 and repair_id in output, output

    # The grants it closed replay against this code, fetched from the server.
    for _ in range(200):
        if len(await replay_closed(stack.ops.client, 10)) >= 2:
            break
        await asyncio.sleep(0.05)
    code, output = await grantflow(stack, "ops", "replay", "--sample", "10")
    assert code == 0 and "0 个与当前代码不一致" in output, output
    assert "已回放最近结束的 0 " not in output, output
