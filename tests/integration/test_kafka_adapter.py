"""The Kafka adapter on a real Kafka-protocol broker (Tansu): a consumer applies one key's events
in order and different keys at once, commits a batch only when all of it was applied, stops
promptly without leaving threads behind; readers and the relay see every record of a batch."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlmodel import Session, SQLModel

from grantflow.v1 import events_pb2
from services.common import kafka
from services.common.config import Settings
from services.common.db import Database
from services.common.kafka.clients import THREAD_PREFIX
from services.common.outbox import OutboxEvent, OutboxRelay, ProcessedEvent, enqueue
from tests.conftest import require_postgres
from tests.support import postgres_database


def fresh_settings(kafka_bootstrap: str, **overrides: object) -> Settings:
    """Topics of their own on the shared broker, configured as the embedded stack is."""
    values: dict[str, object] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "kafka_topic_prefix": f"a{uuid.uuid4().hex[:10]}",
        "kafka_embedded_broker_recovery": True,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def outbox_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'outbox.db'}")
    tables = [OutboxEvent.__table__, ProcessedEvent.__table__]  # type: ignore[attr-defined]
    SQLModel.metadata.create_all(database.engine, tables=tables)
    yield database
    database.dispose()


def number_of(value: bytes) -> str:
    """The number an `event` carries (as its reason)."""
    return events_pb2.EventEnvelope.FromString(value).application_withdrawn.reason


def event(subject: str, number: int) -> events_pb2.EventEnvelope:
    return kafka.make_envelope(
        "test",
        subject,
        events_pb2.ApplicationWithdrawn(application_id=subject, reason=str(number)),
    )


async def publish(settings: Settings, source: str, events: list[events_pb2.EventEnvelope]) -> None:
    producer = kafka.Producer(settings)
    await producer.start()
    try:
        await producer.send_batch(
            [kafka.Outgoing(source, e.SerializeToString(), e.subject.encode()) for e in events]
        )
    finally:
        await producer.close()


async def eventually(check: object, seconds: float = 60.0) -> None:
    assert callable(check)
    for _ in range(int(seconds * 20)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def adapter_threads(before: set[threading.Thread]) -> list[str]:
    """The adapter's threads started since `before` that are still alive (the database's own
    reader and writer threads live as long as the database, and are not the adapter's)."""
    return [
        t.name
        for t in threading.enumerate()
        if t not in before and t.is_alive() and t.name.startswith(THREAD_PREFIX)
    ]


async def test_stopping_a_consumer_and_a_relay_is_prompt_and_leaves_no_thread(
    kafka_bootstrap: str, outbox_db: Database
) -> None:
    settings = fresh_settings(kafka_bootstrap)
    source = kafka.topic(settings, kafka.APPLICATIONS)
    before = set(threading.enumerate())
    applied: list[str] = []

    async def handler(envelope: events_pb2.EventEnvelope) -> None:
        applied.append(envelope.event_id)

    stop = asyncio.Event()
    consumer = kafka.EventConsumer(settings, "stop-test", [source], handler)
    running = [
        asyncio.create_task(OutboxRelay(settings, outbox_db).run(stop)),
        asyncio.create_task(consumer.run(stop)),
    ]
    sent = event("app-1", 1)
    await outbox_db.run(lambda session: enqueue(session, source, sent))
    await eventually(lambda: applied == [sent.event_id])
    assert adapter_threads(before), "the clients run on threads of their own"

    stop.set()
    # Both return within seconds: nothing waits on a blocked client or a broker timeout.
    await asyncio.wait_for(asyncio.gather(*running), timeout=5)
    assert adapter_threads(before) == []
    # Nothing else keeps the process alive but the event loop's executor and the database's
    # reader and writer threads, which the loop and Database.dispose join.
    leftover = [t for t in threading.enumerate() if t not in before and not t.daemon]
    assert all(t.name.startswith(("asyncio_", "db-")) for t in leftover), leftover


