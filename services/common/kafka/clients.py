"""The kafka-python clients behind Grantflow's Kafka adapter, each on a thread of its own.

kafka-python is blocking, and its consumer is not thread-safe. So every client here lives on one
daemon thread of ours: a `ClientThread` that runs calls in order and hands each result back to the
asyncio loop that asked (`loop.call_soon_threadsafe`), or, for a consumer-group member, a thread
running its own poll loop that hands each batch to the loop (`asyncio.run_coroutine_threadsafe`).
The rest of Grantflow awaits; it never blocks on the broker and never sees kafka-python's types
(records come out as `Record`). This is the only module in Grantflow that imports kafka-python.

Closing is bounded: a client that cannot finish (a broker gone mid-request) is left to its daemon
thread, which cannot hold up the process's exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.errors import CommitFailedError, TopicAlreadyExistsError, for_code
from kafka.structs import MemberState

from services.common.config import Settings
from services.common.kafka.topics import (
    PARTITIONS,
    all_topics,
    consumer_group,
    dead_letter_topic,
    incarnation_topic,
    owned_group,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

THREAD_PREFIX = "grantflow-kafka"
REQUEST_TIMEOUT_MS = 10_000
# A client made while the broker is down fails after this instead of blocking its thread for long.
BOOTSTRAP_TIMEOUT_MS = 5_000
FLUSH_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 2.0
POLL_TIMEOUT_MS = 250
KEEP_ALIVE_S = 0.1
JOIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Record:
    """A record read from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Outgoing:
    """A record to publish."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Delivery:
    """Where the broker stored a published record."""

    partition: int
    offset: int


# Threads ------------------------------------------------------------------------------------------


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Completes an asyncio future from any thread (nothing happens if nobody waits any more)."""

    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        future.get_loop().call_soon_threadsafe(settle)
    except RuntimeError:  # the loop has closed
        pass


