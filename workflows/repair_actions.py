"""What each named repair does to one grant, and what it would do (the dry-run preview), over
Temporal: Updates to the grant, a reset found by business stage, activities reset to try again.

Used by the RepairWorkflow's activities (workflows/repair.py); every action is idempotent for one
repair id and grant (Update ids and reset request ids derive from them), so an activity retry
never repairs twice. A final answer (the grant refuses, nothing to repair) raises RepairRefused.

- re-open a department review: the grant's `reopen_review` Update; the department's task of the
  current round is superseded by a new task (the grant answers which).
- move a grant back to a stage: the grant's history is searched for the last time its GrantStage
  search attribute became that stage; the workflow is reset to the workflow task completed just
  before (the one that entered the stage, re-run by the new run), nothing after it reapplied
  (decisions, supplements and payment news belong to the life being undone). The new run's
  reports and review tasks are its own (see workflows/grant.py). Grants of an earlier
  generation (without the lighter-grant-v3 marker) are refused.
- retry a payment line: the grant's failed line (its status names it) is made payable again by
  the disbursement service (RetryPaymentLine: the award back in the plan) and the plan's
  workflow runs again for that line alone: the gateway is called with the award's idempotency
  key (an award is never paid twice), the grant is told and reports PAID, the plan completes.
- cancel with compensation: the grant's `withdraw_application` Update on the repair's behalf:
  open review tasks cancelled, the reservation released, WITHDRAWN reported with the repair's
  reason (the applicant is told); refused once a funding plan holds the award.
- resume: every activity of the grant (and of its current funding plan, and of that plan's
  running chunk workflows, where its lines are paid) that is retrying after a failure is reset through Temporal's activity API: attempt 1, tried again now, the workflow's
  history untouched. Grants call services through local activities, which Temporal does not
  list; a grant whose last workflow task failed (a defect fixed since) is reset to its last
  completed workflow task instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyExcludeType
from temporalio.api.workflowservice.v1 import (
    ResetActivityRequest,
    ResetWorkflowExecutionRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.converter import default as default_converter
from temporalio.service import RPCError, RPCStatusCode

from services.common.vocabulary import GrantStage
from workflows import contracts
from workflows.grant import LIGHTER_GRANT_PATCH
from workflows.models import GrantStatus
from workflows.repair_contracts import GrantRepairResult, GrantRepairState, RepairAction, RepairStep

if TYPE_CHECKING:
    from services.common.clients import ServiceClients

M = TypeVar("M")
PROGRAM_KEY = SearchAttributeKey.for_keyword(contracts.SA_PROGRAM)


class RepairRefused(Exception):
    """A final answer for one grant: retrying the same repair cannot change it."""


GRANT_QUERY = f"WorkflowType = '{contracts.GRANT_WORKFLOW}'"


def grants_query(query: str) -> str:
    """A batch's query, kept to grant workflows."""
    return f"{GRANT_QUERY} AND ({query})" if query.strip() else GRANT_QUERY


def application_id_of(workflow_id: str) -> str:
    return workflow_id.removeprefix("grant-")


class FailedLines(Protocol):
    """The disbursement service, for a failed payment line a repair retries."""

    async def reopen(self, plan_id: str, line_id: str, reason: str) -> None:
        """Makes the line payable again; RepairRefused if it cannot be."""


