"""RepairWorkflow: one per repair (`repair-<request id>`), single grant or a batch by query.

It holds the request; lists the grants a batch's query matches first (that list, with what
would be done to each, is a dry run's whole answer); waits for a second ops person's approval
when the action moves money or reverses a decision (repair_contracts.FOUR_EYES: the approver
must differ from the requester; unapproved, the repair lapses after APPROVAL_WINDOW_DAYS); then
repairs grant after grant, each with a result, and can be paused and resumed between grants.
`progress` answers where it stands. Every step is recorded in the audit trail (repair_audit.py)
by an activity: `repair.<action>.requested|approved|executed|failed` with the application id as
subject, and for a batch one more record with the repair id as subject.

The actions themselves are repair_actions.py, run by RepairActivities on the worker.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from services.common.vocabulary import ErrorType
    from workflows.repair_actions import RepairActions, RepairRefused
    from workflows.repair_audit import AuditPort
    from workflows.repair_contracts import (
        APPROVAL_WINDOW_DAYS,
        APPROVE_REPAIR,
        FOUR_EYES,
        PAUSE_REPAIR,
        REPAIR_PROGRESS,
        REPAIR_WORKFLOW,
        RESUME_REPAIR,
        Approval,
        AuditNote,
        GrantRepairResult,
        GrantRepairState,
        RepairInput,
        RepairProgress,
        RepairState,
        RepairStep,
        TargetQuery,
    )

CALL_TIMEOUT = timedelta(minutes=2)
# Temporal or a grant that does not answer is retried a few times; a refusal is final.
REPAIR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=[ErrorType.FAILED_PRECONDITION],
)
AUDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)


class RepairActivities:
    """The repair's side effects: Temporal (the grants) and the audit port."""

    def __init__(self, actions: RepairActions, audit: AuditPort) -> None:
        self.actions = actions
        self.audit = audit

    @activity.defn(name="repair_targets")
    async def repair_targets(self, query: TargetQuery) -> list[str]:
        return await self.actions.targets(query.query, query.limit)

    @activity.defn(name="repair_preview")
    async def repair_preview(self, step: RepairStep) -> GrantRepairResult:
        return await self.actions.preview(step)

    @activity.defn(name="repair_execute")
    async def repair_execute(self, step: RepairStep) -> GrantRepairResult:
        try:
            return await self.actions.execute(step)
        except RepairRefused as refused:
            raise ApplicationError(
                str(refused), type=ErrorType.FAILED_PRECONDITION, non_retryable=True
            ) from None

    @activity.defn(name="repair_audit")
    async def repair_audit(self, note: AuditNote) -> None:
        await self.audit.record(note)

    def all(self) -> list[object]:
        return [self.repair_targets, self.repair_preview, self.repair_execute, self.repair_audit]