async def _joined(thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while thread.is_alive():
        if time.monotonic() > deadline:
            log.warning(
                "kafka client thread still busy; left to end on its own", thread=thread.name
            )
            return
        await asyncio.sleep(0.01)


class ClientThread:
    """One daemon thread that runs blocking calls in order; `call` awaits a call's result."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(
            target=self._serve, name=f"{THREAD_PREFIX}-{name}", daemon=True
        )
        self._thread.start()

    async def call(self, work: Callable[[], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((work, future))
        return await future

    async def stop(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Ends the thread once the calls already queued have run (waits at most timeout)."""
        self._calls.put(None)
        await _joined(self._thread, timeout)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            work, future = item
            if future.done():  # the caller gave up before the call started
                continue
            try:
                result = work()
            except BaseException as exc:
                _settle(future, None, exc)
            else:
                _settle(future, result, None)


async def in_own_thread(name: str, work: Callable[[], T]) -> T:
    """Runs one blocking piece of work on a thread made for it."""
    thread = ClientThread(name)
    try:
        return await thread.call(work)
    finally:
        await thread.stop()


# Configuration ------------------------------------------------------------------------------------


def _common(settings: Settings, role: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "client_id": f"grantflow-{role}",
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
    }


def _producer(settings: Settings, role: str) -> KafkaProducer:
    return KafkaProducer(
        **_common(settings, role),
        acks="all",
        linger_ms=2,
        # One request in flight per connection keeps each partition in publishing order across
        # retries without the idempotent producer, whose broker-side state an in-memory broker
        # forgets when it restarts. Duplicates are possible, as always: consumers are idempotent.
        enable_idempotence=False,
        max_in_flight_requests_per_connection=1,
        delivery_timeout_ms=15_000,
        max_block_ms=5_000,
        # Topics are made by ensure_topics with their partition count, never on first use.
        allow_auto_create_topics=False,
        metrics_enabled=False,
    )


def _reader(settings: Settings, role: str) -> KafkaConsumer:
    """A consumer without a group, for reading partitions it is assigned."""
    return KafkaConsumer(
        **_common(settings, role),
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        allow_auto_create_topics=False,
        metrics_enabled=False,
    )


def _group_member(settings: Settings, group_id: str, topics: Sequence[str]) -> KafkaConsumer:
    return KafkaConsumer(
        *topics,
        **_common(settings, f"consumer-{group_id}"),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        # kafka-python sends the poll interval as the group's rebalance timeout. A member keeps
        # polling (paused) while its batch is applied, so a short one is safe and keeps
        # rebalances on Tansu short.
        max_poll_interval_ms=settings.kafka_rebalance_timeout_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        metadata_max_age_ms=5000,
        allow_auto_create_topics=False,
        metrics_enabled=False,
    )


def _records(batches: dict[Any, list[Any]]) -> list[Record]:
    return [
        Record(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            key=r.key,
            value=r.value,
            headers=tuple((name, bytes(value)) for name, value in (r.headers or ())),
        )
        for records in batches.values()
        for r in records
    ]


def _high_watermarks(
    consumer: KafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The high watermarks of partitions, as fetch responses report them. Tansu answers a
    ListOffsets request for the latest offset with the base offset of the partition's last batch
    plus one, short of the end when that batch holds several records; so we fetch from there and
    take the high watermark of the response."""
    consumer.assign([])  # forget what earlier fetches reported
    consumer.assign(partitions)
    listed = consumer.end_offsets(partitions, timeout_ms=REQUEST_TIMEOUT_MS)
    for tp in partitions:
        consumer.seek(tp, max(listed[tp] - 1, 0))
    deadline = time.monotonic() + REQUEST_TIMEOUT_MS / 1000
    while any(consumer.highwater(tp) is None for tp in partitions):
        if time.monotonic() > deadline:
            raise TimeoutError("no fetch response told the partitions' high watermarks")
        consumer.poll(timeout_ms=100)
    return {tp: int(consumer.highwater(tp)) for tp in partitions}


def _caught_up(consumer: KafkaConsumer, partitions: list[TopicPartition]) -> bool:
    """Whether every partition was read to its high watermark (as the last fetch reported it)."""
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or consumer.position(tp) < highwater:
            return False
    return True


def _send_all(client: KafkaProducer, records: Iterable[Outgoing]) -> list[Delivery]:
    futures = [
        client.send(r.topic, value=r.value, key=r.key, headers=list(r.headers) or None)
        for r in records
    ]
    client.flush(timeout=FLUSH_TIMEOUT_S)
    deliveries = []
    for future in futures:
        metadata = future.get(timeout=0)  # raises the send's error
        deliveries.append(Delivery(metadata.partition, metadata.offset))
    return deliveries


# Producer -----------------------------------------------------------------------------------------


class Producer:
    """Publishes with acks=all from a thread of its own."""

    def __init__(self, settings: Settings, role: str = "producer") -> None:
        self.settings = settings
        self.role = role
        self._thread: ClientThread | None = None
        self._client: KafkaProducer | None = None

    async def start(self) -> None:
        self._thread = ClientThread(self.role)
        self._client = await self._thread.call(lambda: _producer(self.settings, self.role))

    async def send_batch(self, records: Sequence[Outgoing]) -> list[Delivery]:
        """Sends every record, then waits for all acknowledgements with one flush."""
        if self._thread is None or self._client is None:
            raise RuntimeError("producer not started")
        client = self._client
        return await self._thread.call(lambda: _send_all(client, records))

    async def send(self, record: Outgoing) -> Delivery:
        [delivery] = await self.send_batch([record])
        return delivery

    async def close(self) -> None:
        client, thread = self._client, self._thread
        self._client = self._thread = None
        if client is not None:
            # Closed from a thread of its own: that also ends a flush the client's thread may be
            # blocked in, against a broker that went away.
            try:
                await asyncio.wait_for(
                    in_own_thread(f"{self.role}-close", lambda: client.close(timeout=1.0)),
                    timeout=CLOSE_TIMEOUT_S + 1.0,
                )
            except Exception as exc:  # a client of a lost broker: nothing more to save
                log.info("kafka producer closed uncleanly", error=repr(exc))
        if thread is not None:
            await thread.stop()


# Topic administration and broker checks -----------------------------------------------------------


class BrokerAdmin:
    """Topic administration, the broker-incarnation marker and end offsets, from one thread.

    Its clients are made on first use and dropped after a failure, so the next call reconnects
    (to a broker that restarted, for instance)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._thread = ClientThread("admin")
        self._admin: KafkaAdminClient | None = None
        self._reader: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None

    async def ensure_topics(self, names: Sequence[str], partitions: int = PARTITIONS) -> None:
        await self._call(lambda: self._ensure_topics(names, partitions))

    async def incarnation(self) -> str:
        """The id of the broker's current log: the first record of a one-partition marker topic,
        written by whichever Grantflow process finds it empty. A broker that lost its data (Tansu
        keeps everything in memory) has a new id."""
        return await self._call(self._incarnation)

    async def end_offsets(
        self, partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """The offset after the last record of each partition (its high watermark)."""
        wanted = [TopicPartition(t, p) for t, p in partitions]
        ends = await self._call(lambda: _high_watermarks(self._reader_client(), wanted))
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._thread.call(self._drop_clients), CLOSE_TIMEOUT_S)
        except Exception as exc:  # a client of a lost broker: nothing more to save
            log.info("kafka admin closed uncleanly", error=repr(exc))
        await self._thread.stop()

    async def _call(self, work: Callable[[], T]) -> T:
        try:
            return await self._thread.call(work)
        except Exception:
            await self._thread.call(self._drop_clients)
            raise

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(**_common(self.settings, "admin"))
        return self._admin

    def _reader_client(self) -> KafkaConsumer:
        if self._reader is None:
            self._reader = _reader(self.settings, "admin-reader")
        return self._reader

    def _producer_client(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = _producer(self.settings, "admin-producer")
        return self._producer

    def _drop_clients(self) -> None:
        admin, reader, producer = self._admin, self._reader, self._producer
        self._admin = self._reader = self._producer = None
        for close in (
            admin.close if admin else None,
            (lambda: reader.close(autocommit=False, timeout_ms=1000)) if reader else None,
            (lambda: producer.close(timeout=1.0)) if producer else None,
        ):
            if close is None:
                continue
            try:
                close()
            except Exception as exc:
                log.info("kafka client closed uncleanly", error=repr(exc))

    def _ensure_topics(self, names: Sequence[str], partitions: int) -> None:
        admin = self._admin_client()
        existing = set(admin.list_topics())
        wanted = [name for name in names if name not in existing]
        if not wanted:
            return
        result = admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1} for name in wanted},
            raise_errors=False,
        )
        for created in result["topics"]:
            code = created["error_code"]
            if code and for_code(code) is not TopicAlreadyExistsError:  # a race we lost is fine
                raise for_code(code)(f"creating topic {created['name']}")

    def _incarnation(self) -> str:
        name = incarnation_topic(self.settings)
        self._ensure_topics([name], 1)
        marker = TopicPartition(name, 0)
        reader = self._reader_client()
        reader.assign([marker])
        deadline = time.monotonic() + REQUEST_TIMEOUT_MS / 1000
        proposed = False
        while time.monotonic() < deadline:
            end = reader.end_offsets([marker], timeout_ms=REQUEST_TIMEOUT_MS)[marker]
            if end == 0:
                if not proposed:
                    # Empty: propose an id; whoever's record lands first at offset 0 wins.
                    self._producer_client().send(name, uuid.uuid4().hex.encode()).get(
                        timeout=REQUEST_TIMEOUT_MS / 1000
                    )
                    proposed = True
                time.sleep(0.05)
                continue
            reader.seek(marker, 0)
            for record in reader.poll(timeout_ms=500).get(marker, []):
                return bytes(record.value).decode()
        raise RuntimeError(f"could not read {name}")


