"""The audit trail every service keeps in its own database: a hash chain of records, one per
consequential act (a decision, an approval, a payment, a budget change, a repair).

Each record carries a strictly increasing `sequence` (1, 2, 3, ... without gaps), the hash of its
predecessor (`previous_hash`, GENESIS_HASH for the first) and its own `hash`: sha256 over a
canonical JSON of all its fields, previous hash included. Editing a record breaks its hash,
deleting one leaves a gap, inserting or reordering breaks a previous_hash; `verify` walks the
chain and reports the first break. A one-row chain head (`audit_chain_head`) holds the newest
sequence and hash, so a truncated tail is found too, and its hash is what an operator writes
down to anchor the chain.

Records are appended by the unit of work of the change they record, in the same transaction
(`UnitOfWork.audit`, services/common/unit_of_work.py): the change and its record commit together
or not at all. Appends are serialised per service by the chain head's row lock (SELECT ... FOR
UPDATE on PostgreSQL; on SQLite every writing transaction holds the database's write lock from
its start), taken as the last step before commit so that it is held briefly and always after
the use case's own locks: two appends never fork the chain, and never deadlock.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, Session, SQLModel, col, select

from services.common.auth import Principal, current_principal
from services.common.db import now_utc
from services.common.validation import cut
from services.common.vocabulary import AuditBreak, Role

GENESIS_HASH = "0" * 64
HEAD_ID = 1
MAX_REASON = 2000
MAX_REQUEST_ID = 128
# Who acts when a use case runs outside any RPC (a test, a script): Grantflow itself.
SYSTEM_ACTOR = Principal(subject="grantflow", role=Role.SYSTEM)
VERIFY_BATCH = 1000


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_record"

    sequence: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    request_id: str = Field(max_length=MAX_REQUEST_ID, unique=True)
    service: str = Field(max_length=32)
    action: str = Field(max_length=100)
    subject: str = Field(max_length=128, index=True)
    actor: str = Field(max_length=128)
    actor_role: str = Field(max_length=16)
    reason: str = Field(max_length=MAX_REASON)
    details_json: str = Field(sa_column=Column(Text, nullable=False))
    recorded_at: datetime
    previous_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)

    def canonical(self) -> str:
        """What the hash covers: every field, in one spelling whatever the database returns."""
        return canonical_json(
            {
                "sequence": self.sequence,
                "request_id": self.request_id,
                "service": self.service,
                "action": self.action,
                "subject": self.subject,
                "actor": self.actor,
                "actor_role": self.actor_role,
                "reason": self.reason,
                "details_json": self.details_json,
                "recorded_at": utc_text(self.recorded_at),
                "previous_hash": self.previous_hash,
            }
        )

    def computed_hash(self) -> str:
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()


class AuditChainHead(SQLModel, table=True):
    """The newest record of the chain (one row, id 1; sequence 0 and GENESIS_HASH when empty)."""

    __tablename__ = "audit_chain_head"

    id: int = Field(primary_key=True)
    sequence: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)


@dataclass(frozen=True)
class PendingRecord:
    """A record a unit of work appends when it commits."""

    request_id: str
    action: str
    subject: str
    actor: str
    actor_role: str
    reason: str
    details_json: str
    keyed: bool  # the request id is derived from the act: skip it if it is already recorded


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def utc_text(value: datetime) -> str:
    """A stored time as UTC text with microseconds (SQLite hands back naive UTC datetimes,
    PostgreSQL aware ones in the session's zone)."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat(timespec="microseconds")


def pending(
    action: str,
    subject: str,
    actor: Principal | None = None,
    reason: str = "",
    details: Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
    request_id: str | None = None,
) -> PendingRecord:
    """A record of `action` about `subject` by `actor` (default: the caller of the RPC being
    served, or Grantflow itself outside one). `key` names the act (like an event's key), so
    recording it again, from a retried call, is a no-op; `request_id` is a client's own id."""
    if actor is None:
        try:
            actor = current_principal()
        except LookupError:
            actor = SYSTEM_ACTOR
    if request_id is None:
        request_id = _derived_request_id(action, key) if key is not None else uuid.uuid4().hex
    return PendingRecord(
        request_id=request_id,
        action=action,
        subject=subject,
        actor=actor.subject,
        actor_role=str(actor.role),
        reason=cut(reason, MAX_REASON),
        details_json=canonical_json(dict(details or {})),
        keyed=key is not None,
    )


def _derived_request_id(action: str, key: str) -> str:
    request_id = f"{action}:{key}"
    if len(request_id) > MAX_REQUEST_ID:
        request_id = f"{action}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"
    return request_id


def record_by_request(session: Session, request_id: str) -> AuditRecord | None:
    query = select(AuditRecord).where(col(AuditRecord.request_id) == request_id)
    return session.exec(query).first()


def lock_head(session: Session) -> AuditChainHead:
    """The chain head, locked until the transaction ends (created if the table is empty)."""
    query = (
        select(AuditChainHead)
        .where(col(AuditChainHead.id) == HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    head = session.exec(query).first()
    if head is None:
        # Migrations create it; a concurrent creation fails on the primary key and is retried.
        head = AuditChainHead(id=HEAD_ID, sequence=0, hash=GENESIS_HASH)
        session.add(head)
        session.flush()
    return head


def append(session: Session, service: str, records: Iterable[PendingRecord]) -> list[AuditRecord]:
    """Appends records to the service's chain in the caller's transaction, under the head's lock.
    A keyed record already in the chain is not appended again; it is answered instead."""
    head = lock_head(session)
    appended: list[AuditRecord] = []
    for item in records:
        if item.keyed:
            existing = record_by_request(session, item.request_id)
            if existing is not None:
                appended.append(existing)
                continue
        row = AuditRecord(
            sequence=head.sequence + 1,
            request_id=item.request_id,
            service=service,
            action=item.action,
            subject=item.subject,
            actor=item.actor,
            actor_role=item.actor_role,
            reason=item.reason,
            details_json=item.details_json,
            recorded_at=now_utc(),
            previous_hash=head.hash,
            hash="",
        )
        row.hash = row.computed_hash()
        session.add(row)
        head.sequence, head.hash = row.sequence, row.hash
        appended.append(row)
    session.add(head)
    return appended


def records_about(
    session: Session, subject: str, *, after: int = 0, limit: int = 100
) -> list[AuditRecord]:
    """Records about subject ("" for all), oldest first, after the given sequence."""
    query = select(AuditRecord).where(col(AuditRecord.sequence) > after)
    if subject:
        query = query.where(col(AuditRecord.subject) == subject)
    return list(session.exec(query.order_by(col(AuditRecord.sequence)).limit(limit)).all())


@dataclass(frozen=True)
class ChainBreak:
    sequence: int
    kind: AuditBreak
    detail: str


@dataclass(frozen=True)
class ChainReport:
    service: str
    records_checked: int
    last_sequence: int
    last_hash: str
    first_break: ChainBreak | None = None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def verify(session: Session, service: str) -> ChainReport:
    """Walks the chain from its first record to its head; the first broken link, if any.

    On PostgreSQL the walk reads one snapshot (REPEATABLE READ), so records appended meanwhile
    are neither half-seen nor taken for insertions; on SQLite a reading transaction is one
    snapshot already.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    head = session.get(AuditChainHead, HEAD_ID)
    head_sequence, head_hash = (head.sequence, head.hash) if head else (0, GENESIS_HASH)
    expected, previous_hash, checked = 1, GENESIS_HASH, 0

    def report(broken: ChainBreak | None) -> ChainReport:
        return ChainReport(service, checked, head_sequence, head_hash, broken)

    after = 0
    while True:
        batch = records_about(session, "", after=after, limit=VERIFY_BATCH)
        if not batch:
            break
        for row in batch:
            if row.sequence > head_sequence:
                return report(
                    ChainBreak(
                        row.sequence,
                        AuditBreak.INSERTED,
                        f"record {row.sequence} lies beyond the chain head ({head_sequence})",
                    )
                )
            if row.sequence != expected:
                missing = (
                    f"record {expected}"
                    if row.sequence == expected + 1
                    else f"records {expected}-{row.sequence - 1}"
                )
                return report(
                    ChainBreak(expected, AuditBreak.DELETED, f"{missing} missing from the chain")
                )
            if row.previous_hash != previous_hash:
                return report(
                    ChainBreak(
                        row.sequence,
                        AuditBreak.INSERTED,
                        f"record {row.sequence} does not follow record {row.sequence - 1}: its "
                        "previous_hash differs from that record's hash (a record was inserted "
                        "or reordered, or its predecessor rewritten with a new hash)",
                    )
                )
            if row.computed_hash() != row.hash:
                return report(
                    ChainBreak(
                        row.sequence,
                        AuditBreak.EDITED,
                        f"record {row.sequence} ({row.action} about {row.subject}) no longer "
                        "matches its hash: its content was changed",
                    )
                )
            checked += 1
            previous_hash = row.hash
            expected += 1
        after = batch[-1].sequence
    if expected - 1 < head_sequence:
        return report(
            ChainBreak(
                expected,
                AuditBreak.DELETED,
                f"the chain ends at record {expected - 1} but its head says {head_sequence}",
            )
        )
    if previous_hash != head_hash:
        return report(
            ChainBreak(
                head_sequence,
                AuditBreak.EDITED,
                f"record {head_sequence} was rewritten: its hash differs from the chain head's",
            )
        )
    return report(None)
