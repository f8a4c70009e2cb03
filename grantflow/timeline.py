"""`grantflow ops show <application>`: one grant's business timeline, in time order, for a person
who does not read workflow ids. Each fact comes from its owner: the application from the
applications service, review tasks (claims, decisions, who, when, why) from the review service,
reservations, funding plans and payment lines from the disbursement service, and the process
itself (stages, the notice and deadline timers, decisions and payment results it received,
service calls that failed and are retried, what it is doing now) from the grant's Temporal
workflow history. Nothing here writes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from grantflow.format import yuan
from grantflow.v1 import applications_pb2, disbursement_pb2, review_pb2
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.labels import label
from services.common.temporal import connect_temporal
from services.common.vocabulary import (
    Decision,
    Department,
    GrantStage,
    PaymentState,
    PlanState,
    ReservationState,
    TaskState,
    VocabularyError,
)
from services.common.workdays import SHANGHAI
from workflows import contracts

T = TypeVar("T")
# Where a row comes from, as the operator reads it.
APPLICATION, REVIEW, FUNDS, PROCESS = "申请", "评审", "资金", "流程"
SOURCES = (APPLICATION, REVIEW, FUNDS, PROCESS)
# Service calls of the grant, named for a person (activity type -> what it does).
ACTIVITY_NAMES = {
    "look_up_enterprise": "查询企业信息",
    "working_days_deadline": "计算工作日期限",
    "create_review_task": "创建评审任务",
    "cancel_review_tasks_v3": "取消评审任务",
    "cancel_review_tasks": "取消评审任务",
    "remind_overdue_tasks_v3": "催办逾期评审",
    "remind_overdue_tasks": "催办逾期评审",
    "report_stage": "更新申请状态",
    "reserve_budget": "预留预算",
    "release_reservation_v3": "释放预算",
    "release_reservation": "释放预算",
    "confirm_award_v3": "确认资助",
    "confirm_award": "确认资助",
    "pay_line_v3": "拨付资金",
    "execute_payment": "拨付资金",
    "mark_payment_failed": "记录拨付失败",
    "complete_funding_plan_v3": "完成资助计划",
    "complete_funding_plan": "完成资助计划",
}
SIGNAL_NAMES = {
    contracts.WITHDRAW: "收到撤回申请",
    contracts.SUPPLEMENT: "收到补正材料",
    contracts.PAYMENT_SETTLED: "收到拨付结果：成功",
    contracts.PAYMENT_FAILED: "收到拨付结果：失败",
    contracts.FUNDING_PLAN_ASSIGNED: "列入资助计划",
}
# What a timer is for, by the stage the grant was in when it started.
TIMER_PURPOSE = {
    GrantStage.IN_NOTICE: "公示期",
    GrantStage.IN_REVIEW: "评审期限",
    GrantStage.AWAITING_SUPPLEMENT: "补正期限",
}


@dataclass(frozen=True)
class Entry:
    at: datetime  # aware
    source: str  # one of SOURCES
    what: str
    who: str = ""
    detail: str = ""

    def as_json(self) -> dict[str, str]:
        row = asdict(self)
        row["at"] = self.at.astimezone(SHANGHAI).isoformat()
        return row


@dataclass
class Timeline:
    application_id: str
    summary: dict[str, str] = field(default_factory=dict)  # heading lines: 项目, 企业, 阶段 …
    entries: list[Entry] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # sources that could not be read, and why

    def ordered(self) -> list[Entry]:
        order = {source: n for n, source in enumerate(SOURCES)}
        return sorted(self.entries, key=lambda e: (e.at, order.get(e.source, 9)))

    def as_json(self) -> dict[str, Any]:
        return {
            "application_id": self.application_id,
            "summary": self.summary,
            "entries": [entry.as_json() for entry in self.ordered()],
            "missing": self.missing,
        }


def shanghai(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def _time(stamp: Any) -> datetime | None:
    """A protobuf Timestamp as an aware datetime; None when unset."""
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def _term_label(vocabulary: Any, number: int) -> str:
    try:
        return label(vocabulary.from_proto(number))
    except VocabularyError:
        return str(number)


# Services ----------------------------------------------------------------------------------------


def application_entries(a: applications_pb2.Application, timeline: Timeline) -> None:
    stage = _term_label(GrantStage, a.status)
    timeline.summary.update(
        {
            "申请编号": a.application_id,
            "项目": a.project_title,
            "企业": f"{a.applicant_name}（{a.applicant_credit_code}）",
            "项目类别": f"{a.program_code} 第{a.rule_version}版",
            "当前阶段": stage + (f"：{a.status_reason}" if a.status_reason else ""),
            "资助金额": yuan(a.award_amount_fen),
        }
    )
    submitted = _time(a.submitted_at)
    if submitted:
        requested = f"，申请金额 {yuan(a.requested_amount_fen)}" if a.requested_amount_fen else ""
        timeline.entries.append(
            Entry(
                submitted,
                APPLICATION,
                "提交申请",
                a.applicant_name,
                f"{a.program_code}《{a.project_title}》{requested}",
            )
        )
    updated = _time(a.updated_at)
    if updated and updated != submitted:
        timeline.entries.append(
            Entry(updated, APPLICATION, f"申请状态更新为：{stage}", "", a.status_reason)
        )


def task_entries(tasks: Iterable[review_pb2.ReviewTask], timeline: Timeline) -> None:
    for t in tasks:
        department = _term_label(Department, t.department)
        name = f"{department}第{t.round}轮评审"
        created = _time(t.created_at)
        due = _time(t.due_at)
        if created:
            overdue = "，已逾期" if t.overdue else ""
            timeline.entries.append(
                Entry(
                    created,
                    REVIEW,
                    f"创建评审任务：{name}",
                    "",
                    f"建议金额 {yuan(t.proposed_amount_fen)}"
                    + (f"，{shanghai(due)} 前完成{overdue}" if due else ""),
                )
            )
        claimed = _time(t.claimed_at)
        if claimed:
            timeline.entries.append(Entry(claimed, REVIEW, f"领取评审任务：{name}", t.assignee))
        decided = _time(t.decided_at)
        state = TaskState.from_proto(t.state)
        if decided and state == TaskState.DECIDED:
            decision = _term_label(Decision, t.decision)
            amount = (
                f"核定金额 {yuan(t.decided_amount_fen)}"
                if t.decision == Decision.APPROVE.to_proto()
                else ""
            )
            reason = f"理由：{t.reason}" if t.reason else ""
            timeline.entries.append(
                Entry(
                    decided,
                    REVIEW,
                    f"评审决定：{name}{decision}",
                    t.assignee,
                    "；".join(part for part in (reason, amount) if part),
                )
            )
        elif decided and state == TaskState.CANCELLED:
            timeline.entries.append(Entry(decided, REVIEW, f"评审任务取消：{name}", "", t.reason))


def funds_entries(funds: disbursement_pb2.ApplicationFunds, timeline: Timeline) -> None:
    if funds.HasField("reservation"):
        r = funds.reservation
        created = _time(r.created_at)
        if created:
            timeline.entries.append(
                Entry(created, FUNDS, "预留预算", "", f"{r.program_code} 预留 {yuan(r.amount_fen)}")
            )
        updated = _time(r.updated_at)
        reservation_state = ReservationState.from_proto(r.state)
        if updated and updated != created:
            timeline.entries.append(
                Entry(
                    updated, FUNDS, f"预算状态：{label(reservation_state)}", "", yuan(r.amount_fen)
                )
            )
    for plan in funds.plans:
        title = f"资助计划《{plan.title}》"
        created = _time(plan.created_at)
        total = f"计划共 {yuan(plan.total_fen)}"
        if created:
            timeline.entries.append(
                Entry(created, FUNDS, f"列入{title}", plan.created_by, f"{total}（拟定）")
            )
        approved = _time(plan.approved_at)
        if approved:
            timeline.entries.append(
                Entry(approved, FUNDS, f"{title}审核通过，开始拨付", plan.approved_by, total)
            )
        for line in plan.lines:
            state = PaymentState.from_proto(line.state)
            attempts = f"尝试 {line.attempts} 次"
            paid = _time(line.paid_at)
            if state == PaymentState.PAID and paid:
                timeline.entries.append(
                    Entry(
                        paid,
                        FUNDS,
                        f"拨付成功 {yuan(line.amount_fen)}",
                        line.applicant_name,
                        f"收款凭证 {line.gateway_reference}，{attempts}",
                    )
                )
            elif state == PaymentState.FAILED:
                at = _time(plan.completed_at) or approved or created
                if at:
                    timeline.entries.append(
                        Entry(
                            at,
                            FUNDS,
                            f"拨付失败 {yuan(line.amount_fen)}",
                            "",
                            f"{line.failure_reason}（{attempts}）",
                        )
                    )
        completed = _time(plan.completed_at)
        if completed:
            timeline.entries.append(Entry(completed, FUNDS, f"{title}完成", "", total))


# The workflow history ----------------------------------------------------------------------------


def _payload_json(payloads: Any) -> Any:
    """The first JSON payload of a Payloads message (Grantflow's converter writes JSON)."""
    for payload in payloads.payloads if payloads is not None else ():
        try:
            return json.loads(payload.data)
        except ValueError:
            return None
    return None


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} 天"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} 小时"
    if seconds >= 60:
        return f"{seconds / 60:.0f} 分钟"
    return f"{seconds:g} 秒"


