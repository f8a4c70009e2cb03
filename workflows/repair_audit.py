"""The audit port of repairs: every step of a repair (requested, approved, refused, executed,
failed) is written through `AuditPort.record`, by an activity of the RepairWorkflow.

The worker's adapter is the applications service's AuditService.RecordAuditEntry (repairs are
recorded on that service's chain, audit-contract.md), called with the system token: the record's
actor is Grantflow's worker, and the ops users who asked and approved are in its details
(`requested_by`, `approved_by`). Idempotent by the note's request id, so a retried activity
records once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Protocol

import grpc

from workflows.repair_contracts import AuditNote

if TYPE_CHECKING:
    from services.common.clients import ServiceClients


class AuditPort(Protocol):
    async def record(self, note: AuditNote) -> None: ...


class ApplicationsAuditPort:
    """Records on the applications service's audit chain (AuditService.RecordAuditEntry)."""

    def __init__(self, services: ServiceClients) -> None:
        self.services = services

    async def record(self, note: AuditNote) -> None:
        from grantflow.v1 import audit_pb2
        from workflows.activities import translated

        try:
            await self.services.audit["applications"].RecordAuditEntry(
                audit_pb2.RecordAuditEntryRequest(
                    request_id=note.request_id,
                    action=note.action,
                    subject=note.subject,
                    reason=note.reason,
                    details_json=json.dumps(note.details, ensure_ascii=False, sort_keys=True),
                )
            )
        except grpc.aio.AioRpcError as error:
            # A refusal is final (a defect: the repair fails visibly rather than go unaudited);
            # a service out of reach is waited out by the activity's retries.
            raise translated(error) from None


def audit_port(services: ServiceClients) -> AuditPort:
    """The worker's audit adapter."""
    return ApplicationsAuditPort(services)
