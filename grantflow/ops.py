"""Operator tools behind `grantflow ops`: replaying workflows, finding grants by business keys,
reading events from the broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from grantflow.v1 import events_pb2
from services.common import kafka
from services.common.config import Settings
from services.common.temporal import connect_temporal
from workflows import contracts
from workflows.funding_plan import FundingPlanChunkWorkflow, FundingPlanWorkflow
from workflows.grant import GrantWorkflow
from workflows.notice_batch import NoticeBatchWorkflow
from workflows.repair import RepairWorkflow
from workflows.worker import workflow_runner

WORKFLOWS = [
    GrantWorkflow,
    FundingPlanWorkflow,
    FundingPlanChunkWorkflow,
    NoticeBatchWorkflow,
    RepairWorkflow,
]
# What `ops replay --sample` replays: grants and plans that have closed (their whole life).
# Grants, plans and their chunks, and the runs of notice batchers (each continues as new after
# its batch).
CLOSED_LIVES = (
    f"WorkflowType IN ('{contracts.GRANT_WORKFLOW}', '{contracts.FUNDING_PLAN_WORKFLOW}', "
    f"'{contracts.FUNDING_PLAN_CHUNK_WORKFLOW}', '{contracts.NOTICE_BATCH_WORKFLOW}') "
    "AND ExecutionStatus != 'Running'"
)


@dataclass
class ReplayReport:
    workflow_id: str
    events: int
    error: str = ""


def replayer() -> Replayer:
    return Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )


async def replay_history(history: WorkflowHistory) -> ReplayReport:
    """Replays one recorded history against the current workflow code."""
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    error = str(result.replay_failure) if result.replay_failure else ""
    return ReplayReport(history.workflow_id, len(history.events), error)


async def replay_sample(
    settings: Settings, size: int, *, replaying: Replayer | None = None
) -> list[ReplayReport]:
    client = await connect_temporal(settings)
    return await replay_closed(client, size, replaying=replaying)


async def replay_closed(
    client: Client, size: int, *, replaying: Replayer | None = None
) -> list[ReplayReport]:
    """Replays the `size` most recently closed grants, plans and notice batches the server holds (the newest
    first, as visibility lists them) against the current code: run before a worker with changed
    workflow code is deployed, a nondeterminism here is one running grants would meet."""
    replaying = replaying or replayer()
    reports = []
    async for execution in client.list_workflows(CLOSED_LIVES, limit=size):
        history = await client.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).fetch_history()
        result = await replaying.replay_workflow(history, raise_on_replay_failure=False)
        error = str(result.replay_failure) if result.replay_failure else ""
        reports.append(ReplayReport(execution.id, len(history.events), error))
    return reports


async def replay_workflow(settings: Settings, workflow_id: str, save: Path | None) -> ReplayReport:
    client = await connect_temporal(settings)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    if save is not None:
        await asyncio.to_thread(_write, save, history.to_json())
    return await replay_history(history)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def grant_query(stage: str = "", program: str = "", applicant: str = "") -> str:
    clauses = [f"WorkflowType = '{contracts.GRANT_WORKFLOW}'"]
    if stage:
        clauses.append(f"{contracts.SA_STAGE} = '{stage}'")
    if program:
        clauses.append(f"{contracts.SA_PROGRAM} = '{program}'")
    if applicant:
        clauses.append(f"{contracts.SA_APPLICANT} = '{applicant}'")
    return " AND ".join(clauses)


async def find_grants(
    settings: Settings, stage: str, program: str, applicant: str, limit: int
) -> list[tuple[str, str, str, str, str]]:
    client = await connect_temporal(settings)
    rows = []
    async for execution in client.list_workflows(
        grant_query(stage, program, applicant), limit=limit
    ):
        attributes = execution.typed_search_attributes
        rows.append(
            (
                execution.id,
                execution.status.name if execution.status else "",
                str(attributes.get(_keyword(contracts.SA_STAGE)) or ""),
                str(attributes.get(_keyword(contracts.SA_PROGRAM)) or ""),
                str(attributes.get(_keyword(contracts.SA_APPLICANT)) or ""),
            )
        )
    return rows


def _keyword(name: str):  # type: ignore[no-untyped-def]
    from temporalio.common import SearchAttributeKey

    return SearchAttributeKey.for_keyword(name)


async def read_events(
    settings: Settings, stream: str, limit: int, timeout_s: float = 5.0
) -> list[events_pb2.EventEnvelope]:
    """The first `limit` events of a stream's topic, read without a consumer group."""
    records = await kafka.read_topic(
        settings, kafka.topic(settings, stream), limit=limit, timeout_s=timeout_s
    )
    return [events_pb2.EventEnvelope.FromString(record.value) for record in records]
