"""What every Grantflow gRPC service is and how it starts: its `ServiceSpec` (name, proto service,
which roles may call each method) and the start-up every services/*/server.py shares (migrate
the database in a thread, open it, serve with auth, health and reflection, dispose).

A spec refuses to exist with a method missing from its role table (or a name in the table that
is no method): a new RPC cannot be served until someone says who may call it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from grantflow.v1 import operations_pb2_grpc
from services.common import operations
from services.common.config import Settings
from services.common.db import Database, migrate
from services.common.grpc_server import BackgroundTask, serve, server_credentials
from services.common.operations import OperationsServicer
from services.common.vocabulary import Role


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # "applications", "review" or "disbursement": logs, address, database
    descriptor: Any  # the proto ServiceDescriptor
    roles: Mapping[str, Iterable[Role]]  # method name -> the roles that may call it
    method_roles: Mapping[str, frozenset[str]] = field(init=False)

    def __post_init__(self) -> None:
        methods = {method.name for method in self.descriptor.methods}
        missing, unknown = methods - set(self.roles), set(self.roles) - methods
        if missing or unknown:
            raise ValueError(
                f"role table of {self.full_name}: no roles for {sorted(missing)}, "
                f"not methods: {sorted(unknown)}"
            )
        table = {method: frozenset(map(str, roles)) for method, roles in self.roles.items()}
        object.__setattr__(self, "method_roles", table)

    @property
    def full_name(self) -> str:
        return str(self.descriptor.full_name)

    def address(self, settings: Settings) -> str:
        return str(getattr(settings, f"{self.name}_address"))


# Served by every service beside its own API (`serve_service` with the service's database).
OPERATIONS = ServiceSpec(
    name="operations", descriptor=operations.DESCRIPTOR, roles=operations.ROLES
)


@asynccontextmanager
async def migrated_database(
    settings: Settings, spec: ServiceSpec, migrations: Path
) -> AsyncIterator[Database]:
    """The service's database, brought to its newest migration (in a thread: it may wait on a
    locked SQLite file), open for the block and disposed after it."""
    url = settings.database_url(spec.name)
    await asyncio.to_thread(migrate, url, migrations)
    database = Database(url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        yield database
    finally:
        database.dispose()


async def serve_service(
    settings: Settings,
    spec: ServiceSpec,
    register: Callable[[grpc.aio.Server], None],
    *,
    background: Sequence[BackgroundTask] = (),
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
    database: Database | None = None,
) -> None:
    """Serves the service at its configured address until SIGTERM/SIGINT or `stop`; with its
    `database`, the OperationsService (outbox status for operators) beside it."""
    specs, registers = [spec], [register]
    if database is not None:
        specs.append(OPERATIONS)
        registers.append(_operations(spec.name, database))
    method_roles: dict[str, frozenset[str]] = {}
    for one in specs:
        clash = set(method_roles) & set(one.method_roles)
        if clash:  # the role table is keyed by method name: two services may not share one
            raise ValueError(f"methods {sorted(clash)} of {one.full_name} are served twice")
        method_roles.update(one.method_roles)
    await serve(
        name=spec.name,
        address=spec.address(settings),
        secret=settings.auth_secret,
        tls=server_credentials(settings),
        register=lambda server: _register_all(server, registers),
        service_full_names=[one.full_name for one in specs],
        method_roles=method_roles,
        background=list(background),
        stop=stop,
        ready=ready,
    )


def _operations(service: str, database: Database) -> Callable[[grpc.aio.Server], None]:
    servicer = OperationsServicer(service, database)
    return lambda server: operations_pb2_grpc.add_OperationsServiceServicer_to_server(
        servicer, server
    )


def _register_all(
    server: grpc.aio.Server, registers: Sequence[Callable[[grpc.aio.Server], None]]
) -> None:
    for register in registers:
        register(server)
