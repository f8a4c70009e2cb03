"""The applications service's eligibility use cases: CheckEligibility, and the credit list kept
as data with validity periods.

Rules kept here:
- a check asks the registry first (outside any transaction: it is another system), then, in one
  transaction with the application's row locked, reads the credit list and the enterprise's
  other applications, runs the named checks (eligibility.py) and replaces the application's
  evidence with this run's; the run is audited (its outcome, and which checks failed);
- the credit list changes only by audited entries; a request id repeated with the same content
  answers the first entry, with other content ALREADY_EXISTS.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlmodel import Session

from grantflow.v1 import applications_pb2, common_pb2
from services.applications import store
from services.applications.commands import AddCreditListEntry, CheckEligibility, CreditListQuery
from services.applications.eligibility import check_eligibility
from services.applications.store import (
    ApplicationRecord,
    CreditListEntryRecord,
    EligibilityCheckRecord,
    EligibilityOutcome,
)
from services.common.db import now_utc, to_timestamp
from services.common.errors import AlreadyExists, NotFound
from services.common.unit_of_work import Transactions, UnitOfWork
from services.common.vocabulary import AuditAction
from workflows.registry import EnterpriseRegistry


@dataclass(frozen=True)
class CreditListPage:
    entries: list[CreditListEntryRecord]
    more: bool


def _pinned_rule(session: Session, record: ApplicationRecord) -> common_pb2.ProgramRule | None:
    for version in store.program_versions(session, record.program_code):
        if version.version == record.rule_version:
            return version.to_proto()
    return None


class Eligibility:
    """Eligibility checks and the credit list, over the applications database and the registry."""

    def __init__(self, transactions: Transactions, registry: EnterpriseRegistry) -> None:
        self.transactions = transactions
        self.registry = registry

    async def check(self, command: CheckEligibility) -> applications_pb2.CheckEligibilityResponse:
        application_id = command.application_id

        def find(session: Session) -> ApplicationRecord:
            record = store.application_by_id(session, application_id)
            if record is None:
                raise NotFound(f"application {application_id} not found")
            return record

        found = await self.transactions.read(find)
        enterprise = await self.registry.lookup(found.applicant_credit_code, found.applicant_name)

        def work(unit: UnitOfWork) -> applications_pb2.CheckEligibilityResponse:
            session = unit.session
            record = store.application_by_id(session, application_id, for_update=True)
            if record is None:
                raise NotFound(f"application {application_id} not found")
            rule = _pinned_rule(session, record)
            if rule is None:  # a version is never deleted; this is a broken database
                raise NotFound(f"rule {record.program_code} v{record.rule_version} not found")
            now = now_utc()
            rules: dict[tuple[str, int], common_pb2.ProgramRule | None] = {}

            def rule_of(other: ApplicationRecord) -> common_pb2.ProgramRule | None:
                key = (other.program_code, other.rule_version)
                if key not in rules:
                    rules[key] = _pinned_rule(session, other)
                return rules[key]

            result = check_eligibility(
                record,
                rule,
                enterprise,
                store.credit_entries(session, credit_code=record.applicant_credit_code),
                store.enterprise_applications(session, record.applicant_credit_code),
                rule_of,
                now,
            )
            checks = [
                EligibilityCheckRecord(
                    application_id=application_id,
                    position=position,
                    name=check.name.value,
                    passed=check.passed,
                    reason_zh=check.reason_zh,
                    evidence_json=check.evidence_json(),
                )
                for position, check in enumerate(result.checks)
            ]
            store.replace_eligibility(
                session,
                EligibilityOutcome(
                    application_id=application_id,
                    passed=result.passed,
                    remaining_year_cap_fen=result.remaining_year_cap_fen,
                    checked_at=now,
                ),
                checks,
            )
            failed = [check for check in result.checks if not check.passed]
            unit.audit(
                AuditAction.ELIGIBILITY_CHECKED,
                application_id,
                reason="；".join(check.reason_zh for check in failed),
                details={
                    "program_code": record.program_code,
                    "passed": result.passed,
                    "failed_checks": [check.name.value for check in failed],
                    "remaining_year_cap_fen": result.remaining_year_cap_fen,
                },
            )
            return applications_pb2.CheckEligibilityResponse(
                passed=result.passed,
                checks=[check.to_proto() for check in checks],
                remaining_year_cap_fen=result.remaining_year_cap_fen,
                checked_at=to_timestamp(now),
            )

        return await self.transactions.write(work)

    async def add_credit_entry(
        self, command: AddCreditListEntry
    ) -> applications_pb2.CreditListEntry:
        fingerprint = command.fingerprint

        def work(unit: UnitOfWork) -> applications_pb2.CreditListEntry:
            existing = store.credit_entry_by_request(unit.session, command.request_id)
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise AlreadyExists(
                        f"request_id {command.request_id} was already used for a different entry"
                    )
                return existing.to_proto()
            entry = CreditListEntryRecord(
                entry_id=uuid.uuid4().hex,
                request_id=command.request_id,
                request_fingerprint=fingerprint,
                credit_code=command.credit_code,
                list_name=command.list_name,
                reason=command.reason,
                source=command.source,
                valid_from=command.valid_from,
                valid_until=command.valid_until,
                created_by=command.caller.subject,
                created_at=now_utc(),
            )
            unit.session.add(entry)
            unit.audit(
                AuditAction.CREDIT_LISTED,
                command.credit_code,
                command.caller,
                command.reason,
                details={
                    "entry_id": entry.entry_id,
                    "list_name": command.list_name,
                    "source": command.source,
                    "valid_from": command.valid_from.isoformat(),
                    "valid_until": command.valid_until.isoformat() if command.valid_until else "",
                },
                key=f"credit-{command.request_id}",
            )
            return entry.to_proto()

        return await self.transactions.write(work)

    async def credit_entries(self, query: CreditListQuery) -> CreditListPage:
        def work(session: Session) -> CreditListPage:
            rows = store.credit_entries(
                session,
                credit_code=query.credit_code,
                valid_at=query.valid_at,
                limit=query.page_size + 1,
                before_id=query.before_id,
            )
            return CreditListPage(rows[: query.page_size], len(rows) > query.page_size)

        return await self.transactions.read(work)


def attach_eligibility(session: Session, application: applications_pb2.Application) -> None:
    """Puts the application's last eligibility run (if any) into its message."""
    outcome, checks = store.eligibility_of(session, application.application_id)
    if outcome is not None:
        application.eligibility.CopyFrom(store.eligibility_result(outcome, checks))
