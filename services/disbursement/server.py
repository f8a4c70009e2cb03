"""Runs the disbursement service: migrates its database, serves DisbursementService over gRPC and
relays its outbox to Kafka. The payment gateway is chosen by configuration (gateway.make_gateway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc

from grantflow.v1 import disbursement_pb2_grpc
from services.common.config import Settings
from services.common.db import Database, migrate
from services.common.grpc_server import serve, server_credentials
from services.common.outbox import OutboxRelay
from services.disbursement.api import METHOD_ROLES, SERVICE_FULL_NAME, DisbursementServicer
from services.disbursement.gateway import PaymentGateway, make_gateway

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
    gateway: PaymentGateway | None = None,
) -> None:
    """Serves until stopped. A gateway passed in stays open: its owner closes it."""
    url = settings.database_url("disbursement")
    await asyncio.to_thread(migrate, url, MIGRATIONS)
    own_gateway = gateway is None
    # Building the simulated treasury creates its table and may wait up to 30 s on a locked
    # SQLite file: done in a thread, like every other blocking database call.
    active_gateway = (
        gateway if gateway is not None else await asyncio.to_thread(make_gateway, settings)
    )
    db = Database(url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        servicer = DisbursementServicer(settings, db, active_gateway)
        relay = OutboxRelay(settings, db)

        def register(server: grpc.aio.Server) -> None:
            disbursement_pb2_grpc.add_DisbursementServiceServicer_to_server(servicer, server)

        await serve(
            name="disbursement",
            address=settings.disbursement_address,
            secret=settings.auth_secret,
            tls=server_credentials(settings),
            register=register,
            service_full_names=[SERVICE_FULL_NAME],
            method_roles=METHOD_ROLES,
            background=[relay.run],
            stop=stop,
            ready=ready,
        )
    finally:
        if own_gateway:
            await active_gateway.close()
        db.dispose()
