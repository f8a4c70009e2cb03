"""The public notices (社会公示) and objections (异议, 投诉, 举报): the review service's use cases
for them, over its database (notice_store.py) and the grant workflows.

Rules kept here:
- a notice is published once per batch id (the batcher's retry answers the same notice; other
  content under that id is refused); anyone may read it, and what anyone reads is only what a
  public notice shows: program, batch, enterprise name, project title, amount and dates;
- an objection needs an identified caller (the gRPC layer refuses anonymous ones), an entry
  still in the notice, and the notice open (opens_at <= now < closes_at); a 异议 (DISPUTE) is
  the applicant's own: only a token whose enterprise is the entry's credit code may lodge one,
  while anyone identified may lodge 投诉 or 举报;
- the objector's identity (token and contact) is shown only to the handling department (the
  program's owner department) and to the objector; events and audit records never carry it;
- the grant is told first (Updates objection_lodged / objection_decided with deterministic
  update ids) and the objection is recorded only once the grant accepted it, so the database
  never holds an objection or a decision the process does not know of;
- one objection is decided by one reviewer of the handling department: the reviewer takes it in
  hand (recorded) before the grant is told, so two reviewers never send two decisions under the
  one update id; if the grant refuses, the objection is free again; nobody who decided a review
  task of the same application decides an objection against it;
- an upheld objection strikes the award from the notice; the decision is audited
  (AuditAction.OBJECTION_HANDLED) with its event in the same commit.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import Session, col, select

from grantflow.v1 import events_pb2
from services.common.auth import Principal
from services.common.db import as_utc, now_utc, to_timestamp
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)
from services.common.labels import label
from services.common.unit_of_work import Transactions, UnitOfWork
from services.common.vocabulary import (
    AuditAction,
    Department,
    ObjectionKind,
    ObjectionState,
    Role,
    TaskState,
)
from services.review import notice_store
from services.review.notice_commands import DecideObjection, LodgeObjection, PublishNotice
from services.review.notice_store import (
    NoticeEntryRow,
    NoticeQuery,
    NoticeRow,
    ObjectionQuery,
    ObjectionRow,
)
from services.review.store import ReviewTaskRow
from workflows import contracts

# Derives an objection's id from its request id: a retried LodgeObjection sends the grant the
# same Update (its id names the objection) and finds the same row. Never to change.
OBJECTION_NAMESPACE = uuid.UUID("5b0f3c2e-8d4a-4e61-9a7b-2c1d0e9f8a6b")


class ObjectionUpdates(Protocol):
    """The grant workflow, told of objections (services/common/grant_workflows.py)."""

    async def objection_lodged(
        self, application_id: str, lodged: contracts.ObjectionLodged
    ) -> contracts.Acknowledged: ...

    async def objection_decided(
        self, application_id: str, decided: contracts.ObjectionDecided
    ) -> contracts.Acknowledged: ...


@dataclass(frozen=True)
class PublicNotice:
    notice: NoticeRow
    entries: list[NoticeEntryRow]


@dataclass(frozen=True)
class NoticesPage:
    notices: list[PublicNotice]
    more: bool


@dataclass(frozen=True)
class ObjectionsPage:
    objections: list[ObjectionRow]
    more: bool


def objection_id_for(request_id: str) -> str:
    return uuid.uuid5(OBJECTION_NAMESPACE, request_id).hex


def is_objector(caller: Principal | None, row: ObjectionRow) -> bool:
    return (
        caller is not None
        and caller.subject == row.objector_subject
        and caller.role == row.objector_role
        and caller.enterprise == row.objector_enterprise
    )


def handles(caller: Principal | None, row: ObjectionRow) -> bool:
    """Whether the caller reviews for the objection's handling department."""
    return (
        caller is not None
        and caller.role == Role.REVIEWER
        and caller.department is not None
        and caller.department == row.handling_department
    )


def may_see_objector(caller: Principal | None, row: ObjectionRow) -> bool:
    return handles(caller, row) or is_objector(caller, row)


