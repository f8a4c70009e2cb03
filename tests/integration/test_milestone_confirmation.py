"""ConfirmMilestone over real gRPC (SQLite and PostgreSQL) against a real Temporal dev server,
where a stand-in GrantWorkflow (below) judges confirmations as the real one does: who may confirm
(the program's owner department, or finance), bad input named, the grant's refusal passed on in
its own words, a repeat answered as the first, and the confirmation audited once."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from grantflow.v1 import applications_pb2, common_pb2
from services.common.vocabulary import Department, Role
from tests.integration._applications_server import ApplicationsHarness, applications_service
from tests.integration.test_applications_service import (
    ENTERPRISE_A,
    assert_invalid,
    rpc_error,
    submission,
)
from workflows import contracts

QUEUE = "milestone-confirmation-test"
DUE = datetime(2027, 3, 1, tzinfo=UTC)


@workflow.defn(name=contracts.GRANT_WORKFLOW)
class StandInInstalmentGrant:
    """Instalment 1 paid, 2 and 3 to come: 3 only after 2 (which this stand-in never pays)."""

    def __init__(self) -> None:
        self.confirmed: dict[int, contracts.MilestoneConfirmed] = {}

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update(name=contracts.CONFIRM_MILESTONE)
    def confirm(self, request: contracts.ConfirmMilestone) -> contracts.MilestoneConfirmed:
        known = self.confirmed.get(request.instalment)
        if known is not None:
            return known.model_copy(update={"repeated": True})
        self.confirmed[request.instalment] = contracts.MilestoneConfirmed(
            instalment=request.instalment,
            of=3,
            milestone="acceptance",
            confirmed_by=request.confirmed_by,
            note=request.note,
            confirmed_at=workflow.now(),
            due_at=DUE,
            late=workflow.now() > DUE,
            stage="INSTALMENTS",
        )
        return self.confirmed[request.instalment]

    @confirm.validator
    def _check(self, request: contracts.ConfirmMilestone) -> None:
        if request.instalment == 3 and 3 not in self.confirmed:
            raise ApplicationError(
                "第2期尚未拨付，不能确认第3期的里程碑", type=contracts.ERR_FAILED_PRECONDITION
            )


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[Client]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        async with Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[StandInInstalmentGrant],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            yield env.client
    finally:
        await env.shutdown()


@pytest.fixture
async def service(
    database_url: str, tmp_path: Path, temporal: Client
) -> AsyncIterator[ApplicationsHarness]:
    address = temporal.service_client.config.target_host
    async with applications_service(database_url, tmp_path, temporal_address=address) as harness:
        yield harness


def confirm(application_id: str, instalment: int, note: str = "") -> object:
    return applications_pb2.ConfirmMilestoneRequest(
        application_id=application_id, instalment=instalment, note=note
    )


async def test_the_owner_department_or_finance_confirms_a_milestone_once(
    service: ApplicationsHarness, temporal: Client
) -> None:
    applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    filed = await service.stub.SubmitApplication(submission(), metadata=applicant)
    app = filed.application_id
    await temporal.start_workflow(
        StandInInstalmentGrant.run, id=contracts.grant_workflow_id(app), task_queue=QUEUE
    )
    industry = service.auth(Role.REVIEWER, department=Department.INDUSTRY, subject="li-gong")
    # SME-CLOUD's co-reviewer, not its owner; HR does not even see it (answered as missing).
    co_reviewer = service.auth(Role.REVIEWER, department=Department.FINANCE)
    hr = service.auth(Role.REVIEWER, department=Department.HR)

    # Bad input and callers without the right are refused before the grant is asked.
    await assert_invalid(
        service.stub.ConfirmMilestone(confirm(app, 1), metadata=industry), "instalment"
    )
    for caller in (co_reviewer, applicant, service.auth(Role.OPS)):
        error = await rpc_error(service.stub.ConfirmMilestone(confirm(app, 2), metadata=caller))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await rpc_error(service.stub.ConfirmMilestone(confirm(app, 2), metadata=hr))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # The grant's refusal, in its own words.
    error = await rpc_error(service.stub.ConfirmMilestone(confirm(app, 3), metadata=industry))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "第2期尚未拨付" in (error.details() or "")
    confirmations = "action = 'milestone.confirmed'"
    assert service.count("audit_record", confirmations) == 0

    answer = await service.stub.ConfirmMilestone(
        confirm(app, 2, "验收报告 2026-07"), metadata=industry
    )
    assert (answer.instalment, answer.of, answer.milestone) == (2, 3, "acceptance")
    assert (answer.confirmed_by, answer.note, answer.repeated) == (
        "li-gong",
        "验收报告 2026-07",
        False,
    )
    assert answer.stage == common_pb2.GRANT_STAGE_INSTALMENTS
    assert abs(answer.due_at.ToDatetime(UTC) - DUE) < timedelta(seconds=1)
    again = await service.stub.ConfirmMilestone(
        confirm(app, 2, "again"), metadata=service.auth(Role.FINANCE, subject="fin")
    )
    assert again.repeated and (again.confirmed_by, again.note) == ("li-gong", "验收报告 2026-07")
    assert service.count("audit_record", confirmations) == 1  # once, with who confirmed
