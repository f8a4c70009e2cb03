"""Tables of the applications database (program rule versions, applications, supplements, the
credit list, eligibility outcomes and their evidence) and the conversions between rows and API
messages.

Every datetime written here is UTC (SQLite keeps no zone; `as_utc` restores it on the way out).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    LargeBinary,
    Text,
    UniqueConstraint,
    case,
    func,
    literal,
)
from sqlmodel import Field, Session, SQLModel, col, select

from grantflow.v1 import applications_pb2, common_pb2
from services.applications.catalogue import involves
from services.common.db import as_utc, from_timestamp, to_timestamp
from services.common.vocabulary import CLOSED_STAGES, Department

# The proto numbers of the stages in which a grant has ended.
CLOSED_STATUSES = frozenset(stage.to_proto() for stage in CLOSED_STAGES)
# The overview's days are Beijing days (the calendar a civil servant works by).
BEIJING_ZONE = "Asia/Shanghai"
BEIJING_OFFSET = "+8 hours"  # SQLite's date() modifier for the same (China keeps no DST)


class ProgramVersion(SQLModel, table=True):
    """One published version of a program's rules; never changed after publication."""

    __tablename__ = "program_version"
    __table_args__ = (UniqueConstraint("code", "version", name="uq_program_version_code_version"),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, index=True)
    version: int
    rule: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # ProgramRule, serialized
    window_opens_at: datetime
    window_closes_at: datetime
    published_at: datetime

    def to_proto(self) -> common_pb2.ProgramRule:
        return common_pb2.ProgramRule.FromString(self.rule)

    def is_open(self, at: datetime) -> bool:
        return as_utc(self.window_opens_at) <= at < as_utc(self.window_closes_at)

    @classmethod
    def from_proto(cls, rule: common_pb2.ProgramRule, published_at: datetime) -> ProgramVersion:
        return cls(
            code=rule.code,
            version=rule.version,
            rule=rule.SerializeToString(deterministic=True),
            window_opens_at=from_timestamp(rule.window_opens_at),
            window_closes_at=from_timestamp(rule.window_closes_at),
            published_at=published_at,
        )