class DisbursementLines:
    """FailedLines over the disbursement service's gRPC API (the system's token)."""

    def __init__(self, services: ServiceClients) -> None:
        self.services = services

    async def reopen(self, plan_id: str, line_id: str, reason: str) -> None:
        from grantflow.v1 import disbursement_pb2

        try:
            await self.services.disbursement.RetryPaymentLine(
                disbursement_pb2.RetryPaymentLineRequest(
                    plan_id=plan_id, line_id=line_id, reason=reason
                )
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise RepairRefused(error.details() or error.code().name) from error
            raise


class RepairActions:
    def __init__(
        self, client: Client, payments: FailedLines | None = None, task_queue: str = ""
    ) -> None:
        self.client = client
        self.payments = payments
        self.task_queue = task_queue  # where plans' workflows run (the worker's queue)

    # ---------------------------------------------------------------------------- targets

    async def targets(self, query: str, limit: int) -> list[str]:
        """Application ids of the grants a visibility query matches, each once (a grant reset
        by a repair has more than one run)."""
        seen: dict[str, None] = {}
        async for execution in self.client.list_workflows(grants_query(query), limit=limit):
            seen.setdefault(application_id_of(execution.id), None)
        return list(seen)

    # ---------------------------------------------------------------------------- preview

    async def preview(self, step: RepairStep) -> GrantRepairResult:
        """What the action would do to the grant; FAILED with the reason if it could not."""
        try:
            detail = await self._preview(step)
        except RepairRefused as refused:
            return GrantRepairResult(
                application_id=step.application_id,
                state=GrantRepairState.FAILED,
                detail=str(refused),
            )
        return GrantRepairResult(application_id=step.application_id, detail=detail)

    async def _preview(self, step: RepairStep) -> str:
        status = await self._status(step.application_id)
        if step.action == RepairAction.REOPEN_REVIEW:
            departments = set(status.open_tasks.values())
            if status.stage != GrantStage.IN_REVIEW:
                raise RepairRefused(f"阶段为 {status.stage}，不在审核中 (not in review)")
            return (
                f"重新开启 {step.params.department} 部门第 {status.review_round} 轮审核 "
                f"(re-open review; open now: {', '.join(sorted(departments)) or '-'})"
            )
        if step.action == RepairAction.MOVE_TO_STAGE:
            event_id = await self._stage_entry(step.application_id, step.params.stage)
            return (
                f"从 {status.stage} 退回到 {step.params.stage}：重置到事件 {event_id} "
                f"(reset to workflow task completed event {event_id})"
            )
        if step.action == RepairAction.CANCEL:
            if status.stage in (*_CLOSED, GrantStage.IN_PAYMENT):
                raise RepairRefused(f"阶段为 {status.stage}，无法撤销 (cannot be cancelled)")
            return (
                f"撤销：取消 {len(status.open_tasks)} 个待办审核任务，释放预留资金 "
                f"{status.award_amount_fen} 分，通知申报单位 (cancel with compensation)"
            )
        if step.action == RepairAction.RETRY_PAYMENT:
            if not status.failed_lines:
                raise RepairRefused("没有失败的付款行 (no failed payment line)")
            plan_id, line_id = list(status.failed_lines.items())[-1]
            return (
                f"重新支付：计划 {plan_id} 的付款行 {line_id}，幂等键 award-{step.application_id}"
                " (pay the failed line again with the award's idempotency key)"
            )
        if step.action == RepairAction.RESUME:
            stuck = await self._stuck(step.application_id, status)
            if not stuck:
                raise RepairRefused("没有失败重试中的活动 (nothing is retrying after a failure)")
            return "重新执行：" + "; ".join(
                f"{handle.id}/{info.activity_type.name} 第 {info.attempt} 次尝试，"
                f"上次失败：{info.last_failure.message}"
                for handle, info in stuck
            )
        raise RepairRefused(f"unknown repair action {step.action}")

    # ---------------------------------------------------------------------------- execute

    async def execute(self, step: RepairStep) -> GrantRepairResult:
        if step.action == RepairAction.REOPEN_REVIEW:
            ack = await self._update(
                step,
                contracts.REOPEN_REVIEW,
                contracts.ReopenReview(department=step.params.department, reason=step.reason),
                contracts.ReviewTaskAck,
            )
            detail = f"新审核任务 {ack.task_id} (new review task, round {ack.round})"
        elif step.action == RepairAction.CANCEL:
            answer = await self._update(
                step,
                contracts.WITHDRAW_APPLICATION,
                contracts.Withdraw(reason=step.reason, withdrawn_by=f"ops:{step.repair_id}"),
                contracts.WithdrawalAnswer,
            )
            detail = f"已撤销，释放 {answer.released_fen} 分 (withdrawn, released fen)"
        elif step.action == RepairAction.MOVE_TO_STAGE:
            detail = await self._move_to_stage(step)
        elif step.action == RepairAction.RESUME:
            detail = await self._resume(step)
        elif step.action == RepairAction.RETRY_PAYMENT:
            detail = await self._retry_payment(step)
        else:
            raise RepairRefused(f"unknown repair action {step.action}")
        return GrantRepairResult(
            application_id=step.application_id, state=GrantRepairState.DONE, detail=detail
        )

    async def _update(self, step: RepairStep, name: str, arg: object, answer: type[M]) -> M:
        handle = self._grant(step.application_id)
        try:
            return await handle.execute_update(
                name,
                arg,
                id=f"repair-{step.repair_id}-{step.application_id}",
                result_type=answer,
            )
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            raise RepairRefused(getattr(cause, "message", None) or str(cause)) from error
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise RepairRefused(f"申请 {step.application_id} 没有运行中的流程") from error
            raise

    async def _move_to_stage(self, step: RepairStep) -> str:
        handle = self._grant(step.application_id)
        event_id = await self._stage_entry(step.application_id, step.params.stage)
        try:
            answer = await self.client.workflow_service.reset_workflow_execution(
                ResetWorkflowExecutionRequest(
                    namespace=self.client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=handle.id),
                    reason=f"repair {step.repair_id}: {step.reason}"[:1000],
                    workflow_task_finish_event_id=event_id,
                    request_id=f"repair-{step.repair_id}-{step.application_id}",
                    reset_reapply_exclude_types=[
                        ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
                        ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
                    ],
                    identity=f"repair-{step.repair_id}",
                )
            )
        except RPCError as error:
            if error.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.NOT_FOUND):
                raise RepairRefused(error.message) from error
            raise
        return (
            f"已退回到 {step.params.stage}（事件 {event_id}，新运行 {answer.run_id}）"
            f" (moved back: reset to event {event_id}, new run {answer.run_id})"
        )

    async def _retry_payment(self, step: RepairStep) -> str:
        status = await self._status(step.application_id)
        if not status.failed_lines:
            raise RepairRefused("没有失败的付款行 (no failed payment line)")
        if self.payments is None:
            raise RepairRefused("this worker cannot reach the disbursement service")
        plan_id, line_id = list(status.failed_lines.items())[-1]
        plan = self.client.get_workflow_handle(contracts.plan_workflow_id(plan_id))
        try:
            described = await plan.describe()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            described = None
        if described is not None and described.status == WorkflowExecutionStatus.RUNNING:
            raise RepairRefused(f"计划 {plan_id} 仍在支付中，完成后再试 (the plan is still paying)")
        grant = await self._grant(step.application_id).describe()
        program = grant.typed_search_attributes.get(PROGRAM_KEY) or ""
        await self.payments.reopen(plan_id, line_id, step.reason)
        await self.client.start_workflow(
            contracts.FUNDING_PLAN_WORKFLOW,
            contracts.FundingPlanInput(
                plan_id=plan_id,
                program_code=program,
                line_ids=[line_id],
                application_ids=[step.application_id],
            ),
            id=plan.id,
            task_queue=self.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes([SearchAttributePair(PROGRAM_KEY, program)])
            if program
            else TypedSearchAttributes.empty,
        )
        return (
            f"已重新发起支付：计划 {plan_id} 付款行 {line_id}（幂等键 award-{step.application_id}）"
            " (the line is paid again)"
        )

    async def _stage_entry(self, application_id: str, stage: str) -> int:
        """The WorkflowTaskCompleted event just before the grant last entered `stage`."""
        try:
            wanted = GrantStage.parse(stage)
        except ValueError as error:
            raise RepairRefused(str(error)) from error
        history = await self._grant(application_id).fetch_history()
        if LIGHTER_GRANT_PATCH not in patch_markers(history):
            raise RepairRefused(
                "此申请运行较早版本的流程，无法退回 (an earlier generation's grant)"
            )
        event_id = stage_entry_event(history, wanted)
        if event_id is None:
            raise RepairRefused(f"流程历史中没有进入 {wanted} 的记录 (never entered {wanted})")
        return event_id

    async def _resume(self, step: RepairStep) -> str:
        status = await self._status(step.application_id)
        stuck = await self._stuck(step.application_id, status)
        if stuck:
            for handle, info in stuck:
                await self.client.workflow_service.reset_activity(
                    ResetActivityRequest(
                        namespace=self.client.namespace,
                        execution=WorkflowExecution(workflow_id=handle.id),
                        id=info.activity_id,
                        identity=f"repair-{step.repair_id}",
                    )
                )
            return "重新执行 (tried again now): " + ", ".join(
                f"{h.id}/{i.activity_type.name}" for h, i in stuck
            )
        history = await self._grant(step.application_id).fetch_history()
        event_id = failed_task_reset_point(history)
        if event_id is None:
            raise RepairRefused("没有失败重试中的活动 (nothing is retrying after a failure)")
        await self.client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=self.client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=history.workflow_id),
                reason=f"repair {step.repair_id}: {step.reason}"[:1000],
                workflow_task_finish_event_id=event_id,
                request_id=f"repair-{step.repair_id}-{step.application_id}",
                identity=f"repair-{step.repair_id}",
            )
        )
        return f"重置到最后完成的工作流任务 {event_id} (reset to the last completed task)"

    async def _stuck(
        self, application_id: str, status: GrantStatus
    ) -> list[tuple[WorkflowHandle[Any, Any], Any]]:
        handles = [self._grant(application_id)]
        if status.plan_id:
            handles.append(
                self.client.get_workflow_handle(contracts.plan_workflow_id(status.plan_id))
            )
        stuck: list[tuple[WorkflowHandle[Any, Any], Any]] = []
        for handle in handles:  # grows by a plan's running chunks as the plan is described
            try:
                description = await handle.describe()
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    continue
                raise
            for info in description.raw_description.pending_activities:
                if info.attempt > 1 or info.HasField("last_failure"):
                    stuck.append((handle, info))
            if handle.id != self._grant(application_id).id:
                # A plan paid in chunks (funding-plan-v4) pays its lines in its children.
                for child in description.raw_description.pending_children:
                    handles.append(self.client.get_workflow_handle(child.workflow_id))
        return stuck

    # ---------------------------------------------------------------------------- helpers

    def _grant(self, application_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(contracts.grant_workflow_id(application_id))

    async def _status(self, application_id: str) -> GrantStatus:
        try:
            return await self._grant(application_id).query(
                contracts.GRANT_STATUS, result_type=GrantStatus
            )
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise RepairRefused(
                    f"申请 {application_id} 没有流程 (no grant workflow)"
                ) from error
            raise


_CLOSED = (GrantStage.PAID, GrantStage.REJECTED, GrantStage.WITHDRAWN)


def _stage_values(fields: Any) -> str | None:
    payload = fields.get(contracts.SA_STAGE)
    if payload is None:
        return None
    value = default_converter().payload_converter.from_payload(payload)
    return str(value[0] if isinstance(value, list) and value else value)


def stage_entry_event(history: WorkflowHistory, stage: GrantStage) -> int | None:
    """The WorkflowTaskCompleted event of the workflow task that last set the grant's
    GrantStage search attribute to `stage` from another value: resetting there re-runs the
    task that entered the stage."""
    current: str | None = None
    last_completed: int | None = None
    entry: int | None = None
    for event in history.events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attributes = event.workflow_execution_started_event_attributes.search_attributes
            current = _stage_values(attributes.indexed_fields)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_completed = event.event_id
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            attributes = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            value = _stage_values(attributes.indexed_fields)
            if value is None:
                continue
            if value == stage and current != stage:
                entry = last_completed
            current = value
    return entry


def patch_markers(history: WorkflowHistory) -> set[str]:
    """The workflow.patched ids a history records."""
    found = set()
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        details = event.marker_recorded_event_attributes.details
        if "patch-data" in details:
            data = default_converter().payload_converter.from_payload(
                details["patch-data"].payloads[0]
            )
            found.add(str(data.get("id", "")) if isinstance(data, dict) else "")
    return found


def failed_task_reset_point(history: WorkflowHistory) -> int | None:
    """The last completed workflow task, if a workflow task failed after it."""
    last_completed: int | None = None
    failed_after = False
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_completed, failed_after = event.event_id, False
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failed_after = True
    return last_completed if failed_after else None
