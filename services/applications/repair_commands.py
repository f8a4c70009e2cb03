"""The RepairService's commands (repair_use_cases.py): input checked by repair_api.py."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.auth import Principal
from services.common.vocabulary import Department, GrantStage, RepairAction


@dataclass(frozen=True)
class RequestRepair:
    caller: Principal
    request_id: str
    action: RepairAction
    reason: str
    application_id: str = ""
    query: str = ""
    dry_run: bool = False
    department: Department | None = None
    stage: GrantStage | None = None


@dataclass(frozen=True)
class RepairDecision:
    """Approve, pause or resume one repair."""

    caller: Principal
    repair_id: str