async def test_one_keys_events_stay_in_order_while_keys_are_applied_at_once(
    kafka_bootstrap: str,
) -> None:
    settings = fresh_settings(kafka_bootstrap)
    source = kafka.topic(settings, kafka.APPLICATIONS)
    await kafka.ensure_topics(settings)
    keys = [f"app-{k}" for k in range(8)]
    events = [event(key, n) for n in range(4) for key in keys]
    await publish(settings, source, events)

    order: dict[str, list[int]] = defaultdict(list)
    in_flight = 0
    peak = 0

    async def handler(envelope: events_pb2.EventEnvelope) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        order[envelope.subject].append(int(envelope.application_withdrawn.reason))

    stop = asyncio.Event()
    consumer = kafka.EventConsumer(settings, "order-test", [source], handler, concurrency=3)
    running = asyncio.create_task(consumer.run(stop))
    try:
        await eventually(lambda: consumer.applied == len(events))
    finally:
        stop.set()
        await running
    assert {key: order[key] for key in keys} == {key: [0, 1, 2, 3] for key in keys}
    assert 1 < peak <= 3


async def test_a_batch_not_wholly_applied_is_not_committed(kafka_bootstrap: str) -> None:
    settings = fresh_settings(kafka_bootstrap)
    source = kafka.topic(settings, kafka.APPLICATIONS)
    await kafka.ensure_topics(settings)
    quick, stuck = event("app-quick", 1), event("app-stuck", 1)
    await publish(settings, source, [quick, stuck])

    first_run: list[str] = []
    never = asyncio.Event()

    async def hangs_on_one(envelope: events_pb2.EventEnvelope) -> None:
        first_run.append(envelope.event_id)
        if envelope.event_id == stuck.event_id:
            await never.wait()  # a handler still busy when the consumer stops

    stop = asyncio.Event()
    consumer = kafka.EventConsumer(settings, "commit-test", [source], hangs_on_one)
    running = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: set(first_run) == {quick.event_id, stuck.event_id})
    assert consumer.applied == 1
    stop.set()
    await asyncio.wait_for(running, timeout=10)

    # The next member of the group gets both again: the batch's offsets were never committed.
    second_run: list[str] = []

    async def applies(envelope: events_pb2.EventEnvelope) -> None:
        second_run.append(envelope.event_id)

    stop = asyncio.Event()
    consumer = kafka.EventConsumer(settings, "commit-test", [source], applies)
    running = asyncio.create_task(consumer.run(stop))
    try:
        await eventually(lambda: consumer.applied == 2)
    finally:
        stop.set()
        await running
    assert sorted(second_run) == sorted([quick.event_id, stuck.event_id])


async def test_reading_a_topic_returns_every_record_of_batched_publishes(
    kafka_bootstrap: str,
) -> None:
    settings = fresh_settings(kafka_bootstrap)
    source = kafka.topic(settings, kafka.APPLICATIONS)
    await kafka.ensure_topics(settings)
    events = [event(f"app-{n % 5}", n) for n in range(300)]
    await publish(settings, source, events[:150])
    await publish(settings, source, events[150:])

    records = await kafka.read_topic(settings, source, timeout_s=30)
    read = [events_pb2.EventEnvelope.FromString(r.value).event_id for r in records]
    assert sorted(read) == sorted(e.event_id for e in events)
    assert len(await kafka.read_topic(settings, source, limit=7)) == 7


async def test_relay_publishes_in_batches_and_republishes_nothing_the_broker_kept(
    kafka_bootstrap: str, outbox_db: Database
) -> None:
    settings = fresh_settings(kafka_bootstrap, outbox_check_broker_seconds=0.2)
    source = kafka.topic(settings, kafka.APPLICATIONS)
    events = [event(f"app-{n % 7}", n) for n in range(450)]

    def fill(session: object) -> None:
        for e in events:
            enqueue(session, source, e)  # type: ignore[arg-type]

    await outbox_db.run(fill)
    relay = OutboxRelay(settings, outbox_db)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.published == len(events))
        checked = relay.broker_checks
        # Several comparisons of the broker's end offsets with what was published.
        await eventually(lambda: relay.broker_checks >= checked + 3)
    finally:
        stop.set()
        await running
    assert relay.republished_topics == 0
    records = await kafka.read_topic(settings, source, timeout_s=30)
    assert len(records) == len(events)


