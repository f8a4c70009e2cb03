"""What an applicant is told of each event that concerns it, in simplified Chinese.

`EVENT_TEXTS` maps an event's payload (the EventEnvelope oneof's name) to the function that
writes its notification, or to nothing: events not in the table are not for applicants. Telling
applicants of a new event is one entry here (the notifications consumer reads the grants and
review topics, where the notice and objection events will be announced too). The filing itself
is answered to the applicant by SubmitApplication; the applications topic is the intake's, and
two consumer groups there would both park a malformed record in its one dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grantflow.v1 import applications_pb2, events_pb2
from services.common.vocabulary import GrantStage, VocabularyError

SENDER = "深圳市工业和信息化专项资金"


@dataclass(frozen=True)
class Application:
    """What a text may say about the application the event concerns."""

    application_id: str
    credit_code: str
    applicant_name: str
    project_title: str
    program_code: str


@dataclass(frozen=True)
class Text:
    subject: str
    body: str


def wan_yuan(fen: int) -> str:
    """An amount as notices print it: 万元 with two decimals (rounded down), and the yuan."""
    hundredths = fen // 10_000
    yuan, cents = divmod(fen, 100)
    return f"{hundredths // 100}.{hundredths % 100:02d} 万元（{yuan:,}.{cents:02d} 元）"


def _letter(application: Application, subject: str, message: str) -> Text:
    body = (
        f"{application.applicant_name}：\n"
        f"您单位申报的 {application.program_code} 项目“{application.project_title}”"
        f"（申请编号 {application.application_id}）{message}\n"
        f"—— {SENDER}"
    )
    return Text(f"【{SENDER}】{subject}：{application.project_title}", body)


def _sentence(text: str) -> str:
    text = text.strip().rstrip("。.")
    return f"{text}。" if text else ""


def _reason(reason: str) -> str:
    return _sentence(f"原因：{reason}") if reason.strip() else ""


# What each stage a grant reports means to the applicant; stages missing here are not told.
STAGE_TEXTS: dict[GrantStage, Callable[[applications_pb2.GrantStageChanged], tuple[str, str]]] = {
    GrantStage.AWAITING_SUPPLEMENT: lambda c: (
        "需要补正材料",
        f"需要补正材料。{_sentence(c.reason)}请在补正期限内提交补正材料，逾期未补正的申请将不予资助。",
    ),
    GrantStage.IN_REVIEW: lambda c: (
        "已进入部门审查",
        f"已进入部门审查（{c.reason}）。" if c.reason else "已进入部门审查。",
    ),
    GrantStage.APPROVED: lambda c: (
        "审查通过",
        f"已通过审查，拟资助金额 {wan_yuan(c.award_amount_fen)}。",
    ),
    GrantStage.IN_NOTICE: lambda c: (
        "拟资助项目公示",
        f"已列入拟资助名单并进入社会公示，拟资助金额 {wan_yuan(c.award_amount_fen)}。"
        "公示期为 7 个工作日，期间如有异议，请以书面形式提出。",
    ),
    GrantStage.AWAITING_FUNDING_PLAN: lambda c: (
        "公示期满",
        "公示期满，待列入资助资金计划。",
    ),
    GrantStage.IN_PAYMENT: lambda c: (
        "资金拨付中",
        f"已列入资助资金计划（{c.plan_id}），资助资金 {wan_yuan(c.award_amount_fen)} 正在拨付。",
    ),
    GrantStage.PAID: lambda c: (
        "资助资金已拨付",
        f"资助资金 {wan_yuan(c.award_amount_fen)} 已拨付，请注意查收，并按规定出具收款收据。",
    ),
    # Awards paid in instalments (TECH-MAJOR): the grant's reason says which instalment was
    # paid, what is paid so far, and which milestone releases the next one by when.
    GrantStage.INSTALMENTS: lambda c: (
        "分期资金已拨付",
        f"{_sentence(c.reason)}请按期完成下一期的验收或审计，确认后拨付下一期资金。",
    ),
    GrantStage.MILESTONE_OVERDUE: lambda c: (
        "分期里程碑已逾期",
        f"{_sentence(c.reason)}请尽快完成并向主管部门申请确认。",
    ),
    GrantStage.PAYMENT_FAILED: lambda c: (
        "资金拨付未成功",
        f"资助资金拨付未成功。{_reason(c.reason)}请核对收款账户信息，工作人员将重新安排拨付。",
    ),
    GrantStage.REJECTED: lambda c: (
        "不予资助",
        f"经审查不予资助。{_reason(c.reason)}",
    ),
    GrantStage.WITHDRAWN: lambda c: (
        "申请已撤回",
        f"已撤回。{_reason(c.reason)}",
    ),
}


def _stage_changed(
    change: applications_pb2.GrantStageChanged, application: Application
) -> Text | None:
    try:
        stage = GrantStage.from_proto(change.stage)
    except VocabularyError:
        return None  # a stage newer than this code: nothing sensible to say yet
    writer = STAGE_TEXTS.get(stage)
    if writer is None:
        return None
    subject, message = writer(change)
    return _letter(application, subject, message)


EVENT_TEXTS: dict[str, Callable[[Any, Application], Text | None]] = {
    "grant_stage_changed": _stage_changed,
}


def text_for(envelope: events_pb2.EventEnvelope, application: Application) -> Text | None:
    """The notification an event means for its applicant; None if it means none."""
    kind = envelope.WhichOneof("payload")
    writer = EVENT_TEXTS.get(kind or "")
    if writer is None:
        return None
    return writer(getattr(envelope, kind or ""), application)
