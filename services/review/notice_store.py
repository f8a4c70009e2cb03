"""The notice tables of the review database: public notices (notice, notice_entry) and the
objections lodged against them (objection), their queries and their protobuf forms.

A notice is one program's batch of decided awards, published once (by batch id) with its
window; its entries keep the applicant's credit code privately (it says who may lodge a 异议)
and `notice_pb` never shows it. An objection keeps who lodged it (the token's identity and the
contact given); `objection_pb` shows that only when asked to (the handling department, the
objector himself). The use cases are in notices.py.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Text, and_, or_
from sqlmodel import Field, Session, SQLModel, col, select

from grantflow.v1 import notice_pb2
from services.common.db import as_utc, to_timestamp
from services.common.errors import InvalidArgument
from services.common.vocabulary import (
    Department,
    ObjectionConsequence,
    ObjectionKind,
    ObjectionState,
)


class NoticeRow(SQLModel, table=True):
    __tablename__ = "notice"

    batch_id: str = Field(primary_key=True, max_length=128)
    program_code: str = Field(max_length=128, index=True)
    batch_number: int
    owner_department: str = Field(max_length=16)  # a Department: handles the objections
    opens_at: datetime
    closes_at: datetime
    published_at: datetime = Field(index=True)
    # sha256 of what the PublishNotice request said: a repeated batch id must say the same.
    content_hash: str = Field(max_length=64)

    def is_open(self, now: datetime) -> bool:
        return as_utc(self.opens_at) <= now < as_utc(self.closes_at)


class NoticeEntryRow(SQLModel, table=True):
    __tablename__ = "notice_entry"

    batch_id: str = Field(primary_key=True, max_length=128, foreign_key="notice.batch_id")
    application_id: str = Field(primary_key=True, max_length=128, index=True)
    position: int
    applicant_name: str = Field(max_length=200)
    project_title: str = Field(max_length=300)
    amount_fen: int = Field(sa_column=Column(BigInteger, nullable=False))
    applicant_credit_code: str = Field(max_length=18)  # never shown: see notice_pb
    struck: bool = False  # an upheld objection struck the award from the notice


class ObjectionRow(SQLModel, table=True):
    __tablename__ = "objection"

    objection_id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(max_length=128, unique=True)
    batch_id: str = Field(max_length=128, index=True)
    application_id: str = Field(max_length=128, index=True)
    program_code: str = Field(max_length=128)
    kind: str = Field(max_length=16)  # an ObjectionKind
    text: str = Field(sa_column=Column(Text, nullable=False))
    contact: str = Field(max_length=200)
    # Who lodged it (from the token): shown only to the handling department and the objector.
    objector_subject: str = Field(max_length=128)
    objector_role: str = Field(max_length=16)
    objector_enterprise: str = Field(default="", max_length=18)
    objector_department: str = Field(default="", max_length=16)
    handling_department: str = Field(max_length=16, index=True)  # a Department
    state: str = Field(default=ObjectionState.LODGED, max_length=16)  # an ObjectionState
    lodged_at: datetime
    # The reviewer deciding it while the grant is told (two reviewers never decide one
    # objection at once); kept after the decision as handled_by.
    handler: str = Field(default="", max_length=128)
    consequence: str = Field(default="", max_length=16)  # an ObjectionConsequence, if upheld
    reason: str = Field(default="", max_length=1000)
    handled_by: str = Field(default="", max_length=128)
    decided_at: datetime | None = None


def notice_pb(notice: NoticeRow, entries: list[NoticeEntryRow], now: datetime) -> notice_pb2.Notice:
    """The public form of a notice: only what a public notice shows."""
    return notice_pb2.Notice(
        batch_id=notice.batch_id,
        program_code=notice.program_code,
        batch_number=notice.batch_number,
        owner_department=Department.parse(notice.owner_department).to_proto(),
        opens_at=to_timestamp(notice.opens_at),
        closes_at=to_timestamp(notice.closes_at),
        published_at=to_timestamp(notice.published_at),
        open=notice.is_open(now),
        entries=[
            notice_pb2.NoticeEntry(
                application_id=entry.application_id,
                applicant_name=entry.applicant_name,
                project_title=entry.project_title,
                amount_fen=entry.amount_fen,
                struck=entry.struck,
            )
            for entry in entries
        ],
        total_fen=sum(entry.amount_fen for entry in entries if not entry.struck),
    )


def objection_pb(row: ObjectionRow, *, show_objector: bool) -> notice_pb2.Objection:
    # Proto enum numbers (0: none).
    consequence: Any = (
        ObjectionConsequence.parse(row.consequence).to_proto() if row.consequence else 0
    )
    department: Any = (
        Department.parse(row.objector_department).to_proto() if row.objector_department else 0
    )
    answer = notice_pb2.Objection(
        objection_id=row.objection_id,
        batch_id=row.batch_id,
        application_id=row.application_id,
        program_code=row.program_code,
        kind=ObjectionKind.parse(row.kind).to_proto(),
        text=row.text,
        state=ObjectionState.parse(row.state).to_proto(),
        handling_department=Department.parse(row.handling_department).to_proto(),
        lodged_at=to_timestamp(row.lodged_at),
        identity_hidden=not show_objector,
        consequence=consequence,
        reason=row.reason,
        handled_by=row.handled_by,
        decided_at=to_timestamp(row.decided_at),
    )
    if show_objector:
        answer.objector.CopyFrom(
            notice_pb2.Objector(
                subject=row.objector_subject,
                role=row.objector_role,
                enterprise=row.objector_enterprise,
                department=department,
                contact=row.contact,
            )
        )
    return answer


# Queries ----------------------------------------------------------------------------------------


def get_notice(session: Session, batch_id: str) -> NoticeRow | None:
    return session.get(NoticeRow, batch_id)


def entries_of(session: Session, batch_id: str) -> list[NoticeEntryRow]:
    return list(
        session.exec(
            select(NoticeEntryRow)
            .where(col(NoticeEntryRow.batch_id) == batch_id)
            .order_by(col(NoticeEntryRow.position))
        ).all()
    )


def get_entry(
    session: Session, batch_id: str, application_id: str, *, for_update: bool = False
) -> NoticeEntryRow | None:
    return session.get(NoticeEntryRow, (batch_id, application_id), with_for_update=for_update)


@dataclass(frozen=True)
class NoticeQuery:
    program_code: str = ""  # empty: every program
    open_at: datetime | None = None  # only notices open at this time
    page_size: int = 20
    after: tuple[datetime, str] | None = None  # keyset: (published_at, batch_id) of the last seen


def list_notices(session: Session, query: NoticeQuery) -> tuple[list[NoticeRow], bool]:
    """Notices newest first; the flag says whether more follow the page."""
    statement = select(NoticeRow)
    if query.program_code:
        statement = statement.where(col(NoticeRow.program_code) == query.program_code)
    if query.open_at is not None:
        statement = statement.where(col(NoticeRow.opens_at) <= query.open_at).where(
            col(NoticeRow.closes_at) > query.open_at
        )
    if query.after is not None:
        published, batch_id = query.after
        statement = statement.where(
            or_(
                col(NoticeRow.published_at) < published,
                and_(col(NoticeRow.published_at) == published, col(NoticeRow.batch_id) < batch_id),
            )
        )
    rows = list(
        session.exec(
            statement.order_by(
                col(NoticeRow.published_at).desc(), col(NoticeRow.batch_id).desc()
            ).limit(query.page_size + 1)
        ).all()
    )
    return rows[: query.page_size], len(rows) > query.page_size


def get_objection(
    session: Session, objection_id: str, *, for_update: bool = False
) -> ObjectionRow | None:
    return session.get(ObjectionRow, objection_id, with_for_update=for_update)


def find_objection_by_request(session: Session, request_id: str) -> ObjectionRow | None:
    return session.exec(
        select(ObjectionRow).where(col(ObjectionRow.request_id) == request_id)
    ).first()


@dataclass(frozen=True)
class ObjectionQuery:
    application_id: str = ""
    batch_id: str = ""
    open_only: bool = False
    page_size: int = 50
    after: tuple[datetime, str] | None = None  # keyset: (lodged_at, objection_id) of the last seen


def list_objections(session: Session, query: ObjectionQuery) -> tuple[list[ObjectionRow], bool]:
    """Objections oldest first; the flag says whether more follow the page."""
    statement = select(ObjectionRow)
    if query.application_id:
        statement = statement.where(col(ObjectionRow.application_id) == query.application_id)
    if query.batch_id:
        statement = statement.where(col(ObjectionRow.batch_id) == query.batch_id)
    if query.open_only:
        statement = statement.where(col(ObjectionRow.state) == ObjectionState.LODGED)
    if query.after is not None:
        lodged, objection_id = query.after
        statement = statement.where(
            or_(
                col(ObjectionRow.lodged_at) > lodged,
                and_(
                    col(ObjectionRow.lodged_at) == lodged,
                    col(ObjectionRow.objection_id) > objection_id,
                ),
            )
        )
    rows = list(
        session.exec(
            statement.order_by(col(ObjectionRow.lodged_at), col(ObjectionRow.objection_id)).limit(
                query.page_size + 1
            )
        ).all()
    )
    return rows[: query.page_size], len(rows) > query.page_size


def page_token(at: datetime, key: str) -> str:
    raw = json.dumps([as_utc(at).isoformat(), key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_page_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        at, key = json.loads(raw)
        return as_utc(datetime.fromisoformat(at)), str(key)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("page_token", "is not a token this service issued") from exc
