"""DisbursementServicer: the gRPC face of budget lines and program budgets, reservations and
batch allocations, funding plans and payments.

Each method checks its whole request (INVALID_ARGUMENT naming the field, before anything is
touched), turns it into a command, runs the use case (use_cases.py, where the money rules live)
and converts the answer to protos. Who may call what is the role table of SERVICE.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

from grantflow.v1 import disbursement_pb2 as pb
from grantflow.v1 import disbursement_pb2_grpc
from services.common import validation
from services.common.auth import current_principal
from services.common.db import from_timestamp, now_utc, to_timestamp
from services.common.errors import InvalidArgument
from services.common.service_main import ServiceSpec
from services.common.vocabulary import (
    AccountState,
    AllocationState,
    ClawbackState,
    Department,
    InstalmentState,
    Milestone,
    OverBudgetPolicy,
    PaymentState,
    PlanState,
    ReconciliationExceptionState,
    ReconciliationKind,
    ReconciliationResolution,
    ReservationState,
    Role,
)
from services.disbursement import commands, store
from services.disbursement.accounts import (
    AccountsView,
    PendingChange,
    ReceivingAccounts,
    checked_details,
)
from services.disbursement.clawbacks import Clawbacks, ClawbackView, clawback_workflow_id
from services.disbursement.store import (
    BudgetFigures,
    FundingPlanRow,
    InstalmentRow,
    LedgerEntryRow,
    PaymentLineRow,
    ReceivingAccountRow,
    ReconciliationExceptionRow,
    ReservationRow,
)
from services.disbursement.use_cases import (
    CLAWBACK,
    PAYABLE_MOVE,
    PAYMENT,
    REAWARD,
    RELEASE,
    REPAYMENT,
    RESERVATION,
    RETURN,
    UNPAYABLE,
    BatchView,
    Disbursement,
    GrantStatement,
    LineView,
    PlanView,
    ReconciliationView,
    TrialBalance,
    current_day,
)
from workflows.contracts import plan_workflow_id

READERS = (Role.FINANCE, Role.OPS, Role.SYSTEM)
SERVICE = ServiceSpec(
    name="disbursement",
    descriptor=pb.DESCRIPTOR.services_by_name["DisbursementService"],
    roles={
        "SetProgramBudget": (Role.FINANCE,),
        "GetProgramBudget": (*READERS, Role.REVIEWER),
        "SetBudgetLine": (Role.FINANCE,),
        "GetBudgetLine": READERS,
        "ListBudgetLines": READERS,
        "AllocateBatch": (Role.SYSTEM,),
        "ReserveBudget": (Role.SYSTEM,),
        "ReleaseReservation": (Role.SYSTEM,),
        "ConfirmAward": (Role.SYSTEM,),
        # From the grant workflow once the milestone was confirmed (the applications service's
        # ConfirmMilestone judges who may confirm).
        "ReleaseInstalment": (Role.SYSTEM,),
        # An applicant only its own enterprise's (use_cases.instalment_schedule).
        "GetInstalmentSchedule": (*READERS, Role.APPLICANT),
        "CreateFundingPlan": (Role.FINANCE,),
        "ApproveFundingPlan": (Role.FINANCE,),
        "CancelFundingPlan": (Role.FINANCE,),
        "EditFundingPlan": (Role.FINANCE,),
        "GetFundingPlan": READERS,
        "ListFundingPlans": READERS,
        "ExecutePayment": (Role.SYSTEM,),
        "MarkPaymentFailed": (Role.SYSTEM,),
        "RetryPaymentLine": (Role.SYSTEM,),  # an approved repair (workflows/repair.py)
        "CompleteFundingPlan": (Role.SYSTEM,),
        "ListLedgerEntries": (Role.FINANCE, Role.OPS),
        "GetApplicationFunds": (Role.FINANCE, Role.OPS),
        "ListPaymentLines": (Role.FINANCE, Role.OPS),
        "GetTrialBalance": (Role.FINANCE, Role.OPS),
        # An applicant only its own enterprise's (use_cases.grant_statement).
        "GetGrantStatement": (Role.FINANCE, Role.OPS, Role.APPLICANT),
        # Reconciliation: run by finance, or daily by the system; resolved by finance only.
        "ReconcileDay": (Role.FINANCE, Role.SYSTEM),
        "GetReconciliation": READERS,
        "ListReconciliationExceptions": READERS,
        "ResolveReconciliationException": (Role.FINANCE,),
        # Clawbacks (追回, clawbacks.py): finance opens and records repayments; ops may read.
        "OpenClawback": (Role.FINANCE,),
        "RecordRepayment": (Role.FINANCE,),
        "GetClawback": (Role.FINANCE, Role.OPS),
        "ListClawbacks": (Role.FINANCE, Role.OPS),
        # Receiving accounts (accounts.py): the applicant only its own enterprise's award.
        "GetReceivingAccount": (Role.FINANCE, Role.OPS, Role.APPLICANT),
        "ConfirmReceivingAccount": (Role.APPLICANT,),
        "ProposeAccountChange": (Role.APPLICANT, Role.FINANCE),
        "ApproveAccountChange": (Role.FINANCE,),
        "ListAccountChanges": (Role.FINANCE, Role.OPS),
        "SyncGatewayReturns": (Role.FINANCE, Role.SYSTEM),
    },
)

MAX_TITLE = 200
MAX_REASON = 500  # payment_line.failure_reason
MAX_NAME = 200
MAX_LEDGER_FILTER = 200
DEFAULT_LINES, MAX_LINES = 100, 1000
MAX_CODE = 64  # fund, support plan and budget line codes
MAX_BATCH = 1000  # entries of one AllocateBatch
MIN_YEAR, MAX_YEAR = 2000, 2100
# The awards of one plan (by list, by max_lines, added at once): the city's largest batches run
# to a few thousand (DOMAIN.md cites 2,886).
MAX_PLAN_LINES = 10_000
MAX_INSTALMENTS = 3  # workflows/rules.py MAX_INSTALMENTS
MAX_NOTE = 500  # instalment.note
# SyncGatewayReturns without `since` looks this far back (returns are recorded once anyway).
RETURNS_LOOKBACK = timedelta(days=1)


# Validation -------------------------------------------------------------------------------------


def program_code(field: str, value: str) -> str:
    value = validation.identifier(field, value)
    if ":" in value:
        # ':' separates the parts of ledger account names (budget:<program>:available).
        raise InvalidArgument(field, "must not contain ':'")
    return value


def program_codes(field: str, values: Any) -> list[str]:
    """Program codes, each once."""
    codes = [program_code(field, value) for value in values]
    twice = sorted(c for c, n in Counter(codes).items() if n > 1)
    if twice:
        raise InvalidArgument(field, f"names {', '.join(twice)} more than once")
    return codes


def application_ids(field: str, values: Any, limit: int) -> tuple[str, ...]:
    """Application ids, each once, at most `limit`."""
    if len(values) > limit:
        raise InvalidArgument(field, f"names more than {limit} applications")
    ids = [validation.identifier(field, value) for value in values]
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    if twice:
        raise InvalidArgument(field, f"names {', '.join(twice[:20])} more than once")
    return tuple(ids)


def timestamp(field: str, value: Any) -> datetime:
    """A set Timestamp as an aware datetime; INVALID_ARGUMENT when out of range."""
    try:
        return from_timestamp(value)
    except (ValueError, OverflowError) as error:
        raise InvalidArgument(field, "is not a valid time") from error


def optional_text(field: str, value: str, *, max_len: int) -> str:
    return validation.text(field, value, max_len=max_len, required=False)


def code(field: str, value: str, *, required: bool = True) -> str:
    """A fund, support plan or budget line code: like a program code, at most 64 characters."""
    if not value and not required:
        return ""
    value = program_code(field, value)
    if len(value) > MAX_CODE:
        raise InvalidArgument(field, f"is longer than {MAX_CODE} characters")
    return value


def fiscal_year(field: str, value: int, *, required: bool = True) -> int:
    if value == 0 and not required:
        return 0
    if not MIN_YEAR <= value <= MAX_YEAR:
        raise InvalidArgument(field, f"must be a year between {MIN_YEAR} and {MAX_YEAR}")
    return value


def batch_entries(request: pb.AllocateBatchRequest) -> tuple[commands.AllocationEntry, ...]:
    entries = []
    for field, application_id, entry in validation.award_entries(
        request.entries, limit=MAX_BATCH, within="batch"
    ):
        entries.append(
            commands.AllocationEntry(
                application_id=application_id,
                amount_fen=validation.fen(f"{field}.amount_fen", entry.amount_fen, required=True),
                applicant_credit_code=validation.credit_code(
                    f"{field}.applicant_credit_code", entry.applicant_credit_code
                ),
                applicant_name=validation.text(
                    f"{field}.applicant_name", entry.applicant_name, max_len=MAX_NAME
                ),
            )
        )
    return tuple(entries)


def budget_key(field: str, value: str) -> str:
    """A budget's ledger name: a program code, or LINE:YEAR (store.py)."""
    if not value:
        return ""
    line, colon, year = value.partition(":")
    if not colon:
        return program_code(field, value)
    code(field, line)
    if not (year.isdigit() and MIN_YEAR <= int(year) <= MAX_YEAR):
        raise InvalidArgument(
            field, f"must be a program code or LINE:YEAR with a year from {MIN_YEAR} to {MAX_YEAR}"
        )
    return store.line_key(line, int(year))


