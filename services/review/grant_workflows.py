"""The review service's only conversation with Temporal: claims and decisions as Updates.

The grant workflow is the judge of a claim or a decision (its update validators know whether the
task is still open and whose it is); this module sends the Update and turns Temporal's answers
into the service's errors, so the servicer never sees a Temporal type.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from services.common.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)
from services.common.vocabulary import ErrorType
from workflows import contracts

log = structlog.get_logger(__name__)

NO_LONGER_IN_REVIEW = "the grant is no longer in review"
# The answers of the grant's update validators, by their ErrorType.
_VALIDATOR_ERRORS: dict[str, type[ServiceError]] = {
    ErrorType.NOT_FOUND: NotFound,
    ErrorType.PERMISSION_DENIED: PermissionDenied,
    ErrorType.FAILED_PRECONDITION: FailedPrecondition,
}
_UNREACHABLE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}


class GrantWorkflows:
    """Sends review Updates to the grant workflow of an application."""

    def __init__(self, client: Client, *, timeout_seconds: float = 20.0) -> None:
        self._client = client
        # A workflow whose worker is down accepts the Update but never answers; the caller gets
        # UNAVAILABLE and may retry (the update ids make a retry land on the same Update).
        self._timeout = timeout_seconds

    async def claim(self, application_id: str, claim: contracts.ClaimReviewTask) -> None:
        await self._update(
            application_id,
            contracts.CLAIM_REVIEW_TASK,
            claim,
            update_id=f"claim-{claim.task_id}-{claim.reviewer}",
        )

    async def decide(
        self, application_id: str, decision: contracts.DecideReviewTask
    ) -> contracts.ReviewTaskAck:
        """Sends the decision; answers what the workflow recorded (see ReviewTaskAck)."""
        return await self._update(
            application_id,
            contracts.DECIDE_REVIEW_TASK,
            decision,
            update_id=f"decide-{decision.task_id}",
        )

    async def _update(
        self, application_id: str, name: str, arg: Any, *, update_id: str
    ) -> contracts.ReviewTaskAck:
        handle = self._client.get_workflow_handle(contracts.grant_workflow_id(application_id))
        try:
            async with asyncio.timeout(self._timeout):
                return await handle.execute_update(
                    name, arg, id=update_id, result_type=contracts.ReviewTaskAck
                )
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type in _VALIDATOR_ERRORS:
                raise _VALIDATOR_ERRORS[cause.type](cause.message) from exc
            # Anything else ends the update without an answer about the task: the workflow
            # finished or was terminated while the update waited.
            log.info("review update failed", workflow=handle.id, update=name, cause=repr(cause))
            raise FailedPrecondition(NO_LONGER_IN_REVIEW) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise FailedPrecondition(NO_LONGER_IN_REVIEW) from exc
            if exc.status in _UNREACHABLE:
                raise Unavailable(f"Temporal is unreachable: {exc.message}") from exc
            raise
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
            raise Unavailable("the grant workflow did not answer in time; try again") from exc
