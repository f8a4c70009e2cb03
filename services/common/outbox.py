"""Transactional outbox and idempotent-consumer records, shared by every service's database.

A service writes its row and the event in one transaction (`enqueue`); `OutboxRelay` publishes
pending events to Kafka with acks=all, a batch at a time, and marks them published with their
partitions and offsets (rows are kept for the retention window, not deleted).

With `kafka_embedded_broker_recovery` on (the embedded stack: Tansu keeps messages in memory),
the outbox is the durable record: when the relay sees the broker has lost what it was given (a
new broker incarnation, a partition's offsets going backwards, or an end offset below what was
published), it publishes the retained events again; consumers skip what they already applied by
event id (`claim_event`).

Several replicas of a service (a Kubernetes Deployment) each run a relay: on PostgreSQL they
share one lease (`RelayLease`, a session advisory lock), so one publishes and the others stand by
and take over when its connection goes; events then leave in the order they were written instead
of twice and interleaved. A SQLite file belongs to one process, which needs no lease.

Observability: a row keeps the W3C traceparent of the span that wrote it, and the relay sends it
as the record's `traceparent` header from a producer span, so a trace crosses the outbox and
Kafka; the relay lets Prometheus count its backlog and lag (services/common/metrics.py).
"""

from __future__ import annotations

import asyncio
from asyncio import FIRST_COMPLETED
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Column, LargeBinary, event, func, text, update
from sqlmodel import Field, Session, SQLModel, col, select

from grantflow.v1 import events_pb2
from services.common import metrics, tracing
from services.common.config import Settings
from services.common.db import Database, now_utc
from services.common.kafka import (
    BrokerAdmin,
    Outgoing,
    Producer,
    all_topics,
    sleep_or_stop,
    until_stopped,
)

log = structlog.get_logger(__name__)


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, unique=True)
    topic: str = Field(max_length=200)
    key: str = Field(max_length=200)
    event_type: str = Field(max_length=200)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(index=True)
    published_at: datetime | None = Field(default=None, index=True)
    kafka_partition: int | None = None
    kafka_offset: int | None = None
    traceparent: str | None = Field(default=None, max_length=64)


class ProcessedEvent(SQLModel, table=True):
    __tablename__ = "processed_event"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=64)
    processed_at: datetime


# Relays running in this process, woken when a transaction that enqueued an event commits, so an
# event waits for the relay's next poll only when it was written by another process.
_relays_to_wake: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
_WAKE_ON_COMMIT = "grantflow.outbox.wake_on_commit"


def enqueue(session: Session, topic: str, envelope: events_pb2.EventEnvelope) -> None:
    """Adds the event to the outbox inside the caller's transaction."""
    session.add(
        OutboxEvent(
            event_id=envelope.event_id,
            topic=topic,
            key=envelope.subject,
            event_type=envelope.type,
            payload=envelope.SerializeToString(),
            created_at=now_utc(),
            traceparent=tracing.current_traceparent(),
        )
    )
    if not session.info.get(_WAKE_ON_COMMIT):
        session.info[_WAKE_ON_COMMIT] = True
        event.listen(session, "after_commit", _wake_relays, once=True)


def _wake_relays(session: Session) -> None:
    session.info.pop(_WAKE_ON_COMMIT, None)
    for loop, wake in list(_relays_to_wake):
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # that relay's loop has closed
            pass


def claim_event(session: Session, consumer: str, event_id: str) -> bool:
    """Records that consumer applies event_id in this transaction; False if it already did."""
    if session.get(ProcessedEvent, (consumer, event_id)) is not None:
        return False
    session.add(ProcessedEvent(consumer=consumer, event_id=event_id, processed_at=now_utc()))
    return True


# An outbox row waiting for the relay: id, topic, key, payload, traceparent.
Pending = tuple[int, str, str, bytes, str | None]


def _backlog(session: Session) -> tuple[int, datetime | None]:
    """How many events wait to be published, and when the oldest of them was written."""
    count, oldest = session.exec(
        select(func.count(), func.min(OutboxEvent.created_at)).where(
            col(OutboxEvent.published_at).is_(None)
        )
    ).one()
    return int(count or 0), oldest


@contextmanager
def _producer_spans(rows: list[Pending]) -> Iterator[list[tuple[tuple[str, bytes], ...]]]:
    """Each traced row's Kafka headers: the traceparent of a producer span, child of the span
    that wrote the row, open while the batch is sent. Untraced rows (or processes) get none."""
    if not tracing.enabled():
        yield [() for _ in rows]
        return
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    spans: list[trace.Span | None] = []
    headers: list[tuple[tuple[str, bytes], ...]] = []
    for _, topic, _, _, traceparent in rows:
        if not traceparent:
            spans.append(None)
            headers.append(())
            continue
        span: trace.Span = tracing.tracer().start_span(
            f"publish {topic}",
            context=tracing.context_from({tracing.TRACEPARENT: traceparent}),
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
        )
        carrier: dict[str, str] = {}
        tracing.inject_span(span, carrier)
        spans.append(span)
        headers.append(tuple((name, value.encode()) for name, value in carrier.items()))
    try:
        yield headers
    finally:
        for sent in spans:
            if sent is not None:
                sent.end()