def as_of(request: pb.GetTrialBalanceRequest) -> datetime | None:
    if not request.HasField("as_of"):
        return None
    try:
        return from_timestamp(request.as_of)
    except (ValueError, OverflowError) as error:
        raise InvalidArgument("as_of", "is not a valid time") from error


DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def optional_day(field: str, value: str) -> date | None:
    return day(field, value) if value else None


def day(field: str, value: str) -> date:
    """A Beijing calendar day spelt YYYY-MM-DD, not in the future."""
    if not value:
        raise InvalidArgument(field, "is required (YYYY-MM-DD)")
    parsed = None
    if DAY.fullmatch(value):
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            pass
    if parsed is None:
        raise InvalidArgument(field, f"must be a day spelt YYYY-MM-DD, not {value[:20]!r}")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise InvalidArgument(field, f"must be a day of a year from {MIN_YEAR} to {MAX_YEAR}")
    if parsed > current_day():
        raise InvalidArgument(field, "is in the future (Beijing time): nothing to reconcile yet")
    return parsed


EXCEPTION_PAGE_PREFIX = "rx-after:"
DEFAULT_EXCEPTIONS, MAX_EXCEPTIONS = 100, 1000
MAX_NOTE = 500  # reconciliation_exception.resolution_note


def _exception_page_token(row: ReconciliationExceptionRow) -> str:
    return base64.urlsafe_b64encode(f"{EXCEPTION_PAGE_PREFIX}{row.day}|{row.id}".encode()).decode()


def _exception_page_after(token: str) -> tuple[str, int] | None:
    """The (day, id) a page token of ListReconciliationExceptions continues after."""
    if not token:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        if decoded.startswith(EXCEPTION_PAGE_PREFIX):
            when, _, number = decoded.removeprefix(EXCEPTION_PAGE_PREFIX).partition("|")
            return date.fromisoformat(when).isoformat(), int(number)
    except (ValueError, UnicodeError, binascii.Error):
        pass
    raise InvalidArgument("page_token", "is not a page token this service issued")


# Conversions ------------------------------------------------------------------------------------


def budget_pb(figures: BudgetFigures) -> pb.ProgramBudget:
    return pb.ProgramBudget(
        program_code=figures.program_code,
        total_fen=figures.total_fen,
        reserved_fen=figures.reserved_fen,
        paid_fen=figures.paid_fen,
        available_fen=figures.available_fen,
        budget_line_code=figures.budget_line_code,
        fiscal_year=figures.fiscal_year,
        line_total_fen=figures.line_total_fen,
        waitlisted_fen=figures.waitlisted_fen,
        waitlisted_count=figures.waitlisted_count,
    )


def budget_line_pb(view: LineView) -> pb.BudgetLine:
    figures, line = view.figures, view.figures.line
    return pb.BudgetLine(
        line_code=line.line_code,
        fiscal_year=line.fiscal_year,
        name=line.name,
        support_plan=pb.SupportPlan(
            code=view.support_plan.support_plan_code,
            name=view.support_plan.name,
            fund_code=view.support_plan.fund_code,
            department=Department.parse(view.support_plan.department).to_proto(),
        ),
        fund=pb.Fund(code=view.fund.fund_code, name=view.fund.name),
        total_fen=line.total_fen,
        reserved_fen=figures.reserved_fen,
        committed_fen=figures.committed_fen,
        paid_fen=figures.paid_fen,
        available_fen=figures.available_fen,
        revision=line.revision,
        programs=[
            pb.ProgramShare(program_code=program, reserved_fen=held, paid_fen=paid_out)
            for program, (held, paid_out) in figures.programs.items()
        ],
        updated_at=to_timestamp(line.updated_at),
    )