async def ensure_topics(settings: Settings, names: Sequence[str] | None = None) -> None:
    """Creates whichever of Grantflow's topics (or `names`) the broker does not have."""
    admin = BrokerAdmin(settings)
    try:
        await admin.ensure_topics(list(names) if names is not None else all_topics(settings))
    finally:
        await admin.close()


async def broker_incarnation(settings: Settings) -> str:
    admin = BrokerAdmin(settings)
    try:
        return await admin.incarnation()
    finally:
        await admin.close()


# Lag and sizes for operators ----------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionLag:
    """How far a consumer group is behind on one partition."""

    topic: str
    partition: int
    committed: int  # the group's committed offset: the next record it will read
    end: int  # the partition's high watermark

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


async def consumer_lag(
    settings: Settings, groups: Sequence[str] | None = None
) -> dict[str, list[PartitionLag]]:
    """Each consumer group's lag per partition it committed (every group of this deployment the
    broker lists, or the ones named), by the consumer's name. End offsets come from fetch responses (`_high_watermarks`), as Tansu's
    answer to a ListOffsets for the latest offset falls short."""
    return await in_own_thread("lag", lambda: _consumer_lag(settings, groups))


def _consumer_lag(
    settings: Settings, groups: Sequence[str] | None
) -> dict[str, list[PartitionLag]]:
    admin = KafkaAdminClient(**_common(settings, "ops-admin"))
    reader = _reader(settings, "ops-reader")
    try:
        # The deployment's own groups, by their consumers' names; another deployment sharing the
        # broker has groups of its own prefix.
        if groups is not None:
            names = {name: consumer_group(settings, name) for name in groups}
        else:
            listed = (str(group["group_id"]) for group in admin.list_groups())
            names = {
                short: full
                for full in sorted(listed)
                if (short := owned_group(settings, full)) is not None
            }
        committed: dict[str, dict[TopicPartition, int]] = {}
        for name, full in names.items():
            offsets = admin.list_group_offsets(full).get(full, {})
            committed[name] = {tp: at.offset for tp, at in offsets.items() if at.offset >= 0}
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        ends = _high_watermarks(reader, partitions) if partitions else {}
        return {
            name: [
                PartitionLag(tp.topic, tp.partition, offset, ends[tp])
                for tp, offset in sorted(offsets.items())
            ]
            for name, offsets in committed.items()
        }
    finally:
        admin.close()
        reader.close(autocommit=False, timeout_ms=1000)


