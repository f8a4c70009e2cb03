"""The disbursement service's commands: one dataclass per use case (use_cases.py), holding input
already checked by the gRPC layer (api.py) or by whoever calls the use case directly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class SetBudget:
    program_code: str
    total_fen: int
    set_by: str


@dataclass(frozen=True)
class Reserve:
    application_id: str
    program_code: str
    amount_fen: int
    applicant_credit_code: str
    applicant_name: str


@dataclass(frozen=True)
class Release:
    application_id: str
    reason: str = ""


@dataclass(frozen=True)
class ConfirmAward:
    application_id: str


@dataclass(frozen=True)
class CreatePlan:
    request_id: str
    program_code: str
    title: str
    maker: str

    @property
    def fingerprint(self) -> str:
        """What the request says; a repeated request id must say the same."""
        return hashlib.sha256(f"{self.program_code}\x1f{self.title}".encode()).hexdigest()


@dataclass(frozen=True)
class ApprovePlan:
    plan_id: str
    checker: str


@dataclass(frozen=True)
class ExecuteLine:
    plan_id: str
    line_id: str


@dataclass(frozen=True)
class FailLine:
    plan_id: str
    line_id: str
    reason: str = "payment failed"


@dataclass(frozen=True)
class RetryLine:
    plan_id: str
    line_id: str
    reason: str


@dataclass(frozen=True)
class CompletePlan:
    plan_id: str


@dataclass(frozen=True)
class ListLines:
    state: str | None  # a PaymentState; None: every state
    limit: int
    program_code: str = ""  # "": every program