def batch_pb(view: BatchView) -> pb.BatchAllocation:
    batch = view.batch
    return pb.BatchAllocation(
        batch_id=batch.batch_id,
        program_code=batch.program_code,
        budget_line_code=batch.budget_line_code,
        fiscal_year=batch.fiscal_year,
        policy=OverBudgetPolicy.parse(batch.policy).to_proto(),
        allocations=[
            pb.Allocation(
                application_id=a.application_id,
                state=AllocationState.parse(a.state).to_proto(),
                amount_fen=a.amount_fen,
                requested_fen=a.requested_fen,
            )
            for a in view.allocations
        ],
        available_before_fen=batch.available_before_fen,
        reserved_fen=sum(
            a.amount_fen for a in view.allocations if a.state == AllocationState.RESERVED
        ),
        waitlisted_fen=sum(
            a.requested_fen for a in view.allocations if a.state == AllocationState.WAITLISTED
        ),
        cut=batch.cut,
        allocated_at=to_timestamp(batch.created_at),
    )


def reservation_pb(row: ReservationRow) -> pb.Reservation:
    return pb.Reservation(
        application_id=row.application_id,
        program_code=row.program_code,
        amount_fen=row.amount_fen,
        state=ReservationState.parse(row.state).to_proto(),
        plan_id=row.plan_id or "",
        applicant_credit_code=row.applicant_credit_code,
        applicant_name=row.applicant_name,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        budget_line_code=row.budget_line_code or "",
        fiscal_year=row.fiscal_year or 0,
        batch_id=row.batch_id or "",
        cut_from_fen=row.cut_from_fen,
        awarded_at=to_timestamp(row.awarded_at),
        returns=row.returns,
    )


def line_pb(row: PaymentLineRow) -> pb.PaymentLine:
    return pb.PaymentLine(
        line_id=row.line_id,
        plan_id=row.plan_id,
        application_id=row.application_id,
        applicant_credit_code=row.applicant_credit_code,
        applicant_name=row.applicant_name,
        amount_fen=row.amount_fen,
        state=PaymentState.parse(row.state).to_proto(),
        gateway_reference=row.gateway_reference,
        failure_reason=row.failure_reason,
        attempts=row.attempts,
        paid_at=to_timestamp(row.paid_at),
        program_code=row.program_code,
        instalment=row.instalment,
        account_name=row.account_name,
        account_number=row.account_number,
        bank_code=row.bank_code,
        bank_name=row.bank_name,
        account_version=row.account_version,
        reissue=row.reissue,
        idempotency_key=store.payment_key(row),
        returned_at=to_timestamp(row.returned_at),
        return_reason=row.return_reason,
    )


def instalment_pb(row: InstalmentRow) -> pb.Instalment:
    return pb.Instalment(
        application_id=row.application_id,
        number=row.number,
        of=row.count,
        amount_fen=row.amount_fen,
        milestone=Milestone.parse(row.milestone).to_proto(),
        due_at=to_timestamp(row.due_at),
        state=InstalmentState.parse(row.state).to_proto(),
        plan_id=row.plan_id or "",
        released_at=to_timestamp(row.released_at),
        paid_at=to_timestamp(row.paid_at),
        confirmed_by=row.confirmed_by,
        note=row.note,
    )


def schedule_items(field: str, items: Any) -> tuple[commands.InstalmentItem, ...]:
    """A ConfirmAward's schedule, checked item by item (the use case checks the whole)."""
    checked = []
    for index, item in enumerate(items):
        if not item.HasField("due_at"):
            raise InvalidArgument(f"{field}[{index}].due_at", "is required")
        checked.append(
            commands.InstalmentItem(
                number=item.number,
                amount_fen=validation.fen(
                    f"{field}[{index}].amount_fen", item.amount_fen, required=True
                ),
                milestone=validation.term(f"{field}[{index}].milestone", Milestone, item.milestone),
                due_at=from_timestamp(item.due_at),
            )
        )
    if len(checked) > MAX_INSTALMENTS:
        raise InvalidArgument(field, f"at most {MAX_INSTALMENTS} instalments")
    return tuple(checked)


MAX_PLANS_PAGE = 200
PLAN_PAGE_PREFIX = "plan-after:"


def _plan_page_token(plan: FundingPlanRow) -> str:
    return base64.urlsafe_b64encode(
        f"{PLAN_PAGE_PREFIX}{plan.created_at.isoformat()}|{plan.plan_id}".encode()
    ).decode()


def _plan_page_after(token: str) -> tuple[datetime, str] | None:
    """The (created_at, plan_id) a page token of ListFundingPlans continues after."""
    if not token:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        if decoded.startswith(PLAN_PAGE_PREFIX):
            created_at, _, plan_id = decoded.removeprefix(PLAN_PAGE_PREFIX).partition("|")
            if plan_id:
                return datetime.fromisoformat(created_at), plan_id
    except (ValueError, UnicodeError, binascii.Error):
        pass
    raise InvalidArgument("page_token", "is not a page token this service issued")


def plan_pb(view: PlanView) -> pb.FundingPlan:
    plan = view.plan
    return pb.FundingPlan(
        plan_id=plan.plan_id,
        program_code=plan.program_code,
        title=plan.title,
        state=PlanState.parse(plan.state).to_proto(),
        created_by=plan.created_by,
        approved_by=plan.approved_by,
        total_fen=plan.total_fen,
        lines=[line_pb(line) for line in view.lines],
        line_count=len(view.lines) if view.line_count is None else view.line_count,
        created_at=to_timestamp(plan.created_at),
        approved_at=to_timestamp(plan.approved_at),
        workflow_id=plan_workflow_id(plan.plan_id),
        completed_at=to_timestamp(plan.completed_at),
        second_approval_required=plan.approvals_required > 1,
        first_approved_by=plan.first_approved_by,
        first_approved_at=to_timestamp(plan.first_approved_at),
        cancelled_by=plan.cancelled_by,
        cancelled_at=to_timestamp(plan.cancelled_at),
        cancel_reason=plan.cancel_reason,
        budget_line_code=plan.budget_line_code,
        programs=[
            pb.FundingPlanProgram(program_code=code, line_count=count, amount_fen=amount)
            for code, count, amount in (
                view.programs if view.programs is not None else program_totals(view.lines)
            )
        ],
    )


