"""Runs the real applications service in-process for tests: migrated database, gRPC server on a
free port in the test's event loop, optionally the outbox relay on a real broker and a real
Temporal server for withdrawals.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text

from grantflow.v1 import applications_pb2, applications_pb2_grpc
from services.applications.catalogue import load_catalogue
from services.applications.server import run
from services.common.auth import mint_token
from services.common.config import Settings
from services.common.db import Database
from services.common.vocabulary import Role
from tests.support import free_port

Metadata = list[tuple[str, str]]


@dataclass
class ApplicationsHarness:
    settings: Settings
    stub: applications_pb2_grpc.ApplicationServiceStub
    database: Database  # a second connection, for looking at what the service wrote

    def auth(
        self, role: str, *, enterprise: str = "", department: str = "", subject: str = ""
    ) -> Metadata:
        token = mint_token(
            self.settings.auth_secret,
            subject or f"test-{role}",
            role,
            enterprise=enterprise,
            department=department,
        )
        return [("authorization", f"Bearer {token}")]

    def count(self, table: str, where: str = "") -> int:
        with self.database.engine.connect() as connection:
            sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
            return int(connection.execute(text(sql)).scalar_one())

    def outbox_payloads(self, event_type: str) -> list[bytes]:
        with self.database.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT payload FROM outbox_event WHERE event_type = :t ORDER BY id"),
                {"t": event_type},
            )
            return [bytes(row[0]) for row in rows]


@asynccontextmanager
async def applications_service(
    database_url: str,
    data_dir: Path,
    *,
    kafka_bootstrap: str | None = None,
    temporal_address: str = "",
    seed: bool = True,
    **overrides: Any,
) -> AsyncIterator[ApplicationsHarness]:
    """The service on a free port; with kafka_bootstrap also its relay, on topics of their own (a
    fresh prefix) so tests sharing the broker do not see each other; with temporal_address the
    Temporal server withdrawals go to (else a port where none answers); overrides are further
    settings."""
    settings = Settings(
        temporal_address=temporal_address or f"127.0.0.1:{free_port()}",
        data_dir=data_dir,
        applications_address=f"127.0.0.1:{free_port()}",
        applications_database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap or "127.0.0.1:9",
        kafka_topic_prefix=f"gft{uuid.uuid4().hex[:10]}",
        kafka_embedded_broker_recovery=kafka_bootstrap is not None,
        **overrides,
    )
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        run(settings, stop=stop, ready=ready.set, messaging=kafka_bootstrap is not None)
    )
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({task, ready_wait}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        ready_wait.cancel()
        stop.set()
        if task.done():
            task.result()  # raises the start-up failure
        raise RuntimeError("applications service did not start")
    channel = grpc.aio.insecure_channel(settings.applications_address)
    database = Database(database_url)
    harness = ApplicationsHarness(
        settings, applications_pb2_grpc.ApplicationServiceStub(channel), database
    )
    try:
        if seed:
            ops = harness.auth(Role.OPS)
            for rule in load_catalogue():
                await harness.stub.PublishProgramVersion(
                    applications_pb2.PublishProgramVersionRequest(rule=rule), metadata=ops
                )
        yield harness
    finally:
        await channel.close()
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        database.dispose()