class ApplicationRecord(SQLModel, table=True):
    """An application as filed and supplemented, plus the status projected from grant events."""

    __tablename__ = "application"
    __table_args__ = (
        # Request ids are chosen by the enterprise, so they are unique per enterprise.
        UniqueConstraint(
            "applicant_credit_code", "request_id", name="uq_application_applicant_request"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)  # insertion order, for paging
    application_id: str = Field(max_length=32, unique=True)
    request_id: str = Field(max_length=128)
    request_fingerprint: str = Field(max_length=64)
    program_code: str = Field(max_length=32, index=True)
    rule_version: int
    applicant_credit_code: str = Field(max_length=18, index=True)
    applicant_name: str = Field(max_length=200)
    project_title: str = Field(max_length=200)
    project_description: str = Field(sa_column=Column(Text, nullable=False))
    figures: dict[str, int] = Field(sa_column=Column(JSON, nullable=False))
    documents: list[dict[str, str]] = Field(sa_column=Column(JSON, nullable=False))
    requested_amount_fen: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: int = Field(index=True)  # a GrantStage, as its proto number
    status_reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    status_sequence: int = 0  # sequence of the last GrantStageChanged applied
    award_amount_fen: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    plan_id: str = Field(default="", max_length=64)
    supplement_count: int = 0
    workflow_id: str = Field(max_length=64)
    submitted_at: datetime
    updated_at: datetime
    withdrawal_requested_at: datetime | None = None
    withdrawal_reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    withdrawn_by: str = Field(default="", max_length=200)
    project_code: str = Field(default="", max_length=64)

    def to_proto(self) -> applications_pb2.Application:
        return applications_pb2.Application(
            application_id=self.application_id,
            program_code=self.program_code,
            rule_version=self.rule_version,
            applicant_credit_code=self.applicant_credit_code,
            applicant_name=self.applicant_name,
            project_title=self.project_title,
            project_description=self.project_description,
            figures=self.figures,
            documents=[common_pb2.DocumentRef(**document) for document in self.documents],
            requested_amount_fen=self.requested_amount_fen,
            status=self.status,  # type: ignore[arg-type]
            status_reason=self.status_reason,
            award_amount_fen=self.award_amount_fen,
            submitted_at=to_timestamp(self.submitted_at),
            updated_at=to_timestamp(self.updated_at),
            supplement_count=self.supplement_count,
            workflow_id=self.workflow_id,
            plan_id=self.plan_id,
            project_code=self.project_code,
        )


class SupplementRecord(SQLModel, table=True):
    """One answer to a request for more information; kept so a retried request is recognised."""

    __tablename__ = "application_supplement"
    __table_args__ = (
        UniqueConstraint("application_id", "request_id", name="uq_application_supplement_request"),
    )

    id: int | None = Field(default=None, primary_key=True)
    application_id: str = Field(max_length=32, index=True)
    request_id: str = Field(max_length=128)
    request_fingerprint: str = Field(max_length=64)
    number: int
    note: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime


class CreditListEntryRecord(SQLModel, table=True):
    """An entry of the credit list: the enterprise is barred from fiscal funds while it is valid
    (valid_from inclusive, valid_until exclusive, None = until further notice)."""

    __tablename__ = "credit_list_entry"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: str = Field(max_length=32, unique=True)
    request_id: str = Field(max_length=128, unique=True)
    request_fingerprint: str = Field(max_length=64)
    credit_code: str = Field(max_length=18, index=True)
    list_name: str = Field(max_length=100)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    source: str = Field(default="", max_length=200)
    valid_from: datetime
    valid_until: datetime | None = None
    created_by: str = Field(max_length=200)
    created_at: datetime

    def valid_at(self, at: datetime) -> bool:
        return as_utc(self.valid_from) <= at and (
            self.valid_until is None or at < as_utc(self.valid_until)
        )

    def to_proto(self) -> applications_pb2.CreditListEntry:
        return applications_pb2.CreditListEntry(
            entry_id=self.entry_id,
            credit_code=self.credit_code,
            list_name=self.list_name,
            reason=self.reason,
            source=self.source,
            valid_from=to_timestamp(self.valid_from),
            created_by=self.created_by,
            created_at=to_timestamp(self.created_at),
            valid_until=to_timestamp(self.valid_until),  # None leaves it unset
        )


class EligibilityOutcome(SQLModel, table=True):
    """The last CheckEligibility of an application: its summary (the checks are rows below)."""

    __tablename__ = "eligibility_outcome"

    id: int | None = Field(default=None, primary_key=True)
    application_id: str = Field(max_length=32, unique=True)
    passed: bool
    remaining_year_cap_fen: int = Field(sa_column=Column(BigInteger, nullable=False))
    checked_at: datetime


class EligibilityCheckRecord(SQLModel, table=True):
    """One named check of the last CheckEligibility: outcome, reason and evidence."""

    __tablename__ = "eligibility_check"
    __table_args__ = (UniqueConstraint("application_id", "name", name="uq_eligibility_check_name"),)

    id: int | None = Field(default=None, primary_key=True)
    application_id: str = Field(max_length=32, index=True)
    position: int
    name: str = Field(max_length=32)
    passed: bool
    reason_zh: str = Field(sa_column=Column(Text, nullable=False))
    evidence_json: str = Field(sa_column=Column(Text, nullable=False))

    def to_proto(self) -> applications_pb2.EligibilityCheck:
        return applications_pb2.EligibilityCheck(
            name=self.name,
            passed=self.passed,
            reason_zh=self.reason_zh,
            evidence_json=self.evidence_json,
        )


def eligibility_of(
    session: Session, application_id: str
) -> tuple[EligibilityOutcome | None, list[EligibilityCheckRecord]]:
    outcome = session.exec(
        select(EligibilityOutcome).where(EligibilityOutcome.application_id == application_id)
    ).first()
    checks = session.exec(
        select(EligibilityCheckRecord)
        .where(EligibilityCheckRecord.application_id == application_id)
        .order_by(col(EligibilityCheckRecord.position))
    ).all()
    return outcome, list(checks)


def eligibility_result(
    outcome: EligibilityOutcome, checks: list[EligibilityCheckRecord]
) -> applications_pb2.EligibilityResult:
    return applications_pb2.EligibilityResult(
        passed=outcome.passed,
        checks=[check.to_proto() for check in checks],
        remaining_year_cap_fen=outcome.remaining_year_cap_fen,
        checked_at=to_timestamp(outcome.checked_at),
    )


def replace_eligibility(
    session: Session, outcome: EligibilityOutcome, checks: list[EligibilityCheckRecord]
) -> None:
    """The application's last run becomes this one (rows updated in place, so a concurrent
    run meets the unique keys instead of doubling the evidence)."""
    existing, old_checks = eligibility_of(session, outcome.application_id)
    if existing is None:
        session.add(outcome)
    else:
        existing.passed = outcome.passed
        existing.remaining_year_cap_fen = outcome.remaining_year_cap_fen
        existing.checked_at = outcome.checked_at
        session.add(existing)
    by_name = {check.name: check for check in old_checks}
    for check in checks:
        old = by_name.pop(check.name, None)
        if old is None:
            session.add(check)
            continue
        old.position, old.passed = check.position, check.passed
        old.reason_zh, old.evidence_json = check.reason_zh, check.evidence_json
        session.add(old)
    for stale in by_name.values():
        session.delete(stale)


def credit_entries(
    session: Session,
    *,
    credit_code: str = "",
    valid_at: datetime | None = None,
    limit: int | None = None,
    before_id: int | None = None,
) -> list[CreditListEntryRecord]:
    """Entries newest first; those valid at `valid_at` only, when given."""
    query = select(CreditListEntryRecord)
    if credit_code:
        query = query.where(CreditListEntryRecord.credit_code == credit_code)
    if valid_at is not None:
        query = query.where(col(CreditListEntryRecord.valid_from) <= valid_at).where(
            (col(CreditListEntryRecord.valid_until).is_(None))
            | (col(CreditListEntryRecord.valid_until) > valid_at)
        )
    if before_id is not None:
        query = query.where(col(CreditListEntryRecord.id) < before_id)
    query = query.order_by(col(CreditListEntryRecord.id).desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def credit_entry_by_request(session: Session, request_id: str) -> CreditListEntryRecord | None:
    return session.exec(
        select(CreditListEntryRecord).where(CreditListEntryRecord.request_id == request_id)
    ).first()


def enterprise_applications(session: Session, credit_code: str) -> list[ApplicationRecord]:
    """Every application of one enterprise, oldest first."""
    return list(
        session.exec(
            select(ApplicationRecord)
            .where(ApplicationRecord.applicant_credit_code == credit_code)
            .order_by(col(ApplicationRecord.id))
        ).all()
    )


def program_versions(session: Session, code: str) -> list[ProgramVersion]:
    return list(
        session.exec(
            select(ProgramVersion)
            .where(ProgramVersion.code == code)
            .order_by(col(ProgramVersion.version))
        ).all()
    )


def programs_involving(session: Session, department: Department | None, code: str = "") -> set[str]:
    """Codes of the programs a department owns or reviews in any published version (a version
    that changed the departments does not hide filings made under an earlier one)."""
    query = select(ProgramVersion)
    if code:
        query = query.where(ProgramVersion.code == code)
    return {row.code for row in session.exec(query).all() if involves(row.to_proto(), department)}


def application_by_id(
    session: Session, application_id: str, *, for_update: bool = False
) -> ApplicationRecord | None:
    query = select(ApplicationRecord).where(ApplicationRecord.application_id == application_id)
    if for_update:
        # Serialises writers of one application on PostgreSQL (SQLite locks the whole file).
        query = query.with_for_update()
    return session.exec(query).first()


def document_dicts(documents: Any) -> list[dict[str, str]]:
    return [
        {"name": document.name.strip(), "uri": document.uri.strip(), "sha256": document.sha256}
        for document in documents
    ]


def application_by_request(
    session: Session, credit_code: str, request_id: str
) -> ApplicationRecord | None:
    return session.exec(
        select(ApplicationRecord)
        .where(ApplicationRecord.applicant_credit_code == credit_code)
        .where(ApplicationRecord.request_id == request_id)
    ).first()


def supplement_by_request(
    session: Session, application_id: str, request_id: str
) -> SupplementRecord | None:
    return session.exec(
        select(SupplementRecord)
        .where(SupplementRecord.application_id == application_id)
        .where(SupplementRecord.request_id == request_id)
    ).first()


def applications_page(
    session: Session,
    *,
    limit: int,
    enterprise: str | None = None,
    programs: set[str] | None = None,
    credit_code: str = "",
    program_code: str = "",
    status: int | None = None,
    after_id: int | None = None,
    id_prefix: str = "",
    updated_before: datetime | None = None,
    open_only: bool = False,
) -> list[ApplicationRecord]:
    """Applications newest first, at most `limit`; enterprise and programs (when given) bound
    what the caller may see, the other filters are what it asked for."""
    query = select(ApplicationRecord)
    if id_prefix:
        # A checked prefix of lowercase hex digits: no LIKE wildcard can be in it.
        query = query.where(col(ApplicationRecord.application_id).startswith(id_prefix))
    if updated_before is not None:
        query = query.where(col(ApplicationRecord.updated_at) < updated_before)
    if open_only:
        query = query.where(col(ApplicationRecord.status).not_in(sorted(CLOSED_STATUSES)))
    if enterprise is not None:
        query = query.where(ApplicationRecord.applicant_credit_code == enterprise)
    if programs is not None:
        query = query.where(col(ApplicationRecord.program_code).in_(sorted(programs)))
    if credit_code:
        query = query.where(ApplicationRecord.applicant_credit_code == credit_code)
    if program_code:
        query = query.where(ApplicationRecord.program_code == program_code)
    if status is not None:
        query = query.where(ApplicationRecord.status == status)
    if after_id is not None:
        query = query.where(col(ApplicationRecord.id) < after_id)
    return list(session.exec(query.order_by(col(ApplicationRecord.id).desc()).limit(limit)).all())


def programs(session: Session, code: str = "") -> list[ProgramVersion]:
    query = select(ProgramVersion)
    if code:
        query = query.where(ProgramVersion.code == code)
    return list(
        session.exec(query.order_by(col(ProgramVersion.code), col(ProgramVersion.version))).all()
    )


def grants_by_stage(session: Session) -> list[tuple[int, str, int]]:
    """How many applications are in each status (the grant's stage), by program."""
    rows = session.exec(
        select(ApplicationRecord.status, ApplicationRecord.program_code, func.count()).group_by(
            col(ApplicationRecord.status), col(ApplicationRecord.program_code)
        )
    ).all()
    return [(int(status), program, int(count)) for status, program, count in rows]


def stage_counts(
    session: Session, stuck_before: datetime | None
) -> list[tuple[str, int, int, int]]:
    """(program, status, applications, stuck) per program and status, in one GROUP BY: stuck
    are those not closed whose status has not changed since `stuck_before`."""
    if stuck_before is None:
        stuck: Any = literal(0)
    else:
        stuck = case(
            (
                (col(ApplicationRecord.updated_at) < stuck_before)
                & col(ApplicationRecord.status).not_in(sorted(CLOSED_STATUSES)),
                1,
            ),
            else_=0,
        )
    rows = session.exec(
        select(
            ApplicationRecord.program_code,
            ApplicationRecord.status,
            func.count(),
            func.sum(stuck),
        )
        .group_by(col(ApplicationRecord.program_code), col(ApplicationRecord.status))
        .order_by(col(ApplicationRecord.program_code), col(ApplicationRecord.status))
    ).all()
    return [(program, int(status), int(n), int(s or 0)) for program, status, n, s in rows]


def day_counts(session: Session, since: datetime) -> list[tuple[str, str, int]]:
    """(Beijing day submitted, program, applications) for filings since `since`, in one GROUP BY."""
    submitted = col(ApplicationRecord.submitted_at)
    if session.get_bind().dialect.name == "sqlite":
        day: Any = func.date(submitted, BEIJING_OFFSET)
    else:
        day = func.to_char(func.timezone(BEIJING_ZONE, submitted), "YYYY-MM-DD")
    day = day.label("day")
    rows = session.exec(
        select(day, ApplicationRecord.program_code, func.count())
        .where(submitted >= since)
        .group_by(day, col(ApplicationRecord.program_code))
        .order_by(day, col(ApplicationRecord.program_code))
    ).all()
    return [(str(d), program, int(n)) for d, program, n in rows]
