"""Runs the review service: migrations, Temporal connection, gRPC server and outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc

from grantflow.v1 import review_pb2_grpc
from services.common.audit_api import audit_service
from services.common.config import Settings
from services.common.grant_workflows import GrantWorkflows
from services.common.kafka import REVIEW, topic
from services.common.operations import operations_service
from services.common.outbox import OutboxRelay
from services.common.process import stop_on_signals
from services.common.service_main import migrated_database, serve_service
from services.common.temporal import connect_until_reachable
from services.common.unit_of_work import Transactions
from services.review.api import SERVICE, ReviewServicer
from services.review.conflicts import ConflictSource, RegistryConflictSource
from services.review.notice_api import notice_service
from services.review.use_cases import Audits, ExpertReviews, Review, event_source
from workflows.registry import registry_from_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def make_conflict_source(settings: Settings) -> ConflictSource:
    """The registry's parties of an applicant (legal representative, shareholders): the
    enterprise registry's record, the one eligibility reads (REGISTRY_DATA_FILE locally)."""
    return RegistryConflictSource(registry_from_settings(settings))


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    async with migrated_database(settings, SERVICE, MIGRATIONS) as database:
        client = await connect_until_reachable(settings, stop)
        if client is None:
            return
        transactions = Transactions(database, event_source(topic(settings, REVIEW)))
        workflows = GrantWorkflows(client)
        servicer = ReviewServicer(
            Review(transactions, workflows),
            ExpertReviews(transactions, workflows, make_conflict_source(settings)),
            Audits(transactions, workflows),
        )

        def register(server: grpc.aio.Server) -> None:
            review_pb2_grpc.add_ReviewServiceServicer_to_server(servicer, server)

        await serve_service(
            settings,
            SERVICE,
            register,
            background=[OutboxRelay(settings, database).run],
            stop=stop,
            ready=ready,
            companions=[
                audit_service(SERVICE.name, database),
                operations_service(SERVICE.name, database, settings),
                notice_service(transactions, workflows),
            ],
        )
