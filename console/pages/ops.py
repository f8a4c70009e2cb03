"""The operations engineers' (运维) pages: the overview (/ops), finding grants by business keys
(/ops/grants), one grant's business timeline with the repairs that apply to it
(/ops/grants/<application id>), and the repairs themselves (/ops/repairs).

Everything comes from the three services with the signed-in engineer's token: the counts and
charts from ApplicationService.SummarizeApplications (GROUP BY in the database), overdue review
tasks from the review service, failed payment lines from the disbursement service, the outbox
backlog and the dead letters from each service's OperationsService, repairs from RepairService.
The console never talks to Temporal or Kafka: a grant's workflow history is a link to the
Temporal Web UI, the dead letters are counted by the services.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.responses import Response
from starlette.routing import Route

from console.backend import ServiceRefusal
from console.i18n import BEIJING, term_label
from console.web import Page, field_errors, page
from grantflow.grant_story import APPLICATION, FUNDS, REVIEW, services_timeline
from grantflow.v1 import (
    applications_pb2,
    disbursement_pb2,
    operations_pb2,
    operations_pb2_grpc,
    repair_pb2,
    review_pb2,
)
from services.common.clients import SERVICE_NAMES
from services.common.vocabulary import (
    CLOSED_STAGES,
    Department,
    GrantRepairState,
    GrantStage,
    PaymentState,
    RepairAction,
    RepairState,
    Role,
    TaskState,
    VocabularyError,
)
from workflows import contracts

T = TypeVar("T")
PAGE_SIZE = 20
DEFAULT_STUCK_HOURS = 72  # a grant unchanged for three days in a stage that has not ended
MAX_STUCK_HOURS = 24 * 365
FAILED_LINES_LIMIT = 200  # ListPaymentLines has no paging: the newest this many
RECENT_REPAIRS = 50
CHART_DAYS = 30  # SummarizeApplications' default window of days submitted
# The grant's stages in the order of its life, for the stage pickers and the chart's axis.
STAGE_ORDER: tuple[GrantStage, ...] = (
    GrantStage.SUBMITTED,
    GrantStage.FORMAL_CHECK,
    GrantStage.AWAITING_SUPPLEMENT,
    GrantStage.IN_REVIEW,
    GrantStage.EXPERT_REVIEW,
    GrantStage.SPECIAL_AUDIT,
    GrantStage.APPROVED,
    GrantStage.WAITLISTED,
    GrantStage.AWAITING_NOTICE,
    GrantStage.IN_NOTICE,
    GrantStage.AWAITING_FUNDING_PLAN,
    GrantStage.IN_PAYMENT,
    GrantStage.PAYMENT_FAILED,
    GrantStage.INSTALMENTS,
    GrantStage.MILESTONE_OVERDUE,
    GrantStage.PAID,
    GrantStage.REJECTED,
    GrantStage.WITHDRAWN,
)
VIEWS = ("applications", "overdue", "failed")
# The repairs an engineer may request from a grant's page (grantflow/repair_cli.py's five).
REPAIR_ACTIONS: tuple[RepairAction, ...] = (
    RepairAction.RESUME,
    RepairAction.RETRY_PAYMENT,
    RepairAction.REOPEN_REVIEW,
    RepairAction.MOVE_TO_STAGE,
    RepairAction.CANCEL,
)
REPAIR_FIELDS = ("action", "department", "stage", "reason", "dry_run")
SOURCE_CLASS = {APPLICATION: "application", REVIEW: "review", FUNDS: "funds"}


def _stage(number: int) -> GrantStage | None:
    try:
        return GrantStage.from_proto(number)
    except VocabularyError:
        return None


def _timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _stuck_hours(raw: str | None) -> tuple[int, str]:
    """The stuck threshold in hours from the query string, and the error to show beside it."""
    if raw is None or raw.strip() == "":
        return DEFAULT_STUCK_HOURS, ""
    try:
        hours = int(raw)
    except ValueError:
        return DEFAULT_STUCK_HOURS, "请输入整数小时数 / whole hours"
    if not 0 <= hours <= MAX_STUCK_HOURS:
        return DEFAULT_STUCK_HOURS, f"0 至 {MAX_STUCK_HOURS} 小时 / 0 to {MAX_STUCK_HOURS} hours"
    return hours, ""


async def _optional(work: Awaitable[T]) -> tuple[T | None, str]:
    """A section of a page that may fail alone: its answer, or the reason it is missing. A
    refusal of the caller's right is not a section's problem: it refuses the page."""
    try:
        return await work, ""
    except ServiceRefusal as refusal:
        if refusal.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            raise
        return None, f"{refusal.code.name}: {refusal.message}"


def temporal_ui_url(current: Page, workflow_id: str) -> str:
    """The Temporal Web UI's page of a workflow (engineers' tool; the console only links)."""
    settings = current.request.app.state.settings
    host = settings.temporal_address.rsplit(":", 1)[0] or "127.0.0.1"
    namespace = quote(settings.temporal_namespace, safe="")
    return (
        f"http://{host}:{settings.temporal_ui_port}/namespaces/{namespace}"
        f"/workflows/{quote(workflow_id, safe='')}"
    )


# Overview ----------------------------------------------------------------------------------------


@dataclass
class OutboxRow:
    service: str
    status: operations_pb2.OutboxStatus | None
    error: str = ""

    @property
    def oldest_age(self) -> str:
        if self.status is None or not self.status.HasField("oldest_unpublished_at"):
            return ""
        waited = self.status.now.ToDatetime() - self.status.oldest_unpublished_at.ToDatetime()
        seconds = max(waited.total_seconds(), 0.0)
        if seconds < 120:
            return f"{seconds:.0f} s"
        if seconds < 7200:
            return f"{seconds / 60:.0f} min"
        return f"{seconds / 3600:.1f} h"


def chart_data(summary: applications_pb2.ApplicationsSummary, lang_pick: Any) -> dict[str, Any]:
    """What the overview's two charts draw (embedded in the page as JSON): grants per stage,
    stacked by program, and filings per day submitted, one line per program."""
    programs = sorted({row.program_code for row in summary.by_stage})
    present = {stage for row in summary.by_stage if (stage := _stage(row.stage)) is not None}
    stages = [stage for stage in STAGE_ORDER if stage in present]
    counts = {(row.program_code, _stage(row.stage)): row.count for row in summary.by_stage}
    # Every day of the window, the quiet ones too, so the axis reads as a calendar.
    today = datetime.now(BEIJING).date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(CHART_DAYS - 1, -1, -1)]
    days = sorted(set(days) | {row.day for row in summary.by_day})
    day_programs = sorted({row.program_code for row in summary.by_day})
    per_day = {(row.day, row.program_code): row.count for row in summary.by_day}
    return {
        "stages": {
            "codes": [stage.value for stage in stages],
            "labels": [lang_pick(stage) for stage in stages],
            "datasets": [
                {"label": program, "data": [counts.get((program, s), 0) for s in stages]}
                for program in programs
            ],
        },
        "days": {
            "labels": days,
            "datasets": [
                {"label": program, "data": [per_day.get((day, program), 0) for day in days]}
                for program in day_programs
            ],
        },
    }


@page(Role.OPS)
async def dead_letters(current: Page) -> Response:
    """The overview's dead-letter panel: the broker's counts take longer than the rest of the
    page (a client of its own per call), so the page asks for them once it is shown."""
    stub = operations_pb2_grpc.OperationsServiceStub(current.clients.channels["applications"])
    answer, error = await _optional(
        current.call(stub.GetDeadLetters, operations_pb2.GetDeadLettersRequest())
    )
    return current.render("ops/_dead_letters.html", dead_letters=answer, dead_letters_error=error)


@page(Role.OPS)
async def overview(current: Page) -> Response:
    hours, hours_error = _stuck_hours(current.request.query_params.get("stuck_hours"))
    stuck_before = datetime.now(UTC) - timedelta(hours=hours)
    clients = current.clients

    def outbox(name: str) -> Awaitable[Any]:
        stub = operations_pb2_grpc.OperationsServiceStub(clients.channels[name])
        return current.call(stub.GetOutboxStatus, operations_pb2.GetOutboxStatusRequest())

    (summary, overdue, *outboxes) = await asyncio.gather(
        _optional(
            current.call(
                clients.applications.SummarizeApplications,
                applications_pb2.SummarizeApplicationsRequest(
                    stuck_before=_timestamp(stuck_before)
                ),
            )
        ),
        _optional(
            current.call(
                clients.review.ListTasks,
                review_pb2.ListTasksRequest(filter=review_pb2.TASK_FILTER_OVERDUE, page_size=5),
            )
        ),
        *(_optional(outbox(name)) for name in SERVICE_NAMES),
    )
    summary_answer, summary_error = summary
    charts = (
        chart_data(summary_answer, lambda stage: term_label(current.lang, stage))
        if summary_answer is not None
        else None
    )
    stage_rows = []
    if summary_answer is not None:
        for row in sorted(
            summary_answer.by_stage,
            key=lambda r: (r.program_code, STAGE_ORDER.index(s) if (s := _stage(r.stage)) else 99),
        ):
            stage_rows.append((row, _stage(row.stage)))
    return current.render(
        "ops/overview.html",
        title=current.tr("运行概况", "Operations overview"),
        stuck_hours=hours,
        hours_error=hours_error,
        summary=summary_answer,
        summary_error=summary_error,
        stage_rows=stage_rows,
        charts=charts,
        overdue=overdue[0],
        overdue_error=overdue[1],
        outboxes=[
            OutboxRow(name, answer, error)
            for name, (answer, error) in zip(SERVICE_NAMES, outboxes, strict=True)
        ],
        closed_stages=CLOSED_STAGES,
    )


# Finding grants ----------------------------------------------------------------------------------


@dataclass
class Found:
    """One row of the find page: the application (when readable) and why it matched."""

    application_id: str
    application: applications_pb2.Application | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def stage(self) -> GrantStage | None:
        return _stage(self.application.status) if self.application is not None else None


# Form field -> the request field the applications service names in its refusal.
FIND_FIELDS = {
    "application_id_prefix": "application",
    "applicant_credit_code": "credit_code",
    "program_code": "program",
    "status": "stage",
    "page_token": "page_token",
}


def _query(values: dict[str, str], **changes: str) -> str:
    merged = {**values, **changes}
    return urlencode({key: value for key, value in merged.items() if value})


async def _with_applications(current: Page, rows: list[Found]) -> None:
    """Each row completed with its application (title, enterprise, stage); rows the service will
    not show keep their ids only."""

    async def one(row: Found) -> None:
        try:
            row.application = await current.call(
                current.clients.applications.GetApplication,
                applications_pb2.GetApplicationRequest(application_id=row.application_id),
            )
        except ServiceRefusal as refusal:
            if refusal.code == grpc.StatusCode.PERMISSION_DENIED:
                raise
            row.notes.append(refusal.message)

    await asyncio.gather(*(one(row) for row in rows))


@page(Role.OPS)
async def find(current: Page) -> Response:
    params = current.request.query_params
    values = {
        "view": params.get("view", "applications"),
        "application": params.get("application", "").strip(),
        "credit_code": params.get("credit_code", "").strip(),
        "program": params.get("program", "").strip(),
        "stage": params.get("stage", "").strip(),
        "stuck_hours": params.get("stuck_hours", "").strip(),
    }
    if values["view"] not in VIEWS:
        values["view"] = "applications"
    token = params.get("page_token", "")
    errors: dict[str, str] = {}
    rows: list[Found] = []
    next_token = ""
    searched = any(values[key] for key in ("application", "credit_code", "program", "stage"))
    searched = searched or bool(values["stuck_hours"]) or values["view"] != "applications"

    stage: GrantStage | None = None
    if values["stage"]:
        try:
            stage = GrantStage.parse(values["stage"])
        except VocabularyError:
            errors["stage"] = current.tr("没有这个阶段", "No such stage")
    stuck_hours: int | None = None
    if values["stuck_hours"]:
        hours, error = _stuck_hours(values["stuck_hours"])
        if error:
            errors["stuck_hours"] = error
        else:
            stuck_hours = hours

    programs = await current.call(
        current.clients.applications.ListPrograms, applications_pb2.ListProgramsRequest()
    )
    program_codes = sorted({rule.code for rule in programs.programs})

    if searched and not errors:
        try:
            if values["view"] == "overdue":
                rows, next_token = await _overdue_rows(current, token)
            elif values["view"] == "failed":
                rows = await _failed_rows(current, values["program"])
            else:
                request = applications_pb2.ListApplicationsRequest(
                    application_id_prefix=values["application"],
                    applicant_credit_code=values["credit_code"],
                    program_code=values["program"],
                    status=stage.to_proto() if stage is not None else 0,  # type: ignore[arg-type]
                    page_size=PAGE_SIZE,
                    page_token=token,
                    open_only=stuck_hours is not None,
                )
                if stuck_hours is not None:
                    request.updated_before.CopyFrom(
                        _timestamp(datetime.now(UTC) - timedelta(hours=stuck_hours))
                    )
                answer = await current.call(current.clients.applications.ListApplications, request)
                rows = [Found(a.application_id, a) for a in answer.applications]
                next_token = answer.next_page_token
        except ServiceRefusal as refusal:
            if refusal.code != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            found = field_errors(refusal, FIND_FIELDS, lang=current.lang)
            errors = {FIND_FIELDS.get(key, key): message for key, message in found.items()}
            rows, next_token = [], ""
    return current.render(
        "ops/grants.html",
        status_code=400 if errors else 200,
        title=current.tr("查找申报", "Find grants"),
        values=values,
        errors=errors,
        rows=rows,
        searched=searched,
        page_token=token,
        next_query=_query(values, page_token=next_token) if next_token else "",
        first_query=_query(values) if token else "",
        view_query=lambda view: _query(
            {key: value for key, value in values.items() if key != "view"}, view=view
        ),
        program_codes=program_codes,
        stages=STAGE_ORDER,
        failed_limit=FAILED_LINES_LIMIT,
    )


async def _overdue_rows(current: Page, token: str) -> tuple[list[Found], str]:
    """Review tasks past their due date (every department), one page, grouped by grant."""
    answer = await current.call(
        current.clients.review.ListTasks,
        review_pb2.ListTasksRequest(
            filter=review_pb2.TASK_FILTER_OVERDUE, page_size=PAGE_SIZE, page_token=token
        ),
    )
    rows: dict[str, Found] = {}
    for task in answer.tasks:
        row = rows.setdefault(task.application_id, Found(task.application_id))
        department = Department.from_proto(task.department)
        due = task.due_at.ToDatetime(tzinfo=UTC)
        who = f"，{task.assignee} 已领取" if task.assignee else "，未领取"
        row.notes.append(
            f"{_pick_label(current, department)}第{task.round}轮评审逾期"
            f"（{due.astimezone(BEIJING).strftime('%Y-%m-%d %H:%M')} 到期{who}）"
        )
    found = list(rows.values())
    await _with_applications(current, found)
    return found, answer.next_page_token


async def _failed_rows(current: Page, program: str) -> list[Found]:
    """Payment lines that failed (the newest FAILED_LINES_LIMIT: the service does not page)."""
    answer = await current.call(
        current.clients.disbursement.ListPaymentLines,
        disbursement_pb2.ListPaymentLinesRequest(
            state=PaymentState.FAILED.to_proto(),  # type: ignore[arg-type]
            limit=FAILED_LINES_LIMIT,
            program_code=program,
        ),
    )
    rows: dict[str, Found] = {}
    for line in answer.lines:
        row = rows.setdefault(line.application_id, Found(line.application_id))
        row.notes.append(
            f"拨付失败：{line.failure_reason}（计划 {line.plan_id}，尝试 {line.attempts} 次）"
        )
    found = list(rows.values())
    await _with_applications(current, found)
    return found


def _pick_label(current: Page, term: Any) -> str:
    return term_label(current.lang, term)


# One grant ---------------------------------------------------------------------------------------


@page(Role.OPS)
async def grant(current: Page) -> Response:
    return await _grant_page(current, current.request.path_params["application_id"])


async def _grant_page(
    current: Page,
    application_id: str,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    timeline, application, facts = await services_timeline(
        current.call, current.clients, application_id
    )
    repairs, repairs_error = await _optional(
        current.call(
            current.clients.repairs.ListRepairs,
            repair_pb2.ListRepairsRequest(limit=RECENT_REPAIRS),
        )
    )
    related = [
        repair
        for repair in (repairs.repairs if repairs is not None else ())
        if any(result.application_id == application_id for result in repair.results)
    ]
    workflow_id = application.workflow_id or contracts.grant_workflow_id(application_id)
    tasks = sorted(facts.tasks or (), key=lambda t: (t.round, t.department))
    return current.render(
        "ops/grant.html",
        status_code=400 if errors else 200,
        title=current.tr("申报办理经过", "Grant timeline") + f" {application_id[:8]}",
        application=application,
        stage=_stage(application.status),
        timeline=timeline,
        entries=timeline.ordered(),
        source_class=SOURCE_CLASS,
        tasks=tasks,
        task_state=lambda t: TaskState.from_proto(t.state),
        task_department=lambda t: Department.from_proto(t.department),
        funds=facts.funds,
        temporal_url=temporal_ui_url(current, workflow_id),
        workflow_id=workflow_id,
        repairs=related,
        repairs_error=repairs_error,
        repair_actions=REPAIR_ACTIONS,
        departments=tuple(Department),
        stages=STAGE_ORDER,
        values=values or {"request_id": f"repair-{uuid.uuid4().hex}"},
        errors=errors or {},
        repair_state=lambda r: RepairState.from_proto(r.state),
        repair_action=lambda r: RepairAction.from_proto(r.action),
    )


@page(Role.OPS)
async def request_repair(current: Page) -> Response:
    application_id = current.request.path_params["application_id"]
    form = await current.form()
    values = {key: form.get(key, "") for key in (*REPAIR_FIELDS, "request_id")}
    errors: dict[str, str] = {}
    action: RepairAction | None = None
    try:
        action = RepairAction.parse(values["action"])
    except VocabularyError:
        errors["action"] = current.tr("请选择修复动作", "Choose a repair")
    department: Department | None = None
    stage: GrantStage | None = None
    if action == RepairAction.REOPEN_REVIEW:
        try:
            department = Department.parse(values["department"])
        except VocabularyError:
            errors["department"] = current.tr("请选择部门", "Choose the department")
    if action == RepairAction.MOVE_TO_STAGE:
        try:
            stage = GrantStage.parse(values["stage"])
        except VocabularyError:
            errors["stage"] = current.tr("请选择退回的阶段", "Choose the stage")
    if not values["request_id"]:
        values["request_id"] = f"repair-{uuid.uuid4().hex}"
    if errors or action is None:
        return await _grant_page(current, application_id, values=values, errors=errors)
    request = repair_pb2.RequestRepairRequest(
        request_id=values["request_id"],
        action=action.to_proto(),  # type: ignore[arg-type]
        application_id=application_id,
        reason=values["reason"],
        dry_run=bool(values["dry_run"]),
        department=department.to_proto() if department else 0,  # type: ignore[arg-type]
        stage=stage.to_proto() if stage else 0,  # type: ignore[arg-type]
    )
    try:
        repair = await current.call(current.clients.repairs.RequestRepair, request)
    except ServiceRefusal as refusal:
        if refusal.code != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        # A fresh request id: the corrected form is a new request.
        values["request_id"] = f"repair-{uuid.uuid4().hex}"
        return await _grant_page(
            current,
            application_id,
            values=values,
            errors=field_errors(refusal, REPAIR_FIELDS, lang=current.lang),
        )
    return current.redirect(f"/ops/repairs/{quote(repair.repair_id)}")


# Repairs -----------------------------------------------------------------------------------------


@page(Role.OPS)
async def repairs(current: Page) -> Response:
    answer = await current.call(
        current.clients.repairs.ListRepairs, repair_pb2.ListRepairsRequest(limit=RECENT_REPAIRS)
    )
    return current.render(
        "ops/repairs.html",
        title=current.tr("修复记录", "Repairs"),
        repairs=list(answer.repairs),
        repair_state=lambda r: RepairState.from_proto(r.state),
        repair_action=lambda r: RepairAction.from_proto(r.action),
    )


@page(Role.OPS)
async def repair(current: Page) -> Response:
    repair_id = current.request.path_params["repair_id"]
    answer = await current.call(
        current.clients.repairs.GetRepair, repair_pb2.RepairRef(repair_id=repair_id)
    )
    return _repair_page(current, answer)


def _repair_page(current: Page, answer: Any, error: str = "", status: int = 200) -> Response:
    return current.render(
        "ops/repair.html",
        status_code=status,
        title=current.tr("修复", "Repair") + f" {answer.repair_id}",
        repair=answer,
        state=RepairState.from_proto(answer.state),
        action=RepairAction.from_proto(answer.action),
        result_state=lambda r: GrantRepairState.from_proto(r.state),
        error=error,
        mine=answer.requested_by == current.signed_in.subject,
    )


def _repair_decision(rpc: str) -> Any:
    @page(Role.OPS)
    async def decide(current: Page) -> Response:
        repair_id = current.request.path_params["repair_id"]
        ref = repair_pb2.RepairRef(repair_id=repair_id)
        stub = current.clients.repairs
        try:
            await current.call(getattr(stub, rpc), ref)
        except ServiceRefusal as refusal:
            if refusal.code not in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.FAILED_PRECONDITION,
            ):
                raise
            # Shown on the repair's page: e.g. the requester cannot approve their own repair.
            answer = await current.call(stub.GetRepair, ref)
            message = refusal.message or current.tr(
                "须由另一位运维人员审批", "Another ops engineer must approve"
            )
            return _repair_page(current, answer, message, status=409)
        return current.redirect(f"/ops/repairs/{quote(repair_id)}")

    return decide


routes = [
    Route("/ops", overview),
    Route("/ops/dead-letters", dead_letters),
    Route("/ops/grants", find),
    Route("/ops/grants/{application_id}", grant),
    Route("/ops/grants/{application_id}/repairs", request_repair, methods=["POST"]),
    Route("/ops/repairs", repairs),
    Route("/ops/repairs/{repair_id}", repair),
    Route("/ops/repairs/{repair_id}/approve", _repair_decision("ApproveRepair"), methods=["POST"]),
    Route("/ops/repairs/{repair_id}/pause", _repair_decision("PauseRepair"), methods=["POST"]),
    Route("/ops/repairs/{repair_id}/resume", _repair_decision("ResumeRepair"), methods=["POST"]),
]
