"""OperationsService (grantflow.v1.OperationsService): what operators ask every Grantflow service
about its own machinery, served by each service beside its own API (`serve_service`). It owns
no data: it reads the service's outbox table, and counts the deployment's dead-letter topics on
the broker through services/common/kafka (so the console, which talks only to the services, can
show them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from grantflow.v1 import operations_pb2, operations_pb2_grpc
from services.common import kafka
from services.common.config import Settings
from services.common.db import Database, as_utc, now_utc, to_timestamp
from services.common.errors import Unavailable
from services.common.outbox import outbox_backlog
from services.common.service_main import Companion, ServiceSpec
from services.common.vocabulary import Role

SERVICE = ServiceSpec(
    name="operations",
    descriptor=operations_pb2.DESCRIPTOR.services_by_name["OperationsService"],
    roles={"GetOutboxStatus": (Role.OPS, Role.SYSTEM), "GetDeadLetters": (Role.OPS, Role.SYSTEM)},
)
# The broker's answer is awaited this long before the call is UNAVAILABLE (a console page waits
# for it; kafka-python's own request timeout is longer).
DEAD_LETTER_TIMEOUT_S = 8.0
RecordCounts = Callable[[Settings, Sequence[str]], Awaitable[dict[str, int]]]


class OperationsServicer(operations_pb2_grpc.OperationsServiceServicer):
    def __init__(
        self,
        service: str,
        database: Database,
        settings: Settings,
        record_counts: RecordCounts = kafka.record_counts,
    ) -> None:
        self.service = service
        self.database = database
        self.settings = settings
        self.record_counts = record_counts

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

    async def GetDeadLetters(
        self, request: operations_pb2.GetDeadLettersRequest, context: Any
    ) -> operations_pb2.DeadLetters:
        """Every stream's dead-letter topic, whichever consumer parks events there (the
        services' own and the worker's intake): a deployment's dead letters are one list, and
        any service answers it the same."""
        topics = {
            stream: kafka.dead_letter_topic(kafka.topic(self.settings, stream))
            for stream in kafka.ALL_STREAMS
        }
        try:
            counts = await asyncio.wait_for(
                self.record_counts(self.settings, list(topics.values())), DEAD_LETTER_TIMEOUT_S
            )
        except Exception as error:  # the broker's failures are many; each is "not now"
            raise Unavailable(
                f"the broker did not answer: {error or type(error).__name__}"
            ) from None
        answer = operations_pb2.DeadLetters()
        for stream, name in topics.items():
            answer.topics.add(stream=stream, topic=name, count=counts.get(name, 0))
            answer.total += counts.get(name, 0)
        return answer


def operations_service(service: str, database: Database, settings: Settings) -> Companion:
    """OperationsService over `service`'s database, to serve beside the service's API."""
    servicer = OperationsServicer(service, database, settings)

    def register(server: grpc.aio.Server) -> None:
        operations_pb2_grpc.add_OperationsServiceServicer_to_server(servicer, server)

    return Companion(SERVICE, register)