def history_entries(history: WorkflowHistory, timeline: Timeline) -> None:
    """The business meaning of a grant's workflow events."""
    stage: GrantStage | None = None
    timers: dict[str, str] = {}
    times: dict[int, datetime] = {}
    for event in history.events:
        at = times[event.event_id] = event.event_time.ToDatetime(tzinfo=UTC)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            # Recorded when the workflow task that took it completed, after the service calls
            # that task made; the update arrived with the task it was sequenced after.
            attributes = event.workflow_execution_update_accepted_event_attributes
            at = times.get(attributes.accepted_request_sequencing_event_id, at)
        entry = _history_entry(event, at, stage, timers)
        if entry is not None:
            timeline.entries.append(entry)
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            stage = _stage_of(event) or stage


def _stage_of(event: HistoryEvent) -> GrantStage | None:
    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    payload = fields.indexed_fields.get(contracts.SA_STAGE)
    if payload is None:
        return None
    try:
        return GrantStage(json.loads(payload.data))
    except ValueError:
        return None


def _history_entry(
    event: HistoryEvent, at: datetime, stage: GrantStage | None, timers: dict[str, str]
) -> Entry | None:
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        return Entry(at, PROCESS, "审批流程启动", "", "")
    if kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        new_stage = _stage_of(event)
        if new_stage is None or new_stage == stage:
            pending = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            departments = pending.indexed_fields.get(contracts.SA_PENDING_DEPARTMENTS)
            if departments is None or new_stage is None:
                return None
            names = [label(Department(d)) for d in json.loads(departments.data) or []]
            return Entry(at, PROCESS, "待审部门：" + ("、".join(names) or "无"), "", "")
        return Entry(at, PROCESS, f"进入阶段：{label(new_stage)}", "", new_stage.value)
    if kind == EventType.EVENT_TYPE_TIMER_STARTED:
        attributes = event.timer_started_event_attributes
        purpose = TIMER_PURPOSE.get(stage, "等待") if stage else "等待"
        timers[attributes.timer_id] = purpose
        seconds = attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        fires = at + timedelta(seconds=seconds)
        return Entry(
            at, PROCESS, f"{purpose}开始计时", "", f"{_duration(seconds)}，至 {shanghai(fires)}"
        )
    if kind == EventType.EVENT_TYPE_TIMER_FIRED:
        purpose = timers.get(event.timer_fired_event_attributes.timer_id, "等待")
        return Entry(at, PROCESS, f"{purpose}届满", "", "")
    if kind == EventType.EVENT_TYPE_TIMER_CANCELED:
        purpose = timers.get(event.timer_canceled_event_attributes.timer_id, "等待")
        return Entry(at, PROCESS, f"{purpose}计时结束（提前完成）", "", "")
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        signal = event.workflow_execution_signaled_event_attributes
        data = _payload_json(signal.input) or {}
        detail = data.get("reason") or data.get("note") or data.get("gateway_reference") or ""
        who = data.get("withdrawn_by", "") if isinstance(data, dict) else ""
        what = SIGNAL_NAMES.get(signal.signal_name, f"收到通知 {signal.signal_name}")
        return Entry(at, PROCESS, what, who, str(detail))
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        data = _payload_json(request.input.args) or {}
        if request.input.name == contracts.DECIDE_REVIEW_TASK:
            department = label(Department(data.get("department", ""))) if data else ""
            decision = label(Decision(data.get("decision", "approve"))) if data else ""
            return Entry(
                at,
                PROCESS,
                f"流程收到{department}评审决定：{decision}",
                data.get("reviewer", ""),
                data.get("reason", ""),
            )
        if request.input.name == contracts.WITHDRAW_APPLICATION:
            return Entry(
                at,
                PROCESS,
                "流程收到撤回申请",
                data.get("withdrawn_by", ""),
                data.get("reason", ""),
            )
        return None
    if kind == EventType.EVENT_TYPE_MARKER_RECORDED:
        marker = event.marker_recorded_event_attributes
        if marker.marker_name != "core_local_activity" or not marker.HasField("failure"):
            return None
        data = _payload_json(marker.details.get("data")) or {}
        activity = data.get("activity_type", "")
        name = ACTIVITY_NAMES.get(activity, activity)
        return Entry(
            at,
            PROCESS,
            f"服务调用失败：{name}（第 {data.get('attempt', 1)} 次）",
            "",
            marker.failure.message,
        )
    if kind in (
        EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    ):
        failure = (
            event.activity_task_failed_event_attributes.failure
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
            else event.activity_task_timed_out_event_attributes.failure
        )
        return Entry(at, PROCESS, "服务调用失败", "", failure.message)
    if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
        failure = event.workflow_task_failed_event_attributes.failure
        return Entry(at, PROCESS, "流程代码出错，等待修复后重试", "", failure.message)
    ends = {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "审批流程结束",
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "审批流程失败",
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "审批流程被终止",
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "审批流程被取消",
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "审批流程超时",
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "审批流程续期",
    }
    if kind in ends:
        return Entry(at, PROCESS, ends[kind], "", "")
    return None


