"""ReviewServicer: the gRPC face of the review tasks, the expert pool and panels, and special
audits (grantflow.v1.ReviewService).

Grant workflows create, cancel and remind tasks, draw expert panels and ask for audits (system
role); reviewers list, claim, release and decide the tasks of their own department, department
heads also reassign them; experts score the applications of their panels; auditors confirm
audited figures. Each method checks its whole request (INVALID_ARGUMENT naming
the field, before anything is touched), turns it into a command, runs the use case
(use_cases.py, where the rules live) and converts the answer. Who may call what is the role
table of SERVICE.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from grantflow.v1 import review_pb2, review_pb2_grpc
from services.common import validation
from services.common.auth import current_principal
from services.common.db import from_timestamp, now_utc
from services.common.errors import InvalidArgument
from services.common.service_main import ServiceSpec
from services.common.vocabulary import (
    ACTIVE_TASK_STATES,
    Decision,
    Department,
    ReviewStage,
    Role,
    ScoreAggregation,
    TaskState,
)
from services.review import commands, store
from services.review.use_cases import Audits, ExpertReviews, Review

_DEPARTMENT = (Role.REVIEWER, Role.DEPARTMENT_HEAD)
SERVICE = ServiceSpec(
    name="review",
    descriptor=review_pb2.DESCRIPTOR.services_by_name["ReviewService"],
    roles={
        "ListTasks": (*_DEPARTMENT, Role.OPS, Role.SYSTEM),
        "GetTask": (*_DEPARTMENT, Role.OPS, Role.SYSTEM),
        "ClaimTask": _DEPARTMENT,
        "DecideTask": _DEPARTMENT,
        "ReleaseTask": _DEPARTMENT,
        "ReassignTask": (Role.DEPARTMENT_HEAD,),
        "CreateTask": (Role.SYSTEM,),
        "CancelTasks": (Role.SYSTEM,),
        "RemindOverdueTasks": (Role.SYSTEM,),
        "AddExpert": (Role.OPS, Role.DEPARTMENT_HEAD),
        "ListExperts": (*_DEPARTMENT, Role.OPS),
        "CreateExpertReview": (Role.SYSTEM,),
        "GetExpertPanel": (*_DEPARTMENT, Role.OPS, Role.SYSTEM),
        "ListMyExpertTasks": (Role.EXPERT,),
        "GetExpertTask": (Role.EXPERT,),
        "SubmitScores": (Role.EXPERT,),
        "CreateAuditTask": (Role.SYSTEM,),
        "ListAuditTasks": (Role.AUDITOR, Role.OPS, *_DEPARTMENT),
        "ConfirmAudit": (Role.AUDITOR,),
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
MAX_PRIORITY = 100
MAX_FIELD = 64
MAX_PANEL = 15
MAX_CRITERIA = 20
MAX_COMMENT = 2000
MAX_CONFLICTS = 200
RUBRIC_POINTS = 100  # a rubric's criteria add up to 100 points


def _task_ids(field: str, values: list[str]) -> frozenset[str]:
    return frozenset(validation.identifier(field, task_id) for task_id in values)


def _due_at(request: Any) -> datetime:
    if not request.HasField("due_at"):
        raise InvalidArgument("due_at", "is required")
    try:
        return from_timestamp(request.due_at)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument("due_at", "is not a valid time") from exc


class ReviewServicer(review_pb2_grpc.ReviewServiceServicer):
    def __init__(self, review: Review, experts: ExpertReviews, audits: Audits) -> None:
        self.review = review
        self.experts = experts
        self.audits = audits

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
        if not 0 <= request.priority <= MAX_PRIORITY:
            raise InvalidArgument("priority", f"must be between 0 and {MAX_PRIORITY}")
        stage = (
            validation.term("stage", ReviewStage, request.stage)
            if request.stage
            else ReviewStage.DEPARTMENT_REVIEW
        )
        if stage in (ReviewStage.AUDIT, ReviewStage.EXPERT_REVIEW):
            raise InvalidArgument("stage", "audits and expert reviews have their own tasks")
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
            priority=request.priority,
            stage=stage,
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
        elif request.filter == review_pb2.TASK_FILTER_MINE:
            states = frozenset({TaskState.CLAIMED})
        else:
            raise InvalidArgument("filter", "is not a known task filter")
        assignee = validation.text(
            "assignee", request.assignee, max_len=MAX_ASSIGNEE, required=False
        )
        caller = current_principal()
        if request.filter == review_pb2.TASK_FILTER_MINE:
            if assignee and assignee != caller.subject:
                raise InvalidArgument("assignee", "must be empty or you with the MINE filter")
            assignee = caller.subject
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
        page = await self.review.tasks(caller, query)
        return review_pb2.ListTasksResponse(
            tasks=[row.to_proto(now) for row in page.tasks],
            next_page_token=store.page_token(page.tasks[-1]) if page.more and page.tasks else "",
            counts=page.counts.to_proto(),
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

    # The inbox: release and reassignment ------------------------------------------------------

    async def ReleaseTask(
        self, request: review_pb2.ReleaseTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        command = commands.Release(
            caller=current_principal(),
            task_id=validation.identifier("task_id", request.task_id),
            reason=validation.text("reason", request.reason, max_len=MAX_REASON, required=False),
        )
        row = await self.review.release(command)
        return row.to_proto(now_utc())

    async def ReassignTask(
        self, request: review_pb2.ReassignTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ReviewTask:
        command = commands.Reassign(
            caller=current_principal(),
            task_id=validation.identifier("task_id", request.task_id),
            assignee=validation.text("assignee", request.assignee, max_len=MAX_ASSIGNEE),
            reason=validation.text("reason", request.reason, max_len=MAX_REASON),
        )
        row = await self.review.reassign(command)
        return row.to_proto(now_utc())

    # The expert pool and panels ---------------------------------------------------------------

    async def AddExpert(
        self, request: review_pb2.AddExpertRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.Expert:
        expert = request.expert
        if len(expert.declared_conflicts) > MAX_CONFLICTS:
            raise InvalidArgument("expert.declared_conflicts", f"at most {MAX_CONFLICTS}")
        employer = ""
        if expert.employer_credit_code:
            employer = validation.credit_code(
                "expert.employer_credit_code", expert.employer_credit_code
            )
        command = commands.AddExpert(
            caller=current_principal(),
            expert_id=validation.text("expert.expert_id", expert.expert_id, max_len=MAX_ASSIGNEE),
            name=validation.text("expert.name", expert.name, max_len=100),
            field=validation.identifier("expert.field", expert.field),
            employer_credit_code=employer,
            declared_conflicts=tuple(
                validation.credit_code("expert.declared_conflicts", code)
                for code in expert.declared_conflicts
            ),
            person_id=validation.text(
                "expert.person_id", expert.person_id, max_len=64, required=False
            ),
            active=expert.active,
        )
        row = await self.experts.add_expert(command)
        return row.to_proto()

    async def ListExperts(
        self, request: review_pb2.ListExpertsRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ListExpertsResponse:
        field = validation.identifier("field", request.field) if request.field else ""
        rows = await self.experts.experts(field)
        return review_pb2.ListExpertsResponse(experts=[row.to_proto() for row in rows])

    async def CreateExpertReview(
        self, request: review_pb2.CreateExpertReviewRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ExpertPanel:
        request_id = validation.request_id("request_id", request.request_id)
        application_id = validation.identifier("application_id", request.application_id)
        program_code = validation.identifier("program_code", request.program_code)
        applicant = validation.credit_code("applicant_credit_code", request.applicant_credit_code)
        if not 1 <= request.panel_size <= MAX_PANEL:
            raise InvalidArgument("panel_size", f"must be between 1 and {MAX_PANEL}")
        field = validation.identifier("field", request.field)
        rubric = _rubric(list(request.rubric))
        aggregation = (
            validation.term("aggregation", ScoreAggregation, request.aggregation)
            if request.aggregation
            else ScoreAggregation.MEAN
        )
        if not 0 <= request.pass_score_centi <= RUBRIC_POINTS * 100:
            raise InvalidArgument("pass_score_centi", "must be between 0 and 10000")
        command = commands.CreateExpertReview(
            request_id=request_id,
            application_id=application_id,
            program_code=program_code,
            applicant_credit_code=applicant,
            panel_size=request.panel_size,
            field=field,
            rubric=rubric,
            aggregation=aggregation,
            pass_score_centi=request.pass_score_centi,
            due_at=_due_at(request),
            applicant_name=validation.text(
                "applicant_name", request.applicant_name, max_len=MAX_NAME, required=False
            ),
            project_title=validation.text(
                "project_title", request.project_title, max_len=MAX_TITLE, required=False
            ),
        )
        return await self.experts.create_panel(command)

    async def GetExpertPanel(
        self, request: review_pb2.GetExpertPanelRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ExpertPanel:
        return await self.experts.panel(validation.identifier("panel_id", request.panel_id))

    async def ListMyExpertTasks(
        self, request: review_pb2.ListMyExpertTasksRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ListMyExpertTasksResponse:
        program_code = (
            validation.identifier("program_code", request.program_code)
            if request.program_code
            else ""
        )
        tasks = await self.experts.my_tasks(current_principal(), request.pending_only, program_code)
        return review_pb2.ListMyExpertTasksResponse(tasks=tasks)

    async def GetExpertTask(
        self, request: review_pb2.GetExpertTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ExpertTask:
        if bool(request.task_id) == bool(request.application_id):
            raise InvalidArgument("task_id", "give either task_id or application_id")
        command = commands.OpenExpertTask(
            caller=current_principal(),
            task_id=validation.identifier("task_id", request.task_id) if request.task_id else "",
            application_id=(
                validation.identifier("application_id", request.application_id)
                if request.application_id
                else ""
            ),
        )
        return await self.experts.open_task(command)

    async def SubmitScores(
        self, request: review_pb2.SubmitScoresRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ExpertTask:
        if len(request.scores) > MAX_CRITERIA:
            raise InvalidArgument("scores", f"at most {MAX_CRITERIA}")
        command = commands.SubmitScores(
            caller=current_principal(),
            task_id=validation.identifier("task_id", request.task_id),
            scores=tuple((score.code, score.score_centi) for score in request.scores),
            comment=validation.text(
                "comment", request.comment, max_len=MAX_COMMENT, required=False
            ),
        )
        return await self.experts.submit(command)

    # Special audits ---------------------------------------------------------------------------

    async def CreateAuditTask(
        self, request: review_pb2.CreateAuditTaskRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.AuditTask:
        command = commands.CreateAuditTask(
            request_id=validation.request_id("request_id", request.request_id),
            application_id=validation.identifier("application_id", request.application_id),
            program_code=validation.identifier("program_code", request.program_code),
            figure=validation.identifier("figure", request.figure),
            declared_fen=validation.fen("declared_fen", request.declared_fen),
            due_at=_due_at(request),
            applicant_name=validation.text(
                "applicant_name", request.applicant_name, max_len=MAX_NAME, required=False
            ),
            project_title=validation.text(
                "project_title", request.project_title, max_len=MAX_TITLE, required=False
            ),
        )
        row = await self.audits.create(command)
        return row.to_proto(now_utc())

    async def ListAuditTasks(
        self, request: review_pb2.ListAuditTasksRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.ListAuditTasksResponse:
        application_id = ""
        if request.application_id:
            application_id = validation.identifier("application_id", request.application_id)
        rows = await self.audits.tasks(request.open_only, application_id)
        now = now_utc()
        return review_pb2.ListAuditTasksResponse(tasks=[row.to_proto(now) for row in rows])

    async def ConfirmAudit(
        self, request: review_pb2.ConfirmAuditRequest, context: grpc.aio.ServicerContext
    ) -> review_pb2.AuditTask:
        command = commands.ConfirmAudit(
            caller=current_principal(),
            task_id=validation.identifier("task_id", request.task_id),
            audited_fen=validation.fen("audited_fen", request.audited_fen),
            note=validation.text("note", request.note, max_len=MAX_REASON, required=False),
        )
        row = await self.audits.confirm(command)
        return row.to_proto(now_utc())


def _rubric(criteria: list[Any]) -> tuple[commands.Criterion, ...]:
    if not 1 <= len(criteria) <= MAX_CRITERIA:
        raise InvalidArgument("rubric", f"needs between 1 and {MAX_CRITERIA} criteria")
    seen: set[str] = set()
    rubric = []
    for criterion in criteria:
        code = validation.identifier("rubric.code", criterion.code)
        if code in seen:
            raise InvalidArgument("rubric.code", f"{code} appears twice")
        seen.add(code)
        if criterion.max_points <= 0:
            raise InvalidArgument("rubric.max_points", f"{code}: must be positive")
        name = validation.text("rubric.name", criterion.name or code, max_len=100)
        rubric.append(commands.Criterion(code, name, criterion.max_points))
    if sum(c.max_points for c in rubric) != RUBRIC_POINTS:
        raise InvalidArgument("rubric.max_points", f"must add up to {RUBRIC_POINTS}")
    return tuple(rubric)