async def record_counts(settings: Settings, topics: Sequence[str]) -> dict[str, int]:
    """How many records each topic holds (0 for one that does not exist), from the log start
    offsets and the fetch responses' high watermarks."""
    return await in_own_thread("counts", lambda: _record_counts(settings, topics))


def _record_counts(settings: Settings, topics: Sequence[str]) -> dict[str, int]:
    reader = _reader(settings, "ops-counter")
    try:
        partitions = [
            TopicPartition(name, p)
            for name in topics
            for p in sorted(reader.partitions_for_topic(name) or ())
        ]
        counts = dict.fromkeys(topics, 0)
        if not partitions:
            return counts
        starts = reader.beginning_offsets(partitions, timeout_ms=REQUEST_TIMEOUT_MS)
        for tp, end in _high_watermarks(reader, partitions).items():
            counts[tp.topic] += max(end - starts[tp], 0)
        return counts
    finally:
        reader.close(autocommit=False, timeout_ms=1000)


# Reading without a group --------------------------------------------------------------------------


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[Record]], bool] | None = None,
    limit: int | None = None,
    timeout_s: float = 5.0,
) -> list[Record]:
    """The records of `topic` from its beginning, read without a consumer group.

    Without `until`: the records up to the end of every partition (at most `limit`; none if the
    topic does not exist). With `until`: reads on, waiting for the topic to appear and for new
    records, until `until(records read so far)` holds. Either way returns what it read by
    `timeout_s`. `until` runs on the reader's thread, so it should only look at the records.
    """
    return await in_own_thread(
        "reader", lambda: _read_topic(settings, topic, until, limit, timeout_s)
    )


