"""Public notices and objections (NoticeService, served by the review service) over real gRPC, on
SQLite and PostgreSQL, against a real Temporal dev server.

A stand-in GrantWorkflow plays the grant's part for objections: it takes the Updates
objection_lodged and objection_decided (recording their payloads and update ids) and, when
told to, refuses them in its validator as a grant past its notice would.
"""

from __future__ import annotations

import asyncio
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
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from grantflow.v1 import (
    common_pb2,
    events_pb2,
    notice_pb2,
    notice_pb2_grpc,
    review_pb2,
    review_pb2_grpc,
)
from services.common.audit import AuditRecord
from services.common.auth import PUBLIC, mint_token
from services.common.config import Settings
from services.common.db import Database, now_utc, to_timestamp
from services.common.outbox import OutboxEvent
from services.common.vocabulary import AuditAction, Role, TaskState
from services.review import server
from services.review.notice_api import SERVICE as NOTICE_SERVICE
from services.review.notice_store import ObjectionRow
from services.review.store import ReviewTaskRow
from tests.integration.test_review_service import _wait_started, temporal_cli, violated_field
from tests.support import free_port
from workflows import contracts

TASK_QUEUE = "notice-service-test"
INDUSTRY = common_pb2.DEPARTMENT_INDUSTRY
YUNFAN = "91440300000000Y1BU"  # the applicant of the noticed awards
OTHER = "91440300000000W2CL"  # another enterprise
CITIZEN = "91440300000000X3DE"
DISPUTE = notice_pb2.OBJECTION_KIND_DISPUTE
COMPLAINT = notice_pb2.OBJECTION_KIND_COMPLAINT
REPORT = notice_pb2.OBJECTION_KIND_REPORT
LODGED_EVENT = "grantflow.v1.ObjectionLodged"
DECIDED_EVENT = "grantflow.v1.ObjectionDecided"
PUBLISHED_EVENT = "grantflow.v1.NoticePublished"


# The stand-in grant workflow -------------------------------------------------------------------


class Received(BaseModel):
    update_id: str
    name: str
    payload: dict[str, Any]


@workflow.defn(name=contracts.GRANT_WORKFLOW)
class StandInGrantWorkflow:
    @workflow.init
    def __init__(self) -> None:
        self.refusing = False
        self.finished = False
        self.received: list[Received] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.finished)

    def _record(self, name: str, payload: BaseModel) -> contracts.Acknowledged:
        update_id = workflow.current_update_info().id  # type: ignore[union-attr]
        self.received.append(Received(update_id=update_id, name=name, payload=payload.model_dump()))
        return contracts.Acknowledged(stage="IN_NOTICE")

    def _validate(self) -> None:
        if self.refusing:
            raise ApplicationError(
                "the public notice of this grant is over", type=contracts.ERR_FAILED_PRECONDITION
            )

    @workflow.update(name=contracts.OBJECTION_LODGED)
    def lodged(self, lodged: contracts.ObjectionLodged) -> contracts.Acknowledged:
        return self._record(contracts.OBJECTION_LODGED, lodged)

    @lodged.validator
    def validate_lodged(self, lodged: contracts.ObjectionLodged) -> None:
        self._validate()

    @workflow.update(name=contracts.OBJECTION_DECIDED)
    def decided(self, decided: contracts.ObjectionDecided) -> contracts.Acknowledged:
        return self._record(contracts.OBJECTION_DECIDED, decided)

    @decided.validator
    def validate_decided(self, decided: contracts.ObjectionDecided) -> None:
        self._validate()

    @workflow.signal
    def refuse(self, refusing: bool) -> None:
        self.refusing = refusing

    @workflow.signal
    def finish(self) -> None:
        self.finished = True

    @workflow.query(name=contracts.GRANT_STATUS)
    def status(self) -> list[Received]:
        return self.received


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


# The service ------------------------------------------------------------------------------------


