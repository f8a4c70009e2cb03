"""What each term of the vocabulary (services/common/vocabulary.py) is called in Chinese, for
everything a person reads: the CLI's tables, the operator's timeline. One label per term, here
only; `label` falls back to the term's own spelling so that a newer term still prints."""

from __future__ import annotations

from services.common.vocabulary import (
    AuditAction,
    AuditBreak,
    Decision,
    DeliveryStatus,
    Department,
    GrantStage,
    NotificationChannel,
    PaymentState,
    PlanState,
    ReservationState,
    TaskState,
    Term,
)

LABELS: dict[Term, str] = {
    GrantStage.SUBMITTED: "已申报",
    GrantStage.FORMAL_CHECK: "合规性初审",
    GrantStage.AWAITING_SUPPLEMENT: "待补正",
    GrantStage.IN_REVIEW: "部门联审",
    GrantStage.APPROVED: "审定通过",
    GrantStage.IN_NOTICE: "社会公示",
    GrantStage.AWAITING_FUNDING_PLAN: "待下达资助计划",
    GrantStage.IN_PAYMENT: "拨付中",
    GrantStage.PAID: "已拨付",
    GrantStage.REJECTED: "未通过",
    GrantStage.WITHDRAWN: "已撤回",
    GrantStage.PAYMENT_FAILED: "拨付失败",
    Department.INDUSTRY: "工信局",
    Department.FINANCE: "财政局",
    Department.HR: "人社局",
    TaskState.OPEN: "待领取",
    TaskState.CLAIMED: "已领取",
    TaskState.DECIDED: "已决定",
    TaskState.CANCELLED: "已取消",
    Decision.APPROVE: "同意",
    Decision.REJECT: "不同意",
    Decision.RETURN_FOR_SUPPLEMENT: "退回补正",
    ReservationState.RESERVED: "已预留",
    ReservationState.AWARDED: "公示无异议，待列入计划",
    ReservationState.IN_PLAN: "已列入资助计划",
    ReservationState.PAID: "已拨付",
    ReservationState.RELEASED: "已释放",
    PlanState.DRAFT: "草拟",
    PlanState.APPROVED: "已审核",
    PlanState.PAYING: "拨付中",
    PlanState.COMPLETED: "已完成",
    PlanState.COMPLETED_WITH_FAILURES: "已完成（部分失败）",
    PaymentState.PENDING: "待拨付",
    PaymentState.PAID: "已拨付",
    PaymentState.FAILED: "拨付失败",
    AuditBreak.EDITED: "审计记录被篡改",
    AuditBreak.DELETED: "审计记录被删除",
    AuditBreak.INSERTED: "审计记录被插入或调换顺序",
    AuditAction.REVIEW_CLAIMED: "领取评审任务",
    AuditAction.REVIEW_DECIDED: "评审决定",
    AuditAction.OBJECTION_HANDLED: "异议处理",
    AuditAction.PROGRAM_PUBLISHED: "发布申报规则",
    AuditAction.WITHDRAWAL_REQUESTED: "申请撤回",
    AuditAction.GRANT_APPROVED: "资助审定通过",
    AuditAction.GRANT_IN_NOTICE: "审定通过并公示",
    AuditAction.GRANT_REJECTED: "资助不予通过",
    AuditAction.GRANT_WITHDRAWN: "资助已撤回",
    AuditAction.GRANT_PAID: "资金已拨付",
    AuditAction.GRANT_PAYMENT_FAILED: "拨付失败",
    AuditAction.BUDGET_SET: "设定预算",
    AuditAction.BUDGET_CHANGED: "调整预算",
    AuditAction.RESERVATION_MADE: "预留资金",
    AuditAction.RESERVATION_RELEASED: "释放预留资金",
    AuditAction.AWARD_CONFIRMED: "公示后确认资助",
    AuditAction.PLAN_CREATED: "编制资助计划（经办）",
    AuditAction.PLAN_APPROVED: "审批资助计划（复核）",
    AuditAction.PLAN_COMPLETED: "资助计划完成",
    AuditAction.PAYMENT_SETTLED: "支付成功",
    AuditAction.PAYMENT_FAILED: "支付失败",
    AuditAction.PAYMENT_RETRIED: "修复：重新支付",
    AuditAction.CALENDAR_YEAR_SET: "录入工作日日历",
    AuditAction.NOTIFICATION_CONTACT_SET: "登记通知联系方式",
    DeliveryStatus.PENDING: "待发送",
    DeliveryStatus.SENT: "已发送",
    DeliveryStatus.FAILED: "发送失败",
    DeliveryStatus.SKIPPED: "未登记联系方式",
    NotificationChannel.LOG: "记录",
    NotificationChannel.MAIL: "邮件",
    NotificationChannel.SMS: "短信",
}


def label(term: Term | str) -> str:
    """The Chinese name of a term (or of a stage spelt as the search attribute holds it)."""
    if not isinstance(term, Term):
        try:
            term = GrantStage(term)
        except ValueError:
            return str(term)
    return LABELS.get(term, term.value)


def stage_label(stage: str) -> str:
    """A stage as people read it: 拨付失败 (PAYMENT_FAILED)."""
    if not stage:
        return ""
    return f"{label(stage)} ({stage})"
