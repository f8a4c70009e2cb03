"""ReviewServicer: the gRPC face of the review tasks (grantflow.v1.ReviewService).

Grant workflows create, cancel and remind tasks (system role); reviewers list, claim and decide
the tasks of their own department. Each method checks its whole request (INVALID_ARGUMENT naming
the field, before anything is touched), turns it into a command, runs the use case
(use_cases.py, where the rules live) and converts the answer. Who may call what is the role
table of SERVICE.
"""

from __future__ import annotations

from datetime import datetime

import grpc

from grantflow.v1 import review_pb2, review_pb2_grpc
from services.common import validation
from services.common.auth import current_principal
from services.common.db import from_timestamp, now_utc
from services.common.errors import InvalidArgument
from services.common.service_main import ServiceSpec
from services.common.vocabulary import ACTIVE_TASK_STATES, Decision, Department, Role, TaskState
from services.review import commands, store
from services.review.use_cases import Review

SERVICE = ServiceSpec(
    name="review",
    descriptor=review_pb2.DESCRIPTOR.services_by_name["ReviewService"],
    roles={
        "ListTasks": (Role.REVIEWER, Role.OPS, Role.SYSTEM),
        "GetTask": (Role.REVIEWER, Role.OPS, Role.SYSTEM),
        "ClaimTask": (Role.REVIEWER,),
        "DecideTask": (Role.REVIEWER,),
        "CreateTask": (Role.SYSTEM,),
        "CancelTasks": (Role.SYSTEM,),
        "RemindOverdueTasks": (Role.SYSTEM,),
    },
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_ROUND = 100
MAX_REASON = 1000  # review_task.reason
MAX_NAME = 200
MAX_TITLE = 300
MAX_ASSIGNEE = 128
ESCALATION_LEVELS = (review_pb2.ESCALATION_LEVEL_REMINDER, review_pb2.ESCALATION_LEVEL_ESCALATION)


def _task_ids(field: str, values: list[str]) -> frozenset[str]:
    return frozenset(validation.identifier(field, task_id) for task_id in values)


def _due_at(request: review_pb2.CreateTaskRequest) -> datetime:
    if not request.HasField("due_at"):
        raise InvalidArgument("due_at", "is required")
    try:
        return from_timestamp(request.due_at)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument("due_at", "is not a valid time") from exc


class ReviewServicer(review_pb2_grpc.ReviewServiceServicer):
    def __init__(self, review: Review) -> None:
        self.review = review

    # Creating, cancelling and reminding (grant workflows) -------------------------------------

    async def CreateTask(
        self, request: review_pb2.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        request_id = validation.request_id("request_id", request.request_id)
        application_id = validation.identifier("application_id", request.application_id)
        program_code = validation.identifier("program_code", request.program_code)
        department = validation.term("department", Department, request.department)
        if not 1 <= request.round <= MAX_ROUND:
            raise InvalidArgument("round", f"must be between 1 and {MAX_ROUND}")
        command = commands.CreateTask(
            request_id=request_id,
            application_id=application_id,
            program_code=program_code,
            department=department,
            round=request.round,
            proposed_amount_fen=validation.fen("proposed_amount_fen", request.proposed_amount_fen),
            due_at=_due_at(request),
            applicant_name=validation.text(
                "applicant_name", request.applicant_name, max_len=MAX_NAME, required=False
            ),
            project_title=validation.text(
                "project_title", request.project_title, max_len=MAX_TITLE, required=False
            ),
        )
        row = await self.review.create_task(command)
        return row.to_proto(now_utc())

    async def CancelTasks(
        self, request: review_pb2.CancelTasksRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.CancelTasksResponse:
        command = commands.CancelTasks(
            application_id=validation.identifier("application_id", request.application_id),
            reason=validation.text("reason", request.reason, max_len=MAX_REASON, required=False),
            task_ids=_task_ids("task_ids", list(request.task_ids)),
        )
        return review_pb2.CancelTasksResponse(cancelled=await self.review.cancel_tasks(command))

    async def RemindOverdueTasks(
        self, request: review_pb2.RemindOverdueTasksRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.RemindOverdueTasksResponse:
        application_id = validation.identifier("application_id", request.application_id)
        task_ids = _task_ids("task_ids", list(request.task_ids))
        if request.level not in ESCALATION_LEVELS:
            raise InvalidArgument("level", "must be REMINDER or ESCALATION")
        command = commands.RemindOverdueTasks(
            application_id=application_id, level=request.level, task_ids=task_ids
        )
        return review_pb2.RemindOverdueTasksResponse(
            reminded=await self.review.remind_overdue(command)
        )

    # Reading ----------------------------------------------------------------------------------

    async def ListTasks(
        self, request: review_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ListTasksResponse:
        department = validation.optional_term("department", Department, request.department)
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
        assignee = validation.text(
            "assignee", request.assignee, max_len=MAX_ASSIGNEE, required=False
        )
        application_id = ""
        if request.application_id:
            application_id = validation.identifier("application_id", request.application_id)
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        query = store.TaskQuery(
            department=department,
            assignee=assignee,
            application_id=application_id,
            states=states,
            due_before=due_before,
            page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            after=store.parse_page_token(request.page_token) if request.page_token else None,
        )
        page = await self.review.tasks(current_principal(), query)
        return review_pb2.ListTasksResponse(
            tasks=[row.to_proto(now) for row in page.tasks],
            next_page_token=store.page_token(page.tasks[-1]) if page.more and page.tasks else "",
        )

    async def GetTask(
        self, request: review_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        task_id = validation.identifier("task_id", request.task_id)
        row = await self.review.task(current_principal(), task_id)
        return row.to_proto(now_utc())

    # Claiming and deciding (reviewers) --------------------------------------------------------

    async def ClaimTask(
        self, request: review_pb2.ClaimTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        command = commands.Claim(
            caller=current_principal(), task_id=validation.identifier("task_id", request.task_id)
        )
        row = await self.review.claim(command)
        return row.to_proto(now_utc())

    async def DecideTask(
        self, request: review_pb2.DecideTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        decision = validation.term("decision", Decision, request.decision)
        reason = validation.text(
            "reason", request.reason, max_len=MAX_REASON, required=decision != Decision.APPROVE
        )
        approved = validation.fen("approved_amount_fen", request.approved_amount_fen)
        if approved and decision != Decision.APPROVE:
            raise InvalidArgument("approved_amount_fen", "applies only to an approval")
        command = commands.Decide(
            caller=current_principal(),
            task_id=validation.identifier("task_id", request.task_id),
            decision=decision,
            reason=reason,
            approved_amount_fen=approved,
        )
        row = await self.review.decide(command)
        return row.to_proto(now_utc())
