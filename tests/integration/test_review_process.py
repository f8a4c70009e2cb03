"""The review process over real gRPC, on SQLite and PostgreSQL, against a real Temporal dev server:
expert panels drawn without conflicts of interest, scores hidden until all are in, aggregation
sent to the grant before anything is recorded; special audits; the inbox (priority, counts,
release, reassignment by a department head); one person never decides two stages of a grant.

The grant workflow is a stand-in (below) that records the Updates it receives with their update
ids, and refuses them while told to, as the real grant refuses an Update it is not waiting for.
The applicant's legal representative and shareholders come from the local enterprise registry's
data file (the edge fake).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from pydantic import BaseModel
from sqlmodel import col, select
from stdnum.cn import uscc
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from grantflow.v1 import common_pb2, review_pb2, review_pb2_grpc
from services.common.auth import mint_token
from services.common.config import Settings
from services.common.db import Database, now_utc, to_timestamp
from services.common.outbox import OutboxEvent
from services.common.vocabulary import Department, Role
from services.review import server
from tests.support import free_port
from workflows import contracts

TASK_QUEUE = "review-process-test"
INDUSTRY = common_pb2.DEPARTMENT_INDUSTRY
FINANCE = common_pb2.DEPARTMENT_FINANCE
FIELD = "industrial_internet"
RUBRIC = [
    common_pb2.RubricCriterion(code="innovation", name="技术先进性", max_points=60),
    common_pb2.RubricCriterion(code="market", name="市场前景", max_points=40),
]


def credit_code(n: int) -> str:
    base = f"91440300MA5F{n:05d}"
    return base + uscc.calc_check_digit(base)


APPLICANT = credit_code(1)
EMPLOYER_SHAREHOLDER = credit_code(2)  # an enterprise holding shares of the applicant
OTHER_FIRM = credit_code(3)


# The stand-in grant ----------------------------------------------------------------------------


class Received(BaseModel):
    name: str
    update_id: str
    payload: dict[str, Any]


class StandInStart(BaseModel):
    refuse: bool = False


@workflow.defn(name=contracts.GRANT_WORKFLOW)
class StandInGrant:
    @workflow.init
    def __init__(self, start: StandInStart) -> None:
        self.refuse = start.refuse
        self.received: list[Received] = []
        self.finished = False

    @workflow.run
    async def run(self, start: StandInStart) -> None:
        await workflow.wait_condition(lambda: self.finished)

    def _record(self, name: str, payload: BaseModel) -> None:
        info = workflow.current_update_info()
        assert info is not None
        self.received.append(Received(name=name, update_id=info.id, payload=payload.model_dump()))

    def _check(self) -> None:
        if self.refuse:
            raise ApplicationError(
                "the grant is not waiting for this", type=contracts.ERR_FAILED_PRECONDITION
            )

    @workflow.update(name=contracts.EXPERT_REVIEW_DONE)
    def experts_done(self, done: contracts.ExpertReviewDone) -> contracts.Acknowledged:
        self._record(contracts.EXPERT_REVIEW_DONE, done)
        return contracts.Acknowledged(stage="IN_REVIEW")

    @experts_done.validator
    def check_experts_done(self, done: contracts.ExpertReviewDone) -> None:
        self._check()

    @workflow.update(name=contracts.AUDIT_DONE)
    def audit_done(self, done: contracts.AuditDone) -> contracts.Acknowledged:
        self._record(contracts.AUDIT_DONE, done)
        return contracts.Acknowledged(stage="IN_REVIEW")

    @audit_done.validator
    def check_audit_done(self, done: contracts.AuditDone) -> None:
        self._check()

    @workflow.update(name=contracts.DECIDE_REVIEW_TASK)
    def decide(self, decision: contracts.DecideReviewTask) -> contracts.ReviewTaskAck:
        self._record(contracts.DECIDE_REVIEW_TASK, decision)
        return contracts.ReviewTaskAck(task_id=decision.task_id, round=1, stage="IN_REVIEW")

    @decide.validator
    def check_decide(self, decision: contracts.DecideReviewTask) -> None:
        self._check()

    @workflow.signal
    def accept(self) -> None:
        self.refuse = False

    @workflow.signal
    def finish(self) -> None:
        self.finished = True

    @workflow.query
    def updates(self) -> list[Received]:
        return self.received


# Fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[Client]:
    cli = Path(sys.executable).parent / "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(cli),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        async with Worker(
            env.client,
            task_queue=TASK_QUEUE,
            workflows=[StandInGrant],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            yield env.client
    finally:
        await env.shutdown()


SYSTEM_SUBJECT = "grant-worker"


@dataclass
class Service:
    settings: Settings
    db: Database
    stub: review_pb2_grpc.ReviewServiceStub
    temporal: Client

    def token(self, subject: str, role: str, department: str = "") -> str:
        return mint_token(self.settings.auth_secret, subject, role, department=department)

    @property
    def system(self) -> str:
        return self.token(SYSTEM_SUBJECT, Role.SYSTEM)

    async def call(self, method: str, request: Any, token: str) -> Any:
        metadata = (("authorization", f"Bearer {token}"),)
        return await getattr(self.stub, method)(request, metadata=metadata, timeout=30)

    async def refused(self, method: str, request: Any, token: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.call(method, request, token)
        return caught.value

    async def start_grant(self, application_id: str, *, refuse: bool = False) -> Any:
        return await self.temporal.start_workflow(
            StandInGrant.run,
            StandInStart(refuse=refuse),
            id=contracts.grant_workflow_id(application_id),
            task_queue=TASK_QUEUE,
        )

    async def add_expert(self, expert_id: str, **fields: Any) -> review_pb2.Expert:
        values: dict[str, Any] = {
            "expert_id": expert_id,
            "name": f"专家{expert_id}",
            "field": FIELD,
            "employer_credit_code": OTHER_FIRM,
            "active": True,
        }
        values.update(fields)
        expert = review_pb2.Expert(**values)
        ops = self.token("ops-1", Role.OPS)
        answer: review_pb2.Expert = await self.call(
            "AddExpert", review_pb2.AddExpertRequest(expert=expert), ops
        )
        return answer

    async def outbox_types(self) -> list[str]:
        def work(session: Any) -> list[str]:
            rows = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))).all()
            return [row.event_type for row in rows]

        return await self.db.run(work)


# The registry's record of the applicant: a legal representative and two shareholders, one a
# person known by identity number, one an enterprise.
REGISTRY = {
    "enterprises": {
        APPLICANT: {
            "legal_representative": "法人甲",
            "legal_representative_id": "440300198001010011",
            "shareholders": [
                {"name": "股东乙", "person_id": "440300198202020022"},
                {"name": "某投资公司", "credit_code": EMPLOYER_SHAREHOLDER},
            ],
        }
    }
}


@pytest.fixture
async def service(
    database_url: str, temporal: Client, kafka_bootstrap: str, tmp_path: Path
) -> AsyncIterator[Service]:
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY, ensure_ascii=False), "utf-8")
    settings = Settings(
        data_dir=tmp_path,
        review_database_url=database_url,
        review_address=f"127.0.0.1:{free_port()}",
        temporal_address=temporal.service_client.config.target_host,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix="reviewprocess",
        kafka_embedded_broker_recovery=True,
        registry_data_file=str(registry),
    )
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(server.run(settings, stop=stop, ready=started.set))
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    assert started.is_set(), "the review server did not start in time"
    db = Database(database_url)
    channel = grpc.aio.insecure_channel(settings.review_address)
    try:
        yield Service(settings, db, review_pb2_grpc.ReviewServiceStub(channel), temporal)
    finally:
        await channel.close()
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        db.dispose()


def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:12]}"


def panel_request(application_id: str, **fields: Any) -> review_pb2.CreateExpertReviewRequest:
    values: dict[str, Any] = {
        "request_id": f"experts-{uuid.uuid4().hex}",
        "application_id": application_id,
        "program_code": "IIP-CROSS",
        "applicant_credit_code": APPLICANT,
        "panel_size": 3,
        "field": FIELD,
        "rubric": RUBRIC,
        "aggregation": common_pb2.SCORE_AGGREGATION_MEAN,
        "pass_score_centi": 6000,
        "due_at": to_timestamp(now_utc() + timedelta(days=10)),
        "applicant_name": "深圳市云帆科技有限公司",
        "project_title": "跨行业工业互联网平台",
    }
    values.update(fields)
    return review_pb2.CreateExpertReviewRequest(**values)


def scores(total_centi: int) -> list[review_pb2.CriterionScore]:
    innovation = min(total_centi, 6000)
    return [
        review_pb2.CriterionScore(code="innovation", score_centi=innovation),
        review_pb2.CriterionScore(code="market", score_centi=total_centi - innovation),
    ]


async def expert_task(service: Service, expert_id: str, application_id: str) -> Any:
    token = service.token(expert_id, Role.EXPERT)
    return await service.call(
        "GetExpertTask", review_pb2.GetExpertTaskRequest(application_id=application_id), token
    )


async def submit(service: Service, expert_id: str, task_id: str, total: int) -> Any:
    token = service.token(expert_id, Role.EXPERT)
    request = review_pb2.SubmitScoresRequest(task_id=task_id, scores=scores(total), comment="好")
    return await service.call("SubmitScores", request, token)


# Conflicts of interest -------------------------------------------------------------------------


async def test_a_conflicted_expert_is_never_drawn_and_cannot_open_the_file(
    service: Service,
) -> None:
    conflicted: dict[str, dict[str, Any]] = {
        "declared": {"declared_conflicts": [APPLICANT]},
        "employee": {"employer_credit_code": APPLICANT},
        "legal-rep": {"name": "法人甲", "person_id": "440300198001010011"},
        "holder": {"name": "另一个名字", "person_id": "440300198202020022"},
        "holder-employee": {"employer_credit_code": EMPLOYER_SHAREHOLDER},
    }
    for expert_id, fields in conflicted.items():
        await service.add_expert(expert_id, **fields)
    free = ["free-1", "free-2", "free-3"]
    for expert_id in free:
        await service.add_expert(expert_id)
    # Same name as the legal representative but another identity number: not the same person.
    await service.add_expert("namesake", name="法人甲", person_id="440300199909090099")
    await service.add_expert("other-field", field="smart_manufacturing")

    application = app_id()
    request = panel_request(application, panel_size=4)
    panel = await service.call("CreateExpertReview", request, service.system)
    drawn = {member.expert_id for member in panel.members}
    assert len(drawn) == 4 and drawn <= {*free, "namesake"}
    again = await service.call("CreateExpertReview", request, service.system)
    assert again.panel_id == panel.panel_id
    assert {m.expert_id for m in again.members} == drawn

    tasks = {m: await expert_task(service, m, application) for m in drawn}
    some_task = next(iter(tasks.values())).task_id
    # An expert lists his tasks, of every program or of one.
    member = service.token(next(iter(drawn)), Role.EXPERT)
    for program_code, expected in (("", 1), ("IIP-CROSS", 1), ("TECH-MAJOR", 0)):
        listed = await service.call(
            "ListMyExpertTasks",
            review_pb2.ListMyExpertTasksRequest(program_code=program_code),
            member,
        )
        assert [t.application_id for t in listed.tasks] == [application] * expected
    for expert_id in conflicted:
        token = service.token(expert_id, Role.EXPERT)
        by_application = await service.refused(
            "GetExpertTask", review_pb2.GetExpertTaskRequest(application_id=application), token
        )
        assert by_application.code() == grpc.StatusCode.PERMISSION_DENIED
        by_id = await service.refused(
            "GetExpertTask", review_pb2.GetExpertTaskRequest(task_id=some_task), token
        )
        assert by_id.code() == grpc.StatusCode.PERMISSION_DENIED
        scoring = await service.refused(
            "SubmitScores",
            review_pb2.SubmitScoresRequest(task_id=some_task, scores=scores(8000)),
            token,
        )
        assert scoring.code() == grpc.StatusCode.PERMISSION_DENIED
        mine = await service.call("ListMyExpertTasks", review_pb2.ListMyExpertTasksRequest(), token)
        assert list(mine.tasks) == []

    # A drawn expert who declares the conflict afterwards can no longer open the file.
    late = sorted(drawn)[0]
    await service.add_expert(late, declared_conflicts=[APPLICANT])
    error = await service.refused(
        "GetExpertTask",
        review_pb2.GetExpertTaskRequest(task_id=tasks[late].task_id),
        service.token(late, Role.EXPERT),
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "回避" in (error.details() or "")


async def test_too_few_free_experts_is_a_failed_precondition(service: Service) -> None:
    await service.add_expert("free-1")
    await service.add_expert("free-2")
    await service.add_expert("employee", employer_credit_code=APPLICANT)
    error = await service.refused(
        "CreateExpertReview", panel_request(app_id(), panel_size=3), service.system
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "回避" in (error.details() or "")
    assert "ExpertPanelDrawn" not in " ".join(await service.outbox_types())


# Scoring ---------------------------------------------------------------------------------------

# Five totals whose mean, trimmed mean and median differ.
TOTALS = [9500, 8000, 7500, 6000, 2001]
EXPECTED: dict[int, int] = {
    common_pb2.SCORE_AGGREGATION_MEAN: 6600,  # 33001 // 5
    common_pb2.SCORE_AGGREGATION_TRIMMED_MEAN: 7166,  # 21500 // 3
    common_pb2.SCORE_AGGREGATION_MEDIAN: 7500,
}


@pytest.mark.parametrize("aggregation", list(EXPECTED), ids=["mean", "trimmed_mean", "median"])
async def test_scores_stay_hidden_until_all_are_in_then_are_aggregated_and_sent(
    service: Service, aggregation: int
) -> None:
    experts = [f"e{n}" for n in range(5)]
    for expert_id in experts:
        await service.add_expert(expert_id)
    application = app_id()
    handle = await service.start_grant(application)
    panel = await service.call(
        "CreateExpertReview",
        panel_request(application, panel_size=5, aggregation=aggregation),
        service.system,
    )
    tasks = {e: (await expert_task(service, e, application)).task_id for e in experts}
    ops = service.token("ops-1", Role.OPS)

    for n, expert_id in enumerate(experts[:-1]):
        mine = await submit(service, expert_id, tasks[expert_id], TOTALS[n])
        assert mine.total_centi == TOTALS[n] and not mine.panel_complete
        assert list(mine.others) == []
        # Nobody else sees it: not another expert, not the panel's own view.
        seen = await expert_task(service, experts[-1], application)
        assert list(seen.others) == [] and not seen.panel_complete
        view = await service.call(
            "GetExpertPanel", review_pb2.GetExpertPanelRequest(panel_id=panel.panel_id), ops
        )
        assert all(m.total_centi == 0 and not m.scores for m in view.members)
    assert await handle.query(StandInGrant.updates) == []

    last = await submit(service, experts[-1], tasks[experts[-1]], TOTALS[-1])
    assert last.panel_complete and last.panel_score_centi == EXPECTED[aggregation]
    assert sorted(o.total_centi for o in last.others) == sorted(TOTALS[:-1])
    first = await expert_task(service, experts[0], application)
    assert first.panel_complete and len(first.others) == 4

    received = await handle.query(StandInGrant.updates)
    assert [(r.name, r.update_id) for r in received] == [
        (contracts.EXPERT_REVIEW_DONE, f"experts-{panel.panel_id}")
    ]
    assert received[0].payload == {
        "panel_id": panel.panel_id,
        "score_centi": EXPECTED[aggregation],
        "experts": 5,
    }
    assert "grantflow.v1.ExpertReviewCompleted" in await service.outbox_types()

    # Scores are given once; the same scores again answer as before.
    again = await submit(service, experts[0], tasks[experts[0]], TOTALS[0])
    assert again.total_centi == TOTALS[0]
    error = await service.refused(
        "SubmitScores",
        review_pb2.SubmitScoresRequest(task_id=tasks[experts[0]], scores=scores(100)),
        service.token(experts[0], Role.EXPERT),
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_nothing_is_recorded_when_the_grant_refuses_the_panels_score(
    service: Service,
) -> None:
    experts = ["a1", "a2", "a3"]
    for expert_id in experts:
        await service.add_expert(expert_id)
    application = app_id()
    handle = await service.start_grant(application, refuse=True)
    await service.call("CreateExpertReview", panel_request(application), service.system)
    tasks = {e: (await expert_task(service, e, application)).task_id for e in experts}
    await submit(service, "a1", tasks["a1"], 8000)
    await submit(service, "a2", tasks["a2"], 7000)

    error = await service.refused(
        "SubmitScores",
        review_pb2.SubmitScoresRequest(task_id=tasks["a3"], scores=scores(9000)),
        service.token("a3", Role.EXPERT),
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    still = await expert_task(service, "a3", application)
    assert still.state == review_pb2.EXPERT_TASK_STATE_PENDING and not still.panel_complete
    assert "grantflow.v1.ExpertReviewCompleted" not in await service.outbox_types()

    await handle.signal(StandInGrant.accept)
    done = await submit(service, "a3", tasks["a3"], 9000)
    assert done.panel_complete and done.panel_score_centi == 8000


async def test_bad_scores_are_refused_naming_the_field(service: Service) -> None:
    await service.add_expert("b1")
    application = app_id()
    await service.call(
        "CreateExpertReview", panel_request(application, panel_size=1), service.system
    )
    task = await expert_task(service, "b1", application)
    token = service.token("b1", Role.EXPERT)
    for bad in (
        [review_pb2.CriterionScore(code="innovation", score_centi=6001)],
        [review_pb2.CriterionScore(code="innovation", score_centi=100)],  # market missing
        [*scores(5000), review_pb2.CriterionScore(code="beauty", score_centi=1)],
    ):
        error = await service.refused(
            "SubmitScores", review_pb2.SubmitScoresRequest(task_id=task.task_id, scores=bad), token
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_rubric = [common_pb2.RubricCriterion(code="only", name="唯一", max_points=90)]
    error = await service.refused(
        "CreateExpertReview", panel_request(app_id(), rubric=bad_rubric), service.system
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# Special audit ---------------------------------------------------------------------------------


def audit_request(application_id: str) -> review_pb2.CreateAuditTaskRequest:
    return review_pb2.CreateAuditTaskRequest(
        request_id=f"audit-{uuid.uuid4().hex}",
        application_id=application_id,
        program_code="IIP-CROSS",
        figure="platform_investment_fen",
        declared_fen=30_000_000_00,
        due_at=to_timestamp(now_utc() + timedelta(days=10)),
    )


async def test_an_audit_reaches_the_grant_before_it_is_recorded(service: Service) -> None:
    application = app_id()
    handle = await service.start_grant(application, refuse=True)
    task = await service.call("CreateAuditTask", audit_request(application), service.system)
    auditor = service.token("kpmg-zhao", Role.AUDITOR)
    confirm = review_pb2.ConfirmAuditRequest(
        task_id=task.task_id, audited_fen=25_000_000_00, note="发票核减"
    )

    error = await service.refused("ConfirmAudit", confirm, auditor)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = await service.call(
        "ListAuditTasks", review_pb2.ListAuditTasksRequest(open_only=True), auditor
    )
    assert [t.task_id for t in listed.tasks] == [task.task_id]

    await handle.signal(StandInGrant.accept)
    done = await service.call("ConfirmAudit", confirm, auditor)
    assert done.state == review_pb2.AUDIT_TASK_STATE_CONFIRMED
    assert (done.audited_fen, done.auditor) == (25_000_000_00, "kpmg-zhao")
    received = await handle.query(StandInGrant.updates)
    assert [(r.name, r.update_id) for r in received] == [
        (contracts.AUDIT_DONE, f"audit-{task.task_id}")
    ]
    assert received[0].payload == {
        "task_id": task.task_id,
        "figure": "platform_investment_fen",
        "audited_fen": 25_000_000_00,
        "auditor": "kpmg-zhao",
    }
    # A reviewer is no auditor.
    reviewer = service.token("wang", Role.REVIEWER, Department.INDUSTRY)
    error = await service.refused("ConfirmAudit", confirm, reviewer)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


# The inbox and separation of duties ------------------------------------------------------------


def task_request(application_id: str, **fields: Any) -> review_pb2.CreateTaskRequest:
    values: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "application_id": application_id,
        "program_code": "IIP-CROSS",
        "department": INDUSTRY,
        "round": 1,
        "proposed_amount_fen": 200_000,
        "due_at": to_timestamp(now_utc() + timedelta(days=5)),
    }
    values.update(fields)
    return review_pb2.CreateTaskRequest(**values)


async def test_one_person_never_decides_two_stages_of_a_grant(service: Service) -> None:
    application = app_id()
    await service.start_grant(application)
    formal = await service.call(
        "CreateTask",
        task_request(application, stage=review_pb2.REVIEW_STAGE_FORMAL_CHECK),
        service.system,
    )
    review = await service.call("CreateTask", task_request(application), service.system)
    wang = service.token("wang", Role.REVIEWER, Department.INDUSTRY)
    for task in (formal, review):
        await service.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=task.task_id), wang)
    approve = review_pb2.REVIEW_DECISION_APPROVE
    await service.call(
        "DecideTask", review_pb2.DecideTaskRequest(task_id=formal.task_id, decision=approve), wang
    )
    error = await service.refused(
        "DecideTask", review_pb2.DecideTaskRequest(task_id=review.task_id, decision=approve), wang
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "两个环节" in (error.details() or "") and "formal_check" in (error.details() or "")

    # Released, the task cannot be claimed again by him, nor given to him by the head.
    await service.call("ReleaseTask", review_pb2.ReleaseTaskRequest(task_id=review.task_id), wang)
    error = await service.refused(
        "ClaimTask", review_pb2.ClaimTaskRequest(task_id=review.task_id), wang
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    head = service.token("zhou", Role.DEPARTMENT_HEAD, Department.INDUSTRY)
    reassign = review_pb2.ReassignTaskRequest(task_id=review.task_id, assignee="wang", reason="急")
    error = await service.refused("ReassignTask", reassign, head)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    # Nor may he confirm the grant's audit.
    audit = await service.call("CreateAuditTask", audit_request(application), service.system)
    error = await service.refused(
        "ConfirmAudit",
        review_pb2.ConfirmAuditRequest(task_id=audit.task_id, audited_fen=1),
        service.token("wang", Role.AUDITOR),
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    # Another reviewer decides the department review.
    li = service.token("li", Role.REVIEWER, Department.INDUSTRY)
    await service.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=review.task_id), li)
    decided = await service.call(
        "DecideTask", review_pb2.DecideTaskRequest(task_id=review.task_id, decision=approve), li
    )
    assert decided.state == review_pb2.TASK_STATE_DECIDED


async def test_only_a_head_of_the_department_reassigns_and_release_returns_the_task(
    service: Service,
) -> None:
    application = app_id()
    await service.start_grant(application)
    task = await service.call("CreateTask", task_request(application), service.system)
    wang = service.token("wang", Role.REVIEWER, Department.INDUSTRY)
    li = service.token("li", Role.REVIEWER, Department.INDUSTRY)
    await service.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=task.task_id), wang)

    to_li = review_pb2.ReassignTaskRequest(task_id=task.task_id, assignee="li", reason="王出差")
    for token in (
        wang,
        li,
        service.token("qian", Role.DEPARTMENT_HEAD, Department.FINANCE),
        service.token("ops-1", Role.OPS),
    ):
        error = await service.refused("ReassignTask", to_li, token)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await service.refused(
        "ReleaseTask", review_pb2.ReleaseTaskRequest(task_id=task.task_id), li
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    head = service.token("zhou", Role.DEPARTMENT_HEAD, Department.INDUSTRY)
    no_reason = review_pb2.ReassignTaskRequest(task_id=task.task_id, assignee="li")
    error = await service.refused("ReassignTask", no_reason, head)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    moved = await service.call("ReassignTask", to_li, head)
    assert (moved.state, moved.assignee) == (review_pb2.TASK_STATE_CLAIMED, "li")
    approve = review_pb2.REVIEW_DECISION_APPROVE
    error = await service.refused(
        "DecideTask", review_pb2.DecideTaskRequest(task_id=task.task_id, decision=approve), wang
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    released = await service.call(
        "ReleaseTask", review_pb2.ReleaseTaskRequest(task_id=task.task_id, reason="回避"), li
    )
    assert (released.state, released.assignee) == (review_pb2.TASK_STATE_OPEN, "")
    await service.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=task.task_id), wang)
    # A head may release anyone's claim.
    released = await service.call(
        "ReleaseTask", review_pb2.ReleaseTaskRequest(task_id=task.task_id), head
    )
    assert released.state == review_pb2.TASK_STATE_OPEN
    types = await service.outbox_types()
    assert types.count("grantflow.v1.ReviewTaskReleased") == 2
    assert types.count("grantflow.v1.ReviewTaskReassigned") == 1


async def test_the_inbox_sorts_by_priority_then_due_and_counts(service: Service) -> None:
    now = now_utc()
    application = app_id()
    late_low = await service.call(
        "CreateTask",
        task_request(application, priority=0, due_at=to_timestamp(now + timedelta(days=9))),
        service.system,
    )
    soon_low = await service.call(
        "CreateTask",
        task_request(application, priority=0, due_at=to_timestamp(now + timedelta(days=2))),
        service.system,
    )
    urgent = await service.call(
        "CreateTask",
        task_request(application, priority=50, due_at=to_timestamp(now + timedelta(days=20))),
        service.system,
    )
    overdue = await service.call(
        "CreateTask",
        task_request(app_id(), priority=0, due_at=to_timestamp(now - timedelta(hours=1))),
        service.system,
    )
    await service.call("CreateTask", task_request(app_id(), department=FINANCE), service.system)

    wang = service.token("wang", Role.REVIEWER, Department.INDUSTRY)
    await service.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=soon_low.task_id), wang)
    listed = await service.call("ListTasks", review_pb2.ListTasksRequest(), wang)
    assert [t.task_id for t in listed.tasks] == [
        urgent.task_id,
        overdue.task_id,
        soon_low.task_id,
        late_low.task_id,
    ]
    assert listed.tasks[0].priority == 50
    counts = listed.counts
    assert (counts.open, counts.unclaimed, counts.mine, counts.overdue) == (4, 3, 1, 1)

    mine = await service.call(
        "ListTasks", review_pb2.ListTasksRequest(filter=review_pb2.TASK_FILTER_MINE), wang
    )
    assert [t.task_id for t in mine.tasks] == [soon_low.task_id]
    late = await service.call(
        "ListTasks", review_pb2.ListTasksRequest(filter=review_pb2.TASK_FILTER_OVERDUE), wang
    )
    assert [t.task_id for t in late.tasks] == [overdue.task_id]

    # Pages of one walk the same order.
    seen: list[str] = []
    token = ""
    while True:
        page = await service.call(
            "ListTasks", review_pb2.ListTasksRequest(page_size=1, page_token=token), wang
        )
        seen += [t.task_id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert seen == [t.task_id for t in listed.tasks]

    ops = await service.call("ListTasks", review_pb2.ListTasksRequest(), service.token("o", "ops"))
    assert ops.counts.open == 5