def program_totals(lines: list[PaymentLineRow]) -> list[tuple[str, int, int]]:
    """(program, line count, amount) of these lines, by program code."""
    totals: dict[str, tuple[int, int]] = {}
    for line in lines:
        count, amount = totals.get(line.program_code, (0, 0))
        totals[line.program_code] = (count + 1, amount + line.amount_fen)
    return [(code, count, amount) for code, (count, amount) in sorted(totals.items())]


def entry_pb(row: LedgerEntryRow) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        entry_id=row.id or 0,
        journal_id=row.journal_id,
        account=row.account,
        debit_fen=row.debit_fen,
        credit_fen=row.credit_fen,
        memo=row.memo,
        posted_at=to_timestamp(row.posted_at),
    )


ACCOUNT_KINDS = {
    store.APPROPRIATION: pb.LEDGER_ACCOUNT_KIND_APPROPRIATION,
    store.AVAILABLE: pb.LEDGER_ACCOUNT_KIND_AVAILABLE,
    store.RESERVED: pb.LEDGER_ACCOUNT_KIND_RESERVED,
    store.PAID: pb.LEDGER_ACCOUNT_KIND_PAID,
    store.CLAWBACK_RECEIVABLE: pb.LEDGER_ACCOUNT_KIND_CLAWBACK_RECEIVABLE,
    store.RECOVERED: pb.LEDGER_ACCOUNT_KIND_RECOVERED,
    store.PAYABLE: pb.LEDGER_ACCOUNT_KIND_PAYABLE,
    store.RETURNED: pb.LEDGER_ACCOUNT_KIND_RETURNED,
}
MOVEMENTS = {
    RESERVATION: pb.LEDGER_MOVEMENT_RESERVATION,
    RELEASE: pb.LEDGER_MOVEMENT_RELEASE,
    PAYMENT: pb.LEDGER_MOVEMENT_PAYMENT,
    CLAWBACK: pb.LEDGER_MOVEMENT_CLAWBACK,
    REPAYMENT: pb.LEDGER_MOVEMENT_REPAYMENT,
    PAYABLE_MOVE: pb.LEDGER_MOVEMENT_PAYABLE,
    UNPAYABLE: pb.LEDGER_MOVEMENT_UNPAYABLE,
    RETURN: pb.LEDGER_MOVEMENT_RETURN,
    REAWARD: pb.LEDGER_MOVEMENT_REAWARD,
}


def trial_balance_pb(balance: TrialBalance) -> pb.TrialBalance:
    budgets = []
    for budget in balance.budgets:
        program, line, year = store.split_budget_key(budget.budget_key)
        budgets.append(
            pb.TrialBalanceBudget(
                budget_key=budget.budget_key,
                program_code=program,
                budget_line_code=line,
                fiscal_year=year,
                accounts=[
                    pb.TrialBalanceAccount(
                        account=account.account,
                        kind=ACCOUNT_KINDS.get(account.kind, pb.LEDGER_ACCOUNT_KIND_UNSPECIFIED),
                        debit_fen=account.debit_fen,
                        credit_fen=account.credit_fen,
                        balance_fen=account.balance_fen,
                    )
                    for account in budget.accounts
                ],
                debit_fen=budget.debit_fen,
                credit_fen=budget.credit_fen,
            )
        )
    return pb.TrialBalance(
        budgets=budgets,
        debit_fen=balance.debit_fen,
        credit_fen=balance.credit_fen,
        balanced=balance.balanced,
        as_of=to_timestamp(balance.as_of),
    )


def statement_pb(statement: GrantStatement) -> pb.GrantStatement:
    row = statement.reservation
    return pb.GrantStatement(
        application_id=row.application_id,
        program_code=row.program_code,
        applicant_credit_code=row.applicant_credit_code,
        applicant_name=row.applicant_name,
        budget_key=row.budget_key,
        state=ReservationState.parse(row.state).to_proto(),
        reserved_fen=statement.reserved_fen,
        released_fen=statement.released_fen,
        paid_fen=statement.paid_fen,
        outstanding_fen=statement.outstanding_fen,
        clawed_back_fen=statement.clawed_back_fen,
        repaid_fen=statement.repaid_fen,
        receivable_fen=statement.receivable_fen,
        returned_fen=statement.returned_fen,
        entries=[
            pb.StatementEntry(
                entry_id=line.entry.id or 0,
                journal_id=line.entry.journal_id,
                movement=MOVEMENTS.get(line.movement, pb.LEDGER_MOVEMENT_UNSPECIFIED),
                account=line.entry.account,
                kind=ACCOUNT_KINDS.get(line.kind, pb.LEDGER_ACCOUNT_KIND_UNSPECIFIED),
                debit_fen=line.entry.debit_fen,
                credit_fen=line.entry.credit_fen,
                balance_fen=line.balance_fen,
                memo=line.entry.memo,
                posted_at=to_timestamp(line.entry.posted_at),
            )
            for line in statement.lines
        ],
        instalments=[instalment_pb(part) for part in statement.instalments],
    )


def exception_pb(row: ReconciliationExceptionRow) -> pb.ReconciliationException:
    return pb.ReconciliationException(
        exception_id=row.id or 0,
        day=row.day,
        kind=ReconciliationKind.parse(row.kind).to_proto(),
        state=ReconciliationExceptionState.parse(row.state).to_proto(),
        idempotency_key=row.idempotency_key,
        line_id=row.line_id,
        application_id=row.application_id,
        gateway_reference=row.gateway_reference,
        gateway_amount_fen=row.gateway_amount_fen,
        ledger_amount_fen=row.ledger_amount_fen,
        gateway_payee=row.gateway_payee,
        ledger_payee=row.ledger_payee,
        found_at=to_timestamp(row.found_at),
        resolution=(
            ReconciliationResolution.parse(row.resolution).to_proto()
            if row.resolution
            else pb.RECONCILIATION_RESOLUTION_UNSPECIFIED
        ),
        resolution_note=row.resolution_note,
        resolved_by=row.resolved_by,
        resolved_at=to_timestamp(row.resolved_at),
    )


