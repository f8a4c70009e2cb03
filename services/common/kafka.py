"""Kafka plumbing: topic names, the event envelope, producers, and an at-least-once consumer loop
with bounded retries and a dead-letter topic per topic.

Consumers are idempotent by contract: a handler either records the event ids it applied in its own
database, in the same transaction as its effect, or relies on an idempotent target (Temporal's
workflow-id uniqueness). The loop commits offsets only after an event was applied or dead-lettered.
"""

from __future__ import annotations

import asyncio
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from datetime import datetime

import grpc
import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from google.protobuf.message import DecodeError, Message

from grantflow.v1 import events_pb2
from services.common.config import Settings
from services.common.db import now_utc, to_timestamp

log = structlog.get_logger(__name__)

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


def dead_letter_topic(source_topic: str) -> str:
    return source_topic + DLQ_SUFFIX


def all_topics(settings: Settings) -> list[str]:
    names = [topic(settings, stream) for stream in ALL_STREAMS]
    return names + [dead_letter_topic(name) for name in names]


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


async def ensure_topics(settings: Settings, names: list[str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in (names or all_topics(settings)) if n not in existing]
        if wanted:
            try:
                await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in wanted])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def incarnation_topic(settings: Settings) -> str:
    return f"{settings.kafka_topic_prefix}.broker-incarnation"