def _read_topic(
    settings: Settings,
    topic: str,
    until: Callable[[list[Record]], bool] | None,
    limit: int | None,
    timeout_s: float,
) -> list[Record]:
    deadline = time.monotonic() + timeout_s
    records: list[Record] = []
    consumer = _reader(settings, "reader")
    try:
        partitions: list[TopicPartition] = []
        while not partitions:
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))
            ]
            if not partitions:
                if until is None or time.monotonic() > deadline:
                    return []
                time.sleep(0.2)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        while time.monotonic() < deadline:
            if limit is not None and len(records) >= limit:
                break
            if until is not None and until(records):
                break
            if until is None and _caught_up(consumer, partitions):
                break
            records.extend(_records(consumer.poll(timeout_ms=200)))
    finally:
        consumer.close(autocommit=False, timeout_ms=1000)
    return records[:limit] if limit is not None else records


# Re-driving dead letters --------------------------------------------------------------------------


async def redrive(settings: Settings, source_topic: str, timeout_s: float = 5.0) -> int:
    """Sends every dead-lettered record of source_topic back to it; returns how many. Stops when
    nothing new arrived for timeout_s (counted once the redrive group has its partitions)."""
    return await in_own_thread("redrive", lambda: _redrive(settings, source_topic, timeout_s))


def _redrive(settings: Settings, source_topic: str, idle_s: float) -> int:
    group = f"{settings.kafka_topic_prefix}-redrive"
    consumer = _group_member(settings, group, [dead_letter_topic(source_topic)])
    producer = _producer(settings, "redrive")
    moved = 0
    try:
        join_deadline = time.monotonic() + JOIN_TIMEOUT_S
        idle_deadline: float | None = None
        while True:
            records = _records(consumer.poll(timeout_ms=POLL_TIMEOUT_MS))
            now = time.monotonic()
            if records:
                _send_all(producer, [Outgoing(source_topic, r.value, r.key) for r in records])
                consumer.commit(_next_offsets(records))
                moved += len(records)
                idle_deadline = now + idle_s
            elif consumer.assignment():
                idle_deadline = idle_deadline or now + idle_s
                if now >= idle_deadline:
                    return moved
            elif now > join_deadline:
                raise TimeoutError(f"the redrive group {group} got no partitions")
    finally:
        _leave(consumer, settings)
        producer.close(timeout=1.0)


def _leave(consumer: KafkaConsumer, settings: Settings) -> None:
    """Closes a group member, first letting a join under way finish. Tansu keeps a member that
    leaves in the middle of a join as the leader of the group's next generation, and nobody can
    join that group afterwards; a member that leaves once it has joined leaves cleanly."""
    deadline = time.monotonic() + settings.kafka_rebalance_timeout_ms / 1000 + 1.0
    while (
        consumer.group_metadata().state is MemberState.REBALANCING and time.monotonic() < deadline
    ):
        consumer.pause(*consumer.assignment())
        consumer.poll(timeout_ms=100)  # records it may return are not committed: they come again
    consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))


def _next_offsets(records: Iterable[Record]) -> dict[TopicPartition, OffsetAndMetadata]:
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, -1), r.offset + 1)
    return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}


# A consumer-group member --------------------------------------------------------------------------


