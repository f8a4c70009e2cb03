"""What every Grantflow gRPC service is and how it starts: its `ServiceSpec` (name, proto service,
which roles may call each method) and the start-up every services/*/server.py shares (migrate
the database in a thread, open it, serve with auth, health and reflection, dispose).

A spec refuses to exist with a method missing from its role table (or a name in the table that
is no method): a new RPC cannot be served until someone says who may call it. A public method
says so with the PUBLIC mark (services/common/auth.py) alone, never beside roles. Companions are
services every service serves beside its own API (its AuditService and OperationsService), each with its own spec.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from services.common.auth import PUBLIC
from services.common.config import Settings
from services.common.db import Database, migrate
from services.common.grpc_server import BackgroundTask, serve, server_credentials
from services.common.vocabulary import Role


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # "applications", "review" or "disbursement": logs, address, database
    descriptor: Any  # the proto ServiceDescriptor
    # method name -> the roles that may call it, or (PUBLIC,): anyone, even without a token
    roles: Mapping[str, Iterable[Role | str]]
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
        for method, roles in table.items():
            unknown_roles = roles - set(Role) - {PUBLIC}
            if not roles or unknown_roles or (PUBLIC in roles and len(roles) > 1):
                raise ValueError(
                    f"role table of {self.full_name}: {method} must name roles, or PUBLIC alone "
                    f"(got {sorted(roles)})"
                )
        object.__setattr__(self, "method_roles", table)

    @property
    def full_name(self) -> str:
        return str(self.descriptor.full_name)

    def address(self, settings: Settings) -> str:
        return str(getattr(settings, f"{self.name}_address"))


@dataclass(frozen=True)
class Companion:
    """A service served on the same server beside the main one, over the same database."""

    spec: ServiceSpec
    register: Callable[[grpc.aio.Server], None]


def merged_roles(spec: ServiceSpec, companions: Sequence[Companion]) -> dict[str, frozenset[str]]:
    """The role tables of a service and its companions as one (methods are named without their
    service, so a name two of them share is refused)."""
    table = dict(spec.method_roles)
    for companion in companions:
        shared = set(table) & set(companion.spec.method_roles)
        if shared:
            raise ValueError(f"{companion.spec.full_name} repeats methods {sorted(shared)}")
        table.update(companion.spec.method_roles)
    return table


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
    companions: Sequence[Companion] = (),
) -> None:
    """Serves the service (and its companions) at its configured address until SIGTERM/SIGINT
    or `stop`."""

    def register_all(server: grpc.aio.Server) -> None:
        register(server)
        for companion in companions:
            companion.register(server)

    await serve(
        name=spec.name,
        address=spec.address(settings),
        secret=settings.auth_secret,
        tls=server_credentials(settings),
        register=register_all,
        service_full_names=[spec.full_name, *(c.spec.full_name for c in companions)],
        method_roles=merged_roles(spec, companions),
        background=list(background),
        stop=stop,
        ready=ready,
        health_address=health_address(settings, spec),
    )


def health_address(settings: Settings, spec: ServiceSpec) -> str | None:
    """The plaintext health-only address: the service's host with HEALTH_PORT, if set."""
    if settings.health_port is None:
        return None
    return f"{spec.address(settings).rsplit(':', 1)[0]}:{settings.health_port}"
