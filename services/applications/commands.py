"""The applications service's commands and queries: one dataclass per use case (use_cases.py),
holding input already checked by the gRPC layer (api.py) or by whoever calls the use case."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from grantflow.v1 import applications_pb2, common_pb2
from services.common.auth import Principal
from services.common.vocabulary import GrantStage


def fingerprint(parts: dict[str, Any]) -> str:
    """What a request says, so that a repeated request id is recognised or refused."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PublishProgramVersion:
    rule: common_pb2.ProgramRule  # checked by catalogue.validate_rule


@dataclass(frozen=True)
class Submit:
    caller: Principal
    request_id: str
    program_code: str
    credit_code: str
    applicant_name: str
    project_title: str
    project_description: str
    figures: dict[str, int]
    documents: list[dict[str, str]]
    requested_amount_fen: int
    project_code: str = ""

    @property
    def fingerprint(self) -> str:
        # project_code joins the fingerprint only when given, so that requests filed before it
        # existed are still recognised when retried.
        extra = {"project_code": self.project_code} if self.project_code else {}
        return fingerprint(
            {
                **extra,
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


@dataclass(frozen=True)
class Withdraw:
    caller: Principal
    application_id: str
    reason: str = ""


@dataclass(frozen=True)
class ConfirmMilestone:
    caller: Principal
    application_id: str
    instalment: int
    note: str = ""


@dataclass(frozen=True)
class Supplement:
    caller: Principal
    application_id: str
    request_id: str
    figures: dict[str, int]
    documents: list[dict[str, str]]
    note: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(
            {"figures": self.figures, "documents": self.documents, "note": self.note}
        )


@dataclass(frozen=True)
class ReportStage:
    event_id: str  # the workflow's own, the same on every retry of its report
    change: applications_pb2.GrantStageChanged  # checked; program_code is filled in

    @property
    def stage(self) -> GrantStage:
        return GrantStage.from_proto(self.change.stage)


@dataclass(frozen=True)
class ApplicationsQuery:
    caller: Principal
    credit_code: str = ""
    program_code: str = ""
    stage: GrantStage | None = None
    page_size: int = 50
    after_id: int | None = None  # keyset: the row id of the last application seen
    id_prefix: str = ""  # the application id or its first characters
    updated_before: datetime | None = None
    open_only: bool = False  # grants that have not ended


@dataclass(frozen=True)
class SummarizeApplications:
    stuck_before: datetime | None  # unchanged since then and not closed: stuck
    since: datetime  # days submitted from this instant on


@dataclass(frozen=True)
class CheckEligibility:
    application_id: str


@dataclass(frozen=True)
class AddCreditListEntry:
    caller: Principal
    request_id: str
    credit_code: str
    list_name: str
    reason: str
    source: str
    valid_from: datetime
    valid_until: datetime | None

    @property
    def fingerprint(self) -> str:
        return fingerprint(
            {
                "credit_code": self.credit_code,
                "list_name": self.list_name,
                "reason": self.reason,
                "source": self.source,
                "valid_from": self.valid_from.isoformat(),
                "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            }
        )


@dataclass(frozen=True)
class CreditListQuery:
    credit_code: str = ""
    valid_at: datetime | None = None
    page_size: int = 100
    before_id: int | None = None  # keyset: the row id of the last entry seen
