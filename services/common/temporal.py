"""Connecting to Temporal with Grantflow's data conversion (pydantic models as payloads)."""

from __future__ import annotations

import asyncio

import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from services.common.config import Settings

log = structlog.get_logger(__name__)


async def connect_temporal(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


async def connect_until_reachable(settings: Settings, stop: asyncio.Event) -> Client | None:
    """Connects to Temporal, waiting with backoff while it is down (the stack starts its
    processes in any order); None if asked to stop first."""
    delay = 0.5
    while not stop.is_set():
        try:
            return await connect_temporal(settings)
        except Exception as exc:
            log.warning(
                "temporal unreachable; retrying",
                address=settings.temporal_address,
                error=str(exc),
                retry_in=delay,
            )
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, 10.0)
    return None
