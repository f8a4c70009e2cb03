"""The intake consumer: turns events into workflow starts and signals.

ApplicationSubmitted starts GrantWorkflow `grant-<application id>`; ApplicationWithdrawn and
ApplicationSupplemented signal it; FundingPlanApproved starts FundingPlanWorkflow `plan-<plan id>`;
ClawbackOpened starts ClawbackWorkflow `clawback-<clawback id>` (the credit bar).
Redelivered events are harmless: a workflow id is used once (a second start is refused by
Temporal and ignored here), a repeated supplement carries the same count, a repeated withdrawal
is the same request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from grantflow.v1 import applications_pb2, disbursement_pb2, events_pb2
from services.common import kafka
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.db import from_timestamp, now_utc
from services.common.process import run_process
from services.common.temporal import temporal_process
from services.common.vocabulary import CLOSED_PLAN_STATES, CLOSED_STAGES, GrantStage
from workflows import contracts
from workflows.grant import APPLICANT_KEY, PENDING_KEY, PROGRAM_KEY, STAGE_KEY
from workflows.models import GrantInput, Timing
from workflows.rules import ProgramRuleModel

log = structlog.get_logger(__name__)
GROUP = "grant-intake"


# A redelivered submission of a grant in one of these stages is not started again, even once
# Temporal has deleted the closed workflow after its retention period.
CLOSED = {stage.to_proto() for stage in CLOSED_STAGES}
PLAN_CLOSED = {state.to_proto() for state in CLOSED_PLAN_STATES}


class Intake:
    def __init__(self, settings: Settings, client: Client, services: ServiceClients) -> None:
        self.settings = settings
        self.client = client
        self.services = services
        self.redelivery_check_after = timedelta(seconds=settings.intake_redelivery_check_seconds)
        self.timing = Timing(
            notice_seconds=settings.notice_period_seconds,
            supplement_seconds=settings.supplement_period_seconds,
            review_seconds=settings.review_period_seconds,
            batch_seconds=settings.notice_batch_seconds,
        )
        self.process_generation = settings.grant_process_generation

    async def handle(self, envelope: events_pb2.EventEnvelope) -> None:
        kind = envelope.WhichOneof("payload")
        if kind == "application_submitted":
            await self._start_grant(
                envelope.application_submitted, from_timestamp(envelope.occurred_at)
            )
        elif kind == "application_withdrawn":
            event = envelope.application_withdrawn
            await self._signal(
                contracts.grant_workflow_id(event.application_id),
                contracts.WITHDRAW,
                contracts.Withdraw(reason=event.reason, withdrawn_by=event.withdrawn_by),
            )
        elif kind == "application_supplemented":
            supplemented = envelope.application_supplemented
            await self._signal(
                contracts.grant_workflow_id(supplemented.application_id),
                contracts.SUPPLEMENT,
                contracts.Supplement(
                    figures=dict(supplemented.figures),
                    supplement_count=supplemented.supplement_count,
                    note=supplemented.note,
                    document_names=list(supplemented.document_names),
                ),
            )
        elif kind == "funding_plan_approved":
            await self._start_plan(
                envelope.funding_plan_approved, from_timestamp(envelope.occurred_at)
            )
        elif kind == "clawback_opened":
            await self._start_clawback(envelope.clawback_opened)

    def _maybe_forgotten(self, occurred_at: datetime) -> bool:
        """Whether Temporal may have forgotten a workflow this event started once. It refuses a
        second start of a workflow id while the closed workflow is retained (the namespace's
        retention, a day or more), so only an event older than that can find the id free
        again: such an event is checked with the service that owns the fact first; fresh ones
        (nearly all) cost no call, and a service that is down does not hold up the starts."""
        return now_utc() - occurred_at > self.redelivery_check_after

    async def _start_grant(
        self, event: events_pb2.ApplicationSubmitted, occurred_at: datetime
    ) -> None:
        application = event.application
        if self._maybe_forgotten(occurred_at):
            current = await self.services.applications.GetApplication(
                applications_pb2.GetApplicationRequest(application_id=application.application_id)
            )
            if current.status in CLOSED:
                log.info(
                    "grant already closed; event was a redelivery",
                    application_id=application.application_id,
                )
                return
        grant = GrantInput(
            application_id=application.application_id,
            rule=ProgramRuleModel.from_proto(event.rule),
            applicant_credit_code=application.applicant_credit_code,
            applicant_name=application.applicant_name,
            project_title=application.project_title,
            figures=dict(application.figures),
            requested_amount_fen=application.requested_amount_fen,
            submitted_at=from_timestamp(application.submitted_at),
            timing=self.timing,
            process_generation=self.process_generation,
            document_names=[document.name for document in application.documents],
        )
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(STAGE_KEY, GrantStage.SUBMITTED.value),
                SearchAttributePair(PROGRAM_KEY, event.rule.code),
                SearchAttributePair(APPLICANT_KEY, application.applicant_credit_code),
                SearchAttributePair(PENDING_KEY, []),
            ]
        )
        await self._start(
            contracts.GRANT_WORKFLOW,
            grant,
            contracts.grant_workflow_id(application.application_id),
            attributes,
        )

    async def _start_plan(
        self, event: events_pb2.FundingPlanApproved, occurred_at: datetime
    ) -> None:
        if self._maybe_forgotten(occurred_at):
            current = await self.services.disbursement.GetFundingPlan(
                disbursement_pb2.GetFundingPlanRequest(plan_id=event.plan_id)
            )
            if current.state in PLAN_CLOSED:
                log.info(
                    "funding plan already completed; event was a redelivery",
                    plan_id=event.plan_id,
                )
                return
        plan = contracts.FundingPlanInput(
            plan_id=event.plan_id,
            program_code=event.program_code,
            line_ids=list(event.line_ids),
            application_ids=list(event.application_ids),
        )
        attributes = TypedSearchAttributes([SearchAttributePair(PROGRAM_KEY, event.program_code)])
        await self._start(
            contracts.FUNDING_PLAN_WORKFLOW,
            plan,
            contracts.plan_workflow_id(event.plan_id),
            attributes,
        )

    async def _start_clawback(self, event: events_pb2.ClawbackOpened) -> None:
        """A redelivery after Temporal forgot the workflow starts it again: harmless, its one
        activity is idempotent (the clawback is its request id)."""
        clawback = contracts.ClawbackInput(
            clawback_id=event.clawback_id,
            application_id=event.application_id,
            program_code=event.program_code,
            applicant_credit_code=event.applicant_credit_code,
            applicant_name=event.applicant_name,
            amount_fen=event.amount_fen,
            reason=event.reason,
            opened_at=from_timestamp(event.opened_at),
            bar_until=from_timestamp(event.bar_until),
        )
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(PROGRAM_KEY, event.program_code),
                SearchAttributePair(APPLICANT_KEY, event.applicant_credit_code),
            ]
        )
        await self._start(
            contracts.CLAWBACK_WORKFLOW,
            clawback,
            contracts.clawback_workflow_id(event.clawback_id),
            attributes,
        )

    async def _start(
        self, workflow: str, arg: object, workflow_id: str, attributes: TypedSearchAttributes
    ) -> None:
        try:
            await self.client.start_workflow(
                workflow,
                arg,
                id=workflow_id,
                task_queue=self.settings.temporal_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=attributes,
            )
            log.info("workflow started", workflow_id=workflow_id)
        except WorkflowAlreadyStartedError:
            log.info("workflow already started; event was a redelivery", workflow_id=workflow_id)

    async def _signal(self, workflow_id: str, name: str, payload: object) -> None:
        handle: WorkflowHandle = self.client.get_workflow_handle(workflow_id)
        try:
            await handle.signal(name, payload)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            # The grant has already closed (or never existed): nothing is left to tell it.
            log.warning(
                "signal to a closed or unknown workflow dropped",
                workflow_id=workflow_id,
                signal=name,
            )


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    async with temporal_process(settings, stop) as process:
        if process is None:
            return
        intake = Intake(settings, process.client, process.services)
        consumer = kafka.EventConsumer(
            settings,
            GROUP,
            [kafka.topic(settings, kafka.APPLICATIONS), kafka.topic(settings, kafka.DISBURSEMENT)],
            intake.handle,
        )
        if ready:
            ready()
        await consumer.run(process.stop)


if __name__ == "__main__":
    run_process(run)
