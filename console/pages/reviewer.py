"""The reviewers' console: the department inbox and its tasks (评审人, 处长), the experts' scoring
(评审专家) and the special audits (审计机构).

Every page asks the review service first and shows only what it answers for the signed-in
user: a task of another department is refused by GetTask before the application is read, so a
refused page carries none of the task's data. Money typed in yuan becomes integer fen through
Decimal (never a float); scores typed in points become hundredths the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import grpc
from starlette.responses import Response
from starlette.routing import Route

from console.backend import ServiceRefusal
from console.figures import figure
from console.i18n import term_label
from console.web import Page, field_errors, page
from grantflow.v1 import applications_pb2, review_pb2
from services.common.vocabulary import (
    AuditTaskState,
    Decision,
    EligibilityCheck,
    ExpertTaskState,
    GrantStage,
    ReviewStage,
    Role,
    TaskState,
    Term,
    VocabularyError,
)

DEPARTMENT_ROLES = (Role.REVIEWER, Role.DEPARTMENT_HEAD)
PAGE_SIZE = 20
FLASH_KEY = "reviewer_flash"
MAX_REASON = 1000  # the review service's limit on a reason

# The inbox's tabs: the service's filters (the counts come with every answer).
TABS: dict[str, review_pb2.TaskFilter.ValueType] = {
    "open": review_pb2.TASK_FILTER_OPEN,
    "mine": review_pb2.TASK_FILTER_MINE,
    "overdue": review_pb2.TASK_FILTER_OVERDUE,
}

# The decisions a reviewer picks from; "approve_lower" is an approval with an amount.
DECISIONS: dict[str, Decision] = {
    "approve": Decision.APPROVE,
    "approve_lower": Decision.APPROVE,
    "reject": Decision.REJECT,
    "return": Decision.RETURN_FOR_SUPPLEMENT,
}
DECIDE_FIELDS = ("decision", "reason", "amount_yuan")


# Parsing what people type ------------------------------------------------------------------


def hundredths(text: str) -> int | None:
    """ "1,234.5" -> 123450: a decimal number with at most two decimals, exactly, as an integer
    number of hundredths (fen of yuan, centi of points); None when it is not such a number."""
    cleaned = text.strip().replace(",", "").replace("，", "").lstrip("¥￥").strip()
    if not cleaned:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    scaled = value * 100
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def points(centi: int) -> str:
    """Hundredths of a point as points: 5250 -> "52.5"."""
    whole, rest = divmod(centi, 100)
    return f"{whole}.{rest:02d}".rstrip("0").rstrip(".") if rest else str(whole)


def _term(kind: type[Term], value: int, default: Term | None = None) -> Term | None:
    try:
        return kind.from_proto(value)
    except VocabularyError:
        return default


# What the templates show -------------------------------------------------------------------


@dataclass(frozen=True)
class TaskView:
    """A review task as the inbox and the task page show it (the enums as vocabulary terms)."""

    task: review_pb2.ReviewTask
    state: Term | None
    stage: Term | None
    decision: Term | None

    @classmethod
    def of(cls, task: review_pb2.ReviewTask) -> TaskView:
        return cls(
            task=task,
            state=_term(TaskState, task.state),
            # An unset stage reads as the department review (review.proto).
            stage=_term(ReviewStage, task.stage, ReviewStage.DEPARTMENT_REVIEW),
            decision=_term(Decision, task.decision) if task.decision else None,
        )

    @property
    def open(self) -> bool:
        return self.state == TaskState.OPEN

    @property
    def claimed(self) -> bool:
        return self.state == TaskState.CLAIMED

    @property
    def active(self) -> bool:
        return self.state in (TaskState.OPEN, TaskState.CLAIMED)


@dataclass(frozen=True)
class CheckView:
    name: str
    term: Term | None
    passed: bool
    reason_zh: str
    evidence: str


def _evidence(evidence_json: str) -> str:
    """The evidence pretty-printed (Chinese kept as written); as given when it is not JSON."""
    if not evidence_json:
        return ""
    try:
        return json.dumps(json.loads(evidence_json), ensure_ascii=False, indent=2, sort_keys=True)
    except ValueError:
        return evidence_json


def application_view(application: applications_pb2.Application) -> dict[str, Any]:
    """The file a reviewer, expert or auditor reads: figures, documents, eligibility checks."""
    figures = [(figure(name), value) for name, value in sorted(application.figures.items())]
    checks: list[CheckView] = []
    eligibility = application.eligibility if application.HasField("eligibility") else None
    if eligibility is not None:
        for check in eligibility.checks:
            try:
                term: Term | None = EligibilityCheck(check.name)
            except ValueError:
                term = None
            checks.append(
                CheckView(
                    check.name, term, check.passed, check.reason_zh, _evidence(check.evidence_json)
                )
            )
    return {
        "application": application,
        "figures": figures,
        "eligibility": eligibility,
        "checks": checks,
        "stage": _term(GrantStage, application.status),
    }


def _take_flash(current: Page) -> str:
    return str(current.request.session.pop(FLASH_KEY, "") or "")


def _is_htmx(current: Page) -> bool:
    return bool(current.request.headers.get("hx-request"))


def _task_id(current: Page) -> str:
    return str(current.request.path_params["task_id"])


# The inbox ---------------------------------------------------------------------------------


@page(*DEPARTMENT_ROLES)
async def inbox(current: Page) -> Response:
    query = current.request.query_params
    tab = query.get("tab", "open")
    if tab not in TABS:
        tab = "open"
    token = query.get("page", "")
    answer = await current.call(
        current.clients.review.ListTasks,
        review_pb2.ListTasksRequest(filter=TABS[tab], page_size=PAGE_SIZE, page_token=token),
    )
    return current.render(
        "reviewer/inbox.html",
        title=current.tr("待办任务", "Inbox"),
        tab=tab,
        tasks=[TaskView.of(task) for task in answer.tasks],
        counts=answer.counts,
        next_page=answer.next_page_token,
        paged=bool(token),
        flash=_take_flash(current),
        is_head=current.signed_in.role == Role.DEPARTMENT_HEAD,
    )


def _row(current: Page, task: review_pb2.ReviewTask, error: str = "") -> Response:
    return current.render(
        "reviewer/_task_row.html",
        view=TaskView.of(task),
        row_error=error,
        is_head=current.signed_in.role == Role.DEPARTMENT_HEAD,
    )


async def _row_action(current: Page, method: Any, request: Any) -> Response:
    """Claim, release or reassign from the inbox (htmx: the row again, with the service's
    refusal in it) or from the task page (a plain form: back to the task)."""
    task_id = _task_id(current)
    try:
        task = await current.call(method, request)
    except ServiceRefusal as refusal:
        if not _is_htmx(current) or refusal.code in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.UNAUTHENTICATED,
        ):
            raise
        # The row as it stands now (another reviewer may have claimed it meanwhile).
        task = await current.call(
            current.clients.review.GetTask, review_pb2.GetTaskRequest(task_id=task_id)
        )
        return _row(current, task, refusal.message)
    if _is_htmx(current):
        return _row(current, task)
    return current.redirect(f"/inbox/{task_id}")


@page(*DEPARTMENT_ROLES)
async def claim(current: Page) -> Response:
    request = review_pb2.ClaimTaskRequest(task_id=_task_id(current))
    return await _row_action(current, current.clients.review.ClaimTask, request)


@page(*DEPARTMENT_ROLES)
async def release(current: Page) -> Response:
    form = await current.form()
    request = review_pb2.ReleaseTaskRequest(
        task_id=_task_id(current), reason=form.get("reason", "").strip()
    )
    return await _row_action(current, current.clients.review.ReleaseTask, request)


@page(Role.DEPARTMENT_HEAD)
async def reassign(current: Page) -> Response:
    form = await current.form()
    request = review_pb2.ReassignTaskRequest(
        task_id=_task_id(current),
        assignee=form.get("assignee", "").strip(),
        reason=form.get("reason", "").strip(),
    )
    return await _row_action(current, current.clients.review.ReassignTask, request)


# One task: the file and the decision -------------------------------------------------------


async def _task_page(
    current: Page,
    task: review_pb2.ReviewTask,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    application = await current.call(
        current.clients.applications.GetApplication,
        applications_pb2.GetApplicationRequest(application_id=task.application_id),
    )
    # The department's own record of this application (earlier rounds, other stages): the
    # service lists a reviewer only the tasks of the reviewer's department.
    history = await current.call(
        current.clients.review.ListTasks,
        review_pb2.ListTasksRequest(
            application_id=task.application_id, filter=review_pb2.TASK_FILTER_ALL, page_size=50
        ),
    )
    audits = await current.call(
        current.clients.review.ListAuditTasks,
        review_pb2.ListAuditTasksRequest(application_id=task.application_id),
    )
    view = TaskView.of(task)
    return current.render(
        "reviewer/task.html",
        status_code=status_code,
        title=current.tr("评审任务", "Review task"),
        view=view,
        mine=view.claimed and task.assignee == current.signed_in.subject,
        history=[TaskView.of(t) for t in history.tasks if t.task_id != task.task_id],
        audits=[(a, _term(AuditTaskState, a.state)) for a in audits.tasks],
        values=values or {"decision": "approve"},
        errors=errors or {},
        is_head=current.signed_in.role == Role.DEPARTMENT_HEAD,
        **application_view(application),
    )


@page(*DEPARTMENT_ROLES)
async def task_page(current: Page) -> Response:
    task_id = _task_id(current)
    # GetTask first: the service refuses another department's task before anything is read.
    task = await current.call(
        current.clients.review.GetTask, review_pb2.GetTaskRequest(task_id=task_id)
    )
    if current.request.method != "POST":
        return await _task_page(current, task)

    form = await current.form()
    values = {name: form.get(name, "") for name in DECIDE_FIELDS}
    errors: dict[str, str] = {}
    choice = values["decision"]
    reason = values["reason"].strip()
    amount_fen = 0
    if choice not in DECISIONS:
        errors["decision"] = current.tr("请选择评审意见", "Choose a decision")
    if not reason:
        errors["reason"] = current.tr("请填写理由", "Give the reason")
    elif len(reason) > MAX_REASON:
        errors["reason"] = current.tr(
            f"理由不能超过 {MAX_REASON} 字", f"At most {MAX_REASON} characters"
        )
    if choice == "approve_lower":
        parsed = hundredths(values["amount_yuan"])
        if parsed is None or parsed <= 0:
            errors["amount_yuan"] = current.tr(
                "请填写核减后的金额（元，最多两位小数）",
                "Give the lower amount in yuan (at most two decimals)",
            )
        else:
            amount_fen = parsed
    if errors:
        return await _task_page(current, task, values, errors, status_code=400)

    decision = DECISIONS[choice]
    try:
        decided = await current.call(
            current.clients.review.DecideTask,
            review_pb2.DecideTaskRequest(
                task_id=task_id,
                decision=decision.to_proto(),
                reason=reason,
                approved_amount_fen=amount_fen,
            ),
        )
    except ServiceRefusal as refusal:
        if refusal.code == grpc.StatusCode.INVALID_ARGUMENT:
            found = field_errors(
                refusal, ["decision", "reason", "approved_amount_fen"], lang=current.lang
            )
            if "approved_amount_fen" in found:
                found["amount_yuan"] = found.pop("approved_amount_fen")
            return await _task_page(current, task, values, found, status_code=400)
        if refusal.code == grpc.StatusCode.FAILED_PRECONDITION:
            return await _task_page(current, task, values, {"": refusal.message}, status_code=409)
        raise
    current.request.session[FLASH_KEY] = current.tr(
        f"已提交评审意见：{term_label(current.lang, decision)}（{decided.application_id}）",
        f"Decision recorded: {term_label(current.lang, decision)} ({decided.application_id})",
    )
    return current.redirect("/inbox")


# Experts -----------------------------------------------------------------------------------


@page(Role.EXPERT)
async def expert_tasks(current: Page) -> Response:
    pending = current.request.query_params.get("tab", "pending") != "all"
    answer = await current.call(
        current.clients.review.ListMyExpertTasks,
        review_pb2.ListMyExpertTasksRequest(pending_only=pending),
    )
    return current.render(
        "reviewer/expert_list.html",
        title=current.tr("专家评审", "Expert review"),
        tasks=[(t, _term(ExpertTaskState, t.state)) for t in answer.tasks],
        pending=pending,
        flash=_take_flash(current),
    )


async def _expert_page(
    current: Page,
    task: review_pb2.ExpertTask,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    # The file only after the review service has answered the task: the expert is on its panel.
    application = await current.call(
        current.clients.applications.GetApplication,
        applications_pb2.GetApplicationRequest(application_id=task.application_id),
    )
    mine = {score.code: score.score_centi for score in task.scores}
    return current.render(
        "reviewer/expert_task.html",
        status_code=status_code,
        title=current.tr("专家评分", "Expert scoring"),
        task=task,
        state=_term(ExpertTaskState, task.state),
        submitted=task.state == ExpertTaskState.SUBMITTED.to_proto(),
        mine={code: points(value) for code, value in mine.items()},
        others=[(m, points(m.total_centi)) for m in task.others],
        points=points,
        values=values or {},
        errors=errors or {},
        flash=_take_flash(current),
        **application_view(application),
    )


@page(Role.EXPERT)
async def expert_task(current: Page) -> Response:
    task_id = _task_id(current)
    task = await current.call(
        current.clients.review.GetExpertTask, review_pb2.GetExpertTaskRequest(task_id=task_id)
    )
    if current.request.method != "POST":
        return await _expert_page(current, task)

    form = await current.form()
    values = {name: value for name, value in form.items() if name != "csrftoken"}
    errors: dict[str, str] = {}
    scores = []
    for criterion in task.rubric:
        name = f"score_{criterion.code}"
        centi = hundredths(values.get(name, ""))
        if centi is None:
            errors[name] = current.tr(
                "请填写分数（最多两位小数）", "Give a score (two decimals at most)"
            )
        elif not 0 <= centi <= criterion.max_points * 100:
            errors[name] = current.tr(
                f"分数应在 0 到 {criterion.max_points} 之间",
                f"Between 0 and {criterion.max_points}",
            )
        else:
            scores.append(review_pb2.CriterionScore(code=criterion.code, score_centi=centi))
    if errors:
        return await _expert_page(current, task, values, errors, status_code=400)
    try:
        await current.call(
            current.clients.review.SubmitScores,
            review_pb2.SubmitScoresRequest(
                task_id=task_id, scores=scores, comment=values.get("comment", "").strip()
            ),
        )
    except ServiceRefusal as refusal:
        if refusal.code not in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
        ):
            raise
        # The service names "scores" and quotes the criterion; put it beside that criterion.
        key = next(
            (f"score_{c.code}" for c in task.rubric if f"'{c.code}'" in refusal.message),
            "comment" if refusal.field == "comment" else "",
        )
        return await _expert_page(current, task, values, {key: refusal.message}, status_code=400)
    current.request.session[FLASH_KEY] = current.tr("评分已提交", "Scores submitted")
    return current.redirect(f"/expert/{task_id}")


# Special audits ----------------------------------------------------------------------------


@page(Role.AUDITOR)
async def audit_tasks(current: Page) -> Response:
    open_only = current.request.query_params.get("tab", "open") != "all"
    answer = await current.call(
        current.clients.review.ListAuditTasks,
        review_pb2.ListAuditTasksRequest(open_only=open_only),
    )
    return current.render(
        "reviewer/audit_list.html",
        title=current.tr("专项审计", "Special audit"),
        tasks=[(t, _term(AuditTaskState, t.state)) for t in answer.tasks],
        open_only=open_only,
        flash=_take_flash(current),
    )


async def _audit_page(
    current: Page,
    application_id: str,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    answer = await current.call(
        current.clients.review.ListAuditTasks,
        review_pb2.ListAuditTasksRequest(application_id=application_id),
    )
    if not answer.tasks:
        raise ServiceRefusal(grpc.StatusCode.NOT_FOUND, "")
    application = await current.call(
        current.clients.applications.GetApplication,
        applications_pb2.GetApplicationRequest(application_id=application_id),
    )
    return current.render(
        "reviewer/audit_task.html",
        status_code=status_code,
        title=current.tr("专项审计", "Special audit"),
        tasks=[(t, _term(AuditTaskState, t.state)) for t in answer.tasks],
        open_state=AuditTaskState.OPEN.to_proto(),
        values=values or {},
        errors=errors or {},
        flash=_take_flash(current),
        **application_view(application),
    )


@page(Role.AUDITOR)
async def audit_task(current: Page) -> Response:
    application_id = str(current.request.path_params["application_id"])
    if current.request.method != "POST":
        return await _audit_page(current, application_id)
    form = await current.form()
    values = {name: form.get(name, "") for name in ("task_id", "audited_yuan", "note")}
    audited = hundredths(values["audited_yuan"])
    if audited is None or audited < 0:
        errors = {
            "audited_yuan": current.tr(
                "请填写审定金额（元，最多两位小数）", "Give the audited amount in yuan"
            )
        }
        return await _audit_page(current, application_id, values, errors, status_code=400)
    try:
        await current.call(
            current.clients.review.ConfirmAudit,
            review_pb2.ConfirmAuditRequest(
                task_id=values["task_id"], audited_fen=audited, note=values["note"].strip()
            ),
        )
    except ServiceRefusal as refusal:
        if refusal.code not in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
        ):
            raise
        found = field_errors(refusal, ["audited_fen", "note"], lang=current.lang)
        if "audited_fen" in found:
            found["audited_yuan"] = found.pop("audited_fen")
        return await _audit_page(current, application_id, values, found, status_code=400)
    current.request.session[FLASH_KEY] = current.tr("审计结果已确认", "Audit confirmed")
    return current.redirect(f"/audit/{application_id}")


routes = [
    Route("/inbox", inbox),
    Route("/inbox/{task_id}", task_page, methods=["GET", "POST"]),
    Route("/inbox/{task_id}/claim", claim, methods=["POST"]),
    Route("/inbox/{task_id}/release", release, methods=["POST"]),
    Route("/inbox/{task_id}/reassign", reassign, methods=["POST"]),
    Route("/expert", expert_tasks),
    Route("/expert/{task_id}", expert_task, methods=["GET", "POST"]),
    Route("/audit", audit_tasks),
    Route("/audit/{application_id}", audit_task, methods=["GET", "POST"]),
]
