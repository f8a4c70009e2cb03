"""The services' one conversation with Temporal: Updates to a grant's workflow
(`grant-<application id>`): the reviewer's decision, the expert panel's score, the audited
figure, the applicant's withdrawal, and the objections lodged against a noticed award and their
decisions.

The grant workflow is the judge of both (its update validators and handlers know whether a task
still stands and whether the award can still be given up). This module sends the Update and
turns Temporal's answers into the services' errors, so no use case sees a Temporal type: a
validator's refusal becomes the error of its ErrorType, a workflow that is not running becomes
GrantNotRunning (the caller knows what that means for it), and Temporal out of reach, or a
workflow that does not answer in time, becomes UNAVAILABLE (retrying is safe: a decision's
update id makes a retry land on the same Update).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel
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
M = TypeVar("M", bound=BaseModel)

MILESTONE_ATTEMPTS = 3
NO_LONGER_IN_REVIEW = "the grant is no longer in review"
NO_LONGER_WAITING = "the grant is no longer waiting for this review"
# The answers of the grant's update validators and handlers, by their ErrorType.
_REFUSALS: dict[str, type[ServiceError]] = {
    ErrorType.NOT_FOUND: NotFound,
    ErrorType.PERMISSION_DENIED: PermissionDenied,
    ErrorType.FAILED_PRECONDITION: FailedPrecondition,
}
# Temporal answers that say it could not be reached (the caller may retry): UNAVAILABLE.
TEMPORAL_UNREACHABLE = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)


class GrantNotRunning(Exception):
    """The grant's workflow has not started yet, or has closed."""


