"""The review database: review tasks (the departments' inbox), the expert pool and its panels,
special audits, the ledger of who decided which stage of a grant; their queries and protobuf form.

One review_task row per task a grant workflow asked for (one per department and review round).
The state moves open -> claimed -> decided, or to cancelled when the grant leaves review; every
change is written together with its outbox event by the use cases.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint, and_, func, or_
from sqlmodel import Field, Session, SQLModel, col, select

from grantflow.v1 import common_pb2, review_pb2
from services.common.db import as_utc, to_timestamp
from services.common.errors import InvalidArgument
from services.common.vocabulary import (
    ACTIVE_TASK_STATES,
    AuditTaskState,
    Decision,
    Department,
    ExpertTaskState,
    ReviewStage,
    ScoreAggregation,
    TaskState,
)


class ReviewTaskRow(SQLModel, table=True):
    __tablename__ = "review_task"
    __table_args__ = (
        Index("ix_review_task_queue", "department", "state", "created_at"),
        Index("ix_review_task_inbox", "department", "state", "priority"),
    )

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
    priority: int = 0  # higher first
    stage: str = Field(default=ReviewStage.DEPARTMENT_REVIEW, max_length=32)  # a ReviewStage

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
            priority=self.priority,
            stage=ReviewStage.parse(self.stage).to_proto(),
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
    # keyset: (priority, due_at, task_id) of the last task seen
    after: tuple[int, datetime, str] | None = None


def _filtered(statement: Any, query: TaskQuery) -> Any:
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
    return statement


def list_tasks(session: Session, query: TaskQuery) -> tuple[list[ReviewTaskRow], bool]:
    """Tasks by priority (highest first), then the earliest due; the flag says whether more
    follow the page."""
    statement = _filtered(select(ReviewTaskRow), query)
    if query.after is not None:
        priority, due_at, task_id = query.after
        statement = statement.where(
            or_(
                col(ReviewTaskRow.priority) < priority,
                and_(
                    col(ReviewTaskRow.priority) == priority,
                    or_(
                        col(ReviewTaskRow.due_at) > due_at,
                        and_(
                            col(ReviewTaskRow.due_at) == due_at,
                            col(ReviewTaskRow.task_id) > task_id,
                        ),
                    ),
                ),
            )
        )
    order = (
        col(ReviewTaskRow.priority).desc(),
        col(ReviewTaskRow.due_at),
        col(ReviewTaskRow.task_id),
    )
    rows = list(session.exec(statement.order_by(*order).limit(query.page_size + 1)).all())
    return rows[: query.page_size], len(rows) > query.page_size


@dataclass(frozen=True)
class TaskCounts:
    open: int
    unclaimed: int
    mine: int
    overdue: int

    def to_proto(self) -> review_pb2.TaskCounts:
        return review_pb2.TaskCounts(
            open=self.open, unclaimed=self.unclaimed, mine=self.mine, overdue=self.overdue
        )


def count_tasks(
    session: Session, department: Department | None, subject: str, now: datetime
) -> TaskCounts:
    """The inbox in numbers for a department (None: every department) and the caller."""

    def count(**where: Any) -> int:
        query = TaskQuery(department=department, **where)
        statement = _filtered(select(func.count()).select_from(ReviewTaskRow), query)
        return int(session.exec(statement).one())

    return TaskCounts(
        open=count(states=ACTIVE_TASK_STATES),
        unclaimed=count(states=frozenset({TaskState.OPEN})),
        mine=count(states=frozenset({TaskState.CLAIMED}), assignee=subject),
        overdue=count(states=ACTIVE_TASK_STATES, due_before=now),
    )


def page_token(row: ReviewTaskRow) -> str:
    raw = json.dumps([row.priority, as_utc(row.due_at).isoformat(), row.task_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_page_token(token: str) -> tuple[int, datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        priority, due_at, task_id = json.loads(raw)
        return int(priority), as_utc(datetime.fromisoformat(due_at)), str(task_id)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("page_token", "is not a token this service issued") from exc


# The expert pool and its panels ----------------------------------------------------------------


class ExpertRow(SQLModel, table=True):
    __tablename__ = "expert"

    expert_id: str = Field(primary_key=True, max_length=128)  # the user id of his token
    name: str = Field(max_length=100)
    field: str = Field(max_length=64, index=True)
    employer_credit_code: str = Field(default="", max_length=18)
    declared_conflicts: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON
    person_id: str = Field(default="", max_length=64)
    active: bool = True
    created_at: datetime
    updated_at: datetime

    def conflicts(self) -> list[str]:
        return [str(code) for code in json.loads(self.declared_conflicts)]

    def to_proto(self) -> review_pb2.Expert:
        return review_pb2.Expert(
            expert_id=self.expert_id,
            name=self.name,
            field=self.field,
            employer_credit_code=self.employer_credit_code,
            declared_conflicts=self.conflicts(),
            person_id=self.person_id,
            active=self.active,
        )


class ExpertPanelRow(SQLModel, table=True):
    __tablename__ = "expert_panel"

    panel_id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(max_length=128, unique=True)
    application_id: str = Field(max_length=128, index=True)
    program_code: str = Field(max_length=128)
    applicant_credit_code: str = Field(max_length=18)
    applicant_name: str = Field(default="", max_length=200)
    project_title: str = Field(default="", max_length=300)
    field: str = Field(max_length=64)
    panel_size: int
    # JSON list of {code, name, max_points}
    rubric: str = Field(sa_column=Column(Text, nullable=False))
    aggregation: str = Field(max_length=16)  # a ScoreAggregation
    pass_score_centi: int = 0
    due_at: datetime
    created_at: datetime
    completed_at: datetime | None = None
    score_centi: int | None = None

    def criteria(self) -> list[dict[str, Any]]:
        return list(json.loads(self.rubric))

    def rubric_proto(self) -> list[common_pb2.RubricCriterion]:
        return [common_pb2.RubricCriterion(**criterion) for criterion in self.criteria()]

    @property
    def complete(self) -> bool:
        return self.completed_at is not None


class ExpertAssignmentRow(SQLModel, table=True):
    """One expert's task on one panel: his scores stay his until the panel is complete."""

    __tablename__ = "expert_assignment"
    __table_args__ = (
        UniqueConstraint("panel_id", "expert_id", name="uq_expert_assignment_member"),
    )

    task_id: str = Field(primary_key=True, max_length=32)
    panel_id: str = Field(max_length=32, index=True)
    application_id: str = Field(max_length=128, index=True)
    expert_id: str = Field(max_length=128, index=True)
    state: str = Field(default=ExpertTaskState.PENDING, max_length=16)  # an ExpertTaskState
    scores: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON code -> centi
    total_centi: int = 0
    comment: str = Field(default="", max_length=2000)
    submitted_at: datetime | None = None

    def score_map(self) -> dict[str, int]:
        return {str(code): int(value) for code, value in json.loads(self.scores).items()}

    def scores_proto(self) -> list[review_pb2.CriterionScore]:
        return [
            review_pb2.CriterionScore(code=code, score_centi=value)
            for code, value in self.score_map().items()
        ]


