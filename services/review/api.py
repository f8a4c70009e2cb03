"""ReviewService: the gRPC face of the review tasks (grantflow.v1.ReviewService).

Grant workflows create and cancel tasks (system role); reviewers list, claim and decide the tasks
of their own department. A claim or decision goes to the grant workflow as a Temporal Update first
and is recorded only once the workflow accepted it, so the database never holds a claim or a
decision the process does not know of. Every recorded change enqueues its event in the same
transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from grantflow.v1 import events_pb2, review_pb2, review_pb2_grpc
from services.common import validation
from services.common.auth import Principal, current_principal
from services.common.config import Settings
from services.common.db import Database, as_utc, from_timestamp, now_utc
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.grpc_server import roles
from services.common.kafka import REVIEW, make_envelope, topic
from services.common.outbox import OutboxEvent, enqueue
from services.common.vocabulary import ACTIVE_TASK_STATES, Decision, Department, Role, TaskState
from services.review import store
from services.review.grant_workflows import GrantWorkflows
from services.review.store import ReviewTaskRow
from workflows import contracts

SOURCE = "review"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_ROUND = 100
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
FULL_NAME = review_pb2.DESCRIPTOR.services_by_name["ReviewService"].full_name

_STATE_PROBLEMS: dict[str, str] = {
    TaskState.OPEN: "the task is not claimed by you; claim it first",
    TaskState.CLAIMED: "the task is claimed by another reviewer",
    TaskState.DECIDED: "the task is already decided",
    TaskState.CANCELLED: "the task was cancelled",
}


def _own_department(caller: Principal) -> Department:
    if caller.department is None:
        raise PermissionDenied("your reviewer token names no department")
    return caller.department


def _check_may_see(caller: Principal, row: ReviewTaskRow) -> None:
    if caller.role == Role.REVIEWER and row.department != _own_department(caller):
        raise PermissionDenied(
            f"the task belongs to the {row.department} department, not to {caller.department}"
        )


def _event(subject: str, payload: Message) -> events_pb2.EventEnvelope:
    return make_envelope(SOURCE, subject, payload)


class ReviewServicer(review_pb2_grpc.ReviewServiceServicer):
    METHOD_ROLES = {
        "ListTasks": roles(Role.REVIEWER, Role.OPS, Role.SYSTEM),
        "GetTask": roles(Role.REVIEWER, Role.OPS, Role.SYSTEM),
        "ClaimTask": roles(Role.REVIEWER),
        "DecideTask": roles(Role.REVIEWER),
        "CreateTask": roles(Role.SYSTEM),
        "CancelTasks": roles(Role.SYSTEM),
        "RemindOverdueTasks": roles(Role.SYSTEM),
    }

    def __init__(self, settings: Settings, db: Database, workflows: GrantWorkflows) -> None:
        self.settings = settings
        self.db = db
        self.workflows = workflows
        self.topic = topic(settings, REVIEW)

    # Creating and cancelling (grant workflows) ------------------------------------------------

    async def CreateTask(
        self, request: review_pb2.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        request_id = validation.request_id("request_id", request.request_id)
        application_id = validation.identifier("application_id", request.application_id)
        program_code = validation.identifier("program_code", request.program_code)
        department = validation.term("department", Department, request.department)
        if not 1 <= request.round <= MAX_ROUND:
            raise InvalidArgument("round", f"must be between 1 and {MAX_ROUND}")
        proposed = validation.fen("proposed_amount_fen", request.proposed_amount_fen)
        if not request.HasField("due_at"):
            raise InvalidArgument("due_at", "is required")
        try:
            due_at = from_timestamp(request.due_at)
        except (ValueError, OverflowError) as exc:
            raise InvalidArgument("due_at", "is not a valid time") from exc
        applicant_name = validation.text(
            "applicant_name", request.applicant_name, max_len=200, required=False
        )
        project_title = validation.text(
            "project_title", request.project_title, max_len=300, required=False
        )
        wanted = ReviewTaskRow(
            task_id=uuid.uuid4().hex,
            request_id=request_id,
            application_id=application_id,
            program_code=program_code,
            department=department,
            round=request.round,
            state=TaskState.OPEN,
            proposed_amount_fen=proposed,
            created_at=now_utc(),
            due_at=due_at,
            applicant_name=applicant_name,
            project_title=project_title,
        )

        def work(session: Session) -> review_pb2.ReviewTask:
            now = now_utc()
            existing = store.find_by_request(session, request_id)
            if existing is not None:
                return self._same_request(existing, wanted, now)
            row = ReviewTaskRow.model_validate(wanted.model_dump())
            row.created_at = now
            session.add(row)
            session.flush()
            task = row.to_proto(now)
            enqueue(
                session,
                self.topic,
                _event(application_id, events_pb2.ReviewTaskCreated(task=task)),
            )
            return task

        try:
            return await self.db.run(work)
        except IntegrityError:
            # A concurrent call with the same request id won the insert; answer as it did.
            return await self.db.run(work)

    @staticmethod
    def _same_request(
        existing: ReviewTaskRow, wanted: ReviewTaskRow, now: datetime
    ) -> review_pb2.ReviewTask:
        for name in CONTENT_FIELDS:
            stored, value = getattr(existing, name), getattr(wanted, name)
            if isinstance(stored, datetime):
                stored = as_utc(stored)
            if stored != value:
                raise AlreadyExists(
                    f"request_id {existing.request_id} already created task {existing.task_id} "
                    f"with a different {name}"
                )
        return existing.to_proto(now)

    async def CancelTasks(
        self, request: review_pb2.CancelTasksRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.CancelTasksResponse:
        application_id = validation.identifier("application_id", request.application_id)
        reason = validation.text("reason", request.reason, max_len=1000, required=False)

        only = {validation.identifier("task_ids", task_id) for task_id in request.task_ids}

        def work(session: Session) -> int:
            rows = [
                row
                for row in store.active_tasks_of(session, application_id)
                if not only or row.task_id in only
            ]
            for row in rows:
                row.state = TaskState.CANCELLED
                row.reason = reason
                session.add(row)
            if rows:
                payload = events_pb2.ReviewTasksCancelled(
                    application_id=application_id,
                    task_ids=[row.task_id for row in rows],
                    reason=reason,
                )
                enqueue(session, self.topic, _event(application_id, payload))
            return len(rows)

        return review_pb2.CancelTasksResponse(cancelled=await self.db.run(work))

    async def RemindOverdueTasks(
        self, request: review_pb2.RemindOverdueTasksRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.RemindOverdueTasksResponse:
        application_id = validation.identifier("application_id", request.application_id)
        only = {validation.identifier("task_ids", task_id) for task_id in request.task_ids}
        if request.level not in (
            review_pb2.ESCALATION_LEVEL_REMINDER,
            review_pb2.ESCALATION_LEVEL_ESCALATION,
        ):
            raise InvalidArgument("level", "must be REMINDER or ESCALATION")

        def work(session: Session) -> int:
            now = now_utc()
            reminded = 0
            for row in store.active_tasks_of(session, application_id):
                if only and row.task_id not in only:
                    continue
                # One event per task and level: the workflow's activity may be retried.
                event_id = str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"overdue/{row.task_id}/{request.level}")
                )
                if session.exec(
                    select(OutboxEvent).where(OutboxEvent.event_id == event_id)
                ).first():
                    continue
                payload = events_pb2.ReviewTaskOverdue(task=row.to_proto(now), level=request.level)
                enqueue(
                    session,
                    self.topic,
                    make_envelope(SOURCE, application_id, payload, event_id=event_id),
                )
                reminded += 1
            return reminded

        return review_pb2.RemindOverdueTasksResponse(reminded=await self.db.run(work))

    # Reading ----------------------------------------------------------------------------------

    async def ListTasks(
        self, request: review_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ListTasksResponse:
        caller = current_principal()
        department = validation.optional_term("department", Department, request.department)
        if caller.role == Role.REVIEWER:
            own = _own_department(caller)
            if department and department != own:
                raise PermissionDenied(
                    f"a reviewer of {own} may not list the tasks of {department}"
                )
            department = own
        now = now_utc()
        due_before: datetime | None = None
        if request.filter in (review_pb2.TASK_FILTER_UNSPECIFIED, review_pb2.TASK_FILTER_OPEN):
            states: frozenset[TaskState] = ACTIVE_TASK_STATES
        elif request.filter == review_pb2.TASK_FILTER_OVERDUE:
            states, due_before = ACTIVE_TASK_STATES, now
        elif request.filter == review_pb2.TASK_FILTER_ALL:
            states = frozenset()
        else:
            raise InvalidArgument("filter", "is not a known task filter")
        assignee = validation.text("assignee", request.assignee, max_len=128, required=False)
        application_id = ""
        if request.application_id:
            application_id = validation.identifier("application_id", request.application_id)
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = store.parse_page_token(request.page_token) if request.page_token else None
        query = store.TaskQuery(
            department=department,
            assignee=assignee,
            application_id=application_id,
            states=states,
            due_before=due_before,
            page_size=page_size,
            after=after,
        )
        rows, more = await self.db.run_read(lambda session: store.list_tasks(session, query))
        return review_pb2.ListTasksResponse(
            tasks=[row.to_proto(now) for row in rows],
            next_page_token=store.page_token(rows[-1]) if more and rows else "",
        )

    async def GetTask(
        self, request: review_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        row = await self._load_visible(current_principal(), request.task_id)
        return row.to_proto(now_utc())

    async def _load_visible(self, caller: Principal, task_id: str) -> ReviewTaskRow:
        task_id = validation.identifier("task_id", task_id)
        row = await self.db.run_read(lambda session: store.get_task(session, task_id))
        if row is None:
            raise NotFound(f"review task {task_id} not found")
        _check_may_see(caller, row)
        return row

    # Claiming and deciding (reviewers) --------------------------------------------------------

    async def ClaimTask(
        self, request: review_pb2.ClaimTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        caller = current_principal()
        department = _own_department(caller)
        row = await self._load_visible(caller, request.task_id)
        if row.state == TaskState.CLAIMED and row.assignee == caller.subject:
            return row.to_proto(now_utc())
        if row.state != TaskState.OPEN:
            raise FailedPrecondition(f"cannot claim: {_STATE_PROBLEMS[row.state]}")
        await self.workflows.claim(
            row.application_id,
            contracts.ClaimReviewTask(
                task_id=row.task_id, reviewer=caller.subject, department=department
            ),
        )

        def work(session: Session) -> review_pb2.ReviewTask:
            now = now_utc()
            current = store.get_task(session, row.task_id, for_update=True)
            assert current is not None  # tasks are never deleted
            if current.state == TaskState.CLAIMED and current.assignee == caller.subject:
                return current.to_proto(now)
            if current.state != TaskState.OPEN:
                raise FailedPrecondition(f"cannot claim: {_STATE_PROBLEMS[current.state]}")
            current.state = TaskState.CLAIMED
            current.assignee = caller.subject
            current.claimed_at = now
            session.add(current)
            task = current.to_proto(now)
            payload = events_pb2.ReviewTaskClaimed(task=task)
            enqueue(session, self.topic, _event(current.application_id, payload))
            return task

        return await self.db.run(work)

    async def DecideTask(
        self, request: review_pb2.DecideTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        caller = current_principal()
        department = _own_department(caller)
        decision = validation.term("decision", Decision, request.decision)
        reason = validation.text(
            "reason", request.reason, max_len=1000, required=decision != Decision.APPROVE
        )
        approved = validation.fen("approved_amount_fen", request.approved_amount_fen)
        if approved and decision != Decision.APPROVE:
            raise InvalidArgument("approved_amount_fen", "applies only to an approval")
        row = await self._load_visible(caller, request.task_id)
        if approved > row.proposed_amount_fen:
            raise InvalidArgument(
                "approved_amount_fen",
                f"must not exceed the proposed amount of {row.proposed_amount_fen} fen",
            )
        decided_amount = (
            (approved or row.proposed_amount_fen) if decision == Decision.APPROVE else 0
        )
        outcome = (decision, reason, decided_amount)

        def same_decision(task: ReviewTaskRow) -> bool:
            return (
                task.state == TaskState.DECIDED
                and task.assignee == caller.subject
                and (task.decision, task.reason, task.decided_amount_fen) == outcome
            )

        if same_decision(row):
            return row.to_proto(now_utc())
        if row.state != TaskState.CLAIMED or row.assignee != caller.subject:
            raise FailedPrecondition(f"cannot decide: {_STATE_PROBLEMS[row.state]}")
        recorded = await self.workflows.decide(
            row.application_id,
            contracts.DecideReviewTask(
                task_id=row.task_id,
                reviewer=caller.subject,
                department=department,
                decision=decision,
                reason=reason,
                approved_amount_fen=decided_amount,
            ),
        )

        if recorded.decision:
            # A retried update answers the decision the workflow took first; record that one.
            decision = Decision.parse(recorded.decision)
            reason, decided_amount = recorded.reason, recorded.approved_amount_fen
            outcome = (decision, reason, decided_amount)

        def work(session: Session) -> review_pb2.ReviewTask:
            now = now_utc()
            current = store.get_task(session, row.task_id, for_update=True)
            assert current is not None  # tasks are never deleted
            if same_decision(current):
                return current.to_proto(now)
            if current.state != TaskState.CLAIMED or current.assignee != caller.subject:
                raise FailedPrecondition(f"cannot decide: {_STATE_PROBLEMS[current.state]}")
            current.state = TaskState.DECIDED
            current.decision = decision
            current.reason = reason
            current.decided_amount_fen = decided_amount
            current.decided_at = now
            session.add(current)
            task = current.to_proto(now)
            payload = events_pb2.ReviewTaskDecided(task=task)
            enqueue(session, self.topic, _event(current.application_id, payload))
            return task

        return await self.db.run(work)
