"""Runs the applications service: migrates its database, serves ApplicationService (and its
AuditService, the RepairService, the CalendarService and the NotificationService) over gRPC,
and runs the outbox relay, the notifications consumer and its dispatcher as background tasks.
The working-day calendar is seeded from chinese-calendar at start (years not stored yet).
Temporal is reached (for withdrawals and repairs) when first needed: filings and reads do not
wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc

from grantflow.v1 import applications_pb2_grpc
from services.applications import store
from services.applications.api import SERVICE, ApplicationServicer
from services.applications.calendar_api import calendar_companion
from services.applications.calendar_use_cases import Calendar
from services.applications.channels import channels_from
from services.applications.eligibility_use_cases import Eligibility
from services.applications.notification_api import notification_companion
from services.applications.notification_use_cases import CONSUMER, Notifications
from services.applications.repair_api import repair_companion
from services.applications.repair_use_cases import Repairs
from services.applications.use_cases import Applications, event_sources
from services.common import metrics
from services.common.audit_api import audit_service
from services.common.config import Settings
from services.common.db import Database
from services.common.grant_workflows import GrantWorkflows
from services.common.grpc_server import BackgroundTask
from services.common.kafka import APPLICATIONS, GRANTS, REVIEW, EventConsumer, topic
from services.common.operations import operations_service
from services.common.outbox import OutboxRelay
from services.common.repair_workflows import RepairWorkflows
from services.common.service_main import migrated_database, serve_service
from services.common.temporal import connect_temporal
from services.common.unit_of_work import Transactions
from services.common.vocabulary import GrantStage
from workflows.registry import registry_from_settings

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
    messaging: bool = True,
) -> None:
    """Serves until stopped. messaging=False leaves out the relay (tests that look only at the
    database do not need a broker)."""
    async with migrated_database(settings, SERVICE, MIGRATIONS) as database:
        filings, reports = event_sources(topic(settings, APPLICATIONS), topic(settings, GRANTS))
        grants = GrantWorkflows(lambda: connect_temporal(settings))
        servicer = ApplicationServicer(
            Applications(Transactions(database, filings), Transactions(database, reports), grants),
            Eligibility(Transactions(database, filings), registry_from_settings(settings)),
        )

        def register(server: grpc.aio.Server) -> None:
            applications_pb2_grpc.add_ApplicationServiceServicer_to_server(servicer, server)

        calendar = Calendar(Transactions(database, service=SERVICE.name))
        await calendar.seed()
        notifications = Notifications(
            Transactions(database, service=SERVICE.name),
            channels_from(settings),
            max_attempts=settings.notification_max_attempts,
            retry_seconds=settings.notification_retry_seconds,
            poll_seconds=min(5.0, settings.notification_retry_seconds),
        )
        background: list[BackgroundTask] = []
        if messaging:
            consumer = EventConsumer(
                settings,
                CONSUMER,
                [topic(settings, GRANTS), topic(settings, REVIEW)],
                notifications.handle,
            )
            background = [OutboxRelay(settings, database).run, consumer.run, notifications.run]
        repairs = Repairs(
            RepairWorkflows(
                lambda: connect_temporal(settings), task_queue=settings.temporal_task_queue
            )
        )
        unwatch = metrics.watch_stages(SERVICE.name, lambda: grants_by_stage(database))
        try:
            await serve_service(
                settings,
                SERVICE,
                register,
                background=background,
                stop=stop,
                ready=ready,
                companions=[
                    audit_service(SERVICE.name, database),
                    operations_service(SERVICE.name, database, settings),
                    repair_companion(repairs),
                    calendar_companion(calendar),
                    notification_companion(notifications),
                ],
            )
        finally:
            unwatch()


def grants_by_stage(database: Database) -> list[tuple[str, str, int]]:
    """The grants in each stage and program, for Prometheus (read when it scrapes)."""
    counted = database.read(store.grants_by_stage)
    return [(GrantStage.from_proto(status).value, program, n) for status, program, n in counted]
