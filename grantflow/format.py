"""How the CLI and the demo print money, stages and audit records."""

from __future__ import annotations

import json

from services.common.labels import LABELS
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


def audit_action(action: str) -> str:
    """An audit record's action for a person: Chinese first, the action's name after."""
    try:
        return f"{LABELS[AuditAction(action)]} {action}"
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


def audit_break(kind: AuditBreak) -> str:
    """How an audit chain is broken, for a person: Chinese first, the kind after."""
    return f"{LABELS[kind]} ({kind.value})"