class RelayLease:
    """The right to publish a service's outbox, held by one relay at a time (see the module
    docstring): a PostgreSQL session advisory lock on a connection of its own, freed by the server
    when that connection ends, so a crashed replica cannot keep it."""

    # pg advisory lock key: one per database, and each service has its own database.
    LOCK_KEY = 0x6772616E74666C77  # "grantflw"
    RETRY_SECONDS = 2.0
    CHECK_SECONDS = 1.0

    def __init__(self, database: Database) -> None:
        self.needed = database.engine.dialect.name == "postgresql"
        self._engine = database.engine
        self._connection: Any = None
        self._checked_at = 0.0

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Waits until this relay holds the lease (True) or `stop` is set (False)."""
        if not self.needed:
            return True
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self._try_lock):
                    log.info("outbox relay holds the lease")
                    return True
            except Exception as exc:  # database unreachable: try again, as for the broker
                log.warning("outbox relay lease", error=repr(exc))
            await sleep_or_stop(stop, self.RETRY_SECONDS)
        return False

    async def held(self) -> bool:
        """False once the lease's connection is gone (another replica may hold it now)."""
        if not self.needed:
            return True
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked_at < self.CHECK_SECONDS:
            return True
        self._checked_at = loop.time()
        try:
            await asyncio.to_thread(self._ping)
            return True
        except Exception as exc:
            log.warning("outbox relay lost its lease", error=repr(exc))
            self.release()
            return False

    def release(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            # Invalidated, not closed: a closed connection goes back to the pool with its session
            # (and the lock) alive; this ends the session, and the server frees the lock.
            with suppress(Exception):
                connection.invalidate()
            with suppress(Exception):
                connection.close()

    def _try_lock(self) -> bool:
        if self._connection is None:
            self._connection = self._engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            )
        locked = self._connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": self.LOCK_KEY}
        ).scalar()
        return bool(locked)

    def _ping(self) -> None:
        assert self._connection is not None
        self._connection.execute(text("SELECT 1"))


