"""`grantflow ops show <application>`: one grant's business timeline, in time order, for a person
who does not read workflow ids. Each fact comes from its owner: the application, review tasks and
funds from the three services (grantflow/grant_story.py, which the web console uses too), and
the process itself (stages, the notice and deadline timers, decisions and payment results it
received, service calls that failed and are retried, what it is doing now) from the grant's
Temporal workflow history. Nothing here writes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from grantflow.grant_story import (
    APPLICATION,
    FUNDS,
    PROCESS,
    REVIEW,
    SOURCES,
    Entry,
    Timeline,
    _time,
    application_entries,
    direct,
    funds_entries,
    read_source,
    service_entries,
    shanghai,
    task_entries,
)
from grantflow.v1 import applications_pb2
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.labels import label
from services.common.temporal import connect_temporal
from services.common.vocabulary import Decision, Department, GrantStage, PlanState
from workflows import contracts

__all__ = [
    "APPLICATION",
    "FUNDS",
    "PROCESS",
    "REVIEW",
    "SOURCES",
    "Entry",
    "Timeline",
    "application_entries",
    "funds_entries",
    "grant_timeline",
    "history_entries",
    "pending_entries",
    "shanghai",
    "task_entries",
]
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
        facts, process = await asyncio.gather(
            service_entries(direct, clients, application_id, timeline),
            read_source(PROCESS, timeline, _process(settings, workflow_id)),
        )
    funds = facts.funds
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
                    read_source(PROCESS, timeline, _describe(settings, plan.workflow_id))
                    for plan in paying
                )
            ),
            strict=True,
        ):
            if plan_process is not None:
                pending_entries(plan_process, timeline, f"资助计划《{plan.title}》")
    return timeline


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
