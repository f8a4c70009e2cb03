"""Topic names and the event envelope every Grantflow topic carries."""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf.message import Message

from grantflow.v1 import events_pb2
from services.common.config import Settings
from services.common.db import now_utc, to_timestamp

APPLICATIONS = "applications"
GRANTS = "grants"
REVIEW = "review"
DISBURSEMENT = "disbursement"
ALL_STREAMS = (APPLICATIONS, GRANTS, REVIEW, DISBURSEMENT)
PARTITIONS = 3
DLQ_SUFFIX = ".dlq"

# Payload message full name -> the envelope's oneof field that carries it.
_PAYLOAD_FIELDS = {
    field.message_type.full_name: field.name  # type: ignore[union-attr]
    for field in events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["payload"].fields
}


def topic(settings: Settings, stream: str) -> str:
    return f"{settings.kafka_topic_prefix}.{stream}.v1"


def consumer_group(settings: Settings, name: str) -> str:
    """A consumer's group on the broker: the deployment's, like its topics. Two deployments (or
    tests) sharing a broker under different prefixes must not share a group: each join would
    rebalance the other's members, and one group's subscriptions would span both."""
    return f"{settings.kafka_topic_prefix}.{name}"


def owned_group(settings: Settings, group: str) -> str | None:
    """The consumer's name of one of this deployment's groups (None for another's)."""
    prefix = f"{settings.kafka_topic_prefix}."
    return group.removeprefix(prefix) if group.startswith(prefix) else None


def dead_letter_topic(source_topic: str) -> str:
    return source_topic + DLQ_SUFFIX


def all_topics(settings: Settings) -> list[str]:
    names = [topic(settings, stream) for stream in ALL_STREAMS]
    return names + [dead_letter_topic(name) for name in names]


def incarnation_topic(settings: Settings) -> str:
    return f"{settings.kafka_topic_prefix}.broker-incarnation"


def make_envelope(
    source: str,
    subject: str,
    payload: Message,
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> events_pb2.EventEnvelope:
    full_name = payload.DESCRIPTOR.full_name
    envelope = events_pb2.EventEnvelope(
        event_id=event_id or str(uuid.uuid4()),
        type=full_name,
        source=source,
        subject=subject,
        occurred_at=to_timestamp(occurred_at or now_utc()),
    )
    getattr(envelope, _PAYLOAD_FIELDS[full_name]).CopyFrom(payload)
    return envelope
