"""Units of work: how a service's use cases change their database and announce the change.

A `UnitOfWork` is one transaction of one service's database. A use case reads and writes through
its session and `announce`s the events the change means; `commit` puts those events in the outbox
and commits them with the change, so a change is never announced without being made, nor made
without being announced (the transactional outbox; the relay publishes later).

`Transactions` runs units of work off the event loop, in the database's writer or reader threads:
`write` in a writing transaction, `read` in a reading one that never waits for a writer (db.py). A unit that inserts a key a concurrent call
inserted first fails on commit with a duplicate key; `write` then runs it once more, so it sees
that row and answers as the other call did. Every writing unit must therefore look for its row
before inserting it.

A use case also records the consequential acts it makes (`audit`: who decided, approved, paid
what, and why): the records join the service's hash-chained audit trail in the same commit
(services/common/audit.py).

Event ids are derived from the business event (`EventSource.event_id`): the outbox's unique
event id is then a second guard against announcing one change twice, and consumers, which record
the ids they applied, recognise a redelivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from grantflow.v1 import events_pb2
from services.common import audit
from services.common.auth import Principal
from services.common.db import Database
from services.common.kafka import make_envelope
from services.common.outbox import OutboxEvent, enqueue

T = TypeVar("T")


@dataclass(frozen=True)
class EventSource:
    """Where a service's events come from and go to."""

    name: str  # the envelope's source, e.g. "disbursement"
    topic: str  # the Kafka topic the outbox relay publishes them to
    namespace: uuid.UUID  # the service's own namespace of derived event ids

    def event_id(self, payload: Message, key: str) -> str:
        """The id of the event of this type about this business key, the same on every retry."""
        return str(uuid.uuid5(self.namespace, f"{payload.DESCRIPTOR.full_name}:{key}"))


class UnitOfWork:
    """One transaction: the session and the events that commit with it."""

    def __init__(
        self, session: Session, source: EventSource | None, service: str | None = None
    ) -> None:
        self.session = session
        self._source = source
        self._events: list[events_pb2.EventEnvelope] = []
        # The audit chain's owner: the service named, else the events' source.
        self._service = service or (source.name if source is not None else None)
        self._audits: list[audit.PendingRecord] = []

    def announce(
        self,
        subject: str,
        payload: Message,
        *,
        key: str,
        occurred_at: datetime | None = None,
    ) -> events_pb2.EventEnvelope:
        """Announces payload about subject (the partition key: one grant's events stay in order)
        when this unit commits; key names the business event its id is derived from."""
        return self.announce_as(
            subject, payload, event_id=self._events_source().event_id(payload, key), at=occurred_at
        )

    def announce_as(
        self, subject: str, payload: Message, *, event_id: str, at: datetime | None = None
    ) -> events_pb2.EventEnvelope:
        """Like announce, with an event id the caller chose (a workflow's report carries its own)."""
        envelope = make_envelope(
            self._events_source().name, subject, payload, event_id=event_id, occurred_at=at
        )
        self._events.append(envelope)
        return envelope

    def announced(self, event_id: str) -> bool:
        """Whether an event with this id is in the outbox already, or waits to go there."""
        if any(envelope.event_id == event_id for envelope in self._events):
            return True
        query = select(OutboxEvent.id).where(OutboxEvent.event_id == event_id)
        return self.session.exec(query).first() is not None

    def audit(
        self,
        action: str,
        subject: str,
        actor: Principal | None = None,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
    ) -> None:
        """Records `action` about `subject` (an application, plan or program) in the service's
        audit trail when this unit commits. actor defaults to the caller of the RPC being served;
        key names the act so that a retried call records it once."""
        self._audits.append(audit.pending(action, subject, actor, reason, details, key=key))

    def commit(self) -> None:
        if self._events:
            topic = self._events_source().topic
            for envelope in self._events:
                enqueue(self.session, topic, envelope)
        if self._audits:
            # Last, so that the chain head's lock is held only for the commit itself.
            audit.append(self.session, self.service_name(), self._audits)
        self.session.commit()
        self._events.clear()
        self._audits.clear()

    def service_name(self) -> str:
        """The service whose audit trail this unit extends."""
        if self._service is None:
            raise RuntimeError("this unit of work names no service whose audit trail to extend")
        return self._service

    def _events_source(self) -> EventSource:
        if self._source is None:
            raise RuntimeError("this unit of work has no event source to announce from")
        return self._source


class Transactions:
    """A service's database seen by its use cases: units of work run in worker threads."""

    def __init__(
        self, database: Database, source: EventSource | None = None, *, service: str | None = None
    ) -> None:
        self.database = database
        self.source = source
        self.service = service  # whose audit trail; default the source's name

    def write_now(self, work: Callable[[UnitOfWork], T]) -> T:
        """Runs work in one writing transaction in this thread; commits it with its events and
        audit records."""
        with self.database.session() as session:
            unit = UnitOfWork(session, self.source, self.service)
            result = work(unit)
            unit.commit()
            return result

    def read_now(self, work: Callable[[Session], T]) -> T:
        return self.database.read(work)

    async def write(self, work: Callable[[UnitOfWork], T]) -> T:
        try:
            return await self.database.writing(self.write_now, work)
        except IntegrityError:
            # A concurrent call inserted the same key first (same request id, application,
            # journal or event); running again finds that row and answers as that call did.
            return await self.database.writing(self.write_now, work)

    async def read(self, work: Callable[[Session], T]) -> T:
        return await self.database.reading(self.read_now, work)
