"""The RepairService's use cases: the rules of asking for a repair and of approving one.

- a repair names one grant or a visibility query over grants, never both, and always a reason;
  a re-opened review names its department, a move back its stage (and not SUBMITTED: a grant is
  never moved back before its filing);
- the requester is the token's ops user; the approver must be another ops user (the repair's
  workflow refuses its own requester, so the rule holds whoever calls it);
- a dry run answers its preview and changes nothing.

The repair itself runs as a RepairWorkflow (workflows/repair.py), which records each step in the
audit trail.
"""

from __future__ import annotations

from typing import Protocol

from services.applications.repair_commands import RepairDecision, RequestRepair
from services.common.errors import InvalidArgument
from services.common.vocabulary import GrantStage, RepairAction
from workflows.repair_contracts import RepairInput, RepairParams, RepairProgress

MAX_QUERY_LENGTH = 1000


class RepairRuns(Protocol):
    """The repairs' workflows (services/common/repair_workflows.py)."""

    async def start(self, request: RepairInput) -> RepairProgress: ...
    async def approve(self, repair_id: str, approved_by: str) -> RepairProgress: ...
    async def signal(self, repair_id: str, pause: bool) -> RepairProgress: ...
    async def progress(self, repair_id: str) -> RepairProgress: ...
    async def recent(self, limit: int) -> list[RepairProgress]: ...


class Repairs:
    def __init__(self, runs: RepairRuns) -> None:
        self.runs = runs

    async def request(self, command: RequestRepair) -> RepairProgress:
        if bool(command.application_id) == bool(command.query):
            raise InvalidArgument(
                "application_id", "name one application, or a query for a batch (not both)"
            )
        if len(command.query) > MAX_QUERY_LENGTH:
            raise InvalidArgument("query", f"is longer than {MAX_QUERY_LENGTH} characters")
        if command.action == RepairAction.REOPEN_REVIEW and command.department is None:
            raise InvalidArgument("department", "is required to re-open a review")
        if command.action == RepairAction.MOVE_TO_STAGE:
            if command.stage is None:
                raise InvalidArgument("stage", "is required to move a grant back")
            if command.stage == GrantStage.SUBMITTED:
                raise InvalidArgument("stage", "a grant cannot be moved back before its filing")
        return await self.runs.start(
            RepairInput(
                repair_id=command.request_id,
                action=command.action,
                reason=command.reason,
                requested_by=command.caller.subject,
                application_ids=[command.application_id] if command.application_id else [],
                query=command.query,
                params=RepairParams(
                    department=command.department.value if command.department else "",
                    stage=command.stage.value if command.stage else "",
                ),
                dry_run=command.dry_run,
            )
        )

    async def approve(self, command: RepairDecision) -> RepairProgress:
        return await self.runs.approve(command.repair_id, command.caller.subject)

    async def pause(self, command: RepairDecision) -> RepairProgress:
        return await self.runs.signal(command.repair_id, pause=True)

    async def resume(self, command: RepairDecision) -> RepairProgress:
        return await self.runs.signal(command.repair_id, pause=False)

    async def repair(self, repair_id: str) -> RepairProgress:
        return await self.runs.progress(repair_id)

    async def recent(self, limit: int) -> list[RepairProgress]:
        return await self.runs.recent(limit)
