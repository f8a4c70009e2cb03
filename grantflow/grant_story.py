"""One grant's business timeline as the three services tell it, without Temporal: the
application (applications service), its review tasks with claims, decisions, who, when and why
(review service), its reservation, funding plans and payment lines (disbursement service).

`grantflow ops show` (grantflow/timeline.py) adds the grant's workflow history to these entries;
the web console shows them as they are and links to the Temporal Web UI for the workflow itself
(the console talks only to the services). The calls go through `call(method, request)`, so each
caller sends them its own way (the CLI's clients carry the token, the console adds the signed-in
user's). Nothing here writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from grantflow.format import yuan
from grantflow.v1 import applications_pb2, disbursement_pb2, review_pb2
from services.common.labels import label
from services.common.vocabulary import (
    Decision,
    Department,
    GrantStage,
    PaymentState,
    ReservationState,
    TaskState,
    VocabularyError,
)
from services.common.workdays import SHANGHAI

T = TypeVar("T")
# Sends one request to a service: `await call(stub.Method, request)`.
Call = Callable[[Callable[..., Awaitable[Any]], Any], Awaitable[Any]]
# Where a row comes from, as the operator reads it.
APPLICATION, REVIEW, FUNDS, PROCESS = "申请", "评审", "资金", "流程"
SOURCES = (APPLICATION, REVIEW, FUNDS, PROCESS)


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
            if state in (PaymentState.PAID, PaymentState.RETURNED) and paid:
                timeline.entries.append(
                    Entry(
                        paid,
                        FUNDS,
                        f"拨付成功 {yuan(line.amount_fen)}",
                        line.applicant_name,
                        f"收款凭证 {line.gateway_reference}，{attempts}",
                    )
                )
                returned = _time(line.returned_at)
                if state == PaymentState.RETURNED and returned:
                    # 退汇: the money came back; paid again once the account is corrected.
                    timeline.entries.append(
                        Entry(
                            returned,
                            FUNDS,
                            f"退汇 {yuan(line.amount_fen)}",
                            "",
                            f"{line.return_reason}；更正收款账户并经审批后重新拨付",
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


# Gathering ---------------------------------------------------------------------------------------


async def direct(method: Callable[..., Awaitable[Any]], request: Any) -> Any:
    """A `Call` for clients that carry their own token (ServiceClients(settings, token))."""
    return await method(request)


async def review_tasks(
    call: Call, clients: Any, application_id: str
) -> list[review_pb2.ReviewTask]:
    """Every review task of the application, whatever its state."""
    tasks: list[review_pb2.ReviewTask] = []
    token = ""
    while True:
        page = await call(
            clients.review.ListTasks,
            review_pb2.ListTasksRequest(
                application_id=application_id,
                filter=review_pb2.TASK_FILTER_ALL,
                page_size=500,
                page_token=token,
            ),
        )
        tasks.extend(page.tasks)
        token = page.next_page_token
        if not token:
            return tasks


def _unreachable(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__


async def read_source(source: str, timeline: Timeline, work: Awaitable[T]) -> T | None:
    """What work answers, or None with the source named in the timeline's `missing`."""
    try:
        return await work
    except Exception as error:
        timeline.missing.append(f"{source}: {_unreachable(error)}")
        return None


@dataclass
class ServiceFacts:
    """What the review and disbursement services said (None: that source could not be read)."""

    tasks: list[review_pb2.ReviewTask] | None
    funds: disbursement_pb2.ApplicationFunds | None


async def service_entries(
    call: Call, clients: Any, application_id: str, timeline: Timeline
) -> ServiceFacts:
    """The review tasks' and the funds' entries, read at once; a source that cannot be read is
    named in the timeline's `missing` and the other still shows."""
    tasks, funds = await asyncio.gather(
        read_source(REVIEW, timeline, review_tasks(call, clients, application_id)),
        read_source(
            FUNDS,
            timeline,
            call(
                clients.disbursement.GetApplicationFunds,
                disbursement_pb2.GetApplicationFundsRequest(application_id=application_id),
            ),
        ),
    )
    if tasks is not None:
        task_entries(tasks, timeline)
    if funds is not None:
        funds_entries(funds, timeline)
    return ServiceFacts(tasks, funds)


async def services_timeline(
    call: Call, clients: Any, application_id: str
) -> tuple[Timeline, applications_pb2.Application, ServiceFacts]:
    """The grant's timeline from the three services only. The application must be readable
    (its refusal, e.g. NOT_FOUND, is raised as `call` raises it); the other sources may fail."""
    timeline = Timeline(application_id)
    application = await call(
        clients.applications.GetApplication,
        applications_pb2.GetApplicationRequest(application_id=application_id),
    )
    application_entries(application, timeline)
    facts = await service_entries(call, clients, application_id, timeline)
    return timeline, application, facts