def _content_hash(command: PublishNotice) -> str:
    said = {
        "program_code": command.program_code,
        "batch_number": command.batch_number,
        "owner_department": str(command.owner_department),
        "opens_at": as_utc(command.opens_at).isoformat(),
        "closes_at": as_utc(command.closes_at).isoformat(),
        "entries": [list(astuple(entry)) for entry in command.entries],
    }
    canonical = json.dumps(said, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Notices:
    """The notice and objection use cases, over the review database and the grant workflows."""

    def __init__(
        self,
        transactions: Transactions,
        workflows: ObjectionUpdates,
        *,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.transactions = transactions
        self.workflows = workflows
        self.clock = clock

    # Publishing (the batcher) ------------------------------------------------------------------

    async def publish(self, command: PublishNotice) -> PublicNotice:
        digest = _content_hash(command)

        def work(unit: UnitOfWork) -> PublicNotice:
            existing = notice_store.get_notice(unit.session, command.batch_id)
            if existing is not None:
                if existing.content_hash != digest:
                    raise AlreadyExists(
                        f"batch {command.batch_id} was already published with other content"
                    )
                return PublicNotice(
                    existing, notice_store.entries_of(unit.session, existing.batch_id)
                )
            now = self.clock()
            notice = NoticeRow(
                batch_id=command.batch_id,
                program_code=command.program_code,
                batch_number=command.batch_number,
                owner_department=command.owner_department,
                opens_at=command.opens_at,
                closes_at=command.closes_at,
                published_at=now,
                content_hash=digest,
            )
            entries = [
                NoticeEntryRow(
                    batch_id=command.batch_id,
                    application_id=entry.application_id,
                    position=position,
                    applicant_name=entry.applicant_name,
                    project_title=entry.project_title,
                    amount_fen=entry.amount_fen,
                    applicant_credit_code=entry.applicant_credit_code,
                )
                for position, entry in enumerate(command.entries)
            ]
            unit.session.add(notice)
            unit.session.flush()  # the notice before its entries (their foreign key)
            unit.session.add_all(entries)
            unit.announce(
                command.batch_id,
                events_pb2.NoticePublished(notice=notice_store.notice_pb(notice, entries, now)),
                key=command.batch_id,
            )
            return PublicNotice(notice, entries)

        return await self.transactions.write(work)

    # Reading (anyone) ----------------------------------------------------------------------------

    async def notice(self, batch_id: str) -> PublicNotice:
        def work(session: Session) -> PublicNotice | None:
            notice = notice_store.get_notice(session, batch_id)
            if notice is None:
                return None
            return PublicNotice(notice, notice_store.entries_of(session, batch_id))

        found = await self.transactions.read(work)
        if found is None:
            raise NotFound(f"notice {batch_id} not found")
        return found

    async def notices(self, query: NoticeQuery, *, open_only: bool = False) -> NoticesPage:
        if open_only:
            query = replace(query, open_at=self.clock())

        def work(session: Session) -> NoticesPage:
            rows, more = notice_store.list_notices(session, query)
            found = [
                PublicNotice(row, notice_store.entries_of(session, row.batch_id)) for row in rows
            ]
            return NoticesPage(found, more)

        return await self.transactions.read(work)

    # Lodging (anyone identified) -----------------------------------------------------------------

    async def lodge(self, command: LodgeObjection) -> ObjectionRow:
        caller = command.caller
        objection_id = objection_id_for(command.request_id)

        def look(
            session: Session,
        ) -> tuple[ObjectionRow | None, NoticeRow | None, NoticeEntryRow | None]:
            existing = notice_store.find_objection_by_request(session, command.request_id)
            notice = notice_store.get_notice(session, command.batch_id)
            entry = notice_store.get_entry(session, command.batch_id, command.application_id)
            return existing, notice, entry

        existing, notice, entry = await self.transactions.read(look)
        if existing is not None:
            _check_same_objection(existing, command)
            return existing
        if notice is None:
            raise NotFound(f"notice {command.batch_id} not found")
        if entry is None:
            raise NotFound(
                f"application {command.application_id} is not in notice {command.batch_id}"
            )
        now = self.clock()
        if now < as_utc(notice.opens_at):
            raise FailedPrecondition(
                f"公示尚未开始：notice {notice.batch_id} opens at {as_utc(notice.opens_at).isoformat()}"
            )
        if now >= as_utc(notice.closes_at):
            raise FailedPrecondition(
                f"公示期已结束：notice {notice.batch_id} closed at "
                f"{as_utc(notice.closes_at).isoformat()}; objections are no longer accepted"
            )
        if entry.struck:
            raise FailedPrecondition(
                f"application {entry.application_id} was struck from notice {notice.batch_id}"
            )
        if command.kind == ObjectionKind.DISPUTE and not (
            caller.role == Role.APPLICANT and caller.enterprise == entry.applicant_credit_code
        ):
            raise PermissionDenied(
                "异议只能由申报单位本身提出；其他人可提出投诉或举报 "
                "(a dispute may be lodged only by the applicant itself; others may lodge a "
                "complaint or a report)"
            )
        await self.workflows.objection_lodged(
            entry.application_id,
            contracts.ObjectionLodged(objection_id=objection_id, kind=command.kind),
        )

        def work(unit: UnitOfWork) -> ObjectionRow:
            again = notice_store.find_objection_by_request(unit.session, command.request_id)
            if again is not None:
                _check_same_objection(again, command)
                return again
            lodged_at = self.clock()
            row = ObjectionRow(
                objection_id=objection_id,
                request_id=command.request_id,
                batch_id=notice.batch_id,
                application_id=entry.application_id,
                program_code=notice.program_code,
                kind=command.kind,
                text=command.text,
                contact=command.contact,
                objector_subject=caller.subject,
                objector_role=caller.role,
                objector_enterprise=caller.enterprise,
                objector_department=caller.department or "",
                handling_department=notice.owner_department,
                state=ObjectionState.LODGED,
                lodged_at=lodged_at,
            )
            unit.session.add(row)
            unit.announce(
                row.application_id,
                events_pb2.ObjectionLodged(
                    objection_id=row.objection_id,
                    batch_id=row.batch_id,
                    application_id=row.application_id,
                    program_code=row.program_code,
                    kind=command.kind.to_proto(),
                    handling_department=Department.parse(row.handling_department).to_proto(),
                    lodged_at=to_timestamp(lodged_at),
                ),
                key=row.objection_id,
            )
            return row

        return await self.transactions.write(work)

    # Reading objections (reviewers, ops, the objector) -------------------------------------------

    async def objection(self, caller: Principal, objection_id: str) -> ObjectionRow:
        row = await self.transactions.read(
            lambda session: notice_store.get_objection(session, objection_id)
        )
        if row is None or not (
            caller.role in (Role.REVIEWER, Role.OPS) or is_objector(caller, row)
        ):
            # Nobody else learns whether an objection exists.
            raise NotFound(f"objection {objection_id} not found")
        return row

    async def objections(self, query: ObjectionQuery) -> ObjectionsPage:
        def work(session: Session) -> ObjectionsPage:
            rows, more = notice_store.list_objections(session, query)
            return ObjectionsPage(rows, more)

        return await self.transactions.read(work)

    # Deciding (the handling department) ----------------------------------------------------------

    async def decide(self, command: DecideObjection) -> ObjectionRow:
        caller = command.caller
        consequence = command.consequence or ""
        outcome = (
            ObjectionState.UPHELD if command.upheld else ObjectionState.DISMISSED,
            consequence,
            command.reason,
        )

        def decided_alike(row: ObjectionRow) -> bool:
            return (
                row.handled_by == caller.subject
                and (row.state, row.consequence, row.reason) == outcome
            )

        def look(session: Session) -> tuple[ObjectionRow | None, bool]:
            row = notice_store.get_objection(session, command.objection_id)
            if row is None:
                return None, False
            return row, _decided_a_review_task(session, caller, row.application_id)

        row, reviewed = await self.transactions.read(look)
        if row is None:
            raise NotFound(f"objection {command.objection_id} not found")
        if not handles(caller, row):
            raise PermissionDenied(
                f"the objection is handled by the {row.handling_department} department"
            )
        if row.state != ObjectionState.LODGED:
            if decided_alike(row):
                return row
            raise FailedPrecondition(f"the objection is already {row.state}")
        if reviewed:
            raise PermissionDenied(
                "you decided a review task of this application; another reviewer of your "
                "department must decide the objection against it"
            )

        def take(unit: UnitOfWork) -> ObjectionRow:
            current = _locked(unit.session, command.objection_id)
            if current.state == ObjectionState.LODGED:
                if current.handler and current.handler != caller.subject:
                    raise FailedPrecondition(f"the objection is being decided by {current.handler}")
                current.handler = caller.subject
                unit.session.add(current)
            return current

        taken = await self.transactions.write(take)
        if taken.state != ObjectionState.LODGED:
            if decided_alike(taken):
                return taken
            raise FailedPrecondition(f"the objection is already {taken.state}")
        try:
            await self.workflows.objection_decided(
                taken.application_id,
                contracts.ObjectionDecided(
                    objection_id=taken.objection_id,
                    upheld=command.upheld,
                    consequence=consequence,
                    reason=command.reason,
                    handled_by=caller.subject,
                ),
            )
        except Unavailable:
            raise  # the grant may have taken it: the objection stays in the caller's hands
        except ServiceError:
            await self.transactions.write(lambda unit: _release(unit, taken.objection_id, caller))
            raise

        def work(unit: UnitOfWork) -> ObjectionRow:
            current = _locked(unit.session, command.objection_id)
            if current.state != ObjectionState.LODGED:
                if decided_alike(current):
                    return current
                raise FailedPrecondition(f"the objection is already {current.state}")
            now = self.clock()
            current.state, current.consequence, current.reason = outcome
            current.handled_by = caller.subject
            current.decided_at = now
            unit.session.add(current)
            if command.upheld:
                entry = notice_store.get_entry(
                    unit.session, current.batch_id, current.application_id, for_update=True
                )
                if entry is not None:
                    entry.struck = True
                    unit.session.add(entry)
            kind = ObjectionKind.parse(current.kind)
            # Proto enum numbers (0: none).
            consequence_number: Any = command.consequence.to_proto() if command.consequence else 0
            unit.announce(
                current.application_id,
                events_pb2.ObjectionDecided(
                    objection_id=current.objection_id,
                    batch_id=current.batch_id,
                    application_id=current.application_id,
                    program_code=current.program_code,
                    kind=kind.to_proto(),
                    upheld=command.upheld,
                    consequence=consequence_number,
                    reason=current.reason,
                    decided_at=to_timestamp(now),
                ),
                key=current.objection_id,
            )
            unit.audit(
                AuditAction.OBJECTION_HANDLED,
                current.application_id,
                caller,
                current.reason,
                {
                    "objection_id": current.objection_id,
                    "batch_id": current.batch_id,
                    "kind": current.kind,
                    "kind_zh": label(kind),
                    "upheld": command.upheld,
                    "consequence": consequence,
                    "department": current.handling_department,
                },
                key=current.objection_id,
            )
            return current

        return await self.transactions.write(work)


def _locked(session: Session, objection_id: str) -> ObjectionRow:
    row = notice_store.get_objection(session, objection_id, for_update=True)
    assert row is not None  # objections are never deleted
    return row


def _release(unit: UnitOfWork, objection_id: str, caller: Principal) -> None:
    row = _locked(unit.session, objection_id)
    if row.state == ObjectionState.LODGED and row.handler == caller.subject:
        row.handler = ""
        unit.session.add(row)


def _decided_a_review_task(session: Session, caller: Principal, application_id: str) -> bool:
    """Whether the caller decided a review task of the application (one person never decides
    two stages of one grant)."""
    found = session.exec(
        select(ReviewTaskRow.task_id)
        .where(col(ReviewTaskRow.application_id) == application_id)
        .where(col(ReviewTaskRow.assignee) == caller.subject)
        .where(col(ReviewTaskRow.state) == TaskState.DECIDED)
    ).first()
    return found is not None


def _check_same_objection(existing: ObjectionRow, command: LodgeObjection) -> None:
    said = (
        existing.batch_id,
        existing.application_id,
        existing.kind,
        existing.text,
        existing.contact,
        existing.objector_subject,
    )
    asked = (
        command.batch_id,
        command.application_id,
        str(command.kind),
        command.text,
        command.contact,
        command.caller.subject,
    )
    if said != asked:
        raise AlreadyExists(f"request_id {command.request_id} already lodged another objection")