class _Rewind(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks the first partitions assigned to the beginning (after the broker lost its log)."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self.pending = True

    def on_partitions_revoked(self, revoked: object) -> None:
        return None

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.pending and assigned:
            self.consumer.seek_to_beginning(*assigned)
            self.pending = False


class GroupMember:
    """A consumer-group member on a thread of its own.

    The thread polls a batch and hands it to `apply` on the asyncio loop. While the batch is
    applied it keeps polling with fetching paused, so the group does not count it as gone, and it
    commits the batch's offsets only after `apply` returned: every record of the batch was
    applied or dead-lettered. A batch that fails or is cut short by stopping is not committed and
    is delivered again.
    """

    def __init__(
        self,
        settings: Settings,
        group_id: str,
        topics: Sequence[str],
        apply: Callable[[list[Record]], Awaitable[None]],
        *,
        rewind: bool = False,
        max_records: int = 200,
        observe_lag: Callable[[dict[tuple[str, int], int]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        # Told, on the member's thread after polls, how far each assigned partition lags.
        self.observe_lag = observe_lag
        self._lag_seen = 0.0
        self.topics = list(topics)
        self.apply = apply
        self.rewind = rewind
        self.max_records = max_records
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._thread: threading.Thread | None = None

    def start(self) -> asyncio.Future[None]:
        """Starts the thread; the future completes when it ends (with its error, if any)."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._run,
            args=(loop, ended),
            name=f"{THREAD_PREFIX}-member-{self.group_id}",
            daemon=True,
        )
        self._thread.start()
        return ended

    async def stop(self, grace_s: float = 1.0) -> None:
        """Leaves the group. A batch being applied gets grace_s to finish and be committed."""
        self._stop_deadline = time.monotonic() + grace_s
        self._stopping.set()
        if self._thread is not None:
            joining = self.settings.kafka_rebalance_timeout_ms / 1000 + 1.0
            await _joined(self._thread, grace_s + joining + CLOSE_TIMEOUT_S + 1.0)

    def _run(self, loop: asyncio.AbstractEventLoop, ended: asyncio.Future[None]) -> None:
        error: BaseException | None = None
        try:
            consumer = _group_member(self.settings, self.group_id, [])
            try:
                if self.rewind:
                    consumer.subscribe(self.topics, listener=_Rewind(consumer))
                else:
                    consumer.subscribe(self.topics)
                self._consume(consumer, loop)
            finally:
                _leave(consumer, self.settings)
        except BaseException as exc:
            error = exc
        _settle(ended, None, error)

    def _consume(self, consumer: KafkaConsumer, loop: asyncio.AbstractEventLoop) -> None:
        carried: list[Record] = []
        while not self._stopping.is_set():
            batch = carried or _records(
                consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=self.max_records)
            )
            carried = []
            self._report_lag(consumer, bool(batch))
            if not batch:
                continue
            applying = asyncio.run_coroutine_threadsafe(_awaited(self.apply(batch)), loop)
            try:
                while not concurrent.futures.wait([applying], timeout=KEEP_ALIVE_S).done:
                    if self._stopping.is_set() and time.monotonic() > self._stop_deadline:
                        applying.cancel()
                        return
                    # Paused partitions fetch nothing; the poll tells the group we are alive.
                    # Records of partitions assigned meanwhile come into the next batch.
                    consumer.pause(*consumer.assignment())
                    carried += _records(consumer.poll(timeout_ms=0))
            finally:
                consumer.resume(*consumer.paused())
            applying.result()  # raises what stopped the batch: nothing is committed
            self._commit(consumer, batch)

    def _report_lag(self, consumer: KafkaConsumer, polled: bool) -> None:
        """Records behind each partition's high watermark (as the last fetch reported it) from
        the position polled to; at most once a second while the polls come back empty."""
        now = time.monotonic()
        if self.observe_lag is None or (not polled and now - self._lag_seen < 1.0):
            return
        self._lag_seen = now
        lags: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None:  # fetched at least once, so its position is known
                lags[(tp.topic, tp.partition)] = max(int(highwater) - consumer.position(tp), 0)
        self.observe_lag(lags)

    def _commit(self, consumer: KafkaConsumer, batch: list[Record]) -> None:
        assigned = consumer.assignment()
        offsets = {tp: at for tp, at in _next_offsets(batch).items() if tp in assigned}
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced while the batch was applied; whoever has the partitions now
            # reads these events again (handlers are idempotent).
            log.warning("batch applied but not committed", group=self.group_id, error=repr(exc))


async def _awaited(work: Awaitable[None]) -> None:
    await work
