"""NoticeServicer: the gRPC face of the public notices and objections (grantflow.v1.NoticeService),
served by the review service beside ReviewService (a Companion over the same database).

Each method checks its whole request (INVALID_ARGUMENT naming the field, before anything is
touched), turns it into a command, runs the use case (notices.py) and converts the answer. Who
may call what is the role table of SERVICE: the notices are PUBLIC (no token needed), lodging
needs any identified caller, deciding a reviewer.
"""

from __future__ import annotations

from datetime import datetime

import grpc

from grantflow.v1 import notice_pb2, notice_pb2_grpc
from services.common import validation
from services.common.auth import PUBLIC, current_principal
from services.common.db import from_timestamp, now_utc
from services.common.errors import InvalidArgument
from services.common.service_main import Companion, ServiceSpec
from services.common.unit_of_work import Transactions
from services.common.vocabulary import Department, ObjectionConsequence, ObjectionKind, Role
from services.review import notice_commands as commands
from services.review import notice_store
from services.review.notices import (
    Notices,
    ObjectionUpdates,
    PublicNotice,
    may_see_objector,
)

# Anyone identified: every role a token may carry but Grantflow's own processes'.
IDENTIFIED = tuple(role for role in Role if role != Role.SYSTEM)

SERVICE = ServiceSpec(
    name="notice",
    descriptor=notice_pb2.DESCRIPTOR.services_by_name["NoticeService"],
    roles={
        "PublishNotice": (Role.SYSTEM,),
        "ListNotices": (PUBLIC,),
        "GetNotice": (PUBLIC,),
        "LodgeObjection": IDENTIFIED,
        "ListObjections": (Role.REVIEWER, Role.OPS),
        # Reviewers and ops; the objector too (the use case answers NOT_FOUND to anyone else).
        "GetObjection": IDENTIFIED,
        "DecideObjection": (Role.REVIEWER,),
    },
)

MAX_ENTRIES = 5000
MAX_BATCH_NUMBER = 10_000
MAX_NAME = 200
MAX_TITLE = 300
MAX_TEXT = 2000
MAX_CONTACT = 200
MAX_REASON = 1000
DEFAULT_NOTICE_PAGE = 20
MAX_NOTICE_PAGE = 100
DEFAULT_OBJECTION_PAGE = 50
MAX_OBJECTION_PAGE = 500


def _time(field: str, request: notice_pb2.PublishNoticeRequest) -> datetime:
    if not request.HasField(field):  # type: ignore[arg-type]
        raise InvalidArgument(field, "is required")
    try:
        return from_timestamp(getattr(request, field))
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(field, "is not a valid time") from exc


def _entries(request: notice_pb2.PublishNoticeRequest) -> tuple[commands.NoticeEntry, ...]:
    entries = []
    for field, application_id, entry in validation.award_entries(
        request.entries, limit=MAX_ENTRIES, within="notice"
    ):
        entries.append(
            commands.NoticeEntry(
                application_id=application_id,
                applicant_name=validation.text(
                    f"{field}.applicant_name", entry.applicant_name, max_len=MAX_NAME
                ),
                project_title=validation.text(
                    f"{field}.project_title", entry.project_title, max_len=MAX_TITLE
                ),
                amount_fen=validation.fen(f"{field}.amount_fen", entry.amount_fen, required=True),
                applicant_credit_code=validation.credit_code(
                    f"{field}.applicant_credit_code", entry.applicant_credit_code
                ),
            )
        )
    return tuple(entries)


def _page_size(value: int, default: int, maximum: int) -> int:
    if value < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(value or default, maximum)


def notice_answer(found: PublicNotice) -> notice_pb2.Notice:
    return notice_store.notice_pb(found.notice, found.entries, now_utc())


