"""Runs the applications service: migrates its database, serves ApplicationService over gRPC and
runs the outbox relay and the status projection as background tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc

from grantflow.v1 import applications_pb2_grpc
from services.applications.api import METHOD_ROLES, SERVICE_NAME, ApplicationServicer
from services.applications.projection import StatusProjection
from services.common.config import Settings
from services.common.db import Database, migrate
from services.common.grpc_server import BackgroundTask, serve, server_credentials
from services.common.outbox import OutboxRelay

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
    messaging: bool = True,
) -> None:
    """Serves until stopped. messaging=False leaves out the relay and the projection (tests
    that look only at the database do not need a broker)."""
    url = settings.database_url("applications")
    await asyncio.to_thread(migrate, url, MIGRATIONS)
    database = Database(url, sqlite_synchronous=settings.sqlite_synchronous)
    servicer = ApplicationServicer(settings, database)

    def register(server: grpc.aio.Server) -> None:
        applications_pb2_grpc.add_ApplicationServiceServicer_to_server(servicer, server)

    background: list[BackgroundTask] = []
    if messaging:
        background = [OutboxRelay(settings, database).run, StatusProjection(settings, database).run]
    try:
        await serve(
            name="applications",
            address=settings.applications_address,
            secret=settings.auth_secret,
            tls=server_credentials(settings),
            register=register,
            service_full_names=[SERVICE_NAME],
            method_roles=METHOD_ROLES,
            background=background,
            stop=stop,
            ready=ready,
        )
    finally:
        database.dispose()
