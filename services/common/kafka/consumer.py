"""The at-least-once consumer loop: a group member applies each polled batch with a handler,
one key's events in order and different keys at once, with bounded retries and a dead-letter topic
per topic.

Consumers are idempotent by contract: a handler either records the event ids it applied in its own
database, in the same transaction as its effect, or relies on an idempotent target (Temporal's
workflow-id uniqueness). Offsets are committed only after every event of a batch was applied or
dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError

from grantflow.v1 import events_pb2
from services.common import metrics
from services.common.config import Settings
from services.common.kafka.clients import BrokerAdmin, GroupMember, Outgoing, Producer, Record
from services.common.kafka.stopping import sleep_or_stop
from services.common.kafka.topics import all_topics, consumer_group, dead_letter_topic
from services.common.observability import event_context, ids_of

log = structlog.get_logger(__name__)

Handler = Callable[[events_pb2.EventEnvelope], Awaitable[None]]
BATCH_SIZE = 200


class EventConsumer:
    """Consumes topics in a group and applies each event with a handler, at least once.

    A handler failure is retried with backoff; after `max_attempts` the raw record goes to the
    topic's dead-letter topic with the error in its headers (`grantflow ops redrive` sends it back).
    Events with the same key (the application) are applied one after another in their order on
    the topic; events of up to `concurrency` different keys are applied at the same time.
    """

    def __init__(
        self,
        settings: Settings,
        group_id: str,
        topics: list[str],
        handler: Handler,
        *,
        max_attempts: int | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.topics = topics
        self.handler = handler
        self.max_attempts = max_attempts or settings.consumer_max_attempts
        self.concurrency = concurrency or settings.kafka_consumer_concurrency
        self.applied = 0
        self.dead_lettered = 0
        self._incarnation: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._run_once(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker gone: wait and join again
                log.warning("consumer restarting", group=self.group_id, error=repr(exc))
                await sleep_or_stop(stop, 2.0)

    async def _run_once(self, stop: asyncio.Event) -> None:
        recovery = self.settings.kafka_embedded_broker_recovery
        broker = BrokerAdmin(self.settings)
        producer = Producer(self.settings, f"dead-letters-{self.group_id}")
        member: GroupMember | None = None
        waits: list[asyncio.Future[Any]] = []
        try:
            await broker.ensure_topics(all_topics(self.settings))
            rewind = await self._new_incarnation(broker) if recovery else False
            await producer.start()
            member = GroupMember(
                self.settings,
                consumer_group(self.settings, self.group_id),
                self.topics,
                lambda batch: self._apply_batch(batch, producer, stop),
                rewind=rewind,
                max_records=BATCH_SIZE,
                observe_lag=lambda lags: metrics.set_consumer_lag(self.group_id, lags),
            )
            ended = member.start()
            waits = [ended, asyncio.ensure_future(stop.wait())]
            if recovery:
                waits.append(asyncio.ensure_future(self._watch_broker(broker, stop)))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if ended.done():
                ended.result()  # raises what ended the member
        finally:
            for waiting in waits[1:]:
                waiting.cancel()
            if member is not None:
                await member.stop()
            await producer.close()
            await broker.close()

    async def _new_incarnation(self, broker: BrokerAdmin) -> bool:
        """True when the broker lost its log since we last joined. It lost our group's offsets
        with it, but positions we held may be committed again: so we read everything from the
        start (handlers are idempotent)."""
        incarnation = await broker.incarnation()
        changed = self._incarnation is not None and incarnation != self._incarnation
        self._incarnation = incarnation
        return changed

    async def _watch_broker(self, broker: BrokerAdmin, stop: asyncio.Event) -> None:
        """Returns when the broker has lost its log (a new incarnation), so the member is
        rebuilt; meanwhile recreates lost topics, without which offset commits retry forever."""
        while not stop.is_set():
            await sleep_or_stop(stop, self.settings.outbox_check_broker_seconds)
            try:
                await broker.ensure_topics(all_topics(self.settings))
                if await broker.incarnation() != self._incarnation:
                    log.warning(
                        "broker lost its log; consuming again from the start", group=self.group_id
                    )
                    return
            except Exception as exc:  # broker down right now: look again next round
                log.info("broker check failed", group=self.group_id, error=repr(exc))

    async def _apply_batch(
        self, batch: list[Record], producer: Producer, stop: asyncio.Event
    ) -> None:
        by_key: dict[object, list[Record]] = {}
        for record in batch:
            key = record.key if record.key is not None else (record.topic, record.partition)
            by_key.setdefault(key, []).append(record)
        slots = asyncio.Semaphore(self.concurrency)

        async def apply_in_order(records: list[Record]) -> None:
            async with slots:
                for record in records:
                    await self._apply(record, producer, stop)

        async with asyncio.TaskGroup() as group:
            for records in by_key.values():
                group.create_task(apply_in_order(records))

    async def _apply(self, record: Record, producer: Producer, stop: asyncio.Event) -> None:
        try:
            envelope = events_pb2.EventEnvelope.FromString(record.value)
        except DecodeError as exc:
            await self._dead_letter(record, producer, f"undecodable envelope: {exc}")
            return
        ids = {"event_id": envelope.event_id, "event_type": envelope.type, **ids_of(envelope)}
        with event_context(record.topic, record.headers, ids):
            await self._apply_envelope(record, envelope, producer, stop)

    async def _apply_envelope(
        self,
        record: Record,
        envelope: events_pb2.EventEnvelope,
        producer: Producer,
        stop: asyncio.Event,
    ) -> None:
        error = ""
        attempt = 0
        while attempt < self.max_attempts:
            try:
                await self.handler(envelope)
                self.applied += 1
                metrics.RECORDS_APPLIED.labels(self.group_id, record.topic).inc()
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
                # An outage (Temporal, a service, a locked database) holds the key and is
                # waited out; only an event that fails for itself goes to the dead-letter topic.
                await asyncio.sleep(min(0.2 * 2 ** max(attempt, 1), 5.0))
        await self._dead_letter(record, producer, error)

    async def _dead_letter(self, record: Record, producer: Producer, error: str) -> None:
        headers = (
            ("grantflow-error", error[:1000].encode()),
            ("grantflow-source-topic", record.topic.encode()),
            ("grantflow-consumer-group", self.group_id.encode()),
        )
        await producer.send(
            Outgoing(dead_letter_topic(record.topic), record.value, record.key, headers)
        )
        self.dead_lettered += 1
        metrics.DEAD_LETTERS.labels(self.group_id, record.topic).inc()
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
