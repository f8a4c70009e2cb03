"""ApplicationService over real gRPC on SQLite and PostgreSQL, the outbox relay against a real
Kafka-protocol broker (Tansu), withdrawals against a real Temporal dev server where a small
stand-in GrantWorkflow (below) answers the withdrawal Update as the real one does."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from grantflow.v1 import applications_pb2, common_pb2, events_pb2
from services.applications.catalogue import load_catalogue
from services.common.db import to_timestamp
from services.common.kafka import APPLICATIONS, Record, read_topic, topic
from services.common.vocabulary import Department, GrantStage, Role
from tests.integration._applications_server import ApplicationsHarness, applications_service
from tests.support import holding_the_write_lock
from workflows import contracts, reasons

ENTERPRISE_A = "91440300MA5000000G"
ENTERPRISE_B = "91440300MA6000000N"
SHA = "ab" * 32
SUBMITTED = "grantflow.v1.ApplicationSubmitted"
WITHDRAWN = "grantflow.v1.ApplicationWithdrawn"
SUPPLEMENTED = "grantflow.v1.ApplicationSupplemented"
STAGE_CHANGED = "grantflow.v1.GrantStageChanged"
WRITTEN_TABLES = ("application", "application_supplement", "program_version", "outbox_event")
STAND_IN_QUEUE = "applications-service-test"


# The stand-in grant workflow ----------------------------------------------------------------


class StandInGrant(BaseModel):
    honour: bool  # whether it honours a withdrawal or refuses it (its award is in a plan)


@workflow.defn(name=contracts.GRANT_WORKFLOW)
class StandInGrantWorkflow:
    @workflow.init
    def __init__(self, grant: StandInGrant) -> None:
        self.grant = grant
        self.withdrawals: list[contracts.Withdraw] = []

    @workflow.run
    async def run(self, grant: StandInGrant) -> None:
        await workflow.wait_condition(lambda: bool(self.withdrawals))

    @workflow.update(name=contracts.WITHDRAW_APPLICATION)
    def withdraw(self, withdrawal: contracts.Withdraw) -> contracts.WithdrawalAnswer:
        if not self.grant.honour:
            raise ApplicationError(
                reasons.IN_A_FUNDING_PLAN, type=contracts.ERR_FAILED_PRECONDITION
            )
        self.withdrawals.append(withdrawal)
        return contracts.WithdrawalAnswer(stage=GrantStage.WITHDRAWN, released_fen=150_000)


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[Client]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        async with Worker(
            env.client,
            task_queue=STAND_IN_QUEUE,
            workflows=[StandInGrantWorkflow],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            yield env.client
    finally:
        await env.shutdown()


@pytest.fixture
async def service(
    database_url: str, tmp_path: Path, temporal: Client
) -> AsyncIterator[ApplicationsHarness]:
    address = temporal.service_client.config.target_host
    async with applications_service(database_url, tmp_path, temporal_address=address) as harness:
        yield harness


async def start_grant(temporal: Client, application_id: str, *, honour: bool) -> Any:
    return await temporal.start_workflow(
        StandInGrantWorkflow.run,
        StandInGrant(honour=honour),
        id=contracts.grant_workflow_id(application_id),
        task_queue=STAND_IN_QUEUE,
    )


def submission(
    request_id: str = "req-0000001",
    enterprise: str = ENTERPRISE_A,
    program: str = "SME-CLOUD",
    **overrides: Any,
) -> applications_pb2.SubmitApplicationRequest:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "program_code": program,
        "applicant_credit_code": enterprise,
        "applicant_name": "深圳市云帆科技有限公司",
        "project_title": "ERP on a designated cloud platform",
        "project_description": "First purchase of a cloud ERP subscription.",
        "figures": {
            "cloud_fee_paid_fen": 300_000,
            "staff_count": 40,
            "annual_revenue_fen": 2_000_000_000,
        },
        "documents": [
            common_pb2.DocumentRef(name="invoice.pdf", uri="s3://docs/invoice.pdf", sha256=SHA)
        ],
        "requested_amount_fen": 0,
    }
    fields.update(overrides)
    return applications_pb2.SubmitApplicationRequest(**fields)


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def assert_invalid(call: Awaitable[Any], field: str) -> None:
    error = await rpc_error(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
    assert field in (error.details() or ""), (field, error.details())
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == [field]


def row_counts(harness: ApplicationsHarness) -> dict[str, int]:
    return {table: harness.count(table) for table in WRITTEN_TABLES}


def decoded(payloads: list[bytes]) -> list[events_pb2.EventEnvelope]:
    return [events_pb2.EventEnvelope.FromString(payload) for payload in payloads]


async def test_submit_get_and_list(service: ApplicationsHarness) -> None:
    applicant_a = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    applicant_b = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_B)
    finance = service.auth(Role.FINANCE)

    filed = await service.stub.SubmitApplication(submission(), metadata=applicant_a)
    assert len(filed.application_id) == 32
    assert filed.status == common_pb2.GRANT_STAGE_SUBMITTED
    assert filed.workflow_id == f"grant-{filed.application_id}"
    assert filed.rule_version == 2  # SME-CLOUD's current version in the seed catalogue
    assert dict(filed.figures)["cloud_fee_paid_fen"] == 300_000
    assert [d.name for d in filed.documents] == ["invoice.pdf"]
    assert filed.submitted_at.seconds > 0

    # The submission is announced with the rule version pinned to it.
    [envelope] = decoded(service.outbox_payloads(SUBMITTED))
    assert envelope.subject == filed.application_id
    assert envelope.source == "applications"
    assert envelope.application_submitted.application == filed
    assert envelope.application_submitted.rule.code == "SME-CLOUD"
    assert envelope.application_submitted.rule.amount_rule.cap_fen == 200_000
    assert service.count("outbox_event", f"topic = '{topic(service.settings, APPLICATIONS)}'") == 1

    assert (
        await service.stub.GetApplication(
            applications_pb2.GetApplicationRequest(application_id=filed.application_id),
            metadata=applicant_a,
        )
        == filed
    )
    reviewer = service.auth(Role.REVIEWER, department=Department.FINANCE)
    seen_by_reviewer = await service.stub.GetApplication(
        applications_pb2.GetApplicationRequest(application_id=filed.application_id),
        metadata=reviewer,
    )
    assert seen_by_reviewer.application_id == filed.application_id

    second = await service.stub.SubmitApplication(
        submission("req-0000002", program="IIP-CROSS", figures={"platform_investment_fen": 10**9}),
        metadata=applicant_a,
    )
    other = await service.stub.SubmitApplication(
        submission("req-0000003", enterprise=ENTERPRISE_B), metadata=applicant_b
    )

    async def listed(metadata: Any, **filters: Any) -> list[str]:
        answer = await service.stub.ListApplications(
            applications_pb2.ListApplicationsRequest(**filters), metadata=metadata
        )
        return [a.application_id for a in answer.applications]

    newest_first = [other.application_id, second.application_id, filed.application_id]
    assert await listed(finance) == newest_first
    assert await listed(applicant_a) == [second.application_id, filed.application_id]
    # An applicant's own filings only, whatever filter it passes.
    assert await listed(applicant_a, applicant_credit_code=ENTERPRISE_B) == []
    assert await listed(finance, applicant_credit_code=ENTERPRISE_B) == [other.application_id]
    assert await listed(finance, program_code="IIP-CROSS") == [second.application_id]
    assert await listed(finance, status=common_pb2.GRANT_STAGE_SUBMITTED) == newest_first
    assert await listed(finance, status=common_pb2.GRANT_STAGE_IN_REVIEW) == []

    # Paging walks every application once.
    pages: list[str] = []
    token = ""
    while True:
        page = await service.stub.ListApplications(
            applications_pb2.ListApplicationsRequest(page_size=2, page_token=token),
            metadata=finance,
        )
        pages.extend(a.application_id for a in page.applications)
        token = page.next_page_token
        if not token:
            break
    assert pages == newest_first
    await assert_invalid(
        service.stub.ListApplications(
            applications_pb2.ListApplicationsRequest(page_token="not-a-token"), metadata=finance
        ),
        "page_token",
    )
    await assert_invalid(  # a stage outside the vocabulary
        service.stub.ListApplications(
            applications_pb2.ListApplicationsRequest(status=99),  # type: ignore[arg-type]
            metadata=finance,
        ),
        "status",
    )

    programs = await service.stub.ListPrograms(
        applications_pb2.ListProgramsRequest(), metadata=applicant_a
    )
    assert [p.code for p in programs.programs] == sorted(r.code for r in load_catalogue())


async def test_submit_is_idempotent_on_request_id(service: ApplicationsHarness) -> None:
    applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    first = await service.stub.SubmitApplication(submission(), metadata=applicant)
    again = await service.stub.SubmitApplication(submission(), metadata=applicant)
    assert again == first
    assert service.count("application") == 1
    assert len(service.outbox_payloads(SUBMITTED)) == 1

    error = await rpc_error(
        service.stub.SubmitApplication(submission(requested_amount_fen=150_000), metadata=applicant)
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert service.count("application") == 1
    assert len(service.outbox_payloads(SUBMITTED)) == 1

    # A client retrying in parallel (timeouts, double clicks) still files one application.
    racing = await asyncio.gather(
        *[
            service.stub.SubmitApplication(submission("req-race-0001"), metadata=applicant)
            for _ in range(6)
        ]
    )
    assert len({answer.application_id for answer in racing}) == 1
    assert service.count("application") == 2
    assert len(service.outbox_payloads(SUBMITTED)) == 2


async def test_bad_input_names_the_field_and_writes_nothing(service: ApplicationsHarness) -> None:
    applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    ops = service.auth(Role.OPS)
    system = service.auth(Role.SYSTEM)
    filed = await service.stub.SubmitApplication(submission(), metadata=applicant)
    before = row_counts(service)

    bad_document = common_pb2.DocumentRef(name="x.pdf", uri="s3://x", sha256="XYZ")
    good_document = common_pb2.DocumentRef(name="x.pdf", uri="s3://x", sha256=SHA)
    submit_cases: list[tuple[applications_pb2.SubmitApplicationRequest, str]] = [
        (submission(request_id=""), "request_id"),
        (submission(applicant_name=""), "applicant_name"),
        (submission(applicant_credit_code="91440300MA5000000X"), "applicant_credit_code"),
        (submission(program="NO-SUCH-PROGRAM"), "program_code"),
        (submission(figures={"staff_count": -1}), "figures[staff_count]"),
        (submission(figures={"Staff Count": 1}), "figures[Staff Count]"),
        (submission(requested_amount_fen=10**13), "requested_amount_fen"),
        (submission(project_title="x" * 201), "project_title"),
        (submission(project_description="x" * 5001), "project_description"),
        (submission(documents=[bad_document]), "documents[0].sha256"),
        (submission(documents=[good_document] * 21), "documents"),
    ]
    for request, field in submit_cases:
        await assert_invalid(service.stub.SubmitApplication(request, metadata=applicant), field)
    error = await rpc_error(
        service.stub.SubmitApplication(submission(program="NO-SUCH-PROGRAM"), metadata=applicant)
    )
    assert "unknown program" in (error.details() or "")

    def supplement(**fields: Any) -> applications_pb2.SupplementApplicationRequest:
        base: dict[str, Any] = {
            "application_id": filed.application_id,
            "request_id": "sup-0000001",
            "figures": {"staff_count": 41},
        }
        base.update(fields)
        return applications_pb2.SupplementApplicationRequest(**base)

    supplement_cases = [
        (supplement(application_id=""), "application_id"),
        (supplement(request_id=""), "request_id"),
        (supplement(figures={"staff_count": -5}), "figures[staff_count]"),
        (supplement(documents=[bad_document]), "documents[0].sha256"),
        (supplement(note="x" * 2001), "note"),
        (supplement(figures={}), "figures"),
    ]
    for supplement_request, field in supplement_cases:
        await assert_invalid(
            service.stub.SupplementApplication(supplement_request, metadata=applicant), field
        )

    template = load_catalogue()[0]

    def rule(**changes: Any) -> common_pb2.ProgramRule:
        copy = common_pb2.ProgramRule()
        copy.CopyFrom(template)
        copy.code = "NEW-PROGRAM"
        for path, value in changes.items():
            target: Any = copy
            *parents, leaf = path.split("__")
            for parent in parents:
                target = getattr(target, parent)
            if isinstance(value, list):
                target.ClearField(leaf)
                getattr(target, leaf).extend(value)
            elif isinstance(value, datetime):
                getattr(target, leaf).CopyFrom(to_timestamp(value))
            else:
                setattr(target, leaf, value)
        return copy

    publish_cases = [
        (rule(code="bad code"), "rule.code"),
        (rule(version=0), "rule.version"),
        (rule(name=""), "rule.name"),
        (rule(owner_department=common_pb2.DEPARTMENT_UNSPECIFIED), "rule.owner_department"),
        (rule(review_departments=[]), "rule.review_departments"),
        (rule(window_closes_at=datetime(2025, 1, 1, tzinfo=UTC)), "rule.window_closes_at"),
        (rule(amount_rule__basis_figure="other_fen"), "rule.amount_rule.basis_figure"),
        (rule(amount_rule__rate_basis_points=0), "rule.amount_rule.rate_basis_points"),
        (rule(amount_rule__rate_basis_points=10_001), "rule.amount_rule.rate_basis_points"),
        (rule(amount_rule__cap_fen=0), "rule.amount_rule.cap_fen"),
        (rule(notice_working_days=0), "rule.notice_working_days"),
        (rule(supplement_working_days=0), "rule.supplement_working_days"),
        (rule(review_working_days=0), "rule.review_working_days"),
        # The rule language of issue 6: kinds, policies, review stages and lists.
        (rule(amount_rule__kind=9), "rule.amount_rule.kind"),
        (rule(amount_rule__instalments=4), "rule.amount_rule.instalments"),
        (rule(budget_line_code="bad line"), "rule.budget_line_code"),
        (rule(join_policy=common_pb2.JOIN_POLICY_QUORUM, quorum=3), "rule.quorum"),
        (rule(excluded_programs=["NEW-PROGRAM"]), "rule.excluded_programs[0]"),
        (rule(eligible_registration_kinds=["company"]), "rule.eligible_registration_kinds[0]"),
        (
            rule(special_audit__audited_figure="platform_investment_fen"),
            "rule.special_audit.audited_figure",
        ),
    ]
    [iip] = [r for r in load_catalogue() if r.code == "IIP-CROSS"]
    lopsided = common_pb2.ProgramRule()
    lopsided.CopyFrom(iip)
    lopsided.code = "NEW-PROGRAM"
    lopsided.expert_review.rubric[0].max_points += 1
    publish_cases.append((lopsided, "rule.expert_review.rubric"))
    [platform] = [r for r in load_catalogue() if r.code == "DEMO-PLATFORM"]
    unordered = common_pb2.ProgramRule()
    unordered.CopyFrom(platform)
    unordered.code = "NEW-PROGRAM"
    unordered.amount_rule.tiers[1].min_score_centi = 5000
    publish_cases.append((unordered, "rule.amount_rule.tiers[1].min_score_centi"))
    published_before = service.count("program_version")
    for program_rule, field in publish_cases:
        await assert_invalid(
            service.stub.PublishProgramVersion(
                applications_pb2.PublishProgramVersionRequest(rule=program_rule), metadata=ops
            ),
            field,
        )
    await assert_invalid(
        service.stub.PublishProgramVersion(
            applications_pb2.PublishProgramVersionRequest(), metadata=ops
        ),
        "rule",
    )
    assert service.count("program_version") == published_before  # nothing written

    def report(event_id: str, **change: Any) -> applications_pb2.ReportGrantStageRequest:
        fields: dict[str, Any] = {
            "application_id": filed.application_id,
            "stage": common_pb2.GRANT_STAGE_FORMAL_CHECK,
            "sequence": 2,
        }
        fields.update(change)
        return applications_pb2.ReportGrantStageRequest(
            event_id=event_id, change=applications_pb2.GrantStageChanged(**fields)
        )

    await assert_invalid(service.stub.ReportGrantStage(report(""), metadata=system), "event_id")
    await assert_invalid(
        service.stub.ReportGrantStage(report("e" * 65), metadata=system), "event_id"
    )
    await assert_invalid(
        service.stub.ReportGrantStage(
            report("grant-x-2", stage=common_pb2.GRANT_STAGE_UNSPECIFIED), metadata=system
        ),
        "change.stage",
    )
    await assert_invalid(
        service.stub.ReportGrantStage(report("grant-x-2", stage=99), metadata=system),
        "change.stage",
    )
    await assert_invalid(
        service.stub.ReportGrantStage(report("grant-x-2", sequence=0), metadata=system),
        "change.sequence",
    )
    await assert_invalid(
        service.stub.ReportGrantStage(
            report("grant-x-2", reason="rejected by finance: \x07" + "x" * 2000), metadata=system
        ),
        "change.reason",
    )
    await assert_invalid(
        service.stub.WithdrawApplication(
            applications_pb2.WithdrawApplicationRequest(
                application_id=filed.application_id, reason="x" * 1001
            ),
            metadata=applicant,
        ),
        "reason",
    )

    assert row_counts(service) == before


async def test_callers_without_the_right_are_refused(service: ApplicationsHarness) -> None:
    applicant_a = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    applicant_b = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_B)
    filed = await service.stub.SubmitApplication(submission(), metadata=applicant_a)
    before = row_counts(service)
    by_id = applications_pb2.GetApplicationRequest(application_id=filed.application_id)

    async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
        return (await rpc_error(call)).code()

    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    denied = grpc.StatusCode.PERMISSION_DENIED
    assert await code_of(service.stub.GetApplication(by_id)) == unauthenticated
    assert await code_of(service.stub.SubmitApplication(submission("req-0000009"))) == (
        unauthenticated
    )
    forged = [("authorization", "Bearer not.a.token")]
    assert await code_of(service.stub.GetApplication(by_id, metadata=forged)) == unauthenticated

    # Filing in another enterprise's name, or touching its application.
    assert (
        await code_of(
            service.stub.SubmitApplication(submission("req-0000010"), metadata=applicant_b)
        )
        == denied
    )
    # Another enterprise's application is not found, as if it did not exist.
    not_found = grpc.StatusCode.NOT_FOUND
    assert await code_of(service.stub.GetApplication(by_id, metadata=applicant_b)) == not_found
    assert (
        await code_of(
            service.stub.WithdrawApplication(
                applications_pb2.WithdrawApplicationRequest(application_id=filed.application_id),
                metadata=applicant_b,
            )
        )
        == not_found
    )
    assert (
        await code_of(
            service.stub.SupplementApplication(
                applications_pb2.SupplementApplicationRequest(
                    application_id=filed.application_id,
                    request_id="sup-0000001",
                    figures={"staff_count": 1},
                ),
                metadata=applicant_b,
            )
        )
        == not_found
    )

    # Roles that may not call a method at all.
    reviewer = service.auth(Role.REVIEWER, department=Department.INDUSTRY)
    assert (
        await code_of(service.stub.SubmitApplication(submission("req-0000011"), metadata=reviewer))
        == denied
    )
    assert (
        await code_of(
            service.stub.PublishProgramVersion(
                applications_pb2.PublishProgramVersionRequest(rule=load_catalogue()[0]),
                metadata=applicant_a,
            )
        )
        == denied
    )
    for role_metadata in (applicant_a, service.auth(Role.OPS)):
        assert (
            await code_of(
                service.stub.ReportGrantStage(
                    applications_pb2.ReportGrantStageRequest(
                        event_id=f"grant-{filed.application_id}-2",
                        change=applications_pb2.GrantStageChanged(
                            application_id=filed.application_id,
                            stage=common_pb2.GRANT_STAGE_REJECTED,
                            sequence=2,
                        ),
                    ),
                    metadata=role_metadata,
                )
            )
            == denied
        )
    assert (
        await code_of(
            service.stub.WithdrawApplication(
                applications_pb2.WithdrawApplicationRequest(application_id=filed.application_id),
                metadata=service.auth(Role.FINANCE),
            )
        )
        == denied
    )
    assert row_counts(service) == before


async def test_a_running_grant_decides_a_withdrawal(
    service: ApplicationsHarness, temporal: Client
) -> None:
    applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A, subject="alice")
    honoured = await service.stub.SubmitApplication(submission(), metadata=applicant)
    refused = await service.stub.SubmitApplication(submission("req-0000002"), metadata=applicant)
    grant = await start_grant(temporal, honoured.application_id, honour=True)
    await start_grant(temporal, refused.application_id, honour=False)
    before = row_counts(service)

    answer = await service.stub.WithdrawApplication(
        applications_pb2.WithdrawApplicationRequest(
            application_id=honoured.application_id, reason="project cancelled"
        ),
        metadata=applicant,
    )
    assert answer.application_id == honoured.application_id
    await grant.result()  # the grant took it, with who and why
    # The grant announces its own WITHDRAWN stage; the service records nothing of its own.
    assert row_counts(service) == before

    error = await rpc_error(
        service.stub.WithdrawApplication(
            applications_pb2.WithdrawApplicationRequest(application_id=refused.application_id),
            metadata=applicant,
        )
    )
    # The applicant reads the grant's own reason, and nothing was recorded.
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        reasons.IN_A_FUNDING_PLAN,
    )
    assert row_counts(service) == before


async def test_temporal_out_of_reach_makes_a_withdrawal_unavailable_and_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    async with applications_service(database_url, tmp_path) as service:  # no Temporal there
        applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
        filed = await service.stub.SubmitApplication(submission(), metadata=applicant)
        before = row_counts(service)
        error = await rpc_error(
            service.stub.WithdrawApplication(
                applications_pb2.WithdrawApplicationRequest(application_id=filed.application_id),
                metadata=applicant,
            )
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert row_counts(service) == before


async def test_a_withdrawal_before_the_grant_started_is_announced_once(
    service: ApplicationsHarness,
) -> None:
    applicant_a = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A, subject="alice")
    applicant_b = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_B)
    mine = await service.stub.SubmitApplication(submission(), metadata=applicant_a)
    theirs = await service.stub.SubmitApplication(
        submission("req-0000002", enterprise=ENTERPRISE_B), metadata=applicant_b
    )
    withdraw = applications_pb2.WithdrawApplicationRequest(
        application_id=mine.application_id, reason="project cancelled"
    )
    answer = await service.stub.WithdrawApplication(withdraw, metadata=applicant_a)
    again = await service.stub.WithdrawApplication(withdraw, metadata=applicant_a)
    assert answer.application_id == again.application_id == mine.application_id
    # The status stays what the workflow last reported until it reports WITHDRAWN.
    assert again.status == common_pb2.GRANT_STAGE_SUBMITTED
    [event] = decoded(service.outbox_payloads(WITHDRAWN))
    assert event.subject == mine.application_id
    assert event.application_withdrawn.reason == "project cancelled"
    assert event.application_withdrawn.withdrawn_by == "alice"

    # Operations may withdraw any application.
    await service.stub.WithdrawApplication(
        applications_pb2.WithdrawApplicationRequest(
            application_id=theirs.application_id, reason="duplicate filing"
        ),
        metadata=service.auth(Role.OPS),
    )
    assert len(service.outbox_payloads(WITHDRAWN)) == 2

    missing = await rpc_error(
        service.stub.WithdrawApplication(
            applications_pb2.WithdrawApplicationRequest(application_id="0" * 32),
            metadata=service.auth(Role.OPS),
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    # A supplement is only accepted when the workflow asked for one.
    not_asked = await rpc_error(
        service.stub.SupplementApplication(
            applications_pb2.SupplementApplicationRequest(
                application_id=theirs.application_id,
                request_id="sup-0000001",
                figures={"staff_count": 41},
            ),
            metadata=applicant_b,
        )
    )
    assert not_asked.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert service.count("application_supplement") == 0


async def test_program_versions_are_published_once_and_pinned(
    service: ApplicationsHarness,
) -> None:
    ops = service.auth(Role.OPS)
    applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    # The catalogue holds SME-CLOUD's current version (2 since issue 6); newer ones follow it.
    [sme_v1] = [rule for rule in load_catalogue() if rule.code == "SME-CLOUD"]
    base = sme_v1.version

    def version(base: common_pb2.ProgramRule, **changes: Any) -> common_pb2.ProgramRule:
        rule = common_pb2.ProgramRule()
        rule.CopyFrom(base)
        for name, value in changes.items():
            if isinstance(value, datetime):
                getattr(rule, name).CopyFrom(to_timestamp(value))
            else:
                setattr(rule, name, value)
        return rule

    async def publish(rule: common_pb2.ProgramRule) -> common_pb2.ProgramRule:
        return await service.stub.PublishProgramVersion(
            applications_pb2.PublishProgramVersionRequest(rule=rule), metadata=ops
        )

    before = service.count("program_version")
    assert await publish(sme_v1) == sme_v1  # the same version again changes nothing
    assert service.count("program_version") == before
    changed = await rpc_error(publish(version(sme_v1, name="Renamed")))
    assert changed.code() == grpc.StatusCode.ALREADY_EXISTS

    # A newer version in force now is pinned to new filings; one that opens later is not.
    sme_v2 = version(sme_v1, version=base + 1, name="SME cloud adoption subsidy, 2026 revision")
    await publish(sme_v2)
    await publish(
        version(
            sme_v2,
            version=base + 2,
            window_opens_at=datetime(2030, 1, 1, tzinfo=UTC),
            window_closes_at=datetime(2030, 12, 31, tzinfo=UTC),
        )
    )
    filed = await service.stub.SubmitApplication(submission(), metadata=applicant)
    assert filed.rule_version == base + 1
    [envelope] = decoded(service.outbox_payloads(SUBMITTED))
    assert envelope.application_submitted.rule == sme_v2

    versions = await service.stub.ListPrograms(
        applications_pb2.ListProgramsRequest(code="SME-CLOUD"), metadata=applicant
    )
    assert [p.version for p in versions.programs] == [base, base + 1, base + 2]

    # Versions only go forward; a program with no open window takes no filings.
    closed = version(
        sme_v1,
        code="OLD-PROGRAM",
        version=5,
        window_opens_at=datetime(2020, 4, 30, tzinfo=UTC),
        window_closes_at=datetime(2021, 9, 30, tzinfo=UTC),
    )
    await publish(closed)
    older = await rpc_error(publish(version(closed, version=3)))
    assert older.code() == grpc.StatusCode.FAILED_PRECONDITION
    not_open = await rpc_error(
        service.stub.SubmitApplication(
            submission("req-0000002", program="OLD-PROGRAM"), metadata=applicant
        )
    )
    assert not_open.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "OLD-PROGRAM" in (not_open.details() or "")
    assert service.count("application") == 1


async def test_stage_reports_go_to_the_outbox_once(service: ApplicationsHarness) -> None:
    applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    system = service.auth(Role.SYSTEM)
    filed = await service.stub.SubmitApplication(submission(), metadata=applicant)
    report = applications_pb2.ReportGrantStageRequest(
        event_id=f"grant-{filed.application_id}-2",
        change=applications_pb2.GrantStageChanged(
            application_id=filed.application_id,
            stage=common_pb2.GRANT_STAGE_FORMAL_CHECK,
            sequence=2,
        ),
    )
    await service.stub.ReportGrantStage(report, metadata=system)
    await service.stub.ReportGrantStage(report, metadata=system)
    [envelope] = decoded(service.outbox_payloads(STAGE_CHANGED))
    assert envelope.event_id == report.event_id
    assert envelope.subject == filed.application_id
    assert envelope.grant_stage_changed.stage == common_pb2.GRANT_STAGE_FORMAL_CHECK
    assert envelope.grant_stage_changed.program_code == "SME-CLOUD"

    unknown = applications_pb2.ReportGrantStageRequest()
    unknown.CopyFrom(report)
    unknown.event_id = "grant-unknown-2"
    unknown.change.application_id = "f" * 32
    missing = await rpc_error(service.stub.ReportGrantStage(unknown, metadata=system))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert len(service.outbox_payloads(STAGE_CHANGED)) == 1


async def test_an_over_long_stage_reason_is_cut_not_refused(service: ApplicationsHarness) -> None:
    applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    system = service.auth(Role.SYSTEM)
    filed = await service.stub.SubmitApplication(submission(), metadata=applicant)

    def rejection(sequence: int, reason: str) -> applications_pb2.ReportGrantStageRequest:
        return applications_pb2.ReportGrantStageRequest(
            event_id=f"grant-{filed.application_id}-{sequence}",
            change=applications_pb2.GrantStageChanged(
                application_id=filed.application_id,
                stage=common_pb2.GRANT_STAGE_REJECTED,
                sequence=sequence,
                reason=reason,
            ),
        )

    # The grant workflow prefixes a reviewer's reason, which may itself be 1000 characters.
    prefix = "rejected by finance: "
    long_reason = prefix + "预算不足" * 250
    await service.stub.ReportGrantStage(rejection(2, long_reason), metadata=system)
    await service.stub.ReportGrantStage(rejection(2, long_reason), metadata=system)
    exact = "x" * 1000
    await service.stub.ReportGrantStage(rejection(3, exact), metadata=system)

    cut, kept = [
        envelope.grant_stage_changed.reason
        for envelope in decoded(service.outbox_payloads(STAGE_CHANGED))
    ]
    assert len(cut) == 1000
    assert cut.endswith("…")
    assert long_reason.startswith(cut.removesuffix("…"))
    assert kept == exact


async def test_reviewers_see_only_programs_their_department_reviews(
    service: ApplicationsHarness,
) -> None:
    applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    ops = service.auth(Role.OPS)
    hr = service.auth(Role.REVIEWER, department=Department.HR)
    industry = service.auth(Role.REVIEWER, department=Department.INDUSTRY)
    finance_reviewer = service.auth(Role.REVIEWER, department=Department.FINANCE)

    # An hr program whose second version moves it to industry: both departments keep seeing it.
    [template] = [rule for rule in load_catalogue() if rule.code == "SME-CLOUD"]
    talent_v1 = common_pb2.ProgramRule()
    talent_v1.CopyFrom(template)
    talent_v1.code = "TALENT-HR"
    talent_v1.version = 1
    talent_v1.owner_department = common_pb2.DEPARTMENT_HR
    talent_v1.ClearField("review_departments")
    talent_v1.review_departments.append(common_pb2.DEPARTMENT_HR)
    talent_v1.ClearField("department_reviews")  # every department on review_working_days
    talent_v2 = common_pb2.ProgramRule()
    talent_v2.CopyFrom(talent_v1)
    talent_v2.version = 2
    talent_v2.owner_department = common_pb2.DEPARTMENT_INDUSTRY
    talent_v2.review_departments[:] = [common_pb2.DEPARTMENT_INDUSTRY]
    await service.stub.PublishProgramVersion(
        applications_pb2.PublishProgramVersionRequest(rule=talent_v1), metadata=ops
    )

    sme = await service.stub.SubmitApplication(submission(), metadata=applicant)
    talent = await service.stub.SubmitApplication(
        submission("req-0000002", program="TALENT-HR"), metadata=applicant
    )

    async def get(application_id: str, metadata: Any) -> grpc.StatusCode:
        try:
            await service.stub.GetApplication(
                applications_pb2.GetApplicationRequest(application_id=application_id),
                metadata=metadata,
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    async def listed(metadata: Any, **filters: Any) -> list[str]:
        answer = await service.stub.ListApplications(
            applications_pb2.ListApplicationsRequest(**filters), metadata=metadata
        )
        return [a.application_id for a in answer.applications]

    ok, denied = grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED
    unseen = grpc.StatusCode.NOT_FOUND  # as if the application did not exist
    both = [talent.application_id, sme.application_id]

    # SME-CLOUD is industry's and finance's: hr sees nothing of it.
    assert await get(sme.application_id, hr) == unseen
    assert await get(talent.application_id, hr) == ok
    assert await listed(hr) == [talent.application_id]
    assert await listed(hr, applicant_credit_code=ENTERPRISE_A) == [talent.application_id]
    refused = await rpc_error(
        service.stub.ListApplications(
            applications_pb2.ListApplicationsRequest(program_code="SME-CLOUD"), metadata=hr
        )
    )
    assert refused.code() == denied

    assert await get(sme.application_id, industry) == ok
    assert await get(talent.application_id, industry) == unseen
    assert await listed(industry) == [sme.application_id]
    assert await listed(industry, program_code="SME-CLOUD") == [sme.application_id]
    assert await get(sme.application_id, finance_reviewer) == ok
    assert await listed(finance_reviewer) == [sme.application_id]

    await service.stub.PublishProgramVersion(
        applications_pb2.PublishProgramVersionRequest(rule=talent_v2), metadata=ops
    )
    assert await get(talent.application_id, industry) == ok
    assert await listed(industry) == both
    assert await listed(hr) == [talent.application_id]
    assert await listed(finance_reviewer) == [sme.application_id]

    # Finance pays every program; ops and the system run them all.
    for everything in (service.auth(Role.FINANCE), ops, service.auth(Role.SYSTEM)):
        assert await listed(everything) == both
        assert await get(talent.application_id, everything) == ok


async def test_stage_reports_change_the_status_and_reach_the_broker(
    database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with applications_service(
        database_url, tmp_path, kafka_bootstrap=kafka_bootstrap
    ) as service:
        applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
        system = service.auth(Role.SYSTEM)
        filed = await service.stub.SubmitApplication(submission(), metadata=applicant)
        application_id = filed.application_id
        by_id = applications_pb2.GetApplicationRequest(application_id=application_id)

        async def report(
            sequence: int, stage: common_pb2.GrantStage.ValueType, **fields: Any
        ) -> None:
            await service.stub.ReportGrantStage(
                applications_pb2.ReportGrantStageRequest(
                    event_id=f"grant-{application_id}-{sequence}",
                    change=applications_pb2.GrantStageChanged(
                        application_id=application_id,
                        stage=stage,
                        sequence=sequence,
                        **fields,
                    ),
                ),
                metadata=system,
            )

        async def current() -> applications_pb2.Application:
            return await service.stub.GetApplication(by_id, metadata=applicant)

        # The status is the report's, at once: the report and its event commit together.
        await report(2, common_pb2.GRANT_STAGE_FORMAL_CHECK)
        assert (await current()).status == common_pb2.GRANT_STAGE_FORMAL_CHECK
        await report(4, common_pb2.GRANT_STAGE_AWAITING_SUPPLEMENT, reason="staff_count unproven")
        await report(3, common_pb2.GRANT_STAGE_IN_REVIEW)  # arrives after a newer one: stale
        now = await current()
        assert now.status == common_pb2.GRANT_STAGE_AWAITING_SUPPLEMENT
        assert now.status_reason == "staff_count unproven"
        # The stale report is still announced: other consumers order by sequence themselves.
        assert len(service.outbox_payloads(STAGE_CHANGED)) == 3

        supplement = applications_pb2.SupplementApplicationRequest(
            application_id=application_id,
            request_id="sup-0000001",
            figures={"staff_count": 41},
            documents=[common_pb2.DocumentRef(name="payroll.pdf", uri="s3://p", sha256=SHA)],
            note="payroll attached",
        )
        supplemented = await service.stub.SupplementApplication(supplement, metadata=applicant)
        assert supplemented.supplement_count == 1
        assert dict(supplemented.figures) == {
            "cloud_fee_paid_fen": 300_000,
            "staff_count": 41,
            "annual_revenue_fen": 2_000_000_000,
        }
        assert [d.name for d in supplemented.documents] == ["invoice.pdf", "payroll.pdf"]
        assert await service.stub.SupplementApplication(supplement, metadata=applicant) == (
            supplemented
        )
        changed = applications_pb2.SupplementApplicationRequest()
        changed.CopyFrom(supplement)
        changed.figures["staff_count"] = 42
        reused = await rpc_error(service.stub.SupplementApplication(changed, metadata=applicant))
        assert reused.code() == grpc.StatusCode.ALREADY_EXISTS

        await report(5, common_pb2.GRANT_STAGE_IN_REVIEW)
        await report(6, common_pb2.GRANT_STAGE_APPROVED, award_amount_fen=150_000)
        await report(
            7, common_pb2.GRANT_STAGE_IN_PAYMENT, award_amount_fen=150_000, plan_id="plan-0001"
        )
        paying = await current()
        assert paying.status == common_pb2.GRANT_STAGE_IN_PAYMENT
        assert paying.award_amount_fen == 150_000
        assert paying.plan_id == "plan-0001"
        assert paying.supplement_count == 1

        refused = await rpc_error(
            service.stub.WithdrawApplication(
                applications_pb2.WithdrawApplicationRequest(application_id=application_id),
                metadata=applicant,
            )
        )
        # While its money goes out an application cannot be withdrawn; the applicant is told why.
        assert (refused.code(), refused.details()) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "申请处于“资金拨付中”阶段，不能撤回",
        )
        late = await rpc_error(
            service.stub.SupplementApplication(
                applications_pb2.SupplementApplicationRequest(
                    application_id=application_id,
                    request_id="sup-0000002",
                    figures={"staff_count": 43},
                ),
                metadata=applicant,
            )
        )
        assert late.code() == grpc.StatusCode.FAILED_PRECONDITION

        # What other services see: the envelopes on the applications topic.
        def kinds(records: list[Record]) -> set[str]:
            return {
                events_pb2.EventEnvelope.FromString(r.value).WhichOneof("payload") or ""
                for r in records
            }

        records = await read_topic(
            service.settings,
            topic(service.settings, APPLICATIONS),
            until=lambda read: len(kinds(read)) >= 2,
            timeout_s=15,
        )
        seen: dict[str, events_pb2.EventEnvelope] = {}
        for record in records:
            envelope = events_pb2.EventEnvelope.FromString(record.value)
            assert record.key == application_id.encode()
            seen[envelope.WhichOneof("payload") or ""] = envelope
        submitted = seen["application_submitted"].application_submitted
        assert submitted.application.application_id == application_id
        assert submitted.rule.code == "SME-CLOUD"
        assert submitted.rule.version == filed.rule_version
        announced = seen["application_supplemented"].application_supplemented
        assert announced.supplement_count == 1
        assert dict(announced.figures) == dict(supplemented.figures)


async def test_an_application_the_caller_may_not_see_is_not_found_like_a_missing_one(
    service: ApplicationsHarness,
) -> None:
    owner = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
    other_enterprise = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_B)
    hr_reviewer = service.auth(Role.REVIEWER, department=Department.HR)  # SME-CLOUD is not hr's
    filed = await service.stub.SubmitApplication(submission(), metadata=owner)
    before = row_counts(service)
    missing = "0" * 32

    def get(application_id: str) -> applications_pb2.GetApplicationRequest:
        return applications_pb2.GetApplicationRequest(application_id=application_id)

    def withdraw(application_id: str) -> applications_pb2.WithdrawApplicationRequest:
        return applications_pb2.WithdrawApplicationRequest(application_id=application_id)

    def supplement(application_id: str) -> applications_pb2.SupplementApplicationRequest:
        return applications_pb2.SupplementApplicationRequest(
            application_id=application_id, request_id="sup-0000001", figures={"staff_count": 1}
        )

    async def answer(call: Awaitable[Any], application_id: str) -> tuple[grpc.StatusCode, str]:
        error = await rpc_error(call)
        # The id in the message is the caller's own; everything else must read the same.
        return error.code(), (error.details() or "").replace(application_id, "<id>")

    stub = service.stub
    for metadata in (other_enterprise, hr_reviewer):
        seen = await answer(
            stub.GetApplication(get(filed.application_id), metadata=metadata), filed.application_id
        )
        unseen = await answer(stub.GetApplication(get(missing), metadata=metadata), missing)
        assert seen == unseen
        assert seen[0] == grpc.StatusCode.NOT_FOUND
    for application_id in (filed.application_id, missing):
        assert await answer(
            stub.WithdrawApplication(withdraw(application_id), metadata=other_enterprise),
            application_id,
        ) == (grpc.StatusCode.NOT_FOUND, "application <id> not found")
        assert await answer(
            stub.SupplementApplication(supplement(application_id), metadata=other_enterprise),
            application_id,
        ) == (grpc.StatusCode.NOT_FOUND, "application <id> not found")
    assert row_counts(service) == before
    # The owner still sees it.
    mine = await stub.GetApplication(get(filed.application_id), metadata=owner)
    assert mine.application_id == filed.application_id


async def test_reads_answer_while_another_connection_holds_the_write_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'applications.db'}"
    async with applications_service(url, tmp_path) as service:
        applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE_A)
        filed = await service.stub.SubmitApplication(submission(), metadata=applicant)
        with holding_the_write_lock(url):
            # The deadline only stops a blocked read from hanging the test: a read waits for
            # no writer, so it answers long before; a read that queued for the lock does not.
            read = await service.stub.GetApplication(
                applications_pb2.GetApplicationRequest(application_id=filed.application_id),
                metadata=applicant,
                timeout=10,
            )
            listed = await service.stub.ListApplications(
                applications_pb2.ListApplicationsRequest(), metadata=applicant, timeout=10
            )
        assert read.application_id == filed.application_id
        assert [a.application_id for a in listed.applications] == [filed.application_id]
