"""Runs the review service: migrations, Temporal connection, gRPC server and outbox relay."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import structlog
from temporalio.client import Client

from grantflow.v1 import review_pb2_grpc
from services.common.config import Settings
from services.common.db import Database, migrate
from services.common.grpc_server import serve
from services.common.outbox import OutboxRelay
from services.common.temporal import connect_temporal
from services.review.api import FULL_NAME, ReviewServicer
from services.review.grant_workflows import GrantWorkflows

log = structlog.get_logger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


async def connect_until_reachable(settings: Settings, stop: asyncio.Event) -> Client | None:
    """Connects to Temporal, waiting with backoff while it is down (the stack starts in any
    order); None if asked to stop first."""
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


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            # Until serve() takes over, a stop request must also end the wait for Temporal.
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    url = settings.database_url("review")
    await asyncio.to_thread(migrate, url, MIGRATIONS)
    client = await connect_until_reachable(settings, stop)
    if client is None:
        return
    db = Database(url)
    try:
        servicer = ReviewServicer(settings, db, GrantWorkflows(client))
        relay = OutboxRelay(settings, db)
        await serve(
            name="review",
            address=settings.review_address,
            secret=settings.auth_secret,
            register=lambda server: review_pb2_grpc.add_ReviewServiceServicer_to_server(
                servicer, server
            ),
            service_full_names=[FULL_NAME],
            method_roles=ReviewServicer.METHOD_ROLES,
            background=[relay.run],
            stop=stop,
            ready=ready,
        )
    finally:
        db.dispose()
