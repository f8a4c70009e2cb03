"""The review service's use cases: review tasks created, cancelled and reminded by the grant
workflows, claimed and decided by the reviewers of their department.

Rules kept here:
- a reviewer sees, claims and decides only the tasks of the department in his token;
- a task moves open -> claimed (by one reviewer) -> decided, or to cancelled when the grant
  leaves review; a repeated claim or decision by the same reviewer with the same content
  answers as the first;
- this service is the judge of claims (a claim binds a task to a reviewer under the task's row
  lock, and nothing in the process waits on it); the grant workflow is the judge of decisions: a
  decision goes to the workflow first (the GrantUpdates port) and is recorded only once the
  workflow accepted it, so the database never holds a decision the process does not know of;
- an overdue task is announced once per escalation level, however often the workflow asks.

Every recorded change commits with its outbox event in one unit of work; claims and decisions
also with their audit record (who, what, the amount and the reason).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from sqlmodel import Session

from grantflow.v1 import events_pb2
from services.common.auth import Principal
from services.common.db import as_utc, now_utc
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.unit_of_work import EventSource, Transactions, UnitOfWork
from services.common.vocabulary import AuditAction, Decision, Department, Role, TaskState
from services.review import store
from services.review.commands import CancelTasks as CancelTasksCommand
from services.review.commands import Claim, CreateTask, Decide, RemindOverdueTasks
from services.review.store import ReviewTaskRow, TaskQuery
from workflows import contracts

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


@dataclass(frozen=True)
class TasksPage:
    tasks: list[ReviewTaskRow]
    more: bool  # whether more follow the page


def own_department(caller: Principal) -> Department:
    if caller.department is None:
        raise PermissionDenied("your reviewer token names no department")
    return caller.department


def _check_may_see(caller: Principal, row: ReviewTaskRow) -> None:
    if caller.role == Role.REVIEWER and row.department != own_department(caller):
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
        if caller.role == Role.REVIEWER:
            own = own_department(caller)
            if query.department and query.department != own:
                raise PermissionDenied(
                    f"a reviewer of {own} may not list the tasks of {query.department}"
                )
            query = replace(query, department=own)

        def work(session: Session) -> TasksPage:
            rows, more = store.list_tasks(session, query)
            return TasksPage(rows, more)

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
            now = now_utc()
            current.state = TaskState.CLAIMED
            current.assignee = caller.subject
            current.claimed_at = now
            unit.session.add(current)
            unit.announce(
                current.application_id,
                events_pb2.ReviewTaskClaimed(task=current.to_proto(now)),
                key=current.task_id,
            )
            unit.audit(
                AuditAction.REVIEW_CLAIMED,
                current.application_id,
                caller,
                details={"task_id": current.task_id, "department": current.department},
                key=current.task_id,
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