def panel_member(
    assignment: ExpertAssignmentRow, name: str, *, reveal: bool
) -> review_pb2.PanelMember:
    member = review_pb2.PanelMember(
        expert_id=assignment.expert_id,
        name=name,
        state=ExpertTaskState.parse(assignment.state).to_proto(),
    )
    if reveal:
        member.total_centi = assignment.total_centi
        member.scores.extend(assignment.scores_proto())
        member.comment = assignment.comment
    return member


def panel_proto(
    panel: ExpertPanelRow, members: list[ExpertAssignmentRow], names: dict[str, str]
) -> review_pb2.ExpertPanel:
    """The panel; each member's scores only once every member has scored."""
    return review_pb2.ExpertPanel(
        panel_id=panel.panel_id,
        application_id=panel.application_id,
        program_code=panel.program_code,
        field=panel.field,
        rubric=panel.rubric_proto(),
        aggregation=ScoreAggregation.parse(panel.aggregation).to_proto(),
        pass_score_centi=panel.pass_score_centi,
        members=[
            panel_member(m, names.get(m.expert_id, ""), reveal=panel.complete) for m in members
        ],
        complete=panel.complete,
        score_centi=panel.score_centi or 0,
        due_at=to_timestamp(panel.due_at),
        completed_at=to_timestamp(panel.completed_at),
    )


def expert_task_proto(
    panel: ExpertPanelRow,
    mine: ExpertAssignmentRow,
    others: list[ExpertAssignmentRow],
    names: dict[str, str],
    now: datetime,
) -> review_pb2.ExpertTask:
    """An expert's view: his own scores always, the others' only once the panel is complete."""
    task = review_pb2.ExpertTask(
        task_id=mine.task_id,
        panel_id=panel.panel_id,
        application_id=panel.application_id,
        program_code=panel.program_code,
        applicant_name=panel.applicant_name,
        project_title=panel.project_title,
        rubric=panel.rubric_proto(),
        state=ExpertTaskState.parse(mine.state).to_proto(),
        scores=mine.scores_proto(),
        total_centi=mine.total_centi,
        comment=mine.comment,
        due_at=to_timestamp(panel.due_at),
        submitted_at=to_timestamp(mine.submitted_at),
        overdue=mine.state == ExpertTaskState.PENDING and as_utc(panel.due_at) < now,
        panel_complete=panel.complete,
    )
    if panel.complete:
        task.panel_score_centi = panel.score_centi or 0
        task.others.extend(
            panel_member(other, names.get(other.expert_id, ""), reveal=True) for other in others
        )
    return task


def experts_of_field(session: Session, field: str) -> list[ExpertRow]:
    statement = select(ExpertRow).order_by(col(ExpertRow.expert_id))
    if field:
        statement = statement.where(col(ExpertRow.field) == field)
    return list(session.exec(statement).all())


