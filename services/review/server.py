"""Runs the review service: migrations, Temporal connection, gRPC server and outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog

from grantflow.v1 import review_pb2_grpc
from services.common.config import Settings
from services.common.db import Database, migrate
from services.common.grpc_server import serve, server_credentials
from services.common.outbox import OutboxRelay
from services.common.process import stop_on_signals
from services.common.temporal import connect_until_reachable
from services.review.api import FULL_NAME, ReviewServicer
from services.review.grant_workflows import GrantWorkflows

log = structlog.get_logger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    url = settings.database_url("review")
    await asyncio.to_thread(migrate, url, MIGRATIONS)
    client = await connect_until_reachable(settings, stop)
    if client is None:
        return
    db = Database(url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        servicer = ReviewServicer(settings, db, GrantWorkflows(client))
        relay = OutboxRelay(settings, db)
        await serve(
            name="review",
            address=settings.review_address,
            secret=settings.auth_secret,
            tls=server_credentials(settings),
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
