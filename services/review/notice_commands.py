"""The notice use cases' commands (notices.py): one dataclass per use case, holding input already
checked by the gRPC layer (notice_api.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.auth import Principal
from services.common.vocabulary import Department, ObjectionConsequence, ObjectionKind


@dataclass(frozen=True)
class NoticeEntry:
    application_id: str
    applicant_name: str
    project_title: str
    amount_fen: int
    applicant_credit_code: str


@dataclass(frozen=True)
class PublishNotice:
    batch_id: str
    program_code: str
    batch_number: int
    owner_department: Department
    entries: tuple[NoticeEntry, ...]
    opens_at: datetime
    closes_at: datetime


@dataclass(frozen=True)
class LodgeObjection:
    caller: Principal
    request_id: str
    batch_id: str
    application_id: str
    kind: ObjectionKind
    text: str
    contact: str


@dataclass(frozen=True)
class DecideObjection:
    caller: Principal
    objection_id: str
    upheld: bool
    consequence: ObjectionConsequence | None  # upheld only
    reason: str
