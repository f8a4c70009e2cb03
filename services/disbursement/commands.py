"""The disbursement service's commands: one dataclass per use case (use_cases.py), holding input
already checked by the gRPC layer (api.py) or by whoever calls the use case directly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime

from services.common.auth import Principal


@dataclass(frozen=True)
class SetBudget:
    program_code: str
    total_fen: int
    set_by: str


@dataclass(frozen=True)
class SetBudgetLine:
    line_code: str
    fiscal_year: int
    total_fen: int
    set_by: str
    name: str = ""  # "" keeps the line's name (required for a new line code)
    support_plan_code: str = ""  # required for a new line code
    support_plan_name: str = ""  # required for a new support plan
    department: str = ""  # a Department; required for a new support plan
    fund_code: str = ""  # required for a new support plan
    fund_name: str = ""  # required for a new fund
    reason: str = ""


@dataclass(frozen=True)
class Reserve:
    application_id: str
    program_code: str
    amount_fen: int
    applicant_credit_code: str
    applicant_name: str
    fiscal_year: int = 0  # of the program's budget line; 0: the current year


@dataclass(frozen=True)
class AllocationEntry:
    application_id: str
    amount_fen: int
    applicant_credit_code: str
    applicant_name: str


@dataclass(frozen=True)
class AllocateBatch:
    batch_id: str
    program_code: str
    fiscal_year: int
    entries: tuple[AllocationEntry, ...]
    policy: str  # an OverBudgetPolicy

    @property
    def fingerprint(self) -> str:
        """What the request says; a repeated batch id must say the same."""
        parts = [self.program_code, str(self.fiscal_year), self.policy]
        for entry in self.entries:
            parts += [
                entry.application_id,
                str(entry.amount_fen),
                entry.applicant_credit_code,
                entry.applicant_name,
            ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Release:
    application_id: str
    reason: str = ""


@dataclass(frozen=True)
class InstalmentItem:
    """One part of an award paid in instalments, as the grant fixed it at the award."""

    number: int
    amount_fen: int
    milestone: str  # a Milestone
    due_at: datetime


@dataclass(frozen=True)
class ConfirmAward:
    application_id: str
    # Empty: paid at once. Otherwise instalments 1..n adding up to the award (checked by the
    # use case, which knows the award).
    schedule: tuple[InstalmentItem, ...] = ()


@dataclass(frozen=True)
class ReleaseInstalment:
    application_id: str
    number: int
    confirmed_by: str
    note: str = ""


@dataclass(frozen=True)
class CreatePlan:
    """A plan's awards, by filter (the budget line, its programs, year, noticed before, at most
    max_lines) or by list (application_ids, which the line and programs then bound). The first
    form, program_code alone, is a filter of that one program."""

    request_id: str
    program_code: str  # the first form's one program; "" when program_codes say
    title: str
    maker: str
    budget_line_code: str = ""
    program_codes: tuple[str, ...] = ()
    fiscal_year: int = 0
    awarded_before: datetime | None = None
    max_lines: int = 0
    application_ids: tuple[str, ...] = ()

    @property
    def first_form(self) -> bool:
        """The request as it was before plans spanned programs: one program, nothing else."""
        return bool(self.program_code) and not (
            self.budget_line_code
            or self.program_codes
            or self.fiscal_year
            or self.awarded_before
            or self.max_lines
            or self.application_ids
        )

    @property
    def programs(self) -> tuple[str, ...]:
        """Every program named, in the order given, once."""
        named = ((self.program_code,) if self.program_code else ()) + self.program_codes
        return tuple(dict.fromkeys(named))

    @property
    def fingerprint(self) -> str:
        """What the request says; a repeated request id must say the same. The first form
        keeps its fingerprint of before, so a retry across the upgrade finds its plan."""
        if self.first_form:
            return hashlib.sha256(f"{self.program_code}\x1f{self.title}".encode()).hexdigest()
        parts = [
            self.program_code,
            self.title,
            self.budget_line_code,
            ",".join(self.program_codes),
            str(self.fiscal_year),
            self.awarded_before.isoformat() if self.awarded_before else "",
            str(self.max_lines),
            ",".join(self.application_ids),
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class EditPlan:
    request_id: str
    plan_id: str
    add: tuple[str, ...]
    remove: tuple[str, ...]
    edited_by: str
    reason: str = ""

    @property
    def fingerprint(self) -> str:
        text = "\x1f".join([self.plan_id, ",".join(self.add), ",".join(self.remove), self.reason])
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ApprovePlan:
    plan_id: str
    checker: str


@dataclass(frozen=True)
class CancelPlan:
    plan_id: str
    cancelled_by: str
    reason: str


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


@dataclass(frozen=True)
class TrialBalanceQuery:
    budget_key: str = ""  # "": every budget (or the program's)
    program_code: str = ""  # "": every program
    as_of: datetime | None = None  # None: every entry


@dataclass(frozen=True)
class GrantStatementQuery:
    application_id: str
    caller: Principal


@dataclass(frozen=True)
class ReconcileDay:
    day: date  # a Beijing calendar day
    run_by: str


@dataclass(frozen=True)
class ListReconciliationExceptions:
    state: str | None  # a ReconciliationExceptionState; None: every state
    day: str  # YYYY-MM-DD; "": every day
    limit: int
    after: tuple[str, int] | None = None  # the (day, id) of the last exception of the page before


@dataclass(frozen=True)
class ResolveReconciliationException:
    exception_id: int
    resolution: str  # a ReconciliationResolution
    note: str
    resolved_by: str


@dataclass(frozen=True)
class OpenClawback:
    request_id: str
    application_id: str
    amount_fen: int
    reason: str
    opened_by: str

    @property
    def fingerprint(self) -> str:
        """What the request says; a repeated request id must say the same."""
        text = f"{self.application_id}\x1f{self.amount_fen}\x1f{self.reason}"
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RecordRepayment:
    request_id: str
    clawback_id: str
    amount_fen: int
    recorded_by: str


@dataclass(frozen=True)
class ListClawbacks:
    application_id: str = ""  # "": every application
    state: str | None = None  # a ClawbackState; None: any
    limit: int = 100


@dataclass(frozen=True)
class AccountDetails:
    """A receiving account (收款账户) as given, its format checked by the gRPC layer; its name is
    checked against the award's registered name by the use case."""

    account_name: str
    account_number: str
    bank_code: str
    bank_name: str


@dataclass(frozen=True)
class ConfirmAccount:
    request_id: str
    application_id: str
    account: AccountDetails
    caller: Principal

    @property
    def fingerprint(self) -> str:
        a = self.account
        text = "\x1f".join(
            [
                "confirm",
                self.application_id,
                a.account_name,
                a.account_number,
                a.bank_code,
                a.bank_name,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ProposeAccountChange:
    request_id: str
    application_id: str
    account: AccountDetails
    reason: str
    caller: Principal

    @property
    def fingerprint(self) -> str:
        a = self.account
        text = "\x1f".join(
            [
                "change",
                self.application_id,
                a.account_name,
                a.account_number,
                a.bank_code,
                a.bank_name,
                self.reason,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ApproveAccountChange:
    application_id: str
    version: int
    approver: str


@dataclass(frozen=True)
class SyncReturns:
    since: datetime
    run_by: str
