"""The review database: the review_task table, its queries and its protobuf form.

One row per task a grant workflow asked for (one per department and review round). The state
moves open -> claimed -> decided, or to cancelled when the grant leaves review; every change is
written together with its outbox event by the servicer.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, and_, or_
from sqlmodel import Field, Session, SQLModel, col, select

from grantflow.v1 import review_pb2
from services.common.db import as_utc, to_timestamp
from services.common.errors import InvalidArgument
from services.common.vocabulary import ACTIVE_TASK_STATES, Decision, Department, TaskState


class ReviewTaskRow(SQLModel, table=True):
    __tablename__ = "review_task"
    __table_args__ = (Index("ix_review_task_queue", "department", "state", "created_at"),)

    task_id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(max_length=128, unique=True)
    application_id: str = Field(max_length=128, index=True)
    program_code: str = Field(max_length=128)
    department: str = Field(max_length=16)  # a Department
    round: int
    state: str = Field(default=TaskState.OPEN, max_length=16)  # a TaskState
    assignee: str = Field(default="", max_length=128, index=True)
    proposed_amount_fen: int = Field(sa_column=Column(BigInteger, nullable=False))
    decision: str = Field(default="", max_length=16)  # a Decision, once decided
    reason: str = Field(default="", max_length=1000)
    decided_amount_fen: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    created_at: datetime
    due_at: datetime
    claimed_at: datetime | None = None
    decided_at: datetime | None = None
    applicant_name: str = Field(default="", max_length=200)
    project_title: str = Field(default="", max_length=300)

    def is_overdue(self, now: datetime) -> bool:
        return self.state in ACTIVE_TASK_STATES and as_utc(self.due_at) < now

    def to_proto(self, now: datetime) -> review_pb2.ReviewTask:
        return review_pb2.ReviewTask(
            task_id=self.task_id,
            application_id=self.application_id,
            program_code=self.program_code,
            department=Department.parse(self.department).to_proto(),
            round=self.round,
            state=TaskState.parse(self.state).to_proto(),
            assignee=self.assignee,
            proposed_amount_fen=self.proposed_amount_fen,
            decision=(
                Decision.parse(self.decision).to_proto()
                if self.decision
                else review_pb2.REVIEW_DECISION_UNSPECIFIED
            ),
            reason=self.reason,
            decided_amount_fen=self.decided_amount_fen,
            created_at=to_timestamp(self.created_at),
            due_at=to_timestamp(self.due_at),
            decided_at=to_timestamp(self.decided_at),
            overdue=self.is_overdue(now),
            applicant_name=self.applicant_name,
            project_title=self.project_title,
            claimed_at=to_timestamp(self.claimed_at),
        )


def get_task(session: Session, task_id: str, *, for_update: bool = False) -> ReviewTaskRow | None:
    return session.get(ReviewTaskRow, task_id, with_for_update=for_update)


def find_by_request(session: Session, request_id: str) -> ReviewTaskRow | None:
    return session.exec(
        select(ReviewTaskRow).where(col(ReviewTaskRow.request_id) == request_id)
    ).first()


def active_tasks_of(session: Session, application_id: str) -> list[ReviewTaskRow]:
    return list(
        session.exec(
            select(ReviewTaskRow)
            .where(col(ReviewTaskRow.application_id) == application_id)
            .where(col(ReviewTaskRow.state).in_(sorted(ACTIVE_TASK_STATES)))
            .order_by(col(ReviewTaskRow.created_at), col(ReviewTaskRow.task_id))
            .with_for_update()
        ).all()
    )


@dataclass(frozen=True)
class TaskQuery:
    department: Department | None = None  # None: every department
    assignee: str = ""
    application_id: str = ""
    states: frozenset[TaskState] = frozenset()  # empty: every state
    due_before: datetime | None = None
    page_size: int = 50
    after: tuple[datetime, str] | None = None  # keyset: (created_at, task_id) of the last seen


def list_tasks(session: Session, query: TaskQuery) -> tuple[list[ReviewTaskRow], bool]:
    """Tasks oldest first; the flag says whether more follow the page."""
    statement = select(ReviewTaskRow)
    if query.department:
        statement = statement.where(col(ReviewTaskRow.department) == query.department)
    if query.assignee:
        statement = statement.where(col(ReviewTaskRow.assignee) == query.assignee)
    if query.application_id:
        statement = statement.where(col(ReviewTaskRow.application_id) == query.application_id)
    if query.states:
        statement = statement.where(col(ReviewTaskRow.state).in_(sorted(query.states)))
    if query.due_before is not None:
        statement = statement.where(col(ReviewTaskRow.due_at) < query.due_before)
    if query.after is not None:
        created, task_id = query.after
        statement = statement.where(
            or_(
                col(ReviewTaskRow.created_at) > created,
                and_(
                    col(ReviewTaskRow.created_at) == created,
                    col(ReviewTaskRow.task_id) > task_id,
                ),
            )
        )
    rows = list(
        session.exec(
            statement.order_by(col(ReviewTaskRow.created_at), col(ReviewTaskRow.task_id)).limit(
                query.page_size + 1
            )
        ).all()
    )
    return rows[: query.page_size], len(rows) > query.page_size


def page_token(row: ReviewTaskRow) -> str:
    raw = json.dumps([as_utc(row.created_at).isoformat(), row.task_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_page_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, task_id = json.loads(raw)
        return as_utc(datetime.fromisoformat(created)), str(task_id)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("page_token", "is not a token this service issued") from exc