def reconciliation_pb(view: ReconciliationView) -> pb.Reconciliation:
    run = view.run
    return pb.Reconciliation(
        day=run.day,
        gateway_count=run.gateway_count,
        gateway_total_fen=run.gateway_total_fen,
        ledger_count=run.ledger_count,
        ledger_total_fen=run.ledger_total_fen,
        matched_count=run.matched_count,
        matched_total_fen=run.matched_total_fen,
        exception_count=run.exception_count,
        open_count=view.open_count,
        reconciled_by=run.reconciled_by,
        reconciled_at=to_timestamp(run.reconciled_at),
        runs=run.runs,
        exceptions=[exception_pb(row) for row in view.exceptions],
    )


def clawback_pb(view: ClawbackView) -> pb.Clawback:
    row = view.clawback
    return pb.Clawback(
        clawback_id=row.clawback_id,
        application_id=row.application_id,
        program_code=row.program_code,
        applicant_credit_code=row.applicant_credit_code,
        applicant_name=row.applicant_name,
        budget_key=row.budget_key,
        amount_fen=row.amount_fen,
        repaid_fen=row.repaid_fen,
        outstanding_fen=row.outstanding_fen,
        reason=row.reason,
        state=ClawbackState.parse(row.state).to_proto(),
        opened_by=row.opened_by,
        opened_at=to_timestamp(row.opened_at),
        settled_at=to_timestamp(row.settled_at) if row.settled_at else None,
        bar_years=row.bar_years,
        bar_until=to_timestamp(row.bar_until),
        workflow_id=clawback_workflow_id(row.clawback_id),
        repayments=[
            pb.Repayment(
                repayment_id=repayment.repayment_id,
                request_id=repayment.request_id,
                amount_fen=repayment.amount_fen,
                recorded_by=repayment.recorded_by,
                recorded_at=to_timestamp(repayment.recorded_at),
            )
            for repayment in view.repayments
        ],
    )


def account_pb(row: ReceivingAccountRow) -> pb.ReceivingAccount:
    return pb.ReceivingAccount(
        application_id=row.application_id,
        version=row.version,
        state=AccountState.parse(row.state).to_proto(),
        account_name=row.account_name,
        account_number=row.account_number,
        bank_code=row.bank_code,
        bank_name=row.bank_name,
        given_by=row.given_by,
        given_at=to_timestamp(row.given_at),
        approved_by=row.approved_by,
        approved_at=to_timestamp(row.approved_at),
        reason=row.reason,
    )


def accounts_pb(view: AccountsView) -> pb.ReceivingAccounts:
    current, proposed = view.current, view.proposed
    return pb.ReceivingAccounts(
        application_id=view.application_id,
        current=account_pb(current) if current is not None else None,
        proposed=account_pb(proposed) if proposed is not None else None,
        history=[account_pb(row) for row in view.history],
        applicant_name=view.applicant_name,
    )


def change_pb(change: PendingChange) -> pb.AccountChange:
    award = change.award
    return pb.AccountChange(
        application_id=award.application_id,
        applicant_name=award.applicant_name,
        applicant_credit_code=award.applicant_credit_code,
        program_code=award.program_code,
        award_fen=award.amount_fen,
        award_state=ReservationState.parse(award.state).to_proto(),
        current=account_pb(change.current) if change.current is not None else None,
        proposed=account_pb(change.proposed),
    )


def account_details(field: str, details: pb.AccountDetails) -> commands.AccountDetails:
    return checked_details(
        field,
        commands.AccountDetails(
            account_name=details.account_name,
            account_number=details.account_number,
            bank_code=details.bank_code,
            bank_name=details.bank_name,
        ),
    )


