"""How fast events travel: outbox commit → consumer applied, and how fast a relay empties a full
outbox, each beside a floor measured in the same run with a bare Kafka client.

`python -m benchmarks.events [--rate 200] [--seconds 10] [--rows 5000] [--handler-ms 0]` starts a
throw-away Tansu broker and a temporary SQLite database, then measures:

- latency: a writer thread commits one outbox row per transaction (`outbox.enqueue`) at a steady
  rate; a running OutboxRelay publishes them and a running EventConsumer applies them with a
  handler that notes the time (after sleeping --handler-ms, a stand-in for real work such as
  starting a workflow). Latency = applied - committed, p50/p99.
- relay throughput: --rows rows already in the outbox, the time until the relay marked them all
  published, in events/s.
- the floor: the same produce → consume latency and produce throughput with a bare client (no
  outbox, no database), so the ratio means something on a noisy, shared machine.

The system part uses only OutboxRelay(settings, db).run(stop), enqueue, EventConsumer(settings,
group, topics, handler).run(stop), ensure_topics and Database, so it measures any version of them.
The floor needs a client of its own: the figures before the adapter moved to kafka-python were
taken with this script as of commit 4a3d423, whose floor used the asyncio client of that time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, SQLModel, col, select

from grantflow.v1 import events_pb2
from services.common import kafka
from services.common.config import Settings
from services.common.db import Database
from services.common.logging import configure_logging
from services.common.outbox import OutboxEvent, OutboxRelay, ProcessedEvent, enqueue
from tests.support import tansu_broker

KEYS = 64  # distinct subjects (application ids), spread over the topic's partitions


@dataclass
class Latencies:
    sent: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)

    def values_ms(self) -> list[float]:
        return [(self.received[k] - t) * 1000 for k, t in self.sent.items() if k in self.received]

    def summary(self) -> str:
        values = sorted(self.values_ms())
        lost = len(self.sent) - len(values)
        if not values:
            return f"n=0, lost {lost}"
        return (
            f"p50 {percentile(values, 50):7.1f} ms  p99 {percentile(values, 99):7.1f} ms  "
            f"max {values[-1]:7.1f} ms  (n={len(values)}, not applied {lost})"
        )


def percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def envelope(number: int) -> events_pb2.EventEnvelope:
    subject = f"bench-app-{number % KEYS}"
    return kafka.make_envelope(
        "benchmark",
        subject,
        events_pb2.ApplicationWithdrawn(application_id=subject, reason=f"event {number}"),
    )


def bench_settings(bootstrap: str, data_dir: Path) -> Settings:
    # The embedded stack's configuration; a setting this version does not know is ignored.
    values: dict[str, object] = {
        "data_dir": data_dir,
        "kafka_bootstrap_servers": bootstrap,
        "kafka_topic_prefix": f"bench{uuid.uuid4().hex[:8]}",
        "kafka_embedded_broker_recovery": True,
    }
    return Settings(**values)  # type: ignore[arg-type]


def outbox_database(data_dir: Path, name: str) -> Database:
    database = Database(f"sqlite:///{data_dir / name}")
    tables = [OutboxEvent.__table__, ProcessedEvent.__table__]  # type: ignore[attr-defined]
    SQLModel.metadata.create_all(database.engine, tables=tables)
    return database


def write_steadily(
    database: Database, topic: str, rate: float, seconds: float, marks: Latencies
) -> None:
    """One transaction per event, on schedule (a late writer catches up, it does not drift)."""
    count = int(rate * seconds)
    start = time.monotonic()
    for number in range(count):
        due = start + number / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        event = envelope(number)
        database.transact(partial(enqueue, topic=topic, envelope=event))
        marks.sent[event.event_id] = time.monotonic()


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def system_latency(
    bootstrap: str, data_dir: Path, rate: float, seconds: float, handler_ms: float
) -> Latencies:
    settings = bench_settings(bootstrap, data_dir)
    database = outbox_database(data_dir, "latency.db")
    topic = kafka.topic(settings, kafka.APPLICATIONS)
    await kafka.ensure_topics(settings)
    marks = Latencies()
    warm: set[str] = set()

    async def handler(event: events_pb2.EventEnvelope) -> None:
        if handler_ms:
            await asyncio.sleep(handler_ms / 1000)
        marks.received.setdefault(event.event_id, time.monotonic())
        warm.add(event.event_id)

    stop = asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(settings, database).run(stop))
    consumer = kafka.EventConsumer(settings, "bench-latency", [topic], handler)
    consuming = asyncio.create_task(consumer.run(stop))
    try:
        # Warm up: the group has joined and the relay is connected once one event went through.
        first = envelope(-1)
        await database.run(lambda session: enqueue(session, topic, first))
        await wait_until(lambda: first.event_id in warm, 120, "the first event")
        marks.received.clear()
        await asyncio.to_thread(write_steadily, database, topic, rate, seconds, marks)
        expected = set(marks.sent)
        await wait_until(
            lambda: expected <= marks.received.keys(), 60 + seconds, "every event applied"
        )
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(relay, consuming), timeout=30)
        database.dispose()
    return marks


async def relay_throughput(bootstrap: str, data_dir: Path, rows: int) -> float:
    settings = bench_settings(bootstrap, data_dir)
    database = outbox_database(data_dir, "throughput.db")
    topic = kafka.topic(settings, kafka.APPLICATIONS)
    await kafka.ensure_topics(settings)

    def fill(session: Session) -> None:
        for number in range(rows):
            enqueue(session, topic, envelope(number))

    await database.run(fill)

    def pending(session: Session) -> int:
        query = select(func.count()).where(col(OutboxEvent.published_at).is_(None))
        return int(session.exec(query).one())

    stop = asyncio.Event()
    started = time.monotonic()
    relay = asyncio.create_task(OutboxRelay(settings, database).run(stop))
    try:
        while await database.run(pending):
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.wait_for(relay, timeout=30)
        database.dispose()
    return rows / elapsed


# The floor: a bare client, no outbox, no database. ------------------------------------------------
# The adapter's own producer and group member (kafka-python on their threads), configured as the
# system's are, without the outbox, the database, the relay or the handler loop around them.


def floor_settings(bootstrap: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap, kafka_topic_prefix="floor" + uuid.uuid4().hex[:8]
    )


async def floor_latency(bootstrap: str, rate: float, seconds: float) -> Latencies:
    settings = floor_settings(bootstrap)
    topic = kafka.topic(settings, kafka.APPLICATIONS)
    await kafka.ensure_topics(settings, [topic])
    marks = Latencies()

    async def note(batch: list[kafka.Record]) -> None:
        now = time.monotonic()
        for record in batch:
            marks.received.setdefault(record.value.decode(), now)

    member = kafka.GroupMember(settings, "floor", [topic], note)
    ended = member.start()
    producer = kafka.Producer(settings, "floor")
    await producer.start()
    try:
        # Warm up: the member has joined its group once a first record came through.
        await producer.send(kafka.Outgoing(topic, b"warm-up"))
        await wait_until(lambda: "warm-up" in marks.received, 120, "the first record")
        start = time.monotonic()
        for number in range(int(rate * seconds)):
            delay = start + number / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event = envelope(number)
            marks.sent[event.event_id] = time.monotonic()
            record = kafka.Outgoing(topic, event.event_id.encode(), event.subject.encode())
            await producer.send(record)
        await wait_until(lambda: marks.sent.keys() <= marks.received.keys(), 60, "every record")
    finally:
        await producer.close()
        await member.stop()
        if ended.done():
            ended.result()
    return marks


async def floor_throughput(bootstrap: str, rows: int) -> float:
    settings = floor_settings(bootstrap)
    topic = kafka.topic(settings, kafka.APPLICATIONS)
    await kafka.ensure_topics(settings, [topic])
    records = [
        kafka.Outgoing(topic, e.SerializeToString(), e.subject.encode())
        for e in map(envelope, range(rows))
    ]
    producer = kafka.Producer(settings, "floor")
    await producer.start()
    try:
        started = time.monotonic()
        await producer.send_batch(records)
        return rows / (time.monotonic() - started)
    finally:
        await producer.close()


# ------------------------------------------------------------------------------------------------


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


async def bench(args: argparse.Namespace, bootstrap: str, data_dir: Path) -> None:
    print(f"load average at start: {load()}  ({os.cpu_count()} cores)")
    floor = await floor_latency(bootstrap, args.rate, args.seconds)
    floor_rate = await floor_throughput(bootstrap, args.rows)
    system = await system_latency(bootstrap, data_dir, args.rate, args.seconds, args.handler_ms)
    relay_rate = await relay_throughput(bootstrap, data_dir, args.rows)
    steady = f"{args.rate:g} events/s for {args.seconds:g} s, {KEYS} keys"
    print(f"commit → applied ({steady}, handler {args.handler_ms:g} ms):")
    print(f"  system (outbox, relay, EventConsumer)  {system.summary()}")
    print(f"  floor  (bare produce → consume)        {floor.summary()}")
    ratio_p50 = percentile(sorted(system.values_ms()), 50) / percentile(
        sorted(floor.values_ms()), 50
    )
    print(f"  system p50 / floor p50: {ratio_p50:.1f}")
    print(f"relay throughput ({args.rows} rows waiting in the outbox):")
    print(f"  system (OutboxRelay until all marked)  {relay_rate:8.0f} events/s")
    print(f"  floor  (bare produce, acks=all)        {floor_rate:8.0f} events/s")
    print(f"  system / floor: {relay_rate / floor_rate:.3f}")
    print(f"load average at end: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s the writer commits")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rows", type=int, default=5000, help="rows waiting for the relay")
    parser.add_argument("--handler-ms", type=float, default=0.0, help="work per applied event")
    args = parser.parse_args()
    configure_logging("WARNING", False)
    with tempfile.TemporaryDirectory() as tmp:
        with tansu_broker(Path(tmp) / "logs") as bootstrap:
            asyncio.run(bench(args, bootstrap, Path(tmp)))


if __name__ == "__main__":
    from services.common.process import run_and_exit

    run_and_exit(main)