async def test_a_consumer_stopped_while_joining_does_not_lock_its_group_out(
    kafka_bootstrap: str,
) -> None:
    settings = fresh_settings(kafka_bootstrap)
    source = kafka.topic(settings, kafka.APPLICATIONS)
    await kafka.ensure_topics(settings)
    sent = event("app-1", 1)
    await publish(settings, source, [sent])

    async def handler(envelope: events_pb2.EventEnvelope) -> None:
        applied.append(envelope.event_id)

    # Stopped a moment after starting: its member is still joining the group (Tansu takes
    # about three seconds to form a group).
    applied: list[str] = []
    stop = asyncio.Event()
    early = kafka.EventConsumer(settings, "join-test", [source], handler)
    running = asyncio.create_task(early.run(stop))
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait_for(running, timeout=10)

    stop = asyncio.Event()
    later = kafka.EventConsumer(settings, "join-test", [source], handler)
    running = asyncio.create_task(later.run(stop))
    try:
        await eventually(lambda: later.applied == 1, seconds=30)
    finally:
        stop.set()
        await running
    assert sent.event_id in applied


async def test_an_event_committed_beside_the_relay_is_published_without_waiting_for_its_poll(
    kafka_bootstrap: str, outbox_db: Database
) -> None:
    settings = fresh_settings(kafka_bootstrap, outbox_poll_seconds=60.0)
    source = kafka.topic(settings, kafka.APPLICATIONS)
    first, second = event("app-1", 1), event("app-1", 2)
    await outbox_db.run(lambda session: enqueue(session, source, first))
    relay = OutboxRelay(settings, outbox_db)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.published == 1)  # now idle until its next poll, a minute on
        await outbox_db.run(lambda session: enqueue(session, source, second))
        await eventually(lambda: relay.published == 2, seconds=20)
    finally:
        stop.set()
        await running


async def test_replicas_relays_on_one_postgres_database_publish_each_event_once_in_order(
    kafka_bootstrap: str,
) -> None:
    """Two replicas of a service share its PostgreSQL outbox: one relay publishes, the other
    stands by and takes over when the first stops; no event is sent twice or out of order."""
    require_postgres()
    settings = fresh_settings(kafka_bootstrap, kafka_embedded_broker_recovery=False)
    source = kafka.topic(settings, kafka.APPLICATIONS)
    with postgres_database() as url:
        database = Database(url)
        tables = [OutboxEvent.__table__, ProcessedEvent.__table__]  # type: ignore[attr-defined]
        SQLModel.metadata.create_all(database.engine, tables=tables)
        first, second = OutboxRelay(settings, database), OutboxRelay(settings, database)
        stop_first, stop_second = asyncio.Event(), asyncio.Event()
        running = [
            asyncio.create_task(first.run(stop_first)),
            asyncio.create_task(second.run(stop_second)),
        ]

        def fill(events: list[events_pb2.EventEnvelope]) -> Callable[[Session], None]:
            def work(session: Session) -> None:
                for e in events:
                    enqueue(session, source, e)

            return work

        try:
            before = [event("app-1", n) for n in range(100)]
            await database.run(fill(before))
            await eventually(lambda: first.published + second.published == 100)
            leader, standby = (first, second) if first.published else (second, first)
            assert standby.published == 0
            (stop_first if leader is first else stop_second).set()
            await running[0 if leader is first else 1]
            after = [event("app-1", n) for n in range(100, 150)]
            await database.run(fill(after))
            await eventually(lambda: standby.published == 50)
        finally:
            stop_first.set()
            stop_second.set()
            await asyncio.gather(*running)
            database.dispose()
    records = await kafka.read_topic(settings, source, timeout_s=30)
    numbers = [int(number_of(r.value)) for r in records]
    assert numbers == list(range(150))