class DisbursementServicer(disbursement_pb2_grpc.DisbursementServiceServicer):
    def __init__(
        self,
        disbursement: Disbursement,
        clawbacks: Clawbacks | None = None,
        accounts: ReceivingAccounts | None = None,
    ) -> None:
        self.disbursement = disbursement
        self.clawbacks = clawbacks or Clawbacks(disbursement.transactions)
        self.accounts = accounts or ReceivingAccounts(disbursement.transactions)

    # Budgets ------------------------------------------------------------------------------------

    async def SetProgramBudget(
        self, request: pb.SetProgramBudgetRequest, context: Any
    ) -> pb.ProgramBudget:
        command = commands.SetBudget(
            program_code=program_code("program_code", request.program_code),
            total_fen=validation.fen("total_fen", request.total_fen, required=True),
            set_by=current_principal().subject,
        )
        return budget_pb(await self.disbursement.set_budget(command))

    async def GetProgramBudget(
        self, request: pb.GetProgramBudgetRequest, context: Any
    ) -> pb.ProgramBudget:
        program = program_code("program_code", request.program_code)
        year = fiscal_year("fiscal_year", request.fiscal_year, required=False)
        return budget_pb(await self.disbursement.budget(program, year))

    # Budget lines -------------------------------------------------------------------------------

    async def SetBudgetLine(self, request: pb.SetBudgetLineRequest, context: Any) -> pb.BudgetLine:
        department = validation.optional_term("department", Department, request.department)
        command = commands.SetBudgetLine(
            line_code=code("line_code", request.line_code),
            fiscal_year=fiscal_year("fiscal_year", request.fiscal_year),
            total_fen=validation.fen("total_fen", request.total_fen, required=True),
            set_by=current_principal().subject,
            name=optional_text("name", request.name, max_len=MAX_NAME),
            support_plan_code=code("support_plan_code", request.support_plan_code, required=False),
            support_plan_name=optional_text(
                "support_plan_name", request.support_plan_name, max_len=MAX_NAME
            ),
            department=department or "",
            fund_code=code("fund_code", request.fund_code, required=False),
            fund_name=optional_text("fund_name", request.fund_name, max_len=MAX_NAME),
            reason=optional_text("reason", request.reason, max_len=MAX_REASON),
        )
        return budget_line_pb(await self.disbursement.set_budget_line(command))

    async def GetBudgetLine(self, request: pb.GetBudgetLineRequest, context: Any) -> pb.BudgetLine:
        line = code("line_code", request.line_code)
        year = fiscal_year("fiscal_year", request.fiscal_year)
        return budget_line_pb(await self.disbursement.budget_line(line, year))

    async def ListBudgetLines(
        self, request: pb.ListBudgetLinesRequest, context: Any
    ) -> pb.ListBudgetLinesResponse:
        year = fiscal_year("fiscal_year", request.fiscal_year, required=False)
        fund = code("fund_code", request.fund_code, required=False)
        views = await self.disbursement.budget_lines(year, fund)
        return pb.ListBudgetLinesResponse(lines=[budget_line_pb(view) for view in views])

    async def AllocateBatch(
        self, request: pb.AllocateBatchRequest, context: Any
    ) -> pb.BatchAllocation:
        policy = validation.optional_term("policy", OverBudgetPolicy, request.policy)
        command = commands.AllocateBatch(
            batch_id=validation.request_id("batch_id", request.batch_id),
            program_code=program_code("program_code", request.program_code),
            fiscal_year=fiscal_year("fiscal_year", request.fiscal_year),
            entries=batch_entries(request),
            policy=policy or OverBudgetPolicy.WAITING_LIST,
        )
        return batch_pb(await self.disbursement.allocate_batch(command))

    # Reservations -------------------------------------------------------------------------------

    async def ReserveBudget(self, request: pb.ReserveBudgetRequest, context: Any) -> pb.Reservation:
        command = commands.Reserve(
            application_id=validation.identifier("application_id", request.application_id),
            program_code=program_code("program_code", request.program_code),
            amount_fen=validation.fen("amount_fen", request.amount_fen, required=True),
            applicant_credit_code=validation.credit_code(
                "applicant_credit_code", request.applicant_credit_code
            ),
            applicant_name=validation.text(
                "applicant_name", request.applicant_name, max_len=MAX_NAME
            ),
            fiscal_year=fiscal_year("fiscal_year", request.fiscal_year, required=False),
        )
        return reservation_pb(await self.disbursement.reserve(command))

    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: Any
    ) -> pb.Reservation:
        command = commands.Release(
            application_id=validation.identifier("application_id", request.application_id),
            reason=validation.reason("reason", request.reason, max_len=MAX_REASON),
        )
        return reservation_pb(await self.disbursement.release(command))

    async def ConfirmAward(self, request: pb.ConfirmAwardRequest, context: Any) -> pb.Reservation:
        command = commands.ConfirmAward(
            application_id=validation.identifier("application_id", request.application_id),
            schedule=schedule_items("schedule", request.schedule),
        )
        return reservation_pb(await self.disbursement.confirm_award(command))

    async def ReleaseInstalment(
        self, request: pb.ReleaseInstalmentRequest, context: Any
    ) -> pb.Instalment:
        if request.instalment < 2:
            raise InvalidArgument(
                "instalment", "instalment 1 is released by the award; give 2 or later"
            )
        command = commands.ReleaseInstalment(
            application_id=validation.identifier("application_id", request.application_id),
            number=request.instalment,
            confirmed_by=validation.text("confirmed_by", request.confirmed_by, max_len=MAX_NAME),
            note=validation.text("note", request.note, max_len=MAX_NOTE, required=False),
        )
        return instalment_pb(await self.disbursement.release_instalment(command))

    async def GetInstalmentSchedule(
        self, request: pb.GetInstalmentScheduleRequest, context: Any
    ) -> pb.InstalmentSchedule:
        application_id = validation.identifier("application_id", request.application_id)
        rows = await self.disbursement.instalment_schedule(application_id, current_principal())
        return pb.InstalmentSchedule(
            application_id=application_id, instalments=[instalment_pb(row) for row in rows]
        )

    # Funding plans ------------------------------------------------------------------------------

    async def CreateFundingPlan(
        self, request: pb.CreateFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        request_id = validation.request_id("request_id", request.request_id)
        title = validation.text("title", request.title, max_len=MAX_TITLE)
        listed = application_ids("application_ids", request.application_ids, MAX_PLAN_LINES)
        programs = tuple(program_codes("program_codes", request.program_codes))
        line = code("budget_line_code", request.budget_line_code, required=False)
        single = (
            program_code("program_code", request.program_code)
            if request.program_code or not (programs or line or listed)
            else ""
        )
        if listed:
            for field, given in (
                ("fiscal_year", request.fiscal_year),
                ("awarded_before", request.HasField("awarded_before")),
                ("max_lines", request.max_lines),
            ):
                if given:
                    raise InvalidArgument(field, "filters awards; not with application_ids")
        if request.fiscal_year and not MIN_YEAR <= request.fiscal_year <= MAX_YEAR:
            raise InvalidArgument("fiscal_year", f"must be between {MIN_YEAR} and {MAX_YEAR}")
        if request.fiscal_year and not line:
            raise InvalidArgument("fiscal_year", "needs budget_line_code (a line's year)")
        if not 0 <= request.max_lines <= MAX_PLAN_LINES:
            raise InvalidArgument("max_lines", f"must be between 0 and {MAX_PLAN_LINES}")
        awarded_before = (
            timestamp("awarded_before", request.awarded_before)
            if request.HasField("awarded_before")
            else None
        )
        command = commands.CreatePlan(
            request_id=request_id,
            program_code=single,
            title=title,
            maker=current_principal().subject,
            budget_line_code=line,
            program_codes=programs,
            fiscal_year=request.fiscal_year,
            awarded_before=awarded_before,
            max_lines=request.max_lines,
            application_ids=listed,
        )
        return plan_pb(await self.disbursement.create_plan(command))

    async def EditFundingPlan(
        self, request: pb.EditFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        request_id = validation.request_id("request_id", request.request_id)
        plan_id = validation.identifier("plan_id", request.plan_id)
        add = application_ids("add_application_ids", request.add_application_ids, MAX_PLAN_LINES)
        remove = application_ids(
            "remove_application_ids", request.remove_application_ids, MAX_PLAN_LINES
        )
        if not add and not remove:
            raise InvalidArgument("add_application_ids", "name an award to add or to remove")
        both = sorted(set(add) & set(remove))
        if both:
            raise InvalidArgument(
                "remove_application_ids", f"both added and removed: {', '.join(both)}"
            )
        command = commands.EditPlan(
            request_id=request_id,
            plan_id=plan_id,
            add=add,
            remove=remove,
            edited_by=current_principal().subject,
            reason=optional_text("reason", request.reason, max_len=MAX_REASON),
        )
        return plan_pb(await self.disbursement.edit_plan(command))

    async def ApproveFundingPlan(
        self, request: pb.ApproveFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        command = commands.ApprovePlan(
            plan_id=validation.identifier("plan_id", request.plan_id),
            checker=current_principal().subject,
        )
        return plan_pb(await self.disbursement.approve_plan(command))

    async def CancelFundingPlan(
        self, request: pb.CancelFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        command = commands.CancelPlan(
            plan_id=validation.identifier("plan_id", request.plan_id),
            cancelled_by=current_principal().subject,
            reason=validation.text("reason", request.reason, max_len=MAX_REASON),
        )
        return plan_pb(await self.disbursement.cancel_plan(command))

    async def GetFundingPlan(
        self, request: pb.GetFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        plan_id = validation.identifier("plan_id", request.plan_id)
        return plan_pb(await self.disbursement.plan(plan_id))

    async def ListFundingPlans(
        self, request: pb.ListFundingPlansRequest, context: Any
    ) -> pb.ListFundingPlansResponse:
        program = program_code("program_code", request.program_code) if request.program_code else ""
        if not 0 <= request.page_size <= MAX_PLANS_PAGE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PLANS_PAGE}")
        after = _plan_page_after(request.page_token)
        views, more = await self.disbursement.plans(
            program,
            limit=request.page_size,
            after=after,
            with_lines=not request.without_lines,
        )
        last = views[-1].plan if views else None
        return pb.ListFundingPlansResponse(
            plans=[plan_pb(view) for view in views],
            next_page_token=_plan_page_token(last) if more and last is not None else "",
        )

    async def CompleteFundingPlan(
        self, request: pb.CompleteFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        command = commands.CompletePlan(plan_id=validation.identifier("plan_id", request.plan_id))
        return plan_pb(await self.disbursement.complete_plan(command))

    # Payments -----------------------------------------------------------------------------------

    async def ExecutePayment(
        self, request: pb.ExecutePaymentRequest, context: Any
    ) -> pb.PaymentLine:
        command = commands.ExecuteLine(
            plan_id=validation.identifier("plan_id", request.plan_id),
            line_id=validation.identifier("line_id", request.line_id),
        )
        return line_pb(await self.disbursement.execute_line(command))

    async def MarkPaymentFailed(
        self, request: pb.MarkPaymentFailedRequest, context: Any
    ) -> pb.PaymentLine:
        command = commands.FailLine(
            plan_id=validation.identifier("plan_id", request.plan_id),
            line_id=validation.identifier("line_id", request.line_id),
            reason=validation.reason("reason", request.reason, max_len=MAX_REASON)
            or "payment failed",
        )
        return line_pb(await self.disbursement.fail_line(command))

    async def RetryPaymentLine(
        self, request: pb.RetryPaymentLineRequest, context: Any
    ) -> pb.PaymentLine:
        command = commands.RetryLine(
            plan_id=validation.identifier("plan_id", request.plan_id),
            line_id=validation.identifier("line_id", request.line_id),
            reason=validation.text("reason", request.reason, max_len=MAX_REASON),
        )
        return line_pb(await self.disbursement.retry_line(command))

    # Ledger -------------------------------------------------------------------------------------

    async def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: Any
    ) -> pb.ListLedgerEntriesResponse:
        prefix = optional_text("account_prefix", request.account_prefix, max_len=MAX_LEDGER_FILTER)
        journal_id = optional_text("journal_id", request.journal_id, max_len=MAX_LEDGER_FILTER)
        rows = await self.disbursement.ledger(prefix, journal_id)
        return pb.ListLedgerEntriesResponse(entries=[entry_pb(row) for row in rows])

    # Reading for operators ----------------------------------------------------------------------

    async def GetApplicationFunds(
        self, request: pb.GetApplicationFundsRequest, context: Any
    ) -> pb.ApplicationFunds:
        application_id = validation.identifier("application_id", request.application_id)
        reservation, plans = await self.disbursement.application_funds(application_id)
        schedule = (
            await self.disbursement.instalment_schedule(application_id)
            if reservation is not None
            else []
        )
        return pb.ApplicationFunds(
            application_id=application_id,
            reservation=reservation_pb(reservation) if reservation is not None else None,
            plans=[plan_pb(view) for view in plans],
            instalments=[instalment_pb(row) for row in schedule],
        )

    async def ListPaymentLines(
        self, request: pb.ListPaymentLinesRequest, context: Any
    ) -> pb.ListPaymentLinesResponse:
        state = validation.optional_term("state", PaymentState, request.state)
        if not 0 <= request.limit <= MAX_LINES:
            raise InvalidArgument("limit", f"must be between 0 and {MAX_LINES}")
        program = program_code("program_code", request.program_code) if request.program_code else ""
        command = commands.ListLines(
            state=state, limit=request.limit or DEFAULT_LINES, program_code=program
        )
        rows = await self.disbursement.payment_lines(command)
        return pb.ListPaymentLinesResponse(lines=[line_pb(row) for row in rows])

    async def GetTrialBalance(
        self, request: pb.GetTrialBalanceRequest, context: Any
    ) -> pb.TrialBalance:
        key = budget_key("budget_key", request.budget_key)
        program = program_code("program_code", request.program_code) if request.program_code else ""
        if key and program:
            raise InvalidArgument("program_code", "give budget_key or program_code, not both")
        query = commands.TrialBalanceQuery(
            budget_key=key, program_code=program, as_of=as_of(request)
        )
        return trial_balance_pb(await self.disbursement.trial_balance(query))

    async def GetGrantStatement(
        self, request: pb.GetGrantStatementRequest, context: Any
    ) -> pb.GrantStatement:
        query = commands.GrantStatementQuery(
            application_id=validation.identifier("application_id", request.application_id),
            caller=current_principal(),
        )
        return statement_pb(await self.disbursement.grant_statement(query))

    async def ReconcileDay(
        self, request: pb.ReconcileDayRequest, context: Any
    ) -> pb.Reconciliation:
        wanted = day("day", request.day)
        command = commands.ReconcileDay(day=wanted, run_by=current_principal().subject)
        return reconciliation_pb(await self.disbursement.reconcile_day(command))

    async def GetReconciliation(
        self, request: pb.GetReconciliationRequest, context: Any
    ) -> pb.Reconciliation:
        wanted = day("day", request.day)
        return reconciliation_pb(await self.disbursement.reconciliation(wanted))

    async def ListReconciliationExceptions(
        self, request: pb.ListReconciliationExceptionsRequest, context: Any
    ) -> pb.ListReconciliationExceptionsResponse:
        state = validation.optional_term("state", ReconciliationExceptionState, request.state)
        wanted = optional_day("day", request.day)
        if not 0 <= request.page_size <= MAX_EXCEPTIONS:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_EXCEPTIONS}")
        limit = request.page_size or DEFAULT_EXCEPTIONS
        command = commands.ListReconciliationExceptions(
            state=str(state) if state is not None else None,
            day=wanted.isoformat() if wanted is not None else "",
            limit=limit + 1,
            after=_exception_page_after(request.page_token),
        )
        rows = await self.disbursement.reconciliation_exceptions(command)
        page = rows[:limit]
        more = len(rows) > limit
        return pb.ListReconciliationExceptionsResponse(
            exceptions=[exception_pb(row) for row in page],
            next_page_token=_exception_page_token(page[-1]) if more and page else "",
        )

    async def ResolveReconciliationException(
        self, request: pb.ResolveReconciliationExceptionRequest, context: Any
    ) -> pb.ReconciliationException:
        if request.exception_id <= 0:
            raise InvalidArgument("exception_id", "is required (a positive number)")
        resolution = validation.term("resolution", ReconciliationResolution, request.resolution)
        command = commands.ResolveReconciliationException(
            exception_id=request.exception_id,
            resolution=str(resolution),
            note=validation.text("note", request.note, max_len=MAX_NOTE),
            resolved_by=current_principal().subject,
        )
        return exception_pb(await self.disbursement.resolve_reconciliation_exception(command))

    # Clawbacks ----------------------------------------------------------------------------------

    async def OpenClawback(self, request: pb.OpenClawbackRequest, context: Any) -> pb.Clawback:
        command = commands.OpenClawback(
            request_id=validation.request_id("request_id", request.request_id),
            application_id=validation.identifier("application_id", request.application_id),
            amount_fen=validation.fen("amount_fen", request.amount_fen, required=True),
            reason=validation.text("reason", request.reason, max_len=MAX_REASON),
            opened_by=current_principal().subject,
        )
        return clawback_pb(await self.clawbacks.open(command))

    async def RecordRepayment(
        self, request: pb.RecordRepaymentRequest, context: Any
    ) -> pb.Clawback:
        command = commands.RecordRepayment(
            request_id=validation.request_id("request_id", request.request_id),
            clawback_id=validation.identifier("clawback_id", request.clawback_id),
            amount_fen=validation.fen("amount_fen", request.amount_fen, required=True),
            recorded_by=current_principal().subject,
        )
        return clawback_pb(await self.clawbacks.repay(command))

    async def GetClawback(self, request: pb.GetClawbackRequest, context: Any) -> pb.Clawback:
        clawback_id = validation.identifier("clawback_id", request.clawback_id)
        return clawback_pb(await self.clawbacks.get(clawback_id))

    async def ListClawbacks(
        self, request: pb.ListClawbacksRequest, context: Any
    ) -> pb.ListClawbacksResponse:
        application_id = (
            validation.identifier("application_id", request.application_id)
            if request.application_id
            else ""
        )
        state = validation.optional_term("state", ClawbackState, request.state)
        if not 0 <= request.limit <= MAX_LINES:
            raise InvalidArgument("limit", f"must be between 0 and {MAX_LINES}")
        query = commands.ListClawbacks(
            application_id=application_id, state=state, limit=request.limit or DEFAULT_LINES
        )
        views = await self.clawbacks.list(query)
        return pb.ListClawbacksResponse(clawbacks=[clawback_pb(view) for view in views])

    # Receiving accounts and returned payments --------------------------------------------------

    async def GetReceivingAccount(
        self, request: pb.GetReceivingAccountRequest, context: Any
    ) -> pb.ReceivingAccounts:
        application_id = validation.identifier("application_id", request.application_id)
        return accounts_pb(await self.accounts.get(application_id, current_principal()))

    async def ConfirmReceivingAccount(
        self, request: pb.ConfirmReceivingAccountRequest, context: Any
    ) -> pb.ReceivingAccounts:
        command = commands.ConfirmAccount(
            request_id=validation.request_id("request_id", request.request_id),
            application_id=validation.identifier("application_id", request.application_id),
            account=account_details("account", request.account),
            caller=current_principal(),
        )
        return accounts_pb(await self.accounts.confirm(command))

    async def ProposeAccountChange(
        self, request: pb.ProposeAccountChangeRequest, context: Any
    ) -> pb.ReceivingAccounts:
        command = commands.ProposeAccountChange(
            request_id=validation.request_id("request_id", request.request_id),
            application_id=validation.identifier("application_id", request.application_id),
            account=account_details("account", request.account),
            reason=validation.text("reason", request.reason, max_len=MAX_REASON),
            caller=current_principal(),
        )
        return accounts_pb(await self.accounts.propose(command))

    async def ApproveAccountChange(
        self, request: pb.ApproveAccountChangeRequest, context: Any
    ) -> pb.ReceivingAccounts:
        if request.version <= 0:
            raise InvalidArgument("version", "is required (the proposal's version, 2 or more)")
        command = commands.ApproveAccountChange(
            application_id=validation.identifier("application_id", request.application_id),
            version=request.version,
            approver=current_principal().subject,
        )
        return accounts_pb(await self.accounts.approve(command))

    async def ListAccountChanges(
        self, request: pb.ListAccountChangesRequest, context: Any
    ) -> pb.ListAccountChangesResponse:
        if not 0 <= request.limit <= MAX_LINES:
            raise InvalidArgument("limit", f"must be between 0 and {MAX_LINES}")
        program = program_code("program_code", request.program_code) if request.program_code else ""
        changes = await self.accounts.pending(program, request.limit or DEFAULT_LINES)
        return pb.ListAccountChangesResponse(changes=[change_pb(change) for change in changes])

    async def SyncGatewayReturns(
        self, request: pb.SyncGatewayReturnsRequest, context: Any
    ) -> pb.SyncGatewayReturnsResponse:
        since = now_utc() - RETURNS_LOOKBACK
        if request.HasField("since"):
            try:
                since = from_timestamp(request.since)
            except (ValueError, OverflowError) as error:
                raise InvalidArgument("since", "is not a valid time") from error
        command = commands.SyncReturns(since=since, run_by=current_principal().subject)
        lines, known = await self.disbursement.sync_returns(command)
        return pb.SyncGatewayReturnsResponse(returned=[line_pb(row) for row in lines], known=known)
