"""ApplicationService: filing, reading, withdrawing and supplementing applications, the program
catalogue, and the grant workflow's stage reports (published through the outbox).

The status an applicant sees is written only by the projection (projection.py) after
submission; the RPCs here record requests and announce them through the outbox.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from grantflow.v1 import applications_pb2, applications_pb2_grpc, common_pb2, events_pb2
from services.applications.catalogue import program_code, validate_rule
from services.applications.store import (
    ApplicationRecord,
    ProgramVersion,
    SupplementRecord,
    application_by_id,
    document_dicts,
    program_versions,
    programs_involving,
)
from services.common import validation
from services.common.auth import Principal, current_principal
from services.common.config import Settings
from services.common.db import Database, now_utc
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.grpc_server import roles
from services.common.kafka import APPLICATIONS, GRANTS, make_envelope, topic
from services.common.outbox import OutboxEvent, enqueue
from services.common.vocabulary import NOT_WITHDRAWABLE_STAGES, GrantStage, Role

T = TypeVar("T")

SOURCE = "applications"
SERVICE_NAME = applications_pb2.DESCRIPTOR.services_by_name["ApplicationService"].full_name
EVERYONE = roles(*Role)
METHOD_ROLES: Mapping[str, frozenset[str]] = {
    "SubmitApplication": roles(Role.APPLICANT),
    "GetApplication": EVERYONE,
    "ListApplications": EVERYONE,
    "WithdrawApplication": roles(Role.APPLICANT, Role.OPS),
    "SupplementApplication": roles(Role.APPLICANT),
    "ListPrograms": EVERYONE,
    "PublishProgramVersion": roles(Role.OPS, Role.SYSTEM),
    "ReportGrantStage": roles(Role.SYSTEM),
}

MAX_NAME = 200
MAX_TITLE = 200
MAX_DESCRIPTION = 5000
MAX_REASON = 1000
ELLIPSIS = "…"
MAX_NOTE = 2000
MAX_DOCUMENTS_PER_REQUEST = 20
MAX_DOCUMENTS = 100
MAX_EVENT_ID = 64  # outbox_event.event_id
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
PAGE_TOKEN_PREFIX = "app-after:"


def _fingerprint(parts: dict[str, Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _documents(field: str, documents: Any, limit: int) -> list[dict[str, str]]:
    if len(documents) > limit:
        raise InvalidArgument(field, f"has more than {limit} documents")
    for index, document in enumerate(documents):
        validation.document(f"{field}[{index}]", document.name, document.uri, document.sha256)
    return document_dicts(documents)


def _application_id(field: str, value: str) -> str:
    return validation.identifier(field, value.strip())


def _enterprise_of(caller: Principal) -> str:
    return caller.enterprise.strip().upper()


def _check_owner(caller: Principal, record: ApplicationRecord) -> None:
    if caller.role == Role.APPLICANT and record.applicant_credit_code != _enterprise_of(caller):
        raise PermissionDenied("this application belongs to another enterprise")


def _check_reviewer_sees(session: Session, caller: Principal, record: ApplicationRecord) -> None:
    # Finance, ops and the system see every program (finance pays them all); a reviewer sees
    # only the programs its department owns or reviews.
    if caller.role == Role.REVIEWER and not programs_involving(
        session, caller.department, record.program_code
    ):
        raise PermissionDenied("your department does not review this application's program")


def _stage_reason(field: str, value: str) -> str:
    """A stage report states what already happened, so an over-long reason (a reviewer's full
    reason behind a prefix such as "rejected by finance: ") is cut to MAX_REASON characters,
    ending in an ellipsis, rather than refused; malformed text is still refused."""
    value = validation.text(field, value, max_len=len(value), required=False)
    if len(value) > MAX_REASON:
        value = value[: MAX_REASON - len(ELLIPSIS)].rstrip() + ELLIPSIS
    return value


@dataclass(frozen=True)
class _Submission:
    request_id: str
    program_code: str
    credit_code: str
    applicant_name: str
    project_title: str
    project_description: str
    figures: dict[str, int]
    documents: list[dict[str, str]]
    requested_amount_fen: int

    @classmethod
    def parse(cls, request: applications_pb2.SubmitApplicationRequest) -> _Submission:
        return cls(
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

    def fingerprint(self) -> str:
        return _fingerprint(
            {
                "program_code": self.program_code,
                "applicant_credit_code": self.credit_code,
                "applicant_name": self.applicant_name,
                "project_title": self.project_title,
                "project_description": self.project_description,
                "figures": self.figures,
                "documents": self.documents,
                "requested_amount_fen": self.requested_amount_fen,
            }
        )


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


class ApplicationServicer(applications_pb2_grpc.ApplicationServiceServicer):
    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.db = database
        self.applications_topic = topic(settings, APPLICATIONS)
        self.grants_topic = topic(settings, GRANTS)

    async def _write(self, work: Callable[[Session], T]) -> T:
        try:
            return await self.db.run(work)
        except IntegrityError:
            # A concurrent call with the same request or event id won the insert; the unit of
            # work is idempotent, so running it again finds that row and answers from it.
            return await self.db.run(work)

    # Program catalogue ----------------------------------------------------------------------

    async def PublishProgramVersion(
        self,
        request: applications_pb2.PublishProgramVersionRequest,
        context: grpc.aio.ServicerContext,
    ) -> common_pb2.ProgramRule:
        if not request.HasField("rule"):
            raise InvalidArgument("rule", "is required")
        rule = validate_rule(request.rule)

        def work(session: Session) -> common_pb2.ProgramRule:
            versions = program_versions(session, rule.code)
            for existing in versions:
                if existing.version == rule.version:
                    if existing.to_proto() != rule:
                        raise AlreadyExists(
                            f"{rule.code} version {rule.version} is already published with "
                            "different content; publish a new version instead"
                        )
                    return existing.to_proto()
            if versions and rule.version <= versions[-1].version:
                raise FailedPrecondition(
                    f"{rule.code} version {rule.version} is not newer than the published "
                    f"version {versions[-1].version}"
                )
            session.add(ProgramVersion.from_proto(rule, now_utc()))
            return rule

        return await self._write(work)

    async def ListPrograms(
        self, request: applications_pb2.ListProgramsRequest, context: grpc.aio.ServicerContext
    ) -> applications_pb2.ListProgramsResponse:
        code = request.code.strip()

        def work(session: Session) -> list[common_pb2.ProgramRule]:
            query = select(ProgramVersion)
            if code:
                query = query.where(ProgramVersion.code == code)
            query = query.order_by(col(ProgramVersion.code), col(ProgramVersion.version))
            return [row.to_proto() for row in session.exec(query).all()]

        return applications_pb2.ListProgramsResponse(programs=await self.db.run_read(work))

    # Applications ---------------------------------------------------------------------------

    async def SubmitApplication(
        self,
        request: applications_pb2.SubmitApplicationRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.Application:
        caller = current_principal()
        submission = _Submission.parse(request)
        if submission.credit_code != _enterprise_of(caller):
            raise PermissionDenied("an enterprise may only file applications in its own name")
        fingerprint = submission.fingerprint()

        def work(session: Session) -> applications_pb2.Application:
            versions = program_versions(session, submission.program_code)
            if not versions:
                raise InvalidArgument("program_code", "unknown program")
            existing = session.exec(
                select(ApplicationRecord)
                .where(ApplicationRecord.applicant_credit_code == submission.credit_code)
                .where(ApplicationRecord.request_id == submission.request_id)
            ).first()
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise AlreadyExists(
                        f"request_id {submission.request_id} was already used for a different "
                        "application"
                    )
                return existing.to_proto()

            now = now_utc()
            open_versions = [version for version in versions if version.is_open(now)]
            if not open_versions:
                raise FailedPrecondition(
                    f"program {submission.program_code} is not open for applications now"
                )
            pinned = max(open_versions, key=lambda version: version.version)
            application_id = uuid.uuid4().hex
            record = ApplicationRecord(
                application_id=application_id,
                request_id=submission.request_id,
                request_fingerprint=fingerprint,
                program_code=submission.program_code,
                rule_version=pinned.version,
                applicant_credit_code=submission.credit_code,
                applicant_name=submission.applicant_name,
                project_title=submission.project_title,
                project_description=submission.project_description,
                figures=submission.figures,
                documents=submission.documents,
                requested_amount_fen=submission.requested_amount_fen,
                status=GrantStage.SUBMITTED.to_proto(),
                workflow_id=f"grant-{application_id}",
                submitted_at=now,
                updated_at=now,
            )
            session.add(record)
            application = record.to_proto()
            enqueue(
                session,
                self.applications_topic,
                make_envelope(
                    SOURCE,
                    application_id,
                    events_pb2.ApplicationSubmitted(
                        application=application, rule=pinned.to_proto()
                    ),
                    event_id=f"application-submitted-{application_id}",
                    occurred_at=now,
                ),
            )
            return application

        return await self._write(work)

    async def GetApplication(
        self, request: applications_pb2.GetApplicationRequest, context: grpc.aio.ServicerContext
    ) -> applications_pb2.Application:
        caller = current_principal()
        application_id = _application_id("application_id", request.application_id)

        def work(session: Session) -> applications_pb2.Application:
            record = application_by_id(session, application_id)
            if record is None:
                raise NotFound(f"application {application_id} not found")
            _check_owner(caller, record)
            _check_reviewer_sees(session, caller, record)
            return record.to_proto()

        return await self.db.run_read(work)

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
        status = validation.optional_term("status", GrantStage, request.status)
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after_id = _decode_page_token(request.page_token)

        def work(session: Session) -> applications_pb2.ListApplicationsResponse:
            query = select(ApplicationRecord)
            if caller.role == Role.APPLICANT:
                # Whatever it asks for, an applicant sees only its own enterprise's filings.
                query = query.where(
                    ApplicationRecord.applicant_credit_code == _enterprise_of(caller)
                )
            if caller.role == Role.REVIEWER:
                visible = programs_involving(session, caller.department)
                if program_filter and program_filter not in visible:
                    raise PermissionDenied(
                        f"your department does not review program {program_filter}"
                    )
                query = query.where(col(ApplicationRecord.program_code).in_(sorted(visible)))
            if credit_filter:
                query = query.where(ApplicationRecord.applicant_credit_code == credit_filter)
            if program_filter:
                query = query.where(ApplicationRecord.program_code == program_filter)
            if status is not None:
                query = query.where(ApplicationRecord.status == status.to_proto())
            if after_id is not None:
                query = query.where(col(ApplicationRecord.id) < after_id)
            rows = session.exec(
                query.order_by(col(ApplicationRecord.id).desc()).limit(page_size + 1)
            ).all()
            page = rows[:page_size]
            next_token = _encode_page_token(int(page[-1].id or 0)) if len(rows) > page_size else ""
            return applications_pb2.ListApplicationsResponse(
                applications=[row.to_proto() for row in page], next_page_token=next_token
            )

        return await self.db.run_read(work)

    async def WithdrawApplication(
        self,
        request: applications_pb2.WithdrawApplicationRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.Application:
        caller = current_principal()
        application_id = _application_id("application_id", request.application_id)
        reason = validation.text("reason", request.reason, max_len=MAX_REASON, required=False)

        def work(session: Session) -> applications_pb2.Application:
            record = application_by_id(session, application_id, for_update=True)
            if record is None:
                raise NotFound(f"application {application_id} not found")
            _check_owner(caller, record)
            if record.withdrawal_requested_at is not None:
                return record.to_proto()
            stage = GrantStage.from_proto(record.status)
            if stage in NOT_WITHDRAWABLE_STAGES:
                raise FailedPrecondition(f"application {application_id} is {stage}")
            now = now_utc()
            record.withdrawal_requested_at = now
            record.withdrawal_reason = reason
            record.withdrawn_by = caller.subject
            record.updated_at = now
            session.add(record)
            enqueue(
                session,
                self.applications_topic,
                make_envelope(
                    SOURCE,
                    application_id,
                    events_pb2.ApplicationWithdrawn(
                        application_id=application_id, reason=reason, withdrawn_by=caller.subject
                    ),
                    event_id=f"application-withdrawn-{application_id}",
                    occurred_at=now,
                ),
            )
            return record.to_proto()

        return await self._write(work)

    async def SupplementApplication(
        self,
        request: applications_pb2.SupplementApplicationRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.Application:
        caller = current_principal()
        application_id = _application_id("application_id", request.application_id)
        request_id = validation.request_id("request_id", request.request_id)
        figures = validation.figures("figures", dict(request.figures))
        documents = _documents("documents", request.documents, MAX_DOCUMENTS_PER_REQUEST)
        note = validation.text("note", request.note, max_len=MAX_NOTE, required=False)
        if not figures and not documents and not note:
            raise InvalidArgument("figures", "a supplement needs figures, documents or a note")
        fingerprint = _fingerprint({"figures": figures, "documents": documents, "note": note})

        def work(session: Session) -> applications_pb2.Application:
            record = application_by_id(session, application_id, for_update=True)
            if record is None:
                raise NotFound(f"application {application_id} not found")
            _check_owner(caller, record)
            earlier = session.exec(
                select(SupplementRecord)
                .where(SupplementRecord.application_id == application_id)
                .where(SupplementRecord.request_id == request_id)
            ).first()
            if earlier is not None:
                if earlier.request_fingerprint != fingerprint:
                    raise AlreadyExists(
                        f"request_id {request_id} was already used for a different supplement"
                    )
                return record.to_proto()
            if record.withdrawal_requested_at is not None:
                raise FailedPrecondition(f"application {application_id} is being withdrawn")
            stage = GrantStage.from_proto(record.status)
            if stage != GrantStage.AWAITING_SUPPLEMENT:
                raise FailedPrecondition(
                    f"application {application_id} is {stage}, not awaiting a supplement"
                )
            if len(record.documents) + len(documents) > MAX_DOCUMENTS:
                raise InvalidArgument(
                    "documents", f"an application may hold at most {MAX_DOCUMENTS} documents"
                )
            now = now_utc()
            record.figures = {**record.figures, **figures}
            record.documents = [*record.documents, *documents]
            record.supplement_count += 1
            record.updated_at = now
            session.add(record)
            session.add(
                SupplementRecord(
                    application_id=application_id,
                    request_id=request_id,
                    request_fingerprint=fingerprint,
                    number=record.supplement_count,
                    note=note,
                    created_at=now,
                )
            )
            enqueue(
                session,
                self.applications_topic,
                make_envelope(
                    SOURCE,
                    application_id,
                    events_pb2.ApplicationSupplemented(
                        application_id=application_id,
                        figures=record.figures,
                        supplement_count=record.supplement_count,
                        note=note,
                    ),
                    event_id=f"application-supplemented-{application_id}-{record.supplement_count}",
                    occurred_at=now,
                ),
            )
            return record.to_proto()

        return await self._write(work)

    # Grant workflow reports -----------------------------------------------------------------

    async def ReportGrantStage(
        self,
        request: applications_pb2.ReportGrantStageRequest,
        context: grpc.aio.ServicerContext,
    ) -> applications_pb2.ReportGrantStageResponse:
        event_id = validation.identifier("event_id", request.event_id)
        if len(event_id) > MAX_EVENT_ID:
            raise InvalidArgument("event_id", f"is longer than {MAX_EVENT_ID} characters")
        if not request.HasField("change"):
            raise InvalidArgument("change", "is required")
        change = applications_pb2.GrantStageChanged()
        change.CopyFrom(request.change)
        application_id = _application_id("change.application_id", change.application_id)
        validation.term("change.stage", GrantStage, change.stage)
        if change.sequence < 1:
            raise InvalidArgument("change.sequence", "must be at least 1")
        validation.fen("change.award_amount_fen", change.award_amount_fen)
        change.reason = _stage_reason("change.reason", change.reason)
        if change.plan_id:
            validation.identifier("change.plan_id", change.plan_id)
            if len(change.plan_id) > 64:
                raise InvalidArgument("change.plan_id", "is longer than 64 characters")
        if change.program_code:
            program_code("change.program_code", change.program_code)
        change.application_id = application_id

        def work(session: Session) -> None:
            seen = session.exec(
                select(OutboxEvent.id).where(OutboxEvent.event_id == event_id)
            ).first()
            if seen is not None:
                return
            record = application_by_id(session, application_id)
            if record is None:
                raise NotFound(f"application {application_id} not found")
            if change.program_code and change.program_code != record.program_code:
                raise InvalidArgument(
                    "change.program_code",
                    f"does not match the application's program {record.program_code}",
                )
            change.program_code = record.program_code
            enqueue(
                session,
                self.grants_topic,
                make_envelope(SOURCE, application_id, change, event_id=event_id),
            )

        await self._write(work)
        return applications_pb2.ReportGrantStageResponse()
