"""The review service's use cases: review tasks created, cancelled and reminded by the grant
workflows, claimed, released, reassigned and decided in the departments' inbox; the expert pool,
panels and scores; special audits.

Rules kept here:
- a reviewer (or department head) sees, claims and decides only the tasks of the department in
  his token; only a head reassigns, and a claimant or a head releases;
- one person never decides two stages of the same grant (the stage_decision ledger);
- a task moves open -> claimed (by one reviewer) -> decided, or to cancelled when the grant
  leaves review; a repeated claim or decision by the same reviewer with the same content
  answers as the first;
- this service is the judge of claims (a claim binds a task to a reviewer under the task's row
  lock, and nothing in the process waits on it); the grant workflow is the judge of decisions: a
  decision goes to the workflow first (the GrantUpdates port) and is recorded only once the
  workflow accepted it, so the database never holds a decision the process does not know of;
- an overdue task is announced once per escalation level, however often the workflow asks.

Every recorded change commits with its outbox event in one unit of work; claims and decisions
also with their audit record (who, what, the amount and the reason). Expert panels and audits
are the ExpertReviews and Audits use cases below.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from sqlmodel import Session

from grantflow.v1 import events_pb2, review_pb2
from services.common.auth import Principal
from services.common.db import as_utc, now_utc, to_timestamp
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.labels import label
from services.common.unit_of_work import EventSource, Transactions, UnitOfWork
from services.common.vocabulary import (
    DEPARTMENT_ROLES,
    AuditAction,
    AuditTaskState,
    Decision,
    Department,
    ExpertTaskState,
    ReviewStage,
    Role,
    ScoreAggregation,
    TaskState,
)
from services.review import store
from services.review.commands import (
    AddExpert,
    Claim,
    ConfirmAudit,
    CreateAuditTask,
    CreateExpertReview,
    CreateTask,
    Decide,
    OpenExpertTask,
    Reassign,
    Release,
    RemindOverdueTasks,
    SubmitScores,
)
from services.review.commands import CancelTasks as CancelTasksCommand
from services.review.conflicts import ConflictSource, ExpertProfile, conflict_reason
from services.review.store import ReviewTaskRow, StageDecisionRow, TaskCounts, TaskQuery
from workflows import contracts
from workflows.review_rules import aggregate_scores

SOURCE = "review"
# Derives the ids of this service's events (EventSource.event_id); never to change, or a retry
# across an upgrade could announce a change twice.
EVENT_NAMESPACE = uuid.UUID("7c1d9e34-52a8-4b6f-9d0e-3a4b5c6d7e8f")
# What a CreateTask request says; a repeated request id must say the same.
CONTENT_FIELDS = (
    "application_id",
    "program_code",
    "department",
    "round",
    "proposed_amount_fen",
    "due_at",
    "applicant_name",
    "project_title",
    "priority",
    "stage",
)
_STATE_PROBLEMS: dict[str, str] = {
    TaskState.OPEN: "the task is not claimed by you; claim it first",
    TaskState.CLAIMED: "the task is claimed by another reviewer",
    TaskState.DECIDED: "the task is already decided",
    TaskState.CANCELLED: "the task was cancelled",
}


def event_source(topic: str) -> EventSource:
    """Where the review service's events go: `topic`, the service's Kafka topic."""
    return EventSource(SOURCE, topic, EVENT_NAMESPACE)


class GrantUpdates(Protocol):
    """The grant workflow, as the judge of decisions (services/common/grant_workflows.py)."""

    async def decide(
        self, application_id: str, decision: contracts.DecideReviewTask
    ) -> contracts.ReviewTaskAck: ...

    async def expert_review_done(
        self, application_id: str, done: contracts.ExpertReviewDone
    ) -> contracts.Acknowledged: ...

    async def audit_done(
        self, application_id: str, done: contracts.AuditDone
    ) -> contracts.Acknowledged: ...


@dataclass(frozen=True)
class TasksPage:
    tasks: list[ReviewTaskRow]
    more: bool  # whether more follow the page
    counts: TaskCounts


def own_department(caller: Principal) -> Department:
    if caller.department is None:
        raise PermissionDenied("your reviewer token names no department")
    return caller.department


def check_separation(session: Session, application_id: str, stage: str, subject: str) -> None:
    """PERMISSION_DENIED if `subject` decided another stage of the application: one person never
    decides two stages of the same grant. Every use case deciding a stage (this service's tasks,
    audits and the objections' module) calls it, and records its decision with
    `record_stage_decision` in the same unit of work."""
    others = store.stages_decided_by(session, application_id, subject) - {ReviewStage(stage)}
    if others:
        decided = sorted(others)[0]
        raise PermissionDenied(
            f"同一人不得决定同一申请的两个环节：您已决定本申请的“{label(decided)}”环节 "
            f"(one person never decides two stages of the same grant: {subject} decided its "
            f"{decided} stage)"
        )


def record_stage_decision(
    unit: UnitOfWork, application_id: str, stage: str, subject: str, ref: str
) -> None:
    unit.session.add(
        StageDecisionRow(
            application_id=application_id,
            stage=stage,
            decided_by=subject,
            ref=ref,
            decided_at=now_utc(),
        )
    )


def _check_may_see(caller: Principal, row: ReviewTaskRow) -> None:
    if caller.role in DEPARTMENT_ROLES and row.department != own_department(caller):
        raise PermissionDenied(
            f"the task belongs to the {row.department} department, not to {caller.department}"
        )


class Review:
    """The use cases, over the service's database and the grant workflows."""

    def __init__(self, transactions: Transactions, workflows: GrantUpdates) -> None:
        self.transactions = transactions
        self.workflows = workflows

    # Creating, cancelling and reminding (grant workflows) -------------------------------------

    async def create_task(self, command: CreateTask) -> ReviewTaskRow:
        task_id = uuid.uuid4().hex  # kept across the retry after a duplicate request id

        def work(unit: UnitOfWork) -> ReviewTaskRow:
            now = now_utc()
            existing = store.find_by_request(unit.session, command.request_id)
            if existing is not None:
                _check_same_request(existing, command)
                return existing
            row = ReviewTaskRow(
                task_id=task_id,
                request_id=command.request_id,
                application_id=command.application_id,
                program_code=command.program_code,
                department=command.department,
                round=command.round,
                state=TaskState.OPEN,
                proposed_amount_fen=command.proposed_amount_fen,
                created_at=now,
                due_at=command.due_at,
                applicant_name=command.applicant_name,
                project_title=command.project_title,
                priority=command.priority,
                stage=command.stage,
            )
            unit.session.add(row)
            unit.announce(
                command.application_id,
                events_pb2.ReviewTaskCreated(task=row.to_proto(now)),
                key=task_id,
            )
            return row

        return await self.transactions.write(work)

    async def cancel_tasks(self, command: CancelTasksCommand) -> int:
        application_id, only = command.application_id, command.task_ids

        def work(unit: UnitOfWork) -> int:
            rows = [
                row
                for row in store.active_tasks_of(unit.session, application_id)
                if not only or row.task_id in only
            ]
            for row in rows:
                row.state = TaskState.CANCELLED
                row.reason = command.reason
                unit.session.add(row)
            if rows:
                task_ids = [row.task_id for row in rows]
                unit.announce(
                    application_id,
                    events_pb2.ReviewTasksCancelled(
                        application_id=application_id, task_ids=task_ids, reason=command.reason
                    ),
                    # A task is cancelled once, so no two cancellations name the same tasks.
                    key=f"{application_id}:{','.join(sorted(task_ids))}",
                )
            return len(rows)

        return await self.transactions.write(work)

    async def remind_overdue(self, command: RemindOverdueTasks) -> int:
        def work(unit: UnitOfWork) -> int:
            now = now_utc()
            reminded = 0
            for row in store.active_tasks_of(unit.session, command.application_id):
                if command.task_ids and row.task_id not in command.task_ids:
                    continue
                payload = events_pb2.ReviewTaskOverdue(
                    task=row.to_proto(now),
                    level=command.level,  # type: ignore[arg-type]
                )
                # One event per task and level: the workflow's activity may be retried.
                key = f"{row.task_id}:{command.level}"
                if unit.announced(self._source().event_id(payload, key)):
                    continue
                unit.announce(command.application_id, payload, key=key)
                reminded += 1
            return reminded

        return await self.transactions.write(work)

    def _source(self) -> EventSource:
        assert self.transactions.source is not None
        return self.transactions.source

    # Reading ----------------------------------------------------------------------------------

    async def task(self, caller: Principal, task_id: str) -> ReviewTaskRow:
        row = await self.transactions.read(lambda session: store.get_task(session, task_id))
        if row is None:
            raise NotFound(f"review task {task_id} not found")
        _check_may_see(caller, row)
        return row

    async def tasks(self, caller: Principal, query: TaskQuery) -> TasksPage:
        if caller.role in DEPARTMENT_ROLES:
            own = own_department(caller)
            if query.department and query.department != own:
                raise PermissionDenied(
                    f"a reviewer of {own} may not list the tasks of {query.department}"
                )
            query = replace(query, department=own)
        now = now_utc()

        def work(session: Session) -> TasksPage:
            rows, more = store.list_tasks(session, query)
            counts = store.count_tasks(session, query.department, caller.subject, now)
            return TasksPage(rows, more, counts)

        return await self.transactions.read(work)

    # Claiming and deciding (reviewers) --------------------------------------------------------

    async def claim(self, command: Claim) -> ReviewTaskRow:
        caller = command.caller
        own_department(caller)
        row = await self.task(caller, command.task_id)
        if row.state == TaskState.CLAIMED and row.assignee == caller.subject:
            return row
        if row.state != TaskState.OPEN:
            raise FailedPrecondition(f"cannot claim: {_STATE_PROBLEMS[row.state]}")

        def work(unit: UnitOfWork) -> ReviewTaskRow:
            current = store.get_task(unit.session, row.task_id, for_update=True)
            assert current is not None  # tasks are never deleted
            if current.state == TaskState.CLAIMED and current.assignee == caller.subject:
                return current
            if current.state != TaskState.OPEN:
                raise FailedPrecondition(f"cannot claim: {_STATE_PROBLEMS[current.state]}")
            check_separation(unit.session, current.application_id, current.stage, caller.subject)
            now = now_utc()
            current.state = TaskState.CLAIMED
            current.assignee = caller.subject
            current.claimed_at = now
            unit.session.add(current)
            # A released task is claimed again: each claim its own event and audit record.
            claimed = events_pb2.ReviewTaskClaimed(task=current.to_proto(now))
            key = current.task_id
            if unit.announced(self._source().event_id(claimed, key)):
                key = f"{current.task_id}:{now.isoformat()}"
            unit.announce(current.application_id, claimed, key=key)
            unit.audit(
                AuditAction.REVIEW_CLAIMED,
                current.application_id,
                caller,
                details={"task_id": current.task_id, "department": current.department},
                key=key,
            )
            return current

        return await self.transactions.write(work)

    async def decide(self, command: Decide) -> ReviewTaskRow:
        caller, decision = command.caller, command.decision
        department = own_department(caller)
        row = await self.task(caller, command.task_id)
        if command.approved_amount_fen > row.proposed_amount_fen:
            raise InvalidArgument(
                "approved_amount_fen",
                f"must not exceed the proposed amount of {row.proposed_amount_fen} fen",
            )
        approved = command.approved_amount_fen or row.proposed_amount_fen
        outcome = (decision, command.reason, approved if decision == Decision.APPROVE else 0)

        def same_decision(task: ReviewTaskRow) -> bool:
            return (
                task.state == TaskState.DECIDED
                and task.assignee == caller.subject
                and (task.decision, task.reason, task.decided_amount_fen) == outcome
            )

        if same_decision(row):
            return row
        if row.state != TaskState.CLAIMED or row.assignee != caller.subject:
            raise FailedPrecondition(f"cannot decide: {_STATE_PROBLEMS[row.state]}")
        await self.transactions.read(
            lambda session: check_separation(session, row.application_id, row.stage, caller.subject)
        )
        recorded = await self.workflows.decide(
            row.application_id,
            contracts.DecideReviewTask(
                task_id=row.task_id,
                reviewer=caller.subject,
                department=department,
                decision=outcome[0],
                reason=outcome[1],
                approved_amount_fen=outcome[2],
            ),
        )
        if recorded.decision:
            # A retried update answers the decision the workflow took first; record that one.
            outcome = (
                Decision.parse(recorded.decision),
                recorded.reason,
                recorded.approved_amount_fen,
            )

        def work(unit: UnitOfWork) -> ReviewTaskRow:
            current = store.get_task(unit.session, row.task_id, for_update=True)
            assert current is not None  # tasks are never deleted
            if same_decision(current):
                return current
            if current.state != TaskState.CLAIMED or current.assignee != caller.subject:
                raise FailedPrecondition(f"cannot decide: {_STATE_PROBLEMS[current.state]}")
            now = now_utc()
            current.state = TaskState.DECIDED
            current.decision, current.reason, current.decided_amount_fen = outcome
            current.decided_at = now
            unit.session.add(current)
            record_stage_decision(
                unit, current.application_id, current.stage, caller.subject, current.task_id
            )
            unit.announce(
                current.application_id,
                events_pb2.ReviewTaskDecided(task=current.to_proto(now)),
                key=current.task_id,
            )
            unit.audit(
                AuditAction.REVIEW_DECIDED,
                current.application_id,
                caller,
                current.reason,
                {
                    "task_id": current.task_id,
                    "department": current.department,
                    "round": current.round,
                    "decision": current.decision,
                    "approved_amount_fen": current.decided_amount_fen,
                    "proposed_amount_fen": current.proposed_amount_fen,
                },
                key=current.task_id,
            )
            return current

        return await self.transactions.write(work)

    # The inbox: release and reassignment ------------------------------------------------------

    async def release(self, command: Release) -> ReviewTaskRow:
        """The claimant, or a head of the task's department, gives a claimed task back."""
        caller = command.caller
        own_department(caller)
        row = await self.task(caller, command.task_id)

        def work(unit: UnitOfWork) -> ReviewTaskRow:
            current = store.get_task(unit.session, row.task_id, for_update=True)
            assert current is not None  # tasks are never deleted
            if current.state == TaskState.OPEN:
                return current  # released already (a retry)
            if current.state != TaskState.CLAIMED:
                raise FailedPrecondition(f"cannot release: {_STATE_PROBLEMS[current.state]}")
            if current.assignee != caller.subject and caller.role != Role.DEPARTMENT_HEAD:
                raise PermissionDenied(
                    "只有领取人或处室负责人可以退回任务 "
                    "(only the claimant or the department head may release the task)"
                )
            now = now_utc()
            previous = current.assignee
            current.state, current.assignee, current.claimed_at = TaskState.OPEN, "", None
            unit.session.add(current)
            # A task may be released more than once over its life: each release its own event.
            key = f"{current.task_id}:{previous}:{now.isoformat()}"
            unit.announce(
                current.application_id,
                events_pb2.ReviewTaskReleased(
                    task=current.to_proto(now), released_by=caller.subject, reason=command.reason
                ),
                key=key,
            )
            unit.audit(
                AuditAction.REVIEW_RELEASED,
                current.application_id,
                caller,
                command.reason,
                {"task_id": current.task_id, "previous_assignee": previous},
                key=key,
            )
            return current

        return await self.transactions.write(work)

    async def reassign(self, command: Reassign) -> ReviewTaskRow:
        """A head of the task's department gives an active task to a named reviewer."""
        caller = command.caller
        if caller.role != Role.DEPARTMENT_HEAD:
            raise PermissionDenied(
                "只有处室负责人可以改派任务 (only a department head may reassign a task)"
            )
        own_department(caller)
        row = await self.task(caller, command.task_id)

        def work(unit: UnitOfWork) -> ReviewTaskRow:
            current = store.get_task(unit.session, row.task_id, for_update=True)
            assert current is not None  # tasks are never deleted
            if current.state == TaskState.CLAIMED and current.assignee == command.assignee:
                return current
            if current.state not in (TaskState.OPEN, TaskState.CLAIMED):
                raise FailedPrecondition(f"cannot reassign: {_STATE_PROBLEMS[current.state]}")
            check_separation(unit.session, current.application_id, current.stage, command.assignee)
            now = now_utc()
            previous = current.assignee
            current.state, current.assignee, current.claimed_at = (
                TaskState.CLAIMED,
                command.assignee,
                now,
            )
            unit.session.add(current)
            key = f"{current.task_id}:{command.assignee}:{now.isoformat()}"
            unit.announce(
                current.application_id,
                events_pb2.ReviewTaskReassigned(
                    task=current.to_proto(now),
                    previous_assignee=previous,
                    reassigned_by=caller.subject,
                    reason=command.reason,
                ),
                key=key,
            )
            unit.audit(
                AuditAction.REVIEW_REASSIGNED,
                current.application_id,
                caller,
                command.reason,
                {
                    "task_id": current.task_id,
                    "previous_assignee": previous,
                    "assignee": command.assignee,
                },
                key=key,
            )
            return current

        return await self.transactions.write(work)


def _check_same_request(existing: ReviewTaskRow, command: CreateTask) -> None:
    for name in CONTENT_FIELDS:
        stored, value = getattr(existing, name), getattr(command, name)
        if isinstance(stored, datetime):
            stored = as_utc(stored)
        if stored != value:
            raise AlreadyExists(
                f"request_id {existing.request_id} already created task {existing.task_id} "
                f"with a different {name}"
            )


# The expert pool and panels --------------------------------------------------------------------


def _profile(expert: store.ExpertRow) -> ExpertProfile:
    return ExpertProfile(
        expert_id=expert.expert_id,
        name=expert.name,
        employer_credit_code=expert.employer_credit_code,
        declared_conflicts=tuple(expert.conflicts()),
        person_id=expert.person_id,
    )


def draw(request_id: str, candidates: list[str], size: int) -> list[str]:
    """`size` of the candidates at random, the same for the same request id (a retried
    CreateExpertReview, or a replayed workflow, draws the same panel)."""
    seed = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big")
    return sorted(random.Random(seed).sample(sorted(candidates), size))


NOT_ON_PANEL = (
    "您不是该申请的评审专家，无权查看其材料 (you are not on this application's expert panel)"
)


class ExpertReviews:
    """The expert pool, panels drawn from it, and the experts' scores.

    Scores are the expert's own until every member has scored: no view of a panel, nor another
    member's task, shows them before. The last expert's scores complete the panel: the aggregate
    goes to the grant (Update expert_review_done) first and is recorded only once the grant took
    it, so nothing is recorded that the grant does not know; a refused or failed Update leaves the
    last expert's task pending, to be submitted again.
    """

    def __init__(
        self, transactions: Transactions, workflows: GrantUpdates, conflicts: ConflictSource
    ) -> None:
        self.transactions = transactions
        self.workflows = workflows
        self.conflicts = conflicts

    async def add_expert(self, command: AddExpert) -> store.ExpertRow:
        conflicts = json.dumps(sorted({code.upper() for code in command.declared_conflicts}))

        def work(unit: UnitOfWork) -> store.ExpertRow:
            now = now_utc()
            row = unit.session.get(store.ExpertRow, command.expert_id, with_for_update=True)
            if row is None:
                row = store.ExpertRow(
                    expert_id=command.expert_id,
                    name=command.name,
                    field=command.field,
                    created_at=now,
                    updated_at=now,
                )
            fields = {
                "name": command.name,
                "field": command.field,
                "employer_credit_code": command.employer_credit_code.upper(),
                "declared_conflicts": conflicts,
                "person_id": command.person_id,
                "active": command.active,
            }
            if row in unit.session and all(
                getattr(row, name) == value for name, value in fields.items()
            ):
                return row  # nothing changed (a retry)
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = now
            unit.session.add(row)
            unit.audit(
                AuditAction.EXPERT_ADDED,
                f"expert:{command.expert_id}",
                command.caller,
                details={**fields, "declared_conflicts": json.loads(conflicts)},
                key=f"{command.expert_id}:{now.isoformat()}",
            )
            return row

        return await self.transactions.write(work)

    async def experts(self, field: str) -> list[store.ExpertRow]:
        return await self.transactions.read(lambda s: store.experts_of_field(s, field))

    async def create_panel(self, command: CreateExpertReview) -> review_pb2.ExpertPanel:
        panel_id = uuid.uuid4().hex  # kept across the retry after a duplicate request id
        parties = await self.conflicts.parties(command.applicant_credit_code)
        rubric = json.dumps(
            [{"code": c.code, "name": c.name, "max_points": c.max_points} for c in command.rubric],
            ensure_ascii=False,
        )

        def work(unit: UnitOfWork) -> review_pb2.ExpertPanel:
            session = unit.session
            existing = store.panel_by_request(session, command.request_id)
            if existing is not None:
                if existing.application_id != command.application_id:
                    raise AlreadyExists(
                        f"request_id {command.request_id} already drew panel "
                        f"{existing.panel_id} for another application"
                    )
                return _panel_view(session, existing)
            pool = [e for e in store.experts_of_field(session, command.field) if e.active]
            free = [
                e.expert_id
                for e in pool
                if not conflict_reason(_profile(e), command.applicant_credit_code, parties)
            ]
            if len(free) < command.panel_size:
                raise FailedPrecondition(
                    f"“{command.field}”领域可抽取的专家不足：需要 {command.panel_size} 名，"
                    f"专家库 {len(pool)} 名，其中 {len(pool) - len(free)} 名须回避 "
                    f"(too few experts free of conflicts in {command.field}: "
                    f"{len(free)} of {len(pool)}, {command.panel_size} needed)"
                )
            now = now_utc()
            panel = store.ExpertPanelRow(
                panel_id=panel_id,
                request_id=command.request_id,
                application_id=command.application_id,
                program_code=command.program_code,
                applicant_credit_code=command.applicant_credit_code.upper(),
                applicant_name=command.applicant_name,
                project_title=command.project_title,
                field=command.field,
                panel_size=command.panel_size,
                rubric=rubric,
                aggregation=command.aggregation,
                pass_score_centi=command.pass_score_centi,
                due_at=command.due_at,
                created_at=now,
            )
            session.add(panel)
            drawn = draw(command.request_id, free, command.panel_size)
            for expert_id in drawn:
                session.add(
                    store.ExpertAssignmentRow(
                        task_id=uuid.uuid5(uuid.UUID(panel_id), expert_id).hex,
                        panel_id=panel_id,
                        application_id=command.application_id,
                        expert_id=expert_id,
                    )
                )
            session.flush()
            unit.announce(
                command.application_id,
                events_pb2.ExpertPanelDrawn(
                    panel_id=panel_id,
                    application_id=command.application_id,
                    panel_size=command.panel_size,
                    due_at=to_timestamp(command.due_at),
                ),
                key=panel_id,
            )
            unit.audit(
                AuditAction.EXPERT_PANEL_DRAWN,
                command.application_id,
                details={
                    "panel_id": panel_id,
                    "field": command.field,
                    "experts": drawn,
                    "pool": len(pool),
                    "excluded_for_conflict": len(pool) - len(free),
                },
                key=panel_id,
            )
            return _panel_view(session, panel)

        return await self.transactions.write(work)

    async def panel(self, panel_id: str) -> review_pb2.ExpertPanel:
        def work(session: Session) -> review_pb2.ExpertPanel:
            panel = session.get(store.ExpertPanelRow, panel_id)
            if panel is None:
                raise NotFound(f"expert panel {panel_id} not found")
            return _panel_view(session, panel)

        return await self.transactions.read(work)

    async def my_tasks(
        self, caller: Principal, pending_only: bool, program_code: str = ""
    ) -> list[review_pb2.ExpertTask]:
        now = now_utc()

        def work(session: Session) -> list[review_pb2.ExpertTask]:
            views = []
            for mine in store.assignments_of_expert(session, caller.subject):
                if pending_only and mine.state != ExpertTaskState.PENDING:
                    continue
                view = _task_view(session, mine, now)
                if not program_code or view.program_code == program_code:
                    views.append(view)
            return views

        return await self.transactions.read(work)

    async def open_task(self, command: OpenExpertTask) -> review_pb2.ExpertTask:
        """The expert's task, by its id or by the application: only to an expert drawn for it and
        free of conflicts (a conflict declared or found after the draw closes the file too)."""
        caller, now = command.caller, now_utc()

        def find(session: Session) -> tuple[store.ExpertAssignmentRow, str, store.ExpertRow]:
            if command.task_id:
                mine = session.get(store.ExpertAssignmentRow, command.task_id)
                if mine is None:
                    raise NotFound(f"expert task {command.task_id} not found")
                if mine.expert_id != caller.subject:
                    raise PermissionDenied(NOT_ON_PANEL)
            else:
                of_application = store.assignments_of_expert(
                    session, caller.subject, application_id=command.application_id
                )
                if not of_application:
                    raise PermissionDenied(NOT_ON_PANEL)
                mine = of_application[-1]
            panel = session.get(store.ExpertPanelRow, mine.panel_id)
            expert = session.get(store.ExpertRow, caller.subject)
            assert panel is not None and expert is not None  # never deleted
            return mine, panel.applicant_credit_code, expert

        mine, applicant, expert = await self.transactions.read(find)
        reason = conflict_reason(
            _profile(expert), applicant, await self.conflicts.parties(applicant)
        )
        if reason:
            raise PermissionDenied(f"须回避：{reason}")
        return await self.transactions.read(lambda s: _task_view(s, mine, now))

    async def submit(self, command: SubmitScores) -> review_pb2.ExpertTask:
        caller = command.caller
        mine = await self.open_task(OpenExpertTask(caller=caller, task_id=command.task_id))
        scores = _checked_scores(mine, command.scores)
        total = sum(scores.values())
        if mine.state == ExpertTaskState.SUBMITTED.to_proto():
            if dict((s.code, s.score_centi) for s in mine.scores) == scores:
                return mine  # the same scores again (a retry)
            raise FailedPrecondition("您已提交评分，不能修改 (your scores are already submitted)")

        # First: record the scores unless they are the panel's last (under the panel's lock, so
        # of two experts scoring at once exactly one finds himself the last).
        def first(unit: UnitOfWork) -> tuple[bool, list[int]]:
            _, members, row = _locked(unit.session, mine.panel_id, mine.task_id)
            if row.state == ExpertTaskState.SUBMITTED:
                return False, []
            others = [m for m in members if m.task_id != row.task_id]
            if all(m.state == ExpertTaskState.SUBMITTED for m in others):
                return True, [m.total_centi for m in others] + [total]
            _record_scores(unit, row, scores, total, command.comment, caller)
            return False, []

        last, totals = await self.transactions.write(first)
        if not last:
            return await self.open_task(OpenExpertTask(caller=caller, task_id=command.task_id))

        panel = await self.transactions.read(lambda s: s.get(store.ExpertPanelRow, mine.panel_id))
        assert panel is not None
        score = aggregate_scores(ScoreAggregation(panel.aggregation), totals)
        await self.workflows.expert_review_done(
            panel.application_id,
            contracts.ExpertReviewDone(
                panel_id=panel.panel_id, score_centi=score, experts=len(totals)
            ),
        )

        def complete(unit: UnitOfWork) -> None:
            panel, _, row = _locked(unit.session, mine.panel_id, mine.task_id)
            if row.state == ExpertTaskState.SUBMITTED:
                return
            _record_scores(unit, row, scores, total, command.comment, caller)
            now = now_utc()
            panel.completed_at, panel.score_centi = now, score
            unit.session.add(panel)
            passed = score >= panel.pass_score_centi
            unit.announce(
                panel.application_id,
                events_pb2.ExpertReviewCompleted(
                    panel_id=panel.panel_id,
                    application_id=panel.application_id,
                    score_centi=score,
                    experts=len(totals),
                    passed=passed,
                ),
                key=panel.panel_id,
            )
            unit.audit(
                AuditAction.EXPERT_REVIEW_DONE,
                panel.application_id,
                caller,
                details={
                    "panel_id": panel.panel_id,
                    "score_centi": score,
                    "aggregation": panel.aggregation,
                    "totals_centi": sorted(totals),
                    "passed": passed,
                },
                key=panel.panel_id,
            )

        await self.transactions.write(complete)
        return await self.open_task(OpenExpertTask(caller=caller, task_id=command.task_id))


def _locked(
    session: Session, panel_id: str, task_id: str
) -> tuple[store.ExpertPanelRow, list[store.ExpertAssignmentRow], store.ExpertAssignmentRow]:
    panel = session.get(store.ExpertPanelRow, panel_id, with_for_update=True)
    assert panel is not None
    members = store.members_of(session, panel_id)
    row = next(m for m in members if m.task_id == task_id)
    return panel, members, row


def _record_scores(
    unit: UnitOfWork,
    row: store.ExpertAssignmentRow,
    scores: dict[str, int],
    total: int,
    comment: str,
    caller: Principal,
) -> None:
    row.state = ExpertTaskState.SUBMITTED
    row.scores = json.dumps(scores)
    row.total_centi, row.comment, row.submitted_at = total, comment, now_utc()
    unit.session.add(row)
    record_stage_decision(
        unit, row.application_id, ReviewStage.EXPERT_REVIEW, caller.subject, row.task_id
    )
    # The scores themselves stay out of the audit record's details until the panel is complete;
    # the record says who scored when, and the total.
    unit.audit(
        AuditAction.EXPERT_SCORED,
        row.application_id,
        caller,
        details={"panel_id": row.panel_id, "task_id": row.task_id, "total_centi": total},
        key=row.task_id,
    )


def _checked_scores(
    task: review_pb2.ExpertTask, given: tuple[tuple[str, int], ...]
) -> dict[str, int]:
    rubric = {criterion.code: criterion.max_points for criterion in task.rubric}
    scores: dict[str, int] = {}
    for code, value in given:
        if code not in rubric:
            raise InvalidArgument("scores", f"{code!r} is not a criterion of the rubric")
        if code in scores:
            raise InvalidArgument("scores", f"{code!r} is scored twice")
        if not 0 <= value <= rubric[code] * 100:
            raise InvalidArgument(
                "scores", f"{code!r} must be between 0 and {rubric[code] * 100} (hundredths)"
            )
        scores[code] = value
    missing = sorted(set(rubric) - set(scores))
    if missing:
        raise InvalidArgument("scores", f"every criterion needs a score; missing {missing}")
    return scores


def _panel_view(session: Session, panel: store.ExpertPanelRow) -> review_pb2.ExpertPanel:
    members = store.members_of(session, panel.panel_id)
    names = store.expert_names(session, [m.expert_id for m in members])
    return store.panel_proto(panel, members, names)


def _task_view(
    session: Session, mine: store.ExpertAssignmentRow, now: datetime
) -> review_pb2.ExpertTask:
    panel = session.get(store.ExpertPanelRow, mine.panel_id)
    assert panel is not None
    members = store.members_of(session, panel.panel_id)
    others = [m for m in members if m.task_id != mine.task_id]
    names = store.expert_names(session, [m.expert_id for m in members])
    return store.expert_task_proto(panel, mine, others, names, now)


# Special audits --------------------------------------------------------------------------------

AUDIT_CONTENT_FIELDS = (
    "application_id",
    "program_code",
    "figure",
    "declared_fen",
    "due_at",
    "applicant_name",
    "project_title",
)


class Audits:
    """Special audits: asked for by the grant, confirmed by an auditor. The confirmation goes to
    the grant (Update audit_done) before it is recorded; the grant applies 就低原则."""

    def __init__(self, transactions: Transactions, workflows: GrantUpdates) -> None:
        self.transactions = transactions
        self.workflows = workflows

    async def create(self, command: CreateAuditTask) -> store.AuditTaskRow:
        task_id = uuid.uuid4().hex

        def work(unit: UnitOfWork) -> store.AuditTaskRow:
            existing = store.audit_by_request(unit.session, command.request_id)
            if existing is not None:
                for name in AUDIT_CONTENT_FIELDS:
                    stored, value = getattr(existing, name), getattr(command, name)
                    if isinstance(stored, datetime):
                        stored = as_utc(stored)
                    if stored != value:
                        raise AlreadyExists(
                            f"request_id {command.request_id} already created audit task "
                            f"{existing.task_id} with a different {name}"
                        )
                return existing
            now = now_utc()
            row = store.AuditTaskRow(
                task_id=task_id,
                request_id=command.request_id,
                application_id=command.application_id,
                program_code=command.program_code,
                figure=command.figure,
                declared_fen=command.declared_fen,
                created_at=now,
                due_at=command.due_at,
                applicant_name=command.applicant_name,
                project_title=command.project_title,
            )
            unit.session.add(row)
            unit.announce(
                command.application_id,
                events_pb2.AuditTaskCreated(task=row.to_proto(now)),
                key=task_id,
            )
            unit.audit(
                AuditAction.AUDIT_REQUESTED,
                command.application_id,
                details={
                    "task_id": task_id,
                    "figure": command.figure,
                    "declared_fen": command.declared_fen,
                },
                key=task_id,
            )
            return row

        return await self.transactions.write(work)

    async def tasks(self, open_only: bool, application_id: str) -> list[store.AuditTaskRow]:
        return await self.transactions.read(
            lambda s: store.list_audit_tasks(s, open_only=open_only, application_id=application_id)
        )

    async def confirm(self, command: ConfirmAudit) -> store.AuditTaskRow:
        caller = command.caller
        row = await self.transactions.read(lambda s: s.get(store.AuditTaskRow, command.task_id))
        if row is None:
            raise NotFound(f"audit task {command.task_id} not found")
        outcome = (caller.subject, command.audited_fen, command.note)
        if row.state == AuditTaskState.CONFIRMED:
            if (row.auditor, row.audited_fen, row.note) == outcome:
                return row  # the same confirmation again (a retry)
            raise FailedPrecondition("审计已确认 (the audit is already confirmed)")
        if row.state != AuditTaskState.OPEN:
            raise FailedPrecondition("审计任务已取消 (the audit task was cancelled)")
        await self.transactions.read(
            lambda s: check_separation(s, row.application_id, ReviewStage.AUDIT, caller.subject)
        )
        await self.workflows.audit_done(
            row.application_id,
            contracts.AuditDone(
                task_id=row.task_id,
                figure=row.figure,
                audited_fen=command.audited_fen,
                auditor=caller.subject,
            ),
        )

        def work(unit: UnitOfWork) -> store.AuditTaskRow:
            current = unit.session.get(store.AuditTaskRow, row.task_id, with_for_update=True)
            assert current is not None
            if current.state == AuditTaskState.CONFIRMED:
                return current
            now = now_utc()
            current.state = AuditTaskState.CONFIRMED
            current.auditor, current.audited_fen, current.note = outcome
            current.confirmed_at = now
            unit.session.add(current)
            record_stage_decision(
                unit, current.application_id, ReviewStage.AUDIT, caller.subject, current.task_id
            )
            unit.announce(
                current.application_id,
                events_pb2.AuditConfirmed(task=current.to_proto(now)),
                key=current.task_id,
            )
            unit.audit(
                AuditAction.AUDIT_CONFIRMED,
                current.application_id,
                caller,
                command.note,
                {
                    "task_id": current.task_id,
                    "figure": current.figure,
                    "declared_fen": current.declared_fen,
                    "audited_fen": current.audited_fen,
                },
                key=current.task_id,
            )
            return current

        return await self.transactions.write(work)