class OutboxRelay:
    """Publishes a service's outbox to Kafka, in order of writing, at least once."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        batch_size: int = 200,
        service: str | None = None,
    ) -> None:
        self.settings = settings
        self.service = service or metrics.process()
        self.db = database
        self.batch_size = batch_size
        self.retention = timedelta(hours=settings.outbox_retention_hours)
        self.published = 0
        self.republished_topics = 0
        self.broker_checks = 0  # comparisons of the broker's end offsets with what we published
        self._high: dict[tuple[str, int], int] = {}
        self._incarnation: str | None = None
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        waking = (asyncio.get_running_loop(), self._wake)
        _relays_to_wake.add(waking)
        unwatch = metrics.watch_outbox(self.service, lambda: self.db.read(_backlog))
        lease = RelayLease(self.db)
        try:
            while not stop.is_set():
                if not await lease.acquire(stop):
                    break
                try:
                    await until_stopped(stop, self._run_connected(stop, lease))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # broker unreachable: keep the rows, try again
                    log.warning("outbox relay reconnecting", error=repr(exc))
                    await sleep_or_stop(stop, 1.0)
        finally:
            lease.release()
            _relays_to_wake.discard(waking)
            unwatch()

    async def _run_connected(self, stop: asyncio.Event, lease: RelayLease) -> None:
        recovery = self.settings.kafka_embedded_broker_recovery
        broker = BrokerAdmin(self.settings)
        producer = Producer(self.settings, "outbox-relay")
        try:
            await broker.ensure_topics(all_topics(self.settings))
            await producer.start()
            if recovery:
                self._high = await self.db.run(self._load_high_offsets)
                await self._check_incarnation(broker)
                await self._check_broker(broker)
            loop = asyncio.get_running_loop()
            next_check = loop.time() + self.settings.outbox_check_broker_seconds
            next_purge = loop.time()
            while not stop.is_set():
                if not await lease.held():
                    return  # stand by: run() waits for the lease again
                self._wake.clear()  # before looking: a commit from now on wakes the next wait
                rows = await self.db.run(self._pending)
                if rows:
                    with _producer_spans(rows) as headers:
                        deliveries = await producer.send_batch(
                            [
                                Outgoing(topic, payload, key.encode(), header)
                                for (_, topic, key, payload, _), header in zip(
                                    rows, headers, strict=True
                                )
                            ]
                        )
                    sent = [
                        (row_id, topic, delivery.partition, delivery.offset)
                        for (row_id, topic, *_), delivery in zip(rows, deliveries, strict=True)
                    ]
                    await self._mark_published(sent)
                    self.published += len(sent)
                    metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(sent))
                if recovery and loop.time() >= next_check:
                    # A restarted broker has no topics, and may have lost what it was given.
                    await broker.ensure_topics(all_topics(self.settings))
                    await self._check_incarnation(broker)
                    await self._check_broker(broker)
                    next_check = loop.time() + self.settings.outbox_check_broker_seconds
                if loop.time() >= next_purge:
                    await self.db.run(self._purge)
                    next_purge = loop.time() + 3600
                if len(rows) < self.batch_size:
                    await self._wait_for_rows(stop)
        finally:
            await producer.close()
            await broker.close()

    async def _wait_for_rows(self, stop: asyncio.Event) -> None:
        """Until an event is committed in this process, `stop`, or the next poll is due."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(
                waits, timeout=self.settings.outbox_poll_seconds, return_when=FIRST_COMPLETED
            )
        finally:
            for waiting in waits:
                waiting.cancel()

    def _pending(self, session: Session) -> list[Pending]:
        rows = session.exec(
            select(  # type: ignore[call-overload]
                OutboxEvent.id,
                OutboxEvent.topic,
                OutboxEvent.key,
                OutboxEvent.payload,
                OutboxEvent.traceparent,
            )
            .where(col(OutboxEvent.published_at).is_(None))
            .order_by(col(OutboxEvent.id))
            .limit(self.batch_size)
        ).all()
        return [(int(r[0] or 0), r[1], r[2], r[3], r[4]) for r in rows]

    def _load_high_offsets(self, session: Session) -> dict[tuple[str, int], int]:
        rows = session.exec(
            select(
                OutboxEvent.topic, OutboxEvent.kafka_partition, func.max(OutboxEvent.kafka_offset)
            )
            .where(col(OutboxEvent.published_at).is_not(None))
            .where(col(OutboxEvent.kafka_partition).is_not(None))
            .group_by(col(OutboxEvent.topic), col(OutboxEvent.kafka_partition))
        ).all()
        return {(t, int(p)): int(o) for t, p, o in rows if p is not None and o is not None}

    async def _mark_published(self, sent: list[tuple[int, str, int, int]]) -> None:
        # An offset at or below one we already got for the same partition means the broker
        # started a fresh log: everything it had from us before is gone.
        lost = {
            topic
            for _, topic, partition, offset in sent
            if self.settings.kafka_embedded_broker_recovery
            and offset <= self._high.get((topic, partition), -1)
        }
        fresh_ids = [row_id for row_id, *_ in sent]

        def work(session: Session) -> None:
            stamp = now_utc()
            session.execute(
                update(OutboxEvent),
                [
                    {
                        "id": row_id,
                        "published_at": stamp,
                        "kafka_partition": partition,
                        "kafka_offset": offset,
                    }
                    for row_id, _, partition, offset in sent
                ],
            )
            for topic in lost:
                self._unpublish(session, topic, exclude=fresh_ids)

        await self.db.run(work)
        for topic in lost:
            self._forget(topic)
        for _, topic, partition, offset in sent:
            key = (topic, partition)
            self._high[key] = max(self._high.get(key, -1), offset)

    async def _check_incarnation(self, broker: BrokerAdmin) -> None:
        """A broker with a new incarnation lost everything: publish every retained row again."""
        incarnation = await broker.incarnation()
        if self._incarnation is not None and incarnation != self._incarnation:

            def work(session: Session) -> None:
                topics = session.exec(select(OutboxEvent.topic).distinct()).all()
                for topic in topics:
                    self._unpublish(session, topic, exclude=[])

            await self.db.run(work)
            self._high.clear()
        self._incarnation = incarnation

    async def _check_broker(self, broker: BrokerAdmin) -> None:
        """Compares the broker's end offsets with what we published; republishes what it lost."""
        if not self._high:
            return
        ends = await broker.end_offsets(list(self._high))
        self.broker_checks += 1
        lost = {
            topic
            for (topic, partition), end in ends.items()
            if end <= self._high[(topic, partition)]
        }
        if lost:

            def work(session: Session) -> None:
                for topic in lost:
                    self._unpublish(session, topic, exclude=[])

            await self.db.run(work)
            for topic in lost:
                self._forget(topic)

    def _unpublish(self, session: Session, topic: str, *, exclude: list[int]) -> None:
        cutoff = now_utc() - self.retention
        result = session.execute(
            update(OutboxEvent)
            .where(col(OutboxEvent.topic) == topic)
            .where(col(OutboxEvent.published_at).is_not(None))
            .where(col(OutboxEvent.created_at) >= cutoff)
            .where(col(OutboxEvent.id).not_in(exclude))
            .values(published_at=None, kafka_partition=None, kafka_offset=None)
        )
        self.republished_topics += 1
        log.warning(
            "broker lost events; republishing retained outbox",
            topic=topic,
            rows=getattr(result, "rowcount", -1),
        )

    def _forget(self, topic: str) -> None:
        for key in [k for k in self._high if k[0] == topic]:
            del self._high[key]

    def _purge(self, session: Session) -> None:
        cutoff = now_utc() - self.retention
        old = session.exec(
            select(OutboxEvent)
            .where(col(OutboxEvent.published_at).is_not(None))
            .where(col(OutboxEvent.created_at) < cutoff)
        ).all()
        for row in old:
            session.delete(row)
