"""An event its consumer cannot apply is retried a bounded number of times, then parked on the
topic's dead-letter topic with the error; once the cause is fixed, `grantflow ops redrive` sends
it back and it is applied. Real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
import uuid

from grantflow.v1 import events_pb2
from services.common import kafka
from services.common.config import Settings


async def one_event_on_a_fresh_topic(
    kafka_bootstrap: str,
) -> tuple[Settings, str, events_pb2.EventEnvelope]:
    """Settings with topics of their own on the shared broker, and one event published."""
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        kafka_embedded_broker_recovery=True,
    )
    source = kafka.topic(settings, kafka.APPLICATIONS)
    await kafka.ensure_topics(settings)
    envelope = kafka.make_envelope(
        "test", "app-1", events_pb2.ApplicationWithdrawn(application_id="app-1", reason="test")
    )
    producer = kafka.Producer(settings)
    await producer.start()
    await producer.send(kafka.Outgoing(source, envelope.SerializeToString(), b"app-1"))
    await producer.close()
    return settings, source, envelope


async def test_failing_event_is_dead_lettered_then_redriven(kafka_bootstrap: str) -> None:
    settings, source, envelope = await one_event_on_a_fresh_topic(kafka_bootstrap)

    broken = True
    applied: list[str] = []

    async def handler(event: events_pb2.EventEnvelope) -> None:
        if broken:
            raise RuntimeError("projection table is locked")
        applied.append(event.event_id)

    consumer = kafka.EventConsumer(settings, "dlq-test", [source], handler, max_attempts=2)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        for _ in range(200):
            if consumer.dead_lettered:
                break
            await asyncio.sleep(0.1)
        assert consumer.dead_lettered == 1
        assert applied == []

        broken = False
        moved = await kafka.redrive(settings, source, timeout_s=2.0)
        assert moved == 1
        for _ in range(200):
            if applied:
                break
            await asyncio.sleep(0.1)
        assert applied == [envelope.event_id]
        # Re-driving again finds nothing: the dead letter was consumed once.
        assert await kafka.redrive(settings, source, timeout_s=1.0) == 0
    finally:
        stop.set()
        await running


async def test_an_outage_is_waited_out_not_dead_lettered(kafka_bootstrap: str) -> None:
    settings, source, _ = await one_event_on_a_fresh_topic(kafka_bootstrap)

    calls: list[str] = []

    async def handler(event: events_pb2.EventEnvelope) -> None:
        calls.append(event.event_id)
        if len(calls) <= 4:  # more failures than max_attempts allows for a bad event
            raise ConnectionError("temporal frontend restarting")

    consumer = kafka.EventConsumer(settings, "outage-test", [source], handler, max_attempts=2)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        for _ in range(300):
            if consumer.applied:
                break
            await asyncio.sleep(0.1)
        assert consumer.applied == 1
        assert consumer.dead_lettered == 0
        assert len(calls) == 5
    finally:
        stop.set()
        await running