def pending_entries(
    description: WorkflowExecutionDescription, timeline: Timeline, owner: str = ""
) -> None:
    """What the grant (or the funding plan paying it: `owner`) is doing now: activities still
    being tried, with their attempt and last failure."""
    raw = description.raw_description
    for pending in raw.pending_activities:
        name = ACTIVITY_NAMES.get(pending.activity_type.name, pending.activity_type.name)
        at = (
            _time(pending.last_attempt_complete_time)
            or _time(pending.last_started_time)
            or datetime.now(UTC)
        )
        failure = pending.last_failure.message if pending.HasField("last_failure") else ""
        timeline.entries.append(
            Entry(
                at, PROCESS, f"{owner}正在进行：{name}（第 {pending.attempt} 次尝试）", "", failure
            )
        )
    if not owner:
        timeline.summary["流程状态"] = description.status.name if description.status else ""


# Gathering ---------------------------------------------------------------------------------------


async def _tasks(clients: ServiceClients, application_id: str) -> list[review_pb2.ReviewTask]:
    tasks: list[review_pb2.ReviewTask] = []
    token = ""
    while True:
        page = await clients.review.ListTasks(
            review_pb2.ListTasksRequest(
                application_id=application_id,
                filter=review_pb2.TASK_FILTER_ALL,
                page_size=500,
                page_token=token,
            )
        )
        tasks.extend(page.tasks)
        token = page.next_page_token
        if not token:
            return tasks


