"""The Temporal worker: runs GrantWorkflow, FundingPlanWorkflow (and its chunks),
NoticeBatchWorkflow, RepairWorkflow and ClawbackWorkflow and their activities.

`python -m workflows.worker` (the stack starts it). Activities reach the services over gRPC with
the system token; the enterprise registry is the local adapter unless configured otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from services.common.config import Settings
from services.common.process import run_process
from services.common.temporal import temporal_process
from workflows.activities import GrantActivities
from workflows.clawback import ClawbackWorkflow
from workflows.funding_plan import FundingPlanChunkWorkflow, FundingPlanWorkflow
from workflows.grant import GrantWorkflow
from workflows.notice_batch import NoticeBatchWorkflow
from workflows.registry import registry_from_settings
from workflows.repair import RepairActivities, RepairWorkflow
from workflows.repair_actions import DisbursementLines, RepairActions
from workflows.repair_audit import audit_port

log = structlog.get_logger(__name__)

# Modules the workflow sandbox takes as they are instead of loading them afresh for every
# workflow run: the models, rules, reasons and contracts the workflows use (pure code and
# immutable module state), the activities' definitions, and the frozen earlier generations.
# Loading them per run was a quarter of the worker's time. The workflow modules themselves
# (grant.py, funding_plan.py) are still loaded per run, and the sandbox's restrictions on what
# workflow code may call apply to passed-through code as well.
SANDBOX_PASSTHROUGH = (
    "grantflow",
    "services",
    "workflows.activities",
    "workflows.contracts",
    "workflows.enterprise",
    "workflows.funding_plan_legacy",
    "workflows.grant_legacy",
    "workflows.models",
    "workflows.reasons",
    "workflows.registry",
    "workflows.repair_actions",
    "workflows.repair_audit",
    "workflows.repair_contracts",
    "workflows.rules",
    "workflows.review_rules",
    # Temporal's tracing interceptor runs inside the sandbox; OpenTelemetry's context and
    # tracer must be the worker's own, not a copy per workflow run.
    "opentelemetry",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
    )


# How the worker takes work (the throughput benchmark's floor worker uses the same). Grants live
# for weeks, thousands at a time: a workflow evicted from the cache is replayed from its whole
# history on its next task, so the cache holds every grant a busy worker touches.
WORKER_TUNING: dict[str, Any] = {
    "max_concurrent_activities": 50,
    "max_concurrent_local_activities": 200,
    "max_cached_workflows": 5000,
    "graceful_shutdown_timeout": timedelta(seconds=5),
    "workflow_runner": workflow_runner(),
}


class ActivityLogContext(Interceptor):
    """Every activity's log lines carry its workflow id, application id and activity type."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(next)


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        ids = {"workflow_id": info.workflow_id or "", "activity": info.activity_type}
        if info.workflow_id and info.workflow_id.startswith("grant-"):
            ids["application_id"] = info.workflow_id.removeprefix("grant-")
        with structlog.contextvars.bound_contextvars(**ids):
            return await self.next.execute_activity(input)


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    async with temporal_process(settings, stop) as process:
        if process is None:
            return
        activities = GrantActivities(
            process.services,
            registry_from_settings(settings),
            process.client,
            settings.temporal_task_queue,
        )
        repairs = RepairActivities(
            RepairActions(
                process.client,
                DisbursementLines(process.services),
                task_queue=settings.temporal_task_queue,
            ),
            audit_port(process.services),
        )
        worker = Worker(
            process.client,
            task_queue=settings.temporal_task_queue,
            workflows=[
                GrantWorkflow,
                FundingPlanWorkflow,
                FundingPlanChunkWorkflow,
                NoticeBatchWorkflow,
                RepairWorkflow,
                ClawbackWorkflow,
            ],
            activities=[*activities.all(), *repairs.all()],  # type: ignore[list-item]
            interceptors=[ActivityLogContext()],
            **WORKER_TUNING,
        )
        async with worker:
            log.info("worker running", task_queue=settings.temporal_task_queue)
            if ready:
                ready()
            await process.stop.wait()
    log.info("worker stopped")


if __name__ == "__main__":
    run_process(run)
