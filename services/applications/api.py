"""ApplicationServicer: the gRPC face of filing, reading, withdrawing and supplementing
applications, the program catalogue, and the grant workflow's stage reports.

Each method checks its whole request (INVALID_ARGUMENT naming the field, before anything is
touched), turns it into a command, runs the use case (use_cases.py, where the rules live) and
converts the answer. Who may call what is the role table of SERVICE.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import grpc

from grantflow.v1 import applications_pb2, applications_pb2_grpc, common_pb2
from services.applications import commands
from services.applications.catalogue import program_code, validate_rule
from services.applications.store import document_dicts
from services.applications.use_cases import Applications
from services.common import validation
from services.common.auth import current_principal
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
    },
)

MAX_NAME = 200
MAX_TITLE = 200
MAX_DESCRIPTION = 5000
MAX_REASON = 1000
MAX_NOTE = 2000
MAX_DOCUMENTS_PER_REQUEST = 20
MAX_EVENT_ID = 64  # outbox_event.event_id
MAX_PLAN_ID = 64  # application.plan_id
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
PAGE_TOKEN_PREFIX = "app-after:"


def _documents(field: str, documents: Any, limit: int) -> list[dict[str, str]]:
    if len(documents) > limit:
        raise InvalidArgument(field, f"has more than {limit} documents")
    for index, document in enumerate(documents):
        validation.document(f"{field}[{index}]", document.name, document.uri, document.sha256)
    return document_dicts(documents)


def _application_id(field: str, value: str) -> str:
    return validation.identifier(field, value.strip())


def _encode_page_token(after_id: int) -> str:
    return base64.urlsafe_b64encode(f"{PAGE_TOKEN_PREFIX}{after_id}".encode()).decode()


def _decode_page_token(token: str) -> int | None:
    if not token:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        if decoded.startswith(PAGE_TOKEN_PREFIX):
            return int(decoded.removeprefix(PAGE_TOKEN_PREFIX))
    except (ValueError, UnicodeError, binascii.Error):
        pass
    raise InvalidArgument("page_token", "is not a page token this service issued")


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
    def __init__(self, applications: Applications) -> None:
        self.applications = applications

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
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        query = commands.ApplicationsQuery(
            caller=caller,
            credit_code=credit_filter,
            program_code=program_filter,
            stage=stage,
            page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            after_id=_decode_page_token(request.page_token),
        )
        page = await self.applications.applications(query)
        last = page.applications[-1] if page.applications else None
        return applications_pb2.ListApplicationsResponse(
            applications=[record.to_proto() for record in page.applications],
            next_page_token=_encode_page_token(int(last.id or 0)) if page.more and last else "",
        )

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
