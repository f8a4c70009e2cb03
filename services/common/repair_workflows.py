"""The applications service's conversation with repairs' workflows (`repair-<repair id>`):
starting one, approving, pausing and resuming it, reading its progress, listing recent ones.

As grant_workflows.py does for grants, this turns Temporal's answers into the services' errors:
a refusal of the approval's validator becomes the error of its ErrorType, a repair that is not
there NOT_FOUND, one that has finished FAILED_PRECONDITION, Temporal out of reach UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from services.common.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)
from services.common.grant_workflows import TEMPORAL_UNREACHABLE
from services.common.vocabulary import ErrorType
from workflows.repair_contracts import (
    APPROVE_REPAIR,
    PAUSE_REPAIR,
    REPAIR_PROGRESS,
    REPAIR_WORKFLOW,
    RESUME_REPAIR,
    Approval,
    RepairInput,
    RepairProgress,
    repair_workflow_id,
)

_REFUSALS: dict[str, type[ServiceError]] = {
    ErrorType.PERMISSION_DENIED: PermissionDenied,
    ErrorType.FAILED_PRECONDITION: FailedPrecondition,
}


class RepairWorkflows:
    def __init__(
        self,
        client: Client | Callable[[], Awaitable[Client]],
        *,
        task_queue: str,
        timeout_seconds: float = 60.0,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._timeout = timeout_seconds

    async def start(self, request: RepairInput) -> RepairProgress:
        """Starts the repair (a repeated request id answers the repair it started); a dry run
        answers once its preview is complete."""
        client = await self._connected()
        try:
            handle: WorkflowHandle[Any, RepairProgress] = await client.start_workflow(
                REPAIR_WORKFLOW,
                request,
                id=repair_workflow_id(request.repair_id),
                task_queue=self._task_queue,
                result_type=RepairProgress,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except WorkflowAlreadyStartedError:  # the request id started a repair that has ended
            handle = client.get_workflow_handle(
                repair_workflow_id(request.repair_id), result_type=RepairProgress
            )
        except RPCError as exc:
            raise self._translated(exc) from exc
        if request.dry_run:
            try:
                async with asyncio.timeout(self._timeout):
                    return await handle.result()
            except TimeoutError as exc:
                raise Unavailable("the preview did not finish in time; ask again") from exc
            except WorkflowFailureError as exc:
                raise FailedPrecondition(f"the preview failed: {exc.cause}") from exc
        return await self.progress(request.repair_id)

    async def approve(self, repair_id: str, approved_by: str) -> RepairProgress:
        handle = await self._handle(repair_id)
        try:
            async with asyncio.timeout(self._timeout):
                await handle.execute_update(
                    APPROVE_REPAIR, Approval(approved_by=approved_by), result_type=RepairProgress
                )
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type in _REFUSALS:
                raise _REFUSALS[cause.type](cause.message) from exc
            raise FailedPrecondition(f"repair {repair_id} has ended") from exc
        except RPCError as exc:
            raise self._translated(exc, repair_id) from exc
        except TimeoutError as exc:
            raise Unavailable("the repair did not answer in time; try again") from exc
        return await self.progress(repair_id)

    async def signal(self, repair_id: str, pause: bool) -> RepairProgress:
        handle = await self._handle(repair_id)
        try:
            await handle.signal(PAUSE_REPAIR if pause else RESUME_REPAIR)
        except RPCError as exc:
            raise self._translated(exc, repair_id) from exc
        return await self.progress(repair_id)

    async def progress(self, repair_id: str) -> RepairProgress:
        handle = await self._handle(repair_id)
        try:
            async with asyncio.timeout(self._timeout):
                return await handle.query(REPAIR_PROGRESS, result_type=RepairProgress)
        except RPCError as exc:
            raise self._translated(exc, repair_id) from exc
        except TimeoutError as exc:
            raise Unavailable("the repair did not answer in time; try again") from exc

    async def recent(self, limit: int) -> list[RepairProgress]:
        client = await self._connected()
        ids: list[str] = []
        try:
            async for execution in client.list_workflows(
                f"WorkflowType = '{REPAIR_WORKFLOW}'", limit=limit
            ):
                if execution.status != WorkflowExecutionStatus.TERMINATED:
                    ids.append(execution.id.removeprefix("repair-"))
        except RPCError as exc:
            raise self._translated(exc) from exc
        return list(await asyncio.gather(*(self.progress(i) for i in ids)))

    async def _handle(self, repair_id: str) -> WorkflowHandle[Any, RepairProgress]:
        client = await self._connected()
        return client.get_workflow_handle(repair_workflow_id(repair_id), result_type=RepairProgress)

    async def _connected(self) -> Client:
        if isinstance(self._client, Client):
            return self._client
        try:
            self._client = await self._client()
        except Exception as exc:
            raise Unavailable(f"Temporal is unreachable: {exc}") from exc
        return self._client

    @staticmethod
    def _translated(exc: RPCError, repair_id: str = "") -> ServiceError:
        if exc.status == RPCStatusCode.NOT_FOUND:
            if "completed" in exc.message or "closed" in exc.message:
                return FailedPrecondition(f"repair {repair_id} has ended")
            return NotFound(f"repair {repair_id} not found")
        if exc.status in TEMPORAL_UNREACHABLE:
            return Unavailable(f"Temporal is unreachable: {exc.message}")
        return FailedPrecondition(exc.message)