@workflow.defn(name=REPAIR_WORKFLOW)
class RepairWorkflow:
    @workflow.init
    def __init__(self, request: RepairInput) -> None:
        self.request = request
        self.state = RepairState.PREVIEWED if request.dry_run else RepairState.AWAITING_APPROVAL
        self.approved_by = ""
        self.paused = False
        self.results: dict[str, GrantRepairResult] = {}

    @workflow.run
    async def run(self, request: RepairInput) -> RepairProgress:
        targets = list(dict.fromkeys(request.application_ids))
        if request.query:
            targets += await workflow.execute_activity_method(
                RepairActivities.repair_targets,
                TargetQuery(query=request.query),
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=REPAIR_RETRY,
            )
            targets = list(dict.fromkeys(targets))
        self.results = {a: GrantRepairResult(application_id=a) for a in targets}
        if request.dry_run:
            for application_id in targets:
                self.results[application_id] = await workflow.execute_activity_method(
                    RepairActivities.repair_preview,
                    self._step(application_id),
                    start_to_close_timeout=CALL_TIMEOUT,
                    retry_policy=REPAIR_RETRY,
                )
            return self.progress()
        await self._audit("requested", {"targets": str(len(targets))})
        if request.action in FOUR_EYES:
            try:
                await workflow.wait_condition(
                    lambda: bool(self.approved_by), timeout=timedelta(days=APPROVAL_WINDOW_DAYS)
                )
            except TimeoutError:
                self.state = RepairState.LAPSED
                await self._audit("refused", {"why": "not approved in time"})
                return self.progress()
            await self._audit("approved", {"approved_by": self.approved_by})
        self.state = RepairState.RUNNING
        for application_id in targets:
            if self.paused:
                self.state = RepairState.PAUSED
                await workflow.wait_condition(lambda: not self.paused)
                self.state = RepairState.RUNNING
            await self._repair(application_id)
        self.state = RepairState.COMPLETED
        if request.query:
            progress = self.progress()
            await self._audit(
                "executed",
                {"done": str(progress.done), "failed": str(progress.failed)},
                subject=request.repair_id,
            )
        return self.progress()

    async def _repair(self, application_id: str) -> None:
        try:
            result = await workflow.execute_activity_method(
                RepairActivities.repair_execute,
                self._step(application_id),
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=REPAIR_RETRY,
            )
        except ActivityError as error:
            cause = error.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(error)
            result = GrantRepairResult(
                application_id=application_id, state=GrantRepairState.FAILED, detail=message
            )
        self.results[application_id] = result
        outcome = "executed" if result.state == GrantRepairState.DONE else "failed"
        await self._audit(outcome, {"result": result.detail}, subject=application_id)

    def _step(self, application_id: str) -> RepairStep:
        request = self.request
        return RepairStep(
            repair_id=request.repair_id,
            action=request.action,
            application_id=application_id,
            reason=request.reason,
            params=request.params,
        )

    async def _audit(self, outcome: str, details: dict[str, str], subject: str = "") -> None:
        """One audit record per outcome and subject: for a single grant the application id,
        for the repair as a whole (requested, approved) of a batch the repair id."""
        request = self.request
        if subject:
            subjects = [subject]
        else:
            subjects = [request.repair_id] if request.query else list(self.results)
        for name in subjects:
            await workflow.execute_activity_method(
                RepairActivities.repair_audit,
                AuditNote(
                    request_id=f"repair-{request.repair_id}-{outcome}-{name}",
                    action=f"repair.{request.action.value}.{outcome}",
                    subject=name,
                    reason=request.reason,
                    details={
                        "repair_id": request.repair_id,
                        "requested_by": request.requested_by,
                        **({"query": request.query} if request.query else {}),
                        **details,
                    },
                ),
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=AUDIT_RETRY,
            )

    @workflow.update(name=APPROVE_REPAIR)
    async def approve(self, approval: Approval) -> RepairProgress:
        self.approved_by = approval.approved_by
        return self.progress()

    @approve.validator
    def _validate_approval(self, approval: Approval) -> None:
        if self.request.dry_run or self.request.action not in FOUR_EYES:
            raise ApplicationError(
                "这项修复不需要审批 (this repair needs no approval)",
                type=ErrorType.FAILED_PRECONDITION,
            )
        if approval.approved_by == self.request.requested_by:
            raise ApplicationError(
                "审批人必须是另一位运维人员 (the approver must be another ops person)",
                type=ErrorType.PERMISSION_DENIED,
            )
        if self.approved_by or self.state != RepairState.AWAITING_APPROVAL:
            raise ApplicationError(
                f"修复状态为 {self.state}，无需审批 (the repair is {self.state})",
                type=ErrorType.FAILED_PRECONDITION,
            )

    @workflow.signal(name=PAUSE_REPAIR)
    def pause(self) -> None:
        self.paused = True

    @workflow.signal(name=RESUME_REPAIR)
    def resume(self) -> None:
        self.paused = False

    @workflow.query(name=REPAIR_PROGRESS)
    def progress(self) -> RepairProgress:
        request = self.request
        results = list(self.results.values())
        state = self.state
        if self.paused and state == RepairState.RUNNING:
            state = RepairState.PAUSED
        return RepairProgress(
            repair_id=request.repair_id,
            action=request.action,
            reason=request.reason,
            state=state,
            requested_by=request.requested_by,
            approved_by=self.approved_by,
            query=request.query,
            total=len(results),
            done=sum(r.state == GrantRepairState.DONE for r in results),
            failed=sum(r.state == GrantRepairState.FAILED for r in results),
            results=results,
        )