class NoticeServicer(notice_pb2_grpc.NoticeServiceServicer):
    def __init__(self, notices: Notices) -> None:
        self.notices = notices

    # Publishing (the batcher) ------------------------------------------------------------------

    async def PublishNotice(
        self, request: notice_pb2.PublishNoticeRequest, context: grpc.aio.ServicerContext
    ) -> notice_pb2.Notice:
        batch_id = validation.identifier("batch_id", request.batch_id)
        program_code = validation.identifier("program_code", request.program_code)
        if not 1 <= request.batch_number <= MAX_BATCH_NUMBER:
            raise InvalidArgument("batch_number", f"must be between 1 and {MAX_BATCH_NUMBER}")
        owner = validation.term("owner_department", Department, request.owner_department)
        entries = _entries(request)
        opens_at, closes_at = _time("opens_at", request), _time("closes_at", request)
        if closes_at <= opens_at:
            raise InvalidArgument("closes_at", "must be after opens_at")
        command = commands.PublishNotice(
            batch_id=batch_id,
            program_code=program_code,
            batch_number=request.batch_number,
            owner_department=owner,
            entries=entries,
            opens_at=opens_at,
            closes_at=closes_at,
        )
        return notice_answer(await self.notices.publish(command))

    # Reading (anyone) ----------------------------------------------------------------------------

    async def ListNotices(
        self, request: notice_pb2.ListNoticesRequest, context: grpc.aio.ServicerContext
    ) -> notice_pb2.ListNoticesResponse:
        program_code = (
            validation.identifier("program_code", request.program_code)
            if request.program_code
            else ""
        )
        query = notice_store.NoticeQuery(
            program_code=program_code,
            page_size=_page_size(request.page_size, DEFAULT_NOTICE_PAGE, MAX_NOTICE_PAGE),
            after=(
                notice_store.parse_page_token(request.page_token) if request.page_token else None
            ),
        )
        page = await self.notices.notices(query, open_only=request.open_only)
        last = page.notices[-1].notice if page.notices else None
        return notice_pb2.ListNoticesResponse(
            notices=[notice_answer(found) for found in page.notices],
            next_page_token=(
                notice_store.page_token(last.published_at, last.batch_id)
                if page.more and last is not None
                else ""
            ),
        )

    async def GetNotice(
        self, request: notice_pb2.GetNoticeRequest, context: grpc.aio.ServicerContext
    ) -> notice_pb2.Notice:
        batch_id = validation.identifier("batch_id", request.batch_id)
        return notice_answer(await self.notices.notice(batch_id))

    # Objections -----------------------------------------------------------------------------------

    async def LodgeObjection(
        self, request: notice_pb2.LodgeObjectionRequest, context: grpc.aio.ServicerContext
    ) -> notice_pb2.Objection:
        caller = current_principal()
        command = commands.LodgeObjection(
            caller=caller,
            request_id=validation.request_id("request_id", request.request_id),
            batch_id=validation.identifier("batch_id", request.batch_id),
            application_id=validation.identifier("application_id", request.application_id),
            kind=validation.term("kind", ObjectionKind, request.kind),
            text=validation.text("text", request.text, max_len=MAX_TEXT),
            contact=validation.text("contact", request.contact, max_len=MAX_CONTACT),
        )
        row = await self.notices.lodge(command)
        return notice_store.objection_pb(row, show_objector=True)  # the objector himself

    async def ListObjections(
        self, request: notice_pb2.ListObjectionsRequest, context: grpc.aio.ServicerContext
    ) -> notice_pb2.ListObjectionsResponse:
        caller = current_principal()
        query = notice_store.ObjectionQuery(
            application_id=(
                validation.identifier("application_id", request.application_id)
                if request.application_id
                else ""
            ),
            batch_id=validation.identifier("batch_id", request.batch_id)
            if request.batch_id
            else "",
            open_only=request.open_only,
            page_size=_page_size(request.page_size, DEFAULT_OBJECTION_PAGE, MAX_OBJECTION_PAGE),
            after=(
                notice_store.parse_page_token(request.page_token) if request.page_token else None
            ),
        )
        page = await self.notices.objections(query)
        last = page.objections[-1] if page.objections else None
        return notice_pb2.ListObjectionsResponse(
            objections=[
                notice_store.objection_pb(row, show_objector=may_see_objector(caller, row))
                for row in page.objections
            ],
            next_page_token=(
                notice_store.page_token(last.lodged_at, last.objection_id)
                if page.more and last is not None
                else ""
            ),
        )

    async def GetObjection(
        self, request: notice_pb2.GetObjectionRequest, context: grpc.aio.ServicerContext
    ) -> notice_pb2.Objection:
        caller = current_principal()
        objection_id = validation.identifier("objection_id", request.objection_id)
        row = await self.notices.objection(caller, objection_id)
        return notice_store.objection_pb(row, show_objector=may_see_objector(caller, row))

    async def DecideObjection(
        self, request: notice_pb2.DecideObjectionRequest, context: grpc.aio.ServicerContext
    ) -> notice_pb2.Objection:
        caller = current_principal()
        objection_id = validation.identifier("objection_id", request.objection_id)
        consequence = validation.optional_term(
            "consequence", ObjectionConsequence, request.consequence
        )
        if request.upheld and consequence is None:
            raise InvalidArgument("consequence", "an upheld objection needs FALL_AWAY or RE_REVIEW")
        if not request.upheld and consequence is not None:
            raise InvalidArgument("consequence", "applies only to an upheld objection")
        command = commands.DecideObjection(
            caller=caller,
            objection_id=objection_id,
            upheld=request.upheld,
            consequence=consequence,
            reason=validation.text("reason", request.reason, max_len=MAX_REASON),
        )
        row = await self.notices.decide(command)
        return notice_store.objection_pb(row, show_objector=may_see_objector(caller, row))


def notice_service(transactions: Transactions, workflows: ObjectionUpdates) -> Companion:
    """NoticeService over the review database (its events on the review topic), to serve beside
    ReviewService."""
    servicer = NoticeServicer(Notices(transactions, workflows))

    def register(server: grpc.aio.Server) -> None:
        notice_pb2_grpc.add_NoticeServiceServicer_to_server(servicer, server)

    return Companion(SERVICE, register)