class GrantWorkflows:
    """Sends Updates to the grant workflow of an application."""

    def __init__(
        self, client: Client | Callable[[], Awaitable[Client]], *, timeout_seconds: float = 20.0
    ) -> None:
        # A connected client, or how to get one when first needed (a service that must serve
        # without Temporal, the applications service, connects on its first Update).
        self._client = client
        # A workflow whose worker is down accepts the Update but never answers; the caller gets
        # UNAVAILABLE and may retry.
        self._timeout = timeout_seconds

    async def decide(
        self, application_id: str, decision: contracts.DecideReviewTask
    ) -> contracts.ReviewTaskAck:
        """Sends the decision; answers what the workflow recorded (see ReviewTaskAck)."""
        try:
            return await self._update(
                application_id,
                contracts.DECIDE_REVIEW_TASK,
                decision,
                contracts.ReviewTaskAck,
                update_id=f"decide-{decision.task_id}",
            )
        except GrantNotRunning as exc:
            raise FailedPrecondition(NO_LONGER_IN_REVIEW) from exc

    async def expert_review_done(
        self, application_id: str, done: contracts.ExpertReviewDone
    ) -> contracts.Acknowledged:
        """Tells the grant its expert panel's aggregated score (update id experts-<panel id>: a
        retry lands on the same Update and answers as the first)."""
        try:
            return await self._update(
                application_id,
                contracts.EXPERT_REVIEW_DONE,
                done,
                contracts.Acknowledged,
                update_id=f"experts-{done.panel_id}",
            )
        except GrantNotRunning as exc:
            raise FailedPrecondition(NO_LONGER_WAITING) from exc

    async def audit_done(
        self, application_id: str, done: contracts.AuditDone
    ) -> contracts.Acknowledged:
        """Tells the grant the audited figure (update id audit-<task id>)."""
        try:
            return await self._update(
                application_id,
                contracts.AUDIT_DONE,
                done,
                contracts.Acknowledged,
                update_id=f"audit-{done.task_id}",
            )
        except GrantNotRunning as exc:
            raise FailedPrecondition(NO_LONGER_WAITING) from exc

    async def withdraw(
        self, application_id: str, withdrawal: contracts.Withdraw
    ) -> contracts.WithdrawalAnswer:
        """Asks the grant to withdraw; answers once it has honoured it, FailedPrecondition with
        the grant's reason if it refused, GrantNotRunning if there is no running grant."""
        # Each request its own Update: after a refusal a later withdrawal may be honoured.
        return await self._update(
            application_id,
            contracts.WITHDRAW_APPLICATION,
            withdrawal,
            contracts.WithdrawalAnswer,
            update_id=f"withdraw-{uuid.uuid4().hex}",
        )

    async def confirm_milestone(
        self, application_id: str, confirmation: contracts.ConfirmMilestone
    ) -> contracts.MilestoneConfirmed:
        """Tells the grant a milestone of its instalments was confirmed; answers the confirmation
        the grant recorded (the first, if confirmed before). A grant not running (or not yet
        started) is FailedPrecondition."""
        for attempt in range(MILESTONE_ATTEMPTS):
            try:
                return await self._update(
                    application_id,
                    contracts.CONFIRM_MILESTONE,
                    confirmation,
                    contracts.MilestoneConfirmed,
                    # The grant answers a repeated confirmation itself, across its runs.
                    update_id=f"milestone-{confirmation.instalment}-{uuid.uuid4().hex}",
                )
            except GrantNotRunning as exc:
                # An Update that reached a run as it continued as new ends unanswered: the
                # next run takes it (a confirmation is idempotent, so sending again is safe).
                if attempt + 1 == MILESTONE_ATTEMPTS:
                    raise FailedPrecondition(
                        "the grant is not waiting for milestones: it is not paid in "
                        "instalments, or has ended"
                    ) from exc
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def objection_lodged(
        self, application_id: str, lodged: contracts.ObjectionLodged
    ) -> contracts.Acknowledged:
        """Tells the grant an objection was lodged against its noticed award (the grant may
        refuse: FailedPrecondition once its notice is over); a grant not running is
        FailedPrecondition too."""
        try:
            return await self._update(
                application_id,
                contracts.OBJECTION_LODGED,
                lodged,
                contracts.Acknowledged,
                update_id=f"objection-{lodged.objection_id}",
            )
        except GrantNotRunning as exc:
            raise FailedPrecondition("the grant is no longer in its public notice") from exc

    async def objection_decided(
        self, application_id: str, decided: contracts.ObjectionDecided
    ) -> contracts.Acknowledged:
        """Tells the grant how its objection was decided (a retry lands on the same Update)."""
        try:
            return await self._update(
                application_id,
                contracts.OBJECTION_DECIDED,
                decided,
                contracts.Acknowledged,
                update_id=f"objection-decided-{decided.objection_id}",
            )
        except GrantNotRunning as exc:
            raise FailedPrecondition("the grant is no longer running") from exc

    async def _connected(self) -> Client:
        if isinstance(self._client, Client):
            return self._client
        try:
            self._client = await self._client()
        except Exception as exc:
            raise Unavailable(f"Temporal is unreachable: {exc}") from exc
        return self._client

    async def _update(
        self, application_id: str, name: str, arg: Any, answer: type[M], *, update_id: str
    ) -> M:
        client = await self._connected()
        handle = client.get_workflow_handle(contracts.grant_workflow_id(application_id))
        try:
            async with asyncio.timeout(self._timeout):
                return await handle.execute_update(name, arg, id=update_id, result_type=answer)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type in _REFUSALS:
                raise _REFUSALS[cause.type](cause.message) from exc
            # Anything else ends the update without an answer: the workflow finished or was
            # terminated while the update waited.
            log.info("grant update failed", workflow=handle.id, update=name, cause=repr(cause))
            raise GrantNotRunning(handle.id) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise GrantNotRunning(handle.id) from exc
            if exc.status in TEMPORAL_UNREACHABLE:
                raise Unavailable(f"Temporal is unreachable: {exc.message}") from exc
            raise
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
            raise Unavailable("the grant workflow did not answer in time; try again") from exc
