"""ApplicationServicer: the gRPC face of filing, reading, withdrawing and supplementing
applications, the program catalogue, and the grant workflow's stage reports.

Each method checks its whole request (INVALID_ARGUMENT naming the field, before anything is
touched), turns it into a command, runs the use case (use_cases.py, where the rules live) and
converts the answer. Who may call what is the role table of SERVICE.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import grpc

from grantflow.v1 import applications_pb2, applications_pb2_grpc, common_pb2
from services.applications import commands
from services.applications.catalogue import program_code, validate_rule
from services.applications.eligibility_use_cases import Eligibility
from services.applications.store import document_dicts
from services.applications.use_cases import Applications
from services.common import validation
from services.common.auth import current_principal
from services.common.db import from_timestamp, to_timestamp
from services.common.errors import InvalidArgument
from services.common.service_main import ServiceSpec
from services.common.vocabulary import GrantStage, Role

SERVICE = ServiceSpec(
    name="applications",
    descriptor=applications_pb2.DESCRIPTOR.services_by_name["ApplicationService"],
    roles={
        "SubmitApplication": (Role.APPLICANT,),
        "GetApplication": tuple(Role),
        "ListApplications": tuple(Role),
        "WithdrawApplication": (Role.APPLICANT, Role.OPS),
        "SupplementApplication": (Role.APPLICANT,),
        "ListPrograms": tuple(Role),
        "PublishProgramVersion": (Role.OPS, Role.SYSTEM),
        "ReportGrantStage": (Role.SYSTEM,),
        "CheckEligibility": (Role.SYSTEM,),
        # SYSTEM: a clawback's credit bar (workflows/clawback.py), with the clawback as request.
        "AddCreditListEntry": (Role.OPS, Role.SYSTEM),
        "ListCreditListEntries": (Role.OPS,),
        "SummarizeApplications": (Role.OPS,),
        # The owner department's reviewers and heads (their department checked by the use
        # case), and finance, which pays the instalments.
        "ConfirmMilestone": (Role.REVIEWER, Role.DEPARTMENT_HEAD, Role.FINANCE),
    },
)

MAX_NAME = 200
MAX_TITLE = 200
MAX_DESCRIPTION = 5000
MAX_REASON = 1000
MAX_NOTE = 2000
MAX_MILESTONE_NOTE = 500  # the disbursement service's instalment.note
MAX_INSTALMENTS = 3  # workflows/rules.py MAX_INSTALMENTS
MAX_DOCUMENTS_PER_REQUEST = 20
MAX_EVENT_ID = 64  # outbox_event.event_id
MAX_PLAN_ID = 64  # application.plan_id
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
PAGE_TOKEN_PREFIX = "app-after:"
CREDIT_PAGE_TOKEN_PREFIX = "credit-after:"
DEFAULT_CREDIT_PAGE_SIZE = 100
MAX_CREDIT_PAGE_SIZE = 1000
MAX_LIST_NAME = 100
MAX_SOURCE = 200
# An application id (32 lowercase hex digits) or its first characters.
APPLICATION_ID_PREFIX = re.compile(r"^[0-9a-f]{1,32}$")
BEIJING = timezone(timedelta(hours=8))
SUMMARY_DAYS = 30  # the overview's chart: the days submitted, by default the last 30
# A project's own code (备案号 and the like): letters, digits and the separators they use.
PROJECT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,63}$")


def _documents(field: str, documents: Any, limit: int) -> list[dict[str, str]]:
    if len(documents) > limit:
        raise InvalidArgument(field, f"has more than {limit} documents")
    for index, document in enumerate(documents):
        validation.document(f"{field}[{index}]", document.name, document.uri, document.sha256)
    return document_dicts(documents)


def _application_id(field: str, value: str) -> str:
    return validation.identifier(field, value.strip())


def _encode_page_token(after_id: int, prefix: str = PAGE_TOKEN_PREFIX) -> str:
    return base64.urlsafe_b64encode(f"{prefix}{after_id}".encode()).decode()


def _decode_page_token(token: str, prefix: str = PAGE_TOKEN_PREFIX) -> int | None:
    if not token:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        if decoded.startswith(prefix):
            return int(decoded.removeprefix(prefix))
    except (ValueError, UnicodeError, binascii.Error):
        pass
    raise InvalidArgument("page_token", "is not a page token this service issued")


def _project_code(field: str, value: str) -> str:
    value = value.strip()
    if value and not PROJECT_CODE.match(value):
        raise InvalidArgument(
            field, "must be 1-64 characters: letters, digits and _ . : / - (not first)"
        )
    return value


def _stage_change(
    request: applications_pb2.ReportGrantStageRequest,
) -> applications_pb2.GrantStageChanged:
    if not request.HasField("change"):
        raise InvalidArgument("change", "is required")
    change = applications_pb2.GrantStageChanged()
    change.CopyFrom(request.change)
    change.application_id = _application_id("change.application_id", change.application_id)
    validation.term("change.stage", GrantStage, change.stage)
    if change.sequence < 1:
        raise InvalidArgument("change.sequence", "must be at least 1")
    validation.fen("change.award_amount_fen", change.award_amount_fen)
    change.reason = validation.reason("change.reason", change.reason, max_len=MAX_REASON)
    if change.plan_id:
        validation.identifier("change.plan_id", change.plan_id)
        if len(change.plan_id) > MAX_PLAN_ID:
            raise InvalidArgument("change.plan_id", f"is longer than {MAX_PLAN_ID} characters")
    if change.program_code:
        program_code("change.program_code", change.program_code)
    return change


class ApplicationServicer(applications_pb2_grpc.ApplicationServiceServicer):
    def __init__(self, applications: Applications, eligibility: Eligibility) -> None:
        self.applications = applications
        self.eligibility = eligibility

    # Program catalogue ----------------------------------------------------------------------

    async def PublishProgramVersion(
        self,
        request: applications_pb2.PublishProgramVersionRequest,
        context: grpc.aio.ServicerContext,
    ) -> common_pb2.ProgramRule:
        if not request.HasField("rule"):
            raise InvalidArgument("rule", "is required")
        command = commands.PublishProgramVersion(rule=validate_rule(request.rule))
        return await self.applications.publish_program_version(command)

    async def ListPrograms(
        self, request: applications_pb2.ListProgramsRequest, context: grpc.aio.ServicerContext
    ) -> applications_pb2.ListProgramsResponse:
        programs = await self.applications.programs(request.code.strip())
        return applications_pb2.ListProgramsResponse(programs=programs)

    # Applications ---------------------------------------------------------------------------

    async def SubmitApplication(
        self,
        request: applications_pb2.SubmitApplicationRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.Application:
        command = commands.Submit(
            caller=current_principal(),
            request_id=validation.request_id("request_id", request.request_id),
            program_code=program_code("program_code", request.program_code),
            credit_code=validation.credit_code(
                "applicant_credit_code", request.applicant_credit_code
            ),
            applicant_name=validation.text(
                "applicant_name", request.applicant_name, max_len=MAX_NAME
            ),
            project_title=validation.text(
                "project_title", request.project_title, max_len=MAX_TITLE
            ),
            project_description=validation.text(
                "project_description",
                request.project_description,
                max_len=MAX_DESCRIPTION,
                required=False,
            ),
            figures=validation.figures("figures", dict(request.figures)),
            documents=_documents("documents", request.documents, MAX_DOCUMENTS_PER_REQUEST),
            requested_amount_fen=validation.fen(
                "requested_amount_fen", request.requested_amount_fen
            ),
            project_code=_project_code("project_code", request.project_code),
        )
        return await self.applications.submit(command)

    async def GetApplication(
        self, request: applications_pb2.GetApplicationRequest, context: grpc.aio.ServicerContext
    ) -> applications_pb2.Application:
        application_id = _application_id("application_id", request.application_id)
        return await self.applications.application(current_principal(), application_id)

    async def ListApplications(
        self,
        request: applications_pb2.ListApplicationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.ListApplicationsResponse:
        caller = current_principal()
        credit_filter = (
            validation.credit_code("applicant_credit_code", request.applicant_credit_code)
            if request.applicant_credit_code.strip()
            else ""
        )
        program_filter = (
            program_code("program_code", request.program_code)
            if request.program_code.strip()
            else ""
        )
        stage = validation.optional_term("status", GrantStage, request.status)
        id_prefix = request.application_id_prefix.strip().lower()
        if id_prefix and not APPLICATION_ID_PREFIX.match(id_prefix):
            raise InvalidArgument(
                "application_id_prefix", "must be 1-32 hex digits: an application id or its start"
            )
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        query = commands.ApplicationsQuery(
            caller=caller,
            credit_code=credit_filter,
            program_code=program_filter,
            stage=stage,
            page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            after_id=_decode_page_token(request.page_token),
            id_prefix=id_prefix,
            updated_before=(
                from_timestamp(request.updated_before)
                if request.HasField("updated_before")
                else None
            ),
            open_only=request.open_only,
        )
        page = await self.applications.applications(query)
        last = page.applications[-1] if page.applications else None
        return applications_pb2.ListApplicationsResponse(
            applications=[record.to_proto() for record in page.applications],
            next_page_token=_encode_page_token(int(last.id or 0)) if page.more and last else "",
        )

    async def SummarizeApplications(
        self,
        request: applications_pb2.SummarizeApplicationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.ApplicationsSummary:
        since_day = request.since_day.strip()
        if since_day:
            try:
                since = datetime.strptime(since_day, "%Y-%m-%d").replace(tzinfo=BEIJING)
            except ValueError:
                raise InvalidArgument("since_day", "must be a day, YYYY-MM-DD") from None
        else:
            today = datetime.now(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
            since = today - timedelta(days=SUMMARY_DAYS - 1)
        command = commands.SummarizeApplications(
            stuck_before=(
                from_timestamp(request.stuck_before) if request.HasField("stuck_before") else None
            ),
            since=since.astimezone(UTC),
        )
        return await self.applications.summary(command)

    async def WithdrawApplication(
        self,
        request: applications_pb2.WithdrawApplicationRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.Application:
        command = commands.Withdraw(
            caller=current_principal(),
            application_id=_application_id("application_id", request.application_id),
            reason=validation.text("reason", request.reason, max_len=MAX_REASON, required=False),
        )
        return await self.applications.withdraw(command)

    async def ConfirmMilestone(
        self,
        request: applications_pb2.ConfirmMilestoneRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.MilestoneConfirmation:
        if not 2 <= request.instalment <= MAX_INSTALMENTS:
            raise InvalidArgument(
                "instalment",
                f"must be between 2 and {MAX_INSTALMENTS} (instalment 1 is paid with the award)",
            )
        command = commands.ConfirmMilestone(
            caller=current_principal(),
            application_id=_application_id("application_id", request.application_id),
            instalment=request.instalment,
            note=validation.text("note", request.note, max_len=MAX_MILESTONE_NOTE, required=False),
        )
        answer = await self.applications.confirm_milestone(command)
        return applications_pb2.MilestoneConfirmation(
            application_id=command.application_id,
            instalment=answer.instalment,
            of=answer.of,
            milestone=answer.milestone,
            confirmed_by=answer.confirmed_by,
            note=answer.note,
            confirmed_at=to_timestamp(answer.confirmed_at),
            due_at=to_timestamp(answer.due_at),
            late=answer.late,
            repeated=answer.repeated,
            stage=(
                GrantStage.parse(answer.stage).to_proto()
                if answer.stage
                else common_pb2.GRANT_STAGE_UNSPECIFIED
            ),
        )

    async def SupplementApplication(
        self,
        request: applications_pb2.SupplementApplicationRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.Application:
        command = commands.Supplement(
            caller=current_principal(),
            application_id=_application_id("application_id", request.application_id),
            request_id=validation.request_id("request_id", request.request_id),
            figures=validation.figures("figures", dict(request.figures)),
            documents=_documents("documents", request.documents, MAX_DOCUMENTS_PER_REQUEST),
            note=validation.text("note", request.note, max_len=MAX_NOTE, required=False),
        )
        if not command.figures and not command.documents and not command.note:
            raise InvalidArgument("figures", "a supplement needs figures, documents or a note")
        return await self.applications.supplement(command)

    # Grant workflow reports -----------------------------------------------------------------

    async def ReportGrantStage(
        self,
        request: applications_pb2.ReportGrantStageRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.ReportGrantStageResponse:
        event_id = validation.identifier("event_id", request.event_id)
        if len(event_id) > MAX_EVENT_ID:
            raise InvalidArgument("event_id", f"is longer than {MAX_EVENT_ID} characters")
        command = commands.ReportStage(event_id=event_id, change=_stage_change(request))
        await self.applications.report_stage(command)
        return applications_pb2.ReportGrantStageResponse()

    # Eligibility and the credit list --------------------------------------------------------

    async def CheckEligibility(
        self,
        request: applications_pb2.CheckEligibilityRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.CheckEligibilityResponse:
        application_id = _application_id("application_id", request.application_id)
        return await self.eligibility.check(commands.CheckEligibility(application_id))

    async def AddCreditListEntry(
        self,
        request: applications_pb2.AddCreditListEntryRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.CreditListEntry:
        if not request.HasField("valid_from"):
            raise InvalidArgument("valid_from", "is required")
        valid_from = from_timestamp(request.valid_from)
        valid_until = None
        if request.HasField("valid_until"):
            valid_until = from_timestamp(request.valid_until)
            if valid_until <= valid_from:
                raise InvalidArgument("valid_until", "must be after valid_from")
        command = commands.AddCreditListEntry(
            caller=current_principal(),
            request_id=validation.request_id("request_id", request.request_id),
            credit_code=validation.credit_code("credit_code", request.credit_code),
            list_name=validation.text("list_name", request.list_name, max_len=MAX_LIST_NAME),
            reason=validation.text("reason", request.reason, max_len=MAX_REASON),
            source=validation.text("source", request.source, max_len=MAX_SOURCE, required=False),
            valid_from=valid_from,
            valid_until=valid_until,
        )
        return await self.eligibility.add_credit_entry(command)

    async def ListCreditListEntries(
        self,
        request: applications_pb2.ListCreditListEntriesRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.ListCreditListEntriesResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        query = commands.CreditListQuery(
            credit_code=(
                validation.credit_code("credit_code", request.credit_code)
                if request.credit_code.strip()
                else ""
            ),
            valid_at=from_timestamp(request.valid_at) if request.HasField("valid_at") else None,
            page_size=min(request.page_size or DEFAULT_CREDIT_PAGE_SIZE, MAX_CREDIT_PAGE_SIZE),
            before_id=_decode_page_token(request.page_token, CREDIT_PAGE_TOKEN_PREFIX),
        )
        page = await self.eligibility.credit_entries(query)
        last = page.entries[-1] if page.entries else None
        return applications_pb2.ListCreditListEntriesResponse(
            entries=[entry.to_proto() for entry in page.entries],
            next_page_token=(
                _encode_page_token(int(last.id or 0), CREDIT_PAGE_TOKEN_PREFIX)
                if page.more and last
                else ""
            ),
        )