def _unreachable(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__


async def grant_timeline(settings: Settings, token: str, application_id: str) -> Timeline:
    """The timeline of one grant; a source that cannot be read is named in `missing`, the
    others still show. An application the applications service does not know is NOT_FOUND."""
    timeline = Timeline(application_id)
    async with ServiceClients(settings, token) as clients:
        application = await clients.applications.GetApplication(
            applications_pb2.GetApplicationRequest(application_id=application_id)
        )
        application_entries(application, timeline)
        workflow_id = application.workflow_id or contracts.grant_workflow_id(application_id)
        tasks, funds, process = await asyncio.gather(
            _read(REVIEW, timeline, _tasks(clients, application_id)),
            _read(
                FUNDS,
                timeline,
                clients.disbursement.GetApplicationFunds(
                    disbursement_pb2.GetApplicationFundsRequest(application_id=application_id)
                ),
            ),
            _read(PROCESS, timeline, _process(settings, workflow_id)),
        )
    if tasks is not None:
        task_entries(tasks, timeline)
    if funds is not None:
        funds_entries(funds, timeline)
    if process is not None:
        history, description = process
        history_entries(history, timeline)
        pending_entries(description, timeline)
    elif PROCESS not in " ".join(timeline.missing):
        timeline.summary["流程状态"] = "尚未启动"
    if funds is not None:
        # Payments are made by the funding plan's workflow: its retries belong to this story.
        paying = [
            plan
            for plan in funds.plans
            if plan.state in (PlanState.APPROVED.to_proto(), PlanState.PAYING.to_proto())
        ]
        for plan, plan_process in zip(
            paying,
            await asyncio.gather(
                *(
                    _read(PROCESS, timeline, _describe(settings, plan.workflow_id))
                    for plan in paying
                )
            ),
            strict=True,
        ):
            if plan_process is not None:
                pending_entries(plan_process, timeline, f"资助计划《{plan.title}》")
    return timeline


async def _read(source: str, timeline: Timeline, work: Awaitable[T]) -> T | None:
    """What work answers, or None with the source named in the timeline's `missing`."""
    try:
        return await work
    except Exception as error:
        timeline.missing.append(f"{source}: {_unreachable(error)}")
        return None


async def _process(
    settings: Settings, workflow_id: str
) -> tuple[WorkflowHistory, WorkflowExecutionDescription] | None:
    """The grant's workflow history and description; None when it has not started."""
    client: Client = await connect_temporal(settings)
    handle = client.get_workflow_handle(workflow_id)
    try:
        description, history = await asyncio.gather(handle.describe(), handle.fetch_history())
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return history, description


async def _describe(settings: Settings, workflow_id: str) -> WorkflowExecutionDescription:
    """A workflow's description only (a funding plan's history may hold thousands of lines)."""
    client = await connect_temporal(settings)
    return await client.get_workflow_handle(workflow_id).describe()