def expert_names(session: Session, expert_ids: list[str]) -> dict[str, str]:
    rows = session.exec(select(ExpertRow).where(col(ExpertRow.expert_id).in_(expert_ids))).all()
    return {row.expert_id: row.name for row in rows}


def panel_by_request(session: Session, request_id: str) -> ExpertPanelRow | None:
    return session.exec(
        select(ExpertPanelRow).where(col(ExpertPanelRow.request_id) == request_id)
    ).first()


def panels_of(session: Session, application_id: str) -> list[ExpertPanelRow]:
    return list(
        session.exec(
            select(ExpertPanelRow)
            .where(col(ExpertPanelRow.application_id) == application_id)
            .order_by(col(ExpertPanelRow.created_at))
        ).all()
    )


def members_of(session: Session, panel_id: str) -> list[ExpertAssignmentRow]:
    return list(
        session.exec(
            select(ExpertAssignmentRow)
            .where(col(ExpertAssignmentRow.panel_id) == panel_id)
            .order_by(col(ExpertAssignmentRow.expert_id))
        ).all()
    )


def assignments_of_expert(
    session: Session, expert_id: str, *, application_id: str = ""
) -> list[ExpertAssignmentRow]:
    statement = select(ExpertAssignmentRow).where(col(ExpertAssignmentRow.expert_id) == expert_id)
    if application_id:
        statement = statement.where(col(ExpertAssignmentRow.application_id) == application_id)
    return list(session.exec(statement.order_by(col(ExpertAssignmentRow.task_id))).all())


# Special audits --------------------------------------------------------------------------------


class AuditTaskRow(SQLModel, table=True):
    __tablename__ = "audit_task"

    task_id: str = Field(primary_key=True, max_length=32)
    request_id: str = Field(max_length=128, unique=True)
    application_id: str = Field(max_length=128, index=True)
    program_code: str = Field(max_length=128)
    figure: str = Field(max_length=128)
    declared_fen: int = Field(sa_column=Column(BigInteger, nullable=False))
    state: str = Field(default=AuditTaskState.OPEN, max_length=16, index=True)
    audited_fen: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    note: str = Field(default="", max_length=1000)
    auditor: str = Field(default="", max_length=128)
    created_at: datetime
    due_at: datetime
    confirmed_at: datetime | None = None
    applicant_name: str = Field(default="", max_length=200)
    project_title: str = Field(default="", max_length=300)

    def to_proto(self, now: datetime) -> review_pb2.AuditTask:
        return review_pb2.AuditTask(
            task_id=self.task_id,
            application_id=self.application_id,
            program_code=self.program_code,
            figure=self.figure,
            declared_fen=self.declared_fen,
            state=AuditTaskState.parse(self.state).to_proto(),
            audited_fen=self.audited_fen,
            note=self.note,
            auditor=self.auditor,
            created_at=to_timestamp(self.created_at),
            due_at=to_timestamp(self.due_at),
            confirmed_at=to_timestamp(self.confirmed_at),
            overdue=self.state == AuditTaskState.OPEN and as_utc(self.due_at) < now,
            applicant_name=self.applicant_name,
            project_title=self.project_title,
        )


def audit_by_request(session: Session, request_id: str) -> AuditTaskRow | None:
    return session.exec(
        select(AuditTaskRow).where(col(AuditTaskRow.request_id) == request_id)
    ).first()


def list_audit_tasks(
    session: Session, *, open_only: bool, application_id: str, limit: int = 500
) -> list[AuditTaskRow]:
    statement = select(AuditTaskRow)
    if open_only:
        statement = statement.where(col(AuditTaskRow.state) == AuditTaskState.OPEN)
    if application_id:
        statement = statement.where(col(AuditTaskRow.application_id) == application_id)
    order = (col(AuditTaskRow.due_at), col(AuditTaskRow.task_id))
    return list(session.exec(statement.order_by(*order).limit(limit)).all())


# Who decided which stage (separation of duties) ------------------------------------------------


class StageDecisionRow(SQLModel, table=True):
    """One person's decision of one stage of a grant (a task, an audit, an objection)."""

    __tablename__ = "stage_decision"
    __table_args__ = (
        UniqueConstraint("stage", "ref", "decided_by", name="uq_stage_decision_act"),
        Index("ix_stage_decision_person", "application_id", "decided_by"),
    )

    id: int | None = Field(default=None, primary_key=True)
    application_id: str = Field(max_length=128)
    stage: str = Field(max_length=32)  # a ReviewStage
    decided_by: str = Field(max_length=128)
    ref: str = Field(max_length=64)  # the task, audit or objection decided
    decided_at: datetime


def stages_decided_by(session: Session, application_id: str, subject: str) -> set[ReviewStage]:
    rows = session.exec(
        select(StageDecisionRow.stage)
        .where(col(StageDecisionRow.application_id) == application_id)
        .where(col(StageDecisionRow.decided_by) == subject)
    ).all()
    return {ReviewStage.parse(stage) for stage in rows}
