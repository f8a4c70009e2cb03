"""The status projection: applies GrantStageChanged events from the grants topic to the
application rows. After submission it is the only writer of an application's status.

Each event is applied once (claim_event, in the same transaction as its effect) and only if it
is newer than the last one applied (sequence), so redelivery and reordering are harmless.
"""

from __future__ import annotations

import asyncio

import structlog
from sqlmodel import Session

from grantflow.v1 import events_pb2
from services.applications.store import application_by_id
from services.common.config import Settings
from services.common.db import Database, now_utc
from services.common.kafka import GRANTS, EventConsumer, topic
from services.common.outbox import claim_event
from services.common.vocabulary import GrantStage

log = structlog.get_logger(__name__)

CONSUMER_GROUP = "applications-projection"

# The grant ended without money changing hands: an award shown earlier no longer holds.
ENDED_WITHOUT_AWARD = frozenset({GrantStage.REJECTED, GrantStage.WITHDRAWN})


def apply_stage_change(session: Session, envelope: events_pb2.EventEnvelope) -> bool:
    """Applies one GrantStageChanged in the caller's transaction; True if the row changed."""
    if envelope.WhichOneof("payload") != "grant_stage_changed":
        return False
    if not claim_event(session, CONSUMER_GROUP, envelope.event_id):
        return False
    change = envelope.grant_stage_changed
    # A stage outside the vocabulary fails the event (it goes to the dead-letter topic).
    stage = GrantStage.from_proto(change.stage)
    application_id = change.application_id or envelope.subject
    record = application_by_id(session, application_id, for_update=True)
    if record is None:
        log.warning(
            "stage change for an unknown application",
            application_id=application_id,
            event_id=envelope.event_id,
        )
        return False
    if change.sequence <= record.status_sequence:
        log.info(
            "stale stage change ignored",
            application_id=application_id,
            sequence=change.sequence,
            applied=record.status_sequence,
        )
        return False
    record.status = stage.to_proto()
    record.status_reason = change.reason
    record.status_sequence = change.sequence
    # A report carries what the workflow knows at that stage; zero or empty means "unchanged",
    # except that a grant that ended without payment no longer has an award.
    if change.award_amount_fen or stage in ENDED_WITHOUT_AWARD:
        record.award_amount_fen = change.award_amount_fen
    if change.plan_id:
        record.plan_id = change.plan_id
    record.updated_at = now_utc()
    session.add(record)
    return True


class StatusProjection:
    """The consumer group that keeps application statuses in step with the grant workflows."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.db = database
        self.consumer = EventConsumer(
            settings, CONSUMER_GROUP, [topic(settings, GRANTS)], self.handle
        )

    async def handle(self, envelope: events_pb2.EventEnvelope) -> None:
        if envelope.WhichOneof("payload") == "grant_stage_changed":
            await self.db.run(lambda session: apply_stage_change(session, envelope))

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer.run(stop)
