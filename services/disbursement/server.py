"""Runs the disbursement service: migrates its database, serves DisbursementService over gRPC and
relays its outbox to Kafka. The payment gateway is chosen by configuration (gateway.make_gateway);
the program catalogue is the applications service's (catalogue.ApplicationsCatalogue).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc

from grantflow.v1 import disbursement_pb2_grpc
from services.common.audit_api import audit_service
from services.common.config import Settings
from services.common.kafka import DISBURSEMENT, topic
from services.common.operations import operations_service
from services.common.outbox import OutboxRelay
from services.common.service_main import migrated_database, serve_service
from services.common.unit_of_work import Transactions
from services.disbursement.api import SERVICE, DisbursementServicer
from services.disbursement.catalogue import ApplicationsCatalogue
from services.disbursement.clawbacks import Clawbacks
from services.disbursement.daily_reconciliation import DailyReconciliation
from services.disbursement.gateway import PaymentGateway, make_gateway
from services.disbursement.use_cases import Disbursement, event_source

MIGRATIONS = Path(__file__).parent / "migrations"


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
    gateway: PaymentGateway | None = None,
) -> None:
    """Serves until stopped. A gateway passed in stays open: its owner closes it."""
    async with migrated_database(settings, SERVICE, MIGRATIONS) as database:
        own_gateway = gateway is None
        # Building the simulated treasury creates its table and may wait up to 30 s on a locked
        # SQLite file: done in a thread, like every other blocking database call.
        active_gateway = (
            gateway if gateway is not None else await asyncio.to_thread(make_gateway, settings)
        )
        catalogue = ApplicationsCatalogue(settings)
        try:
            transactions = Transactions(database, event_source(topic(settings, DISBURSEMENT)))
            disbursement = Disbursement(
                transactions,
                active_gateway,
                catalogue,
                second_approval_fen=settings.plan_second_approval_fen,
                require_account=settings.payment_requires_account,
            )
            background = [OutboxRelay(settings, database).run]
            if settings.reconciliation_daily:
                daily = DailyReconciliation(
                    disbursement,
                    hour=settings.reconciliation_daily_hour,
                    check_s=settings.reconciliation_check_s,
                )
                background.append(daily.run)
            clawbacks = Clawbacks(transactions, bar_years=settings.clawback_bar_years)
            servicer = DisbursementServicer(disbursement, clawbacks)

            def register(server: grpc.aio.Server) -> None:
                disbursement_pb2_grpc.add_DisbursementServiceServicer_to_server(servicer, server)

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
                ],
            )
        finally:
            await catalogue.close()
            if own_gateway:
                await active_gateway.close()