@dataclass
class Stack:
    settings: Settings
    db: Database
    notices: notice_pb2_grpc.NoticeServiceStub
    review: review_pb2_grpc.ReviewServiceStub
    temporal: Client

    def token(self, subject: str, role: str, *, department: str = "", enterprise: str = "") -> str:
        return mint_token(
            self.settings.auth_secret, subject, role, department=department, enterprise=enterprise
        )

    async def call(self, method: str, request: Any, token: str | None = None) -> Any:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        stub: Any = self.review if method in REVIEW_METHODS else self.notices
        return await getattr(stub, method)(request, metadata=metadata, timeout=30)

    async def refused(
        self, method: str, request: Any, token: str | None = None
    ) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.call(method, request, token)
        return caught.value

    async def grant(self, application_id: str) -> Any:
        return await self.temporal.start_workflow(
            StandInGrantWorkflow.run,
            id=contracts.grant_workflow_id(application_id),
            task_queue=TASK_QUEUE,
        )

    async def rows(self, model: Any) -> list[Any]:
        return list(await self.db.run(lambda session: session.exec(select(model)).all()))

    async def outbox(self) -> list[tuple[str, str, bytes]]:
        def work(session: Any) -> list[tuple[str, str, bytes]]:
            rows = session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))).all()
            return [(row.event_type, row.key, row.payload) for row in rows]

        return list(await self.db.run(work))

    async def audits(self) -> list[AuditRecord]:
        return [row for row in await self.rows(AuditRecord)]


REVIEW_METHODS = {"ListTasks"}
SYSTEM = mint_token(Settings().auth_secret, "grantflow-batcher", Role.SYSTEM)


