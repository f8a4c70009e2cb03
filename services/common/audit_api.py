"""AuditServicer: the gRPC face of a service's audit trail (grantflow.v1.AuditService), served by
every service beside its own API over its own chain (services/common/audit.py).

Ops and Grantflow's own processes append records (repairs, acts done outside a service's use
cases); ops list them and verify the chain. Actor and role come from the caller's token, never
from the request.
"""

from __future__ import annotations

import json
import re
from typing import Any

import grpc

from grantflow.v1 import audit_pb2, audit_pb2_grpc
from services.common import audit, validation
from services.common.auth import current_principal
from services.common.db import Database, to_timestamp
from services.common.errors import AlreadyExists, InvalidArgument
from services.common.service_main import Companion, ServiceSpec
from services.common.unit_of_work import Transactions, UnitOfWork
from services.common.vocabulary import Role

SERVICE = ServiceSpec(
    name="audit",
    descriptor=audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
    roles={
        "RecordAuditEntry": (Role.OPS, Role.SYSTEM),
        "ListAuditEntries": (Role.OPS,),
        "VerifyAuditChain": (Role.OPS,),
    },
)

ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,5}$")
MAX_ACTION = 100
MAX_DETAILS = 16_000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
PAGE_TOKEN_PREFIX = "after:"


def entry_pb(row: audit.AuditRecord) -> audit_pb2.AuditEntry:
    return audit_pb2.AuditEntry(
        sequence=row.sequence,
        request_id=row.request_id,
        action=row.action,
        subject=row.subject,
        actor=row.actor,
        actor_role=row.actor_role,
        reason=row.reason,
        details_json=row.details_json,
        recorded_at=to_timestamp(row.recorded_at),
        previous_hash=row.previous_hash,
        hash=row.hash,
        service=row.service,
    )


def report_pb(report: audit.ChainReport) -> audit_pb2.VerifyAuditChainResponse:
    answer = audit_pb2.VerifyAuditChainResponse(
        service=report.service,
        intact=report.intact,
        records_checked=report.records_checked,
        last_sequence=report.last_sequence,
        last_hash=report.last_hash,
    )
    if report.first_break is not None:
        broken = report.first_break
        answer.first_break.CopyFrom(
            audit_pb2.AuditBreak(
                sequence=broken.sequence, kind=broken.kind.to_proto(), detail=broken.detail
            )
        )
    return answer


def _action(value: str) -> str:
    value = validation.text("action", value, max_len=MAX_ACTION)
    if not ACTION.match(value):
        raise InvalidArgument("action", "must be dotted lower-case words, e.g. repair.x.approved")
    return value


def _details(value: str) -> dict[str, Any]:
    if not value.strip():
        return {}
    if len(value) > MAX_DETAILS:
        raise InvalidArgument("details_json", f"is longer than {MAX_DETAILS} characters")
    try:
        details = json.loads(value)
    except ValueError:
        raise InvalidArgument("details_json", "is not valid JSON") from None
    if not isinstance(details, dict):
        raise InvalidArgument("details_json", "must be a JSON object")
    return details


def _after(token: str) -> int:
    if not token:
        return 0
    number = token.removeprefix(PAGE_TOKEN_PREFIX)
    if not token.startswith(PAGE_TOKEN_PREFIX) or not number.isdigit():
        raise InvalidArgument("page_token", "is not a token this service gave out")
    return int(number)


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    async def RecordAuditEntry(
        self, request: audit_pb2.RecordAuditEntryRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.AuditEntry:
        item = audit.pending(
            _action(request.action),
            validation.identifier("subject", request.subject),
            current_principal(),
            validation.text("reason", request.reason, max_len=audit.MAX_REASON, required=False),
            _details(request.details_json),
            request_id=validation.request_id("request_id", request.request_id),
        )

        def work(unit: UnitOfWork) -> audit.AuditRecord:
            existing = audit.record_by_request(unit.session, item.request_id)
            if existing is not None:
                said = (existing.action, existing.subject, existing.actor, existing.reason)
                if said != (item.action, item.subject, item.actor, item.reason) or (
                    existing.details_json != item.details_json
                ):
                    raise AlreadyExists(
                        f"request_id {item.request_id} already recorded another audit entry "
                        f"(sequence {existing.sequence})"
                    )
                return existing
            return audit.append(unit.session, unit.service_name(), [item])[0]

        return entry_pb(await self.transactions.write(work))

    async def ListAuditEntries(
        self, request: audit_pb2.ListAuditEntriesRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ListAuditEntriesResponse:
        subject = validation.identifier("subject", request.subject) if request.subject else ""
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _after(request.page_token)
        rows = await self.transactions.read(
            lambda session: audit.records_about(session, subject, after=after, limit=size + 1)
        )
        more = len(rows) > size
        rows = rows[:size]
        return audit_pb2.ListAuditEntriesResponse(
            entries=[entry_pb(row) for row in rows],
            next_page_token=f"{PAGE_TOKEN_PREFIX}{rows[-1].sequence}" if more else "",
        )

    async def VerifyAuditChain(
        self, request: audit_pb2.VerifyAuditChainRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.VerifyAuditChainResponse:
        service = self.transactions.service or ""
        report = await self.transactions.read(lambda session: audit.verify(session, service))
        return report_pb(report)


def audit_service(service: str, database: Database) -> Companion:
    """AuditService over `service`'s chain in its database, to serve beside the service's API."""
    servicer = AuditServicer(Transactions(database, service=service))

    def register(server: grpc.aio.Server) -> None:
        audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server)

    return Companion(SERVICE, register)
