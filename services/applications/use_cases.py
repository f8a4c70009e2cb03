"""The applications service's use cases: the program catalogue, filing, withdrawing and
supplementing applications, the grant workflow's stage reports, and what each caller may see.

Rules kept here:
- an enterprise files only in its own name, into a program open for applications now, and each
  application is pinned to the newest rule version open at filing;
- a request id repeated with the same content answers the first result, with other content
  ALREADY_EXISTS;
- a caller sees only what it may see (an applicant its own enterprise's filings, a reviewer the
  programs its department owns or reviews), and whatever it may not see answers exactly as an
  application that does not exist: NOT_FOUND confirms nothing about another tenant's ids;
- after submission only the grant's stage reports change an application's status, each in the
  transaction that announces it, and only if newer than the status (a report's sequence);
- a withdrawal is the grant workflow's to decide (it knows whether the money is still free): it
  goes to the workflow as an Update and the applicant gets its answer; only an application whose
  grant has not started yet is withdrawn by an announced request the grant takes when it starts.

Every change commits with its outbox event in one unit of work (services/common/unit_of_work.py);
published rule versions, withdrawals and the stage reports that decide or end a grant also with
their audit record.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlmodel import Session

from grantflow.v1 import applications_pb2, common_pb2, events_pb2
from services.applications import store
from services.applications.commands import (
    ApplicationsQuery,
    ConfirmMilestone,
    PublishProgramVersion,
    ReportStage,
    Submit,
    SummarizeApplications,
    Supplement,
    Withdraw,
)
from services.applications.eligibility_use_cases import attach_eligibility
from services.applications.store import ApplicationRecord, ProgramVersion, SupplementRecord
from services.common import metrics
from services.common.auth import Principal
from services.common.db import now_utc
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.grant_workflows import GrantNotRunning
from services.common.unit_of_work import EventSource, Transactions, UnitOfWork
from services.common.vocabulary import (
    NOT_WITHDRAWABLE_STAGES,
    AuditAction,
    Department,
    GrantStage,
    Role,
)
from workflows import contracts, reasons
from workflows.contracts import grant_workflow_id

SOURCE = "applications"
# Derives the ids of this service's events (EventSource.event_id); never to change, or a retry
# across an upgrade could announce a change twice.
EVENT_NAMESPACE = uuid.UUID("0b6e2a8e-6c55-4f0e-a1f3-2f3c8f5b7d41")
MAX_DOCUMENTS = 100  # per application, supplements included


def event_sources(applications_topic: str, grants_topic: str) -> tuple[EventSource, EventSource]:
    """Where the service's events go: filings to the applications topic, the workflow's stage
    reports to the grants topic."""
    return (
        EventSource(SOURCE, applications_topic, EVENT_NAMESPACE),
        EventSource(SOURCE, grants_topic, EVENT_NAMESPACE),
    )


# The grant ended without money changing hands: an award shown earlier no longer holds.
ENDED_WITHOUT_AWARD = frozenset({GrantStage.REJECTED, GrantStage.WITHDRAWN})
# The stage reports that decide or end a grant, and the audit record each makes.
AUDITED_STAGES = {
    GrantStage.APPROVED: AuditAction.GRANT_APPROVED,
    GrantStage.IN_NOTICE: AuditAction.GRANT_IN_NOTICE,
    GrantStage.REJECTED: AuditAction.GRANT_REJECTED,
    GrantStage.WITHDRAWN: AuditAction.GRANT_WITHDRAWN,
    GrantStage.PAID: AuditAction.GRANT_PAID,
    GrantStage.PAYMENT_FAILED: AuditAction.GRANT_PAYMENT_FAILED,
}


class GrantWithdrawals(Protocol):
    """The grant workflow, as the judge of a withdrawal (services/common/grant_workflows.py):
    answers once honoured, raises FailedPrecondition if refused, GrantNotRunning if there is no
    running grant."""

    async def withdraw(
        self, application_id: str, withdrawal: contracts.Withdraw
    ) -> contracts.WithdrawalAnswer: ...

    async def confirm_milestone(
        self, application_id: str, confirmation: contracts.ConfirmMilestone
    ) -> contracts.MilestoneConfirmed: ...


@dataclass(frozen=True)
class ApplicationsPage:
    applications: list[ApplicationRecord]
    more: bool  # whether more follow the page


def enterprise_of(caller: Principal) -> str:
    return caller.enterprise.strip().upper()


def _visible_to(session: Session, caller: Principal, record: ApplicationRecord) -> bool:
    if caller.role == Role.APPLICANT:
        return record.applicant_credit_code == enterprise_of(caller)
    if caller.role == Role.REVIEWER:
        return bool(store.programs_involving(session, caller.department, record.program_code))
    # Finance, ops and the system see every program (finance pays them all).
    return True


def _application_for(
    session: Session, caller: Principal, application_id: str, *, for_update: bool = False
) -> ApplicationRecord:
    record = store.application_by_id(session, application_id, for_update=for_update)
    if record is None or not _visible_to(session, caller, record):
        # Another tenant's application answers exactly as a missing one.
        raise NotFound(f"application {application_id} not found")
    return record


class Applications:
    """The use cases, over the service's database."""

    def __init__(
        self, filings: Transactions, reports: Transactions, grants: GrantWithdrawals
    ) -> None:
        self.filings = filings  # announces to the applications topic
        self.reports = reports  # announces to the grants topic
        self.grants = grants

    # Program catalogue ------------------------------------------------------------------------

    async def publish_program_version(
        self, command: PublishProgramVersion
    ) -> common_pb2.ProgramRule:
        rule = command.rule

        def work(unit: UnitOfWork) -> common_pb2.ProgramRule:
            versions = store.program_versions(unit.session, rule.code)
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
            unit.session.add(ProgramVersion.from_proto(rule, now_utc()))
            unit.audit(
                AuditAction.PROGRAM_PUBLISHED,
                rule.code,
                details={"program_code": rule.code, "version": rule.version},
                key=f"{rule.code}-{rule.version}",
            )
            return rule

        return await self.filings.write(work)

    async def programs(self, code: str = "") -> list[common_pb2.ProgramRule]:
        def work(session: Session) -> list[common_pb2.ProgramRule]:
            return [row.to_proto() for row in store.programs(session, code)]

        return await self.filings.read(work)

    # Applications -----------------------------------------------------------------------------

    async def submit(self, command: Submit) -> applications_pb2.Application:
        if command.credit_code != enterprise_of(command.caller):
            raise PermissionDenied("an enterprise may only file applications in its own name")
        fingerprint = command.fingerprint

        def work(unit: UnitOfWork) -> applications_pb2.Application:
            filed.clear()  # a unit run again after a conflict files afresh
            session = unit.session
            versions = store.program_versions(session, command.program_code)
            if not versions:
                raise InvalidArgument("program_code", "unknown program")
            existing = store.application_by_request(
                session, command.credit_code, command.request_id
            )
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise AlreadyExists(
                        f"request_id {command.request_id} was already used for a different "
                        "application"
                    )
                return existing.to_proto()
            now = now_utc()
            open_versions = [version for version in versions if version.is_open(now)]
            if not open_versions:
                raise FailedPrecondition(
                    f"program {command.program_code} is not open for applications now"
                )
            pinned = max(open_versions, key=lambda version: version.version)
            application_id = uuid.uuid4().hex
            record = ApplicationRecord(
                application_id=application_id,
                request_id=command.request_id,
                request_fingerprint=fingerprint,
                program_code=command.program_code,
                rule_version=pinned.version,
                applicant_credit_code=command.credit_code,
                applicant_name=command.applicant_name,
                project_title=command.project_title,
                project_description=command.project_description,
                figures=command.figures,
                documents=command.documents,
                requested_amount_fen=command.requested_amount_fen,
                project_code=command.project_code,
                status=GrantStage.SUBMITTED.to_proto(),
                workflow_id=grant_workflow_id(application_id),
                submitted_at=now,
                updated_at=now,
            )
            session.add(record)
            application = record.to_proto()
            unit.announce(
                application_id,
                events_pb2.ApplicationSubmitted(application=application, rule=pinned.to_proto()),
                key=application_id,
                occurred_at=now,
            )
            filed.append(pinned.code)
            return application

        filed: list[str] = []  # the program of a new filing (a repeated request files nothing)
        application = await self.filings.write(work)
        if filed:
            metrics.STAGE_CHANGES.labels(GrantStage.SUBMITTED.value, filed[-1]).inc()
        return application

    async def application(
        self, caller: Principal, application_id: str
    ) -> applications_pb2.Application:
        def work(session: Session) -> applications_pb2.Application:
            application = _application_for(session, caller, application_id).to_proto()
            attach_eligibility(session, application)
            return application

        return await self.filings.read(work)

    async def applications(self, query: ApplicationsQuery) -> ApplicationsPage:
        caller = query.caller

        def work(session: Session) -> ApplicationsPage:
            enterprise: str | None = None
            visible: set[str] | None = None
            if caller.role == Role.APPLICANT:
                # Whatever it asks for, an applicant sees only its own enterprise's filings.
                enterprise = enterprise_of(caller)
            if caller.role == Role.REVIEWER:
                visible = store.programs_involving(session, caller.department)
                if query.program_code and query.program_code not in visible:
                    raise PermissionDenied(
                        f"your department does not review program {query.program_code}"
                    )
            rows = store.applications_page(
                session,
                limit=query.page_size + 1,
                enterprise=enterprise,
                programs=visible,
                credit_code=query.credit_code,
                program_code=query.program_code,
                status=query.stage.to_proto() if query.stage is not None else None,
                after_id=query.after_id,
                id_prefix=query.id_prefix,
                updated_before=query.updated_before,
                open_only=query.open_only,
            )
            return ApplicationsPage(rows[: query.page_size], len(rows) > query.page_size)

        return await self.filings.read(work)

    async def summary(self, query: SummarizeApplications) -> applications_pb2.ApplicationsSummary:
        """The overview's counts, each one GROUP BY in the database (ops only, by the role
        table: it counts every enterprise's filings)."""

        def work(session: Session) -> applications_pb2.ApplicationsSummary:
            summary = applications_pb2.ApplicationsSummary()
            for program, status, count, stuck in store.stage_counts(session, query.stuck_before):
                summary.by_stage.add(
                    program_code=program,
                    stage=status,
                    count=count,
                    stuck=stuck,  # type: ignore[arg-type]
                )
                summary.total += count
                summary.stuck += stuck
            for day, program, count in store.day_counts(session, query.since):
                summary.by_day.add(day=day, program_code=program, count=count)
            return summary

        return await self.filings.read(work)

    async def confirm_milestone(self, command: ConfirmMilestone) -> contracts.MilestoneConfirmed:
        """A milestone of an award paid in instalments confirmed (项目验收, 专项审计): by a
        reviewer or department head of the program's owner department (the industry bureau for
        TECH-MAJOR), or by finance. The grant judges the rest (order, repeats, its schedule) and
        releases the instalment; who confirmed it, and the note, are audited here."""
        caller, application_id = command.caller, command.application_id

        def owner(session: Session) -> str:
            record = _application_for(session, caller, application_id)
            for version in store.program_versions(session, record.program_code):
                if version.version == record.rule_version:
                    return str(Department.from_proto(version.to_proto().owner_department))
            return ""

        department = await self.filings.read(owner)
        if caller.role in (Role.REVIEWER, Role.DEPARTMENT_HEAD) and caller.department != department:
            raise PermissionDenied(
                "only the program's owner department or finance confirms its milestones"
            )
        answer = await self.grants.confirm_milestone(
            application_id,
            contracts.ConfirmMilestone(
                instalment=command.instalment, confirmed_by=caller.subject, note=command.note
            ),
        )
        if not answer.repeated:

            def audit(unit: UnitOfWork) -> None:
                unit.audit(
                    AuditAction.MILESTONE_CONFIRMED,
                    application_id,
                    caller,
                    command.note,
                    details={
                        "instalment": answer.instalment,
                        "of": answer.of,
                        "milestone": answer.milestone,
                        "late": answer.late,
                        "due_at": answer.due_at.isoformat(),
                    },
                    key=f"{application_id}-{answer.instalment}",
                )

            await self.filings.write(audit)
        return answer

    async def withdraw(self, command: Withdraw) -> applications_pb2.Application:
        caller, application_id = command.caller, command.application_id
        record = await self.filings.read(
            lambda session: _application_for(session, caller, application_id)
        )
        _check_withdrawable(record)
        withdrawal = contracts.Withdraw(reason=command.reason, withdrawn_by=caller.subject)
        try:
            await self.grants.withdraw(application_id, withdrawal)
        except GrantNotRunning:
            return await self._withdraw_before_start(command)
        # Honoured: the grant reported WITHDRAWN (and so changed the status) before answering.
        # The change is the workflow's; who asked, and why, is recorded here once it is made.
        await self.filings.write(
            lambda unit: _audit_withdrawal(unit, caller, application_id, command.reason)
        )
        return await self.application(caller, application_id)

    async def _withdraw_before_start(self, command: Withdraw) -> applications_pb2.Application:
        """No grant runs for the application: one not started yet is withdrawn by announcing the
        request, which the grant takes as it starts (the intake orders both by application)."""
        caller, application_id = command.caller, command.application_id

        def work(unit: UnitOfWork) -> applications_pb2.Application:
            record = _application_for(unit.session, caller, application_id, for_update=True)
            if record.withdrawal_requested_at is not None:
                return record.to_proto()
            _check_withdrawable(record)
            if GrantStage.from_proto(record.status) != GrantStage.SUBMITTED:
                # It started and closed meanwhile; its status says how.
                raise FailedPrecondition(
                    reasons.not_withdrawable(GrantStage.from_proto(record.status))
                )
            now = now_utc()
            record.withdrawal_requested_at = now
            record.withdrawal_reason = command.reason
            record.withdrawn_by = caller.subject
            record.updated_at = now
            unit.session.add(record)
            unit.announce(
                application_id,
                events_pb2.ApplicationWithdrawn(
                    application_id=application_id,
                    reason=command.reason,
                    withdrawn_by=caller.subject,
                ),
                key=application_id,
                occurred_at=now,
            )
            _audit_withdrawal(unit, caller, application_id, command.reason)
            return record.to_proto()

        return await self.filings.write(work)

    async def supplement(self, command: Supplement) -> applications_pb2.Application:
        application_id, fingerprint = command.application_id, command.fingerprint

        def work(unit: UnitOfWork) -> applications_pb2.Application:
            session = unit.session
            record = _application_for(session, command.caller, application_id, for_update=True)
            earlier = store.supplement_by_request(session, application_id, command.request_id)
            if earlier is not None:
                if earlier.request_fingerprint != fingerprint:
                    raise AlreadyExists(
                        f"request_id {command.request_id} was already used for a different "
                        "supplement"
                    )
                return record.to_proto()
            if record.withdrawal_requested_at is not None:
                raise FailedPrecondition(f"application {application_id} is being withdrawn")
            stage = GrantStage.from_proto(record.status)
            if stage != GrantStage.AWAITING_SUPPLEMENT:
                raise FailedPrecondition(
                    f"application {application_id} is {stage}, not awaiting a supplement"
                )
            if len(record.documents) + len(command.documents) > MAX_DOCUMENTS:
                raise InvalidArgument(
                    "documents", f"an application may hold at most {MAX_DOCUMENTS} documents"
                )
            now = now_utc()
            record.figures = {**record.figures, **command.figures}
            record.documents = [*record.documents, *command.documents]
            record.supplement_count += 1
            record.updated_at = now
            session.add(record)
            session.add(
                SupplementRecord(
                    application_id=application_id,
                    request_id=command.request_id,
                    request_fingerprint=fingerprint,
                    number=record.supplement_count,
                    note=command.note,
                    created_at=now,
                )
            )
            unit.announce(
                application_id,
                events_pb2.ApplicationSupplemented(
                    application_id=application_id,
                    figures=record.figures,
                    supplement_count=record.supplement_count,
                    note=command.note,
                    document_names=[document["name"] for document in record.documents],
                ),
                key=f"{application_id}:{record.supplement_count}",
                occurred_at=now,
            )
            return record.to_proto()

        return await self.filings.write(work)

    # Grant workflow reports -------------------------------------------------------------------

    async def report_stage(self, command: ReportStage) -> None:
        """The grant's stage becomes the application's status (unless a newer report came
        first) and is announced on the grants topic, in one unit of work."""
        change = command.change
        application_id = change.application_id
        stage = command.stage

        def work(unit: UnitOfWork) -> str:
            """The application's program if its status changed, else ""."""
            if unit.announced(command.event_id):
                return ""
            record = store.application_by_id(unit.session, application_id, for_update=True)
            if record is None:
                raise NotFound(f"application {application_id} not found")
            if change.program_code and change.program_code != record.program_code:
                raise InvalidArgument(
                    "change.program_code",
                    f"does not match the application's program {record.program_code}",
                )
            change.program_code = record.program_code
            changed = ""
            if change.sequence > record.status_sequence:
                changed = record.program_code
                record.status = stage.to_proto()
                record.status_reason = change.reason
                record.status_sequence = change.sequence
                # A report carries what the workflow knows at that stage; zero or empty means
                # "unchanged", except that a grant that ended without payment has no award.
                if change.award_amount_fen or stage in ENDED_WITHOUT_AWARD:
                    record.award_amount_fen = change.award_amount_fen
                if change.plan_id:
                    record.plan_id = change.plan_id
                record.updated_at = now_utc()
                unit.session.add(record)
            unit.announce_as(application_id, change, event_id=command.event_id)
            action = AUDITED_STAGES.get(stage)
            if action is not None:
                unit.audit(
                    action,
                    application_id,
                    reason=change.reason,
                    details={
                        "stage": stage,
                        "program_code": record.program_code,
                        "award_amount_fen": change.award_amount_fen,
                        "plan_id": change.plan_id,
                        "sequence": change.sequence,
                    },
                    key=command.event_id,
                )
            return changed

        program = await self.reports.write(work)
        if program:
            metrics.STAGE_CHANGES.labels(stage.value, program).inc()


def _audit_withdrawal(
    unit: UnitOfWork, caller: Principal, application_id: str, reason: str
) -> None:
    unit.audit(AuditAction.WITHDRAWAL_REQUESTED, application_id, caller, reason, key=application_id)


def _check_withdrawable(record: ApplicationRecord) -> None:
    stage = GrantStage.from_proto(record.status)
    if stage in NOT_WITHDRAWABLE_STAGES:
        raise FailedPrecondition(reasons.not_withdrawable(stage))