@pytest.fixture
async def stack(
    database_url: str, temporal: Client, kafka_bootstrap: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    settings = Settings(
        data_dir=tmp_path,
        review_database_url=database_url,
        review_address=f"127.0.0.1:{free_port()}",
        temporal_address=temporal.service_client.config.target_host,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix="noticetest",
        kafka_embedded_broker_recovery=True,
    )
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(server.run(settings, stop=stop, ready=started.set))
    await _wait_started(task, started)
    db = Database(database_url)
    channel = grpc.aio.insecure_channel(settings.review_address)
    try:
        yield Stack(
            settings,
            db,
            notice_pb2_grpc.NoticeServiceStub(channel),
            review_pb2_grpc.ReviewServiceStub(channel),
            temporal,
        )
    finally:
        await channel.close()
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        db.dispose()


def app_id() -> str:
    return f"app-{uuid.uuid4().hex[:12]}"


def publish_request(
    *applications: tuple[str, str], closed: bool = False, **fields: Any
) -> notice_pb2.PublishNoticeRequest:
    """A notice of the (application id, credit code) pairs, open now (or closed yesterday)."""
    now = now_utc()
    opens, closes = (
        (now - timedelta(days=9), now - timedelta(days=1))
        if closed
        else (
            now - timedelta(hours=1),
            now + timedelta(days=9),
        )
    )
    values: dict[str, Any] = {
        "batch_id": f"SME-CLOUD-2025-{uuid.uuid4().hex[:8]}",
        "program_code": "SME-CLOUD",
        "batch_number": 1,
        "owner_department": INDUSTRY,
        "opens_at": to_timestamp(opens),
        "closes_at": to_timestamp(closes),
        "entries": [
            notice_pb2.NoticeEntryInput(
                application_id=application,
                applicant_name="深圳市云帆科技有限公司",
                project_title="ERP 上云",
                amount_fen=200_000,
                applicant_credit_code=code,
            )
            for application, code in applications
        ],
    }
    values.update(fields)
    return notice_pb2.PublishNoticeRequest(**values)


def lodge_request(
    notice: notice_pb2.Notice, application_id: str, kind: int, **fields: Any
) -> notice_pb2.LodgeObjectionRequest:
    values: dict[str, Any] = {
        "request_id": f"objection-{uuid.uuid4().hex}",
        "batch_id": notice.batch_id,
        "application_id": application_id,
        "kind": kind,
        "text": "该项目申报的云服务费用发票与实际不符",
        "contact": "13800000000",
    }
    values.update(fields)
    return notice_pb2.LodgeObjectionRequest(**values)


def envelope(payload: bytes) -> events_pb2.EventEnvelope:
    return events_pb2.EventEnvelope.FromString(payload)


async def received(handle: Any) -> list[Received]:
    return list(await handle.query(contracts.GRANT_STATUS, result_type=list[Received]))


# Public reads and the role table ----------------------------------------------------------------


def test_the_public_methods_are_marked_public_and_nothing_else_is() -> None:
    public = {name for name, roles in NOTICE_SERVICE.method_roles.items() if PUBLIC in roles}
    assert public == {"ListNotices", "GetNotice"}
    assert PUBLIC not in set(Role)  # no token can carry it


async def test_a_notice_is_readable_without_a_token_and_shows_no_credit_code(stack: Stack) -> None:
    application = app_id()
    request = publish_request((application, YUNFAN))
    published = await stack.call("PublishNotice", request, SYSTEM)
    assert published.open and published.total_fen == 200_000

    anonymous = await stack.call(
        "GetNotice", notice_pb2.GetNoticeRequest(batch_id=request.batch_id)
    )
    assert [
        (e.application_id, e.applicant_name, e.project_title, e.amount_fen)
        for e in anonymous.entries
    ] == [(application, "深圳市云帆科技有限公司", "ERP 上云", 200_000)]
    assert YUNFAN.encode() not in anonymous.SerializeToString()
    listed = await stack.call("ListNotices", notice_pb2.ListNoticesRequest(open_only=True))
    assert request.batch_id in [n.batch_id for n in listed.notices]
    assert all(YUNFAN.encode() not in n.SerializeToString() for n in listed.notices)

    # Any role may read it too; a bad token is still refused.
    for token in (
        stack.token("li", Role.REVIEWER, department="finance"),
        stack.token(OTHER, Role.APPLICANT, enterprise=OTHER),
        stack.token("ops", Role.OPS),
    ):
        assert (
            await stack.call(
                "GetNotice", notice_pb2.GetNoticeRequest(batch_id=request.batch_id), token
            )
        ).batch_id
    bad = await stack.refused("ListNotices", notice_pb2.ListNoticesRequest(), "not-a-token")
    assert bad.code() == grpc.StatusCode.UNAUTHENTICATED

    # The announcement carries the public notice only.
    events = [
        (kind, key, payload)
        for kind, key, payload in await stack.outbox()
        if kind == PUBLISHED_EVENT
    ]
    assert [(kind, key) for kind, key, _ in events] == [(PUBLISHED_EVENT, request.batch_id)]
    assert YUNFAN.encode() not in events[0][2]


async def test_every_other_method_still_refuses_an_anonymous_caller(stack: Stack) -> None:
    requests = {
        "PublishNotice": publish_request((app_id(), YUNFAN)),
        "LodgeObjection": notice_pb2.LodgeObjectionRequest(),
        "ListObjections": notice_pb2.ListObjectionsRequest(),
        "GetObjection": notice_pb2.GetObjectionRequest(objection_id="x"),
        "DecideObjection": notice_pb2.DecideObjectionRequest(objection_id="x"),
        "ListTasks": review_pb2.ListTasksRequest(),
    }
    for method, request in requests.items():
        error = await stack.refused(method, request)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, method
    applicant = stack.token(YUNFAN, Role.APPLICANT, enterprise=YUNFAN)
    error = await stack.refused("PublishNotice", requests["PublishNotice"], applicant)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_publishing_is_idempotent_by_batch_and_checked(stack: Stack) -> None:
    request = publish_request((app_id(), YUNFAN))
    first = await stack.call("PublishNotice", request, SYSTEM)
    again = await stack.call("PublishNotice", request, SYSTEM)
    assert again.published_at == first.published_at
    changed = notice_pb2.PublishNoticeRequest()
    changed.CopyFrom(request)
    changed.entries[0].amount_fen = 100_000
    error = await stack.refused("PublishNotice", changed, SYSTEM)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert [k for k, _, _ in await stack.outbox()] == [PUBLISHED_EVENT]

    bad = publish_request((app_id(), "91440300000000Y1BF"))
    error = await stack.refused("PublishNotice", bad, SYSTEM)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_field(error) == "entries[0].applicant_credit_code"
    twice = app_id()
    doubled = publish_request((twice, YUNFAN), (twice, YUNFAN))
    assert violated_field(await stack.refused("PublishNotice", doubled, SYSTEM)) == (
        "entries[1].application_id"
    )
    backwards = publish_request((app_id(), YUNFAN), closes_at=request.opens_at)
    assert violated_field(await stack.refused("PublishNotice", backwards, SYSTEM)) == "closes_at"


# Lodging ----------------------------------------------------------------------------------------


async def test_anonymous_and_late_objections_are_refused(stack: Stack) -> None:
    application = app_id()
    handle = await stack.grant(application)
    notice = await stack.call("PublishNotice", publish_request((application, YUNFAN)), SYSTEM)
    anonymous = await stack.refused("LodgeObjection", lodge_request(notice, application, REPORT))
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED

    late_application = app_id()
    closed = await stack.call(
        "PublishNotice", publish_request((late_application, YUNFAN), closed=True), SYSTEM
    )
    assert not closed.open
    reporter = stack.token(OTHER, Role.APPLICANT, enterprise=OTHER)
    late = await stack.refused(
        "LodgeObjection", lodge_request(closed, late_application, REPORT), reporter
    )
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "公示期已结束" in (late.details() or "")

    missing = await stack.refused(
        "LodgeObjection", lodge_request(notice, app_id(), REPORT), reporter
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert await stack.rows(ObjectionRow) == []
    assert await received(handle) == []


async def test_a_dispute_is_the_applicants_own_but_anyone_identified_may_report(
    stack: Stack,
) -> None:
    application = app_id()
    handle = await stack.grant(application)
    notice = await stack.call("PublishNotice", publish_request((application, YUNFAN)), SYSTEM)
    other = stack.token(OTHER, Role.APPLICANT, enterprise=OTHER)

    refused = await stack.refused(
        "LodgeObjection", lodge_request(notice, application, DISPUTE), other
    )
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "异议只能由申报单位本身提出" in (refused.details() or "")

    report_request = lodge_request(notice, application, REPORT)
    report = await stack.call("LodgeObjection", report_request, other)
    assert report.state == notice_pb2.OBJECTION_STATE_LODGED
    assert report.handling_department == INDUSTRY
    assert report.objector.enterprise == OTHER  # the objector sees his own identity
    # A retry answers the same objection and tells the grant once.
    assert (
        await stack.call("LodgeObjection", report_request, other)
    ).objection_id == report.objection_id

    own = stack.token(YUNFAN, Role.APPLICANT, enterprise=YUNFAN)
    dispute = await stack.call("LodgeObjection", lodge_request(notice, application, DISPUTE), own)
    reviewer = stack.token("zhou", Role.REVIEWER, department="finance")
    complaint = await stack.call(
        "LodgeObjection", lodge_request(notice, application, COMPLAINT), reviewer
    )

    got = await received(handle)
    assert [(r.name, r.update_id, r.payload) for r in got] == [
        (
            contracts.OBJECTION_LODGED,
            f"objection-{o.objection_id}",
            {"objection_id": o.objection_id, "kind": kind},
        )
        for o, kind in ((report, "report"), (dispute, "dispute"), (complaint, "complaint"))
    ]
    events = [
        (kind, key, payload) for kind, key, payload in await stack.outbox() if kind == LODGED_EVENT
    ]
    assert [
        (key, envelope(payload).objection_lodged.objection_id) for _, key, payload in events
    ] == [(application, o.objection_id) for o in (report, dispute, complaint)]
    # The announcements never name the objector.
    assert not any(
        OTHER.encode() in payload or b"13800000000" in payload for _, _, payload in events
    )


# Who sees the objector ---------------------------------------------------------------------------


async def test_the_objectors_identity_is_shown_only_to_the_handling_department(
    stack: Stack,
) -> None:
    application = app_id()
    await stack.grant(application)
    notice = await stack.call("PublishNotice", publish_request((application, YUNFAN)), SYSTEM)
    objector = stack.token(OTHER, Role.APPLICANT, enterprise=OTHER)
    objection = await stack.call(
        "LodgeObjection", lodge_request(notice, application, REPORT), objector
    )
    get = notice_pb2.GetObjectionRequest(objection_id=objection.objection_id)

    handling = await stack.call(
        "GetObjection", get, stack.token("li", Role.REVIEWER, department="industry")
    )
    assert not handling.identity_hidden
    assert (handling.objector.enterprise, handling.objector.contact) == (OTHER, "13800000000")

    for token in (
        stack.token("zhou", Role.REVIEWER, department="finance"),
        stack.token("ops", Role.OPS),
    ):
        seen = await stack.call("GetObjection", get, token)
        assert seen.identity_hidden and not seen.HasField("objector")
        assert seen.text == objection.text and seen.kind == REPORT
        assert OTHER.encode() not in seen.SerializeToString()
        listed = await stack.call(
            "ListObjections", notice_pb2.ListObjectionsRequest(application_id=application), token
        )
        assert [o.identity_hidden for o in listed.objections] == [True]
        assert OTHER.encode() not in listed.SerializeToString()
    listed = await stack.call(
        "ListObjections",
        notice_pb2.ListObjectionsRequest(application_id=application),
        stack.token("li", Role.REVIEWER, department="industry"),
    )
    assert [o.objector.enterprise for o in listed.objections] == [OTHER]

    assert (await stack.call("GetObjection", get, objector)).objector.enterprise == OTHER
    stranger = stack.token(YUNFAN, Role.APPLICANT, enterprise=YUNFAN)
    assert (await stack.refused("GetObjection", get, stranger)).code() == grpc.StatusCode.NOT_FOUND


# Deciding ----------------------------------------------------------------------------------------


async def test_upheld_and_dismissed_decisions_reach_the_grant_and_are_audited(stack: Stack) -> None:
    upheld_app, dismissed_app = app_id(), app_id()
    upheld_grant, dismissed_grant = await stack.grant(upheld_app), await stack.grant(dismissed_app)
    notice = await stack.call(
        "PublishNotice", publish_request((upheld_app, YUNFAN), (dismissed_app, OTHER)), SYSTEM
    )
    reporter = stack.token("citizen-wang", Role.APPLICANT, enterprise=CITIZEN)
    first = await stack.call("LodgeObjection", lodge_request(notice, upheld_app, REPORT), reporter)
    second = await stack.call(
        "LodgeObjection", lodge_request(notice, dismissed_app, REPORT), reporter
    )
    li = stack.token("li", Role.REVIEWER, department="industry")

    incomplete = notice_pb2.DecideObjectionRequest(
        objection_id=first.objection_id, upheld=True, reason="查实"
    )
    error = await stack.refused("DecideObjection", incomplete, li)
    assert violated_field(error) == "consequence"
    finance = stack.token("zhou", Role.REVIEWER, department="finance")
    uphold = notice_pb2.DecideObjectionRequest(
        objection_id=first.objection_id,
        upheld=True,
        consequence=notice_pb2.OBJECTION_CONSEQUENCE_FALL_AWAY,
        reason="经核查，发票与实际不符，取消资助",
    )
    assert (
        await stack.refused("DecideObjection", uphold, finance)
    ).code() == grpc.StatusCode.PERMISSION_DENIED

    decided = await stack.call("DecideObjection", uphold, li)
    assert decided.state == notice_pb2.OBJECTION_STATE_UPHELD
    assert decided.consequence == notice_pb2.OBJECTION_CONSEQUENCE_FALL_AWAY
    assert (await stack.call("DecideObjection", uphold, li)).decided_at == decided.decided_at
    dismiss = notice_pb2.DecideObjectionRequest(
        objection_id=second.objection_id, upheld=False, reason="举报内容经核查不属实"
    )
    dismissed = await stack.call("DecideObjection", dismiss, li)
    assert dismissed.state == notice_pb2.OBJECTION_STATE_DISMISSED
    other_way = notice_pb2.DecideObjectionRequest(
        objection_id=second.objection_id,
        upheld=True,
        consequence=notice_pb2.OBJECTION_CONSEQUENCE_RE_REVIEW,
        reason="改判",
    )
    assert (
        await stack.refused("DecideObjection", other_way, li)
    ).code() == grpc.StatusCode.FAILED_PRECONDITION

    assert [(r.update_id, r.payload) for r in await received(upheld_grant)][1:] == [
        (
            f"objection-decided-{first.objection_id}",
            {
                "objection_id": first.objection_id,
                "upheld": True,
                "consequence": "fall_away",
                "reason": "经核查，发票与实际不符，取消资助",
                "handled_by": "li",
            },
        )
    ]
    assert [(r.update_id, r.payload) for r in await received(dismissed_grant)][1:] == [
        (
            f"objection-decided-{second.objection_id}",
            {
                "objection_id": second.objection_id,
                "upheld": False,
                "consequence": "",
                "reason": "举报内容经核查不属实",
                "handled_by": "li",
            },
        )
    ]
    # The upheld award is struck from the public notice.
    public = await stack.call("GetNotice", notice_pb2.GetNoticeRequest(batch_id=notice.batch_id))
    assert [(e.application_id, e.struck) for e in public.entries] == [
        (upheld_app, True),
        (dismissed_app, False),
    ]
    assert public.total_fen == 200_000
    audits = [a for a in await stack.audits() if a.action == AuditAction.OBJECTION_HANDLED]
    assert sorted((a.subject, a.actor) for a in audits) == sorted(
        [(upheld_app, "li"), (dismissed_app, "li")]
    )
    assert not any("citizen-wang" in a.details_json for a in audits)
    decided = [
        envelope(payload).objection_decided
        for kind, _, payload in await stack.outbox()
        if kind == DECIDED_EVENT
    ]
    assert [(d.objection_id, d.upheld, d.consequence) for d in decided] == [
        (first.objection_id, True, notice_pb2.OBJECTION_CONSEQUENCE_FALL_AWAY),
        (second.objection_id, False, notice_pb2.OBJECTION_CONSEQUENCE_UNSPECIFIED),
    ]


async def test_nothing_is_committed_when_the_grant_refuses_the_update(stack: Stack) -> None:
    application = app_id()
    handle = await stack.grant(application)
    notice = await stack.call("PublishNotice", publish_request((application, YUNFAN)), SYSTEM)
    reporter = stack.token(OTHER, Role.APPLICANT, enterprise=OTHER)
    objection = await stack.call(
        "LodgeObjection", lodge_request(notice, application, REPORT), reporter
    )
    events_before = await stack.outbox()

    await handle.signal(StandInGrantWorkflow.refuse, True)
    refused = await stack.refused(
        "LodgeObjection", lodge_request(notice, application, REPORT), reporter
    )
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    li = stack.token("li", Role.REVIEWER, department="industry")
    decide = notice_pb2.DecideObjectionRequest(
        objection_id=objection.objection_id, upheld=False, reason="不属实"
    )
    refused = await stack.refused("DecideObjection", decide, li)
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION

    rows = await stack.rows(ObjectionRow)
    assert [(r.objection_id, r.state, r.handler) for r in rows] == [
        (objection.objection_id, "lodged", "")
    ]
    assert await stack.outbox() == events_before
    assert not [a for a in await stack.audits() if a.action == AuditAction.OBJECTION_HANDLED]

    # A grant that is not running refuses too, and nothing is recorded.
    gone = app_id()
    other_notice = await stack.call("PublishNotice", publish_request((gone, YUNFAN)), SYSTEM)
    error = await stack.refused(
        "LodgeObjection", lodge_request(other_notice, gone, REPORT), reporter
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(await stack.rows(ObjectionRow)) == 1

    # Once the grant takes it again, another reviewer of the department may decide.
    await handle.signal(StandInGrantWorkflow.refuse, False)
    wu = stack.token("wu", Role.REVIEWER, department="industry")
    assert (await stack.call("DecideObjection", decide, wu)).handled_by == "wu"


async def test_a_reviewer_who_decided_the_review_may_not_decide_its_objection(stack: Stack) -> None:
    application = app_id()
    await stack.grant(application)
    notice = await stack.call("PublishNotice", publish_request((application, YUNFAN)), SYSTEM)
    objection = await stack.call(
        "LodgeObjection",
        lodge_request(notice, application, REPORT),
        stack.token(OTHER, Role.APPLICANT, enterprise=OTHER),
    )
    now = now_utc()

    def decided_review(session: Any) -> None:
        session.add(
            ReviewTaskRow(
                task_id=uuid.uuid4().hex,
                request_id=f"req-{uuid.uuid4().hex}",
                application_id=application,
                program_code="SME-CLOUD",
                department="industry",
                round=1,
                state=TaskState.DECIDED,
                assignee="li",
                proposed_amount_fen=200_000,
                decision="approve",
                created_at=now,
                due_at=now,
            )
        )
        session.commit()

    await stack.db.run(decided_review)
    decide = notice_pb2.DecideObjectionRequest(
        objection_id=objection.objection_id, upheld=False, reason="不属实"
    )
    li = stack.token("li", Role.REVIEWER, department="industry")
    error = await stack.refused("DecideObjection", decide, li)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


# The CLI ----------------------------------------------------------------------------------------


async def test_the_cli_shows_notices_to_anyone_and_takes_objections_from_the_identified(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from grantflow import cli
    from grantflow.cli import app
    from services.common.config import get_settings

    application = app_id()
    await stack.grant(application)
    await stack.call("PublishNotice", publish_request((application, YUNFAN)), SYSTEM)
    monkeypatch.setenv("REVIEW_ADDRESS", stack.settings.review_address)
    monkeypatch.delenv("GRANTFLOW_TOKEN", raising=False)
    monkeypatch.setenv("COLUMNS", "300")  # the tables unabridged
    get_settings.cache_clear()
    cli.out.cache_clear()
    runner = CliRunner()

    async def grantflow(*args: str) -> Any:
        # Each command runs its own event loop: off this test's loop.
        return await asyncio.to_thread(runner.invoke, app, list(args))

    try:
        listed = await grantflow("notices", "--program", "SME-CLOUD", "--open")
        assert listed.exit_code == 0, listed.output
        assert "SME-CLOUD 第1批 资助项目公示" in listed.output and "公示中" in listed.output
        assert "0.2万元" in listed.output and YUNFAN not in listed.output

        anonymous = await grantflow(
            "object", application, "--kind", "举报", "--text", "虚报", "--contact", "138"
        )
        assert anonymous.exit_code == 2 and "不受理匿名异议" in anonymous.output
        lodged = await grantflow(
            "object", application, "--kind", "举报", "--text", "虚报费用",
            "--contact", "13800000000", "--credit-code", OTHER,
        )  # fmt: skip
        assert lodged.exit_code == 0, lodged.output
        assert "已受理举报" in lodged.output and "工信局" in lodged.output

        handling = await grantflow("objections", "--department", "industry", "--user", "li")
        assert OTHER in handling.output and "举报" in handling.output
        other = await grantflow("objections", "--department", "finance", "--user", "zhou")
        assert OTHER not in other.output and "保密" in other.output
        objection_id = (await stack.rows(ObjectionRow))[0].objection_id
        decided = await grantflow(
            "objection", "decide", objection_id, "--dismissed", "--reason", "经核查不属实",
            "--department", "industry", "--user", "li",
        )  # fmt: skip
        assert decided.exit_code == 0, decided.output
        assert "不成立" in decided.output
    finally:
        get_settings.cache_clear()
        cli.out.cache_clear()
