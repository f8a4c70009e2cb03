"""How the CLI and the demo print money, stages and audit records."""

from __future__ import annotations

import json

from services.common.vocabulary import AuditAction, AuditBreak, GrantStage, VocabularyError


def yuan(fen: int) -> str:
    """Integer fen as yuan, e.g. 150000 -> ¥1,500.00 (no floats)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def stage_name(stage: int) -> str:
    try:
        return GrantStage.from_proto(stage).value
    except VocabularyError:
        return f"UNKNOWN ({stage})"


AUDIT_ACTION_WORDS = {
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
}
REPAIR_PHASE_WORDS = {
    "requested": "申请",
    "approved": "批准",
    "refused": "拒绝",
    "executed": "已执行",
    "failed": "失败",
}
ROLE_WORDS = {
    "applicant": "申报单位",
    "reviewer": "评审人",
    "finance": "财政",
    "ops": "运维",
    "system": "系统",
}
AUDIT_BREAK_WORDS = {
    AuditBreak.EDITED: "审计记录被篡改 (edited)",
    AuditBreak.DELETED: "审计记录被删除 (deleted)",
    AuditBreak.INSERTED: "审计记录被插入或调换顺序 (inserted or reordered)",
}


def audit_action(action: str) -> str:
    """An audit record's action for a person: Chinese first, the action's name after."""
    try:
        return f"{AUDIT_ACTION_WORDS[AuditAction(action)]} {action}"
    except (KeyError, ValueError):
        pass
    parts = action.split(".")
    if len(parts) == 3 and parts[0] == "repair":
        return f"修复{REPAIR_PHASE_WORDS.get(parts[2], parts[2])} {action}"
    return action


def audit_details(details_json: str) -> str:
    """An audit record's details as key=value pairs, amounts in yuan."""
    try:
        details = json.loads(details_json or "{}")
    except ValueError:
        return details_json
    if not isinstance(details, dict):
        return details_json
    shown = []
    for key, value in details.items():
        if value in ("", None):
            continue
        if key.endswith("_fen") and isinstance(value, int):
            value = yuan(value)
        shown.append(f"{key}={value}")
    return " ".join(shown)