async def broker_incarnation(settings: Settings) -> str:
    """The id of the broker's current log: the first record of a one-partition marker topic,
    written by whichever Grantflow process finds it empty. A broker that lost its data (Tansu
    keeps everything in memory) has a new id, which tells relays to publish their retained
    outbox again and consumers to read their topics from the beginning."""
    name = incarnation_topic(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        if name not in set(await admin.list_topics()):
            try:
                await admin.create_topics([NewTopic(name, 1, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    marker = TopicPartition(name, 0)
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await reader.start()
    try:
        reader.assign([marker])
        for _ in range(20):
            await reader.seek_to_beginning(marker)
            records = (await reader.getmany(marker, timeout_ms=500)).get(marker, [])
            if records:
                return bytes(records[0].value).decode()
            # Empty: propose an id; whoever's record lands first at offset 0 wins.
            producer = make_producer(settings)
            await producer.start()
            try:
                await producer.send_and_wait(name, uuid.uuid4().hex.encode())
            finally:
                await producer.stop()
        raise RuntimeError(f"could not read {name}")
    finally:
        await reader.stop()


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=2,
        request_timeout_ms=15000,
    )


def make_consumer(settings: Settings, group_id: str, topics: list[str]) -> AIOKafkaConsumer:
    """A group consumer; with no topics, the caller subscribes (with a rebalance listener)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
        max_poll_interval_ms=60000,
        metadata_max_age_ms=5000,
    )


Handler = Callable[[events_pb2.EventEnvelope], Awaitable[None]]


class EventConsumer:
    """Consumes topics in a group and applies each event with a handler, at least once.

    A handler failure is retried with backoff; after `max_attempts` the raw record goes to the
    topic's dead-letter topic with the error in its headers (`grantflow ops redrive` sends it back).
    """

    def __init__(
        self,
        settings: Settings,
        group_id: str,
        topics: list[str],
        handler: Handler,
        *,
        max_attempts: int | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.topics = topics
        self.handler = handler
        self.max_attempts = max_attempts or settings.consumer_max_attempts
        self.applied = 0
        self.dead_lettered = 0
        self._incarnation: str | None = None
        self._rewind = False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._run_once(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker gone: wait and join again
                log.warning("consumer restarting", group=self.group_id, error=repr(exc))
                await _sleep_or_stop(stop, 2.0)

    async def _run_once(self, stop: asyncio.Event) -> None:
        await ensure_topics(self.settings)
        incarnation = await broker_incarnation(self.settings)
        if self._incarnation is not None and incarnation != self._incarnation:
            # The broker lost its log and our group's offsets with it, but positions we held
            # may be committed again; read everything from the start (handlers are idempotent).
            self._rewind = True
        self._incarnation = incarnation
        consumer = make_consumer(self.settings, self.group_id, [])
        consumer.subscribe(self.topics, listener=_Rewinder(self, consumer))
        producer = make_producer(self.settings)
        tasks: list[asyncio.Task[None]] = []
        try:
            await consumer.start()
            await producer.start()
            consuming = asyncio.create_task(self._consume(consumer, producer, stop))
            tasks = [consuming, asyncio.create_task(self._watch_broker(stop))]
            done, _ = await asyncio.wait(tasks, return_when=FIRST_COMPLETED)
            if consuming in done:
                consuming.result()  # raises what stopped it
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await close_quietly(consumer.stop(), producer.stop())

    async def _consume(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            for records in batches.values():
                for record in records:
                    await self._apply(record, producer, stop)
            if batches:
                await consumer.commit()

    async def _watch_broker(self, stop: asyncio.Event) -> None:
        """Returns when the broker has lost its log (a new incarnation), so the consumer is
        rebuilt; meanwhile recreates lost topics, without which offset commits retry forever."""
        while not stop.is_set():
            await _sleep_or_stop(stop, self.settings.outbox_check_broker_seconds)
            try:
                await ensure_topics(self.settings)
                if await broker_incarnation(self.settings) != self._incarnation:
                    log.warning(
                        "broker lost its log; consuming again from the start", group=self.group_id
                    )
                    return
            except Exception as exc:  # broker down right now: look again next round
                log.info("broker check failed", group=self.group_id, error=repr(exc))

    async def _apply(
        self, record: ConsumerRecord, producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        error = ""
        try:
            envelope = events_pb2.EventEnvelope.FromString(record.value)
        except DecodeError as exc:
            await self._dead_letter(record, producer, f"undecodable envelope: {exc}")
            return
        attempt = 0
        while attempt < self.max_attempts:
            try:
                await self.handler(envelope)
                self.applied += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                transient = is_transient(exc)
                if not transient:
                    attempt += 1
                log.warning(
                    "event handler failed",
                    group=self.group_id,
                    event_id=envelope.event_id,
                    type=envelope.type,
                    attempt=attempt,
                    transient=transient,
                    error=error,
                )
                if stop.is_set():
                    raise
                # An outage (Temporal, a service, a locked database) holds the partition and is
                # waited out; only an event that fails for itself goes to the dead-letter topic.
                await asyncio.sleep(min(0.2 * 2 ** max(attempt, 1), 5.0))
        await self._dead_letter(record, producer, error)

    async def _dead_letter(
        self, record: ConsumerRecord, producer: AIOKafkaProducer, error: str
    ) -> None:
        headers = [
            ("grantflow-error", error[:1000].encode()),
            ("grantflow-source-topic", record.topic.encode()),
            ("grantflow-consumer-group", self.group_id.encode()),
        ]
        await producer.send_and_wait(
            dead_letter_topic(record.topic), record.value, key=record.key, headers=headers
        )
        self.dead_lettered += 1
        log.error("event dead-lettered", group=self.group_id, topic=record.topic, error=error)


def is_transient(error: BaseException) -> bool:
    """Failures of something the handler depends on, not of the event: retried without limit."""
    from sqlalchemy.exc import OperationalError
    from temporalio.service import RPCError, RPCStatusCode

    if isinstance(error, RPCError):
        return error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return isinstance(error, OperationalError | ConnectionError | TimeoutError)


class _Rewinder(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks newly assigned partitions to the beginning after the broker lost its log."""

    def __init__(self, owner: EventConsumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.owner._rewind and assigned:
            await self.consumer.seek_to_beginning(*assigned)
            self.owner._rewind = False


async def redrive(settings: Settings, source_topic: str, timeout_s: float = 5.0) -> int:
    """Sends every dead-lettered record of source_topic back to it; returns how many."""
    dlq = dead_letter_topic(source_topic)
    consumer = make_consumer(settings, f"{settings.kafka_topic_prefix}-redrive", [dlq])
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    moved = 0
    try:
        idle_deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < idle_deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    await producer.send_and_wait(source_topic, record.value, key=record.key)
                    moved += 1
            if batches:
                await consumer.commit()
                idle_deadline = asyncio.get_running_loop().time() + timeout_s
    finally:
        await consumer.stop()
        await producer.stop()
    return moved


async def close_quietly(*closing: Awaitable[None], seconds: float = 10.0) -> None:
    """Closes Kafka clients without hanging on a broker that went away mid-conversation."""
    for close in closing:
        try:
            await asyncio.wait_for(close, timeout=seconds)
        except Exception as exc:  # a client of a lost broker: nothing more to save
            log.info("kafka client closed uncleanly", error=repr(exc))


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
