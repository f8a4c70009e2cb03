"""OperationsService (grantflow.v1.OperationsService): what operators ask every Grantflow service
about its own machinery, served by each service beside its own API (`serve_service`). It owns
no data: it reads the service's outbox table."""

from __future__ import annotations

from typing import Any

import grpc

from grantflow.v1 import operations_pb2, operations_pb2_grpc
from services.common.db import Database, as_utc, now_utc, to_timestamp
from services.common.outbox import outbox_backlog
from services.common.service_main import Companion, ServiceSpec
from services.common.vocabulary import Role

SERVICE = ServiceSpec(
    name="operations",
    descriptor=operations_pb2.DESCRIPTOR.services_by_name["OperationsService"],
    roles={"GetOutboxStatus": (Role.OPS, Role.SYSTEM)},
)


class OperationsServicer(operations_pb2_grpc.OperationsServiceServicer):
    def __init__(self, service: str, database: Database) -> None:
        self.service = service
        self.database = database

    async def GetOutboxStatus(
        self, request: operations_pb2.GetOutboxStatusRequest, context: Any
    ) -> operations_pb2.OutboxStatus:
        backlog = await self.database.reading(self.database.read, outbox_backlog)
        status = operations_pb2.OutboxStatus(
            service=self.service,
            unpublished=backlog.unpublished,
            published_retained=backlog.published_retained,
            now=to_timestamp(now_utc()),
        )
        if backlog.oldest_unpublished_at is not None:
            status.oldest_unpublished_at.FromDatetime(as_utc(backlog.oldest_unpublished_at))
        if backlog.last_published_at is not None:
            status.last_published_at.FromDatetime(as_utc(backlog.last_published_at))
        return status


def operations_service(service: str, database: Database) -> Companion:
    """OperationsService over `service`'s database, to serve beside the service's API."""
    servicer = OperationsServicer(service, database)

    def register(server: grpc.aio.Server) -> None:
        operations_pb2_grpc.add_OperationsServiceServicer_to_server(servicer, server)

    return Companion(SERVICE, register)
