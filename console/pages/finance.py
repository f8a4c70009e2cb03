"""The finance officers' pages (财政): budget lines and program budgets, funding plans (make one
of the awards awaiting a plan, seen by program or by budget line, of every one that matches a
filter or of exactly those ticked; check and approve a colleague's, follow its payment run, read
its notice text, export it), the payment lines that failed or came back (退汇), and the changes
of receiving accounts (收款账户变更) waiting for a second officer's approval.

Everything is read from and done through DisbursementService with the officer's own token, so
maker-checker is the service's rule, not the page's: the page offers "approve" to every finance
officer and shows the service's refusal to the plan's maker. Which awards wait for a plan is the
applications' status (AWAITING_FUNDING_PLAN), the same awards CreateFundingPlan collects.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import grpc
from starlette.responses import Response
from starlette.routing import Route

from console.backend import ServiceRefusal
from console.i18n import BEIJING
from console.service_text import shown
from console.web import Page, field_errors, page
from grantflow.plan_exports import chinese_name, plan_csv, plan_notice, plan_xlsx
from grantflow.v1 import applications_pb2, common_pb2, disbursement_pb2
from services.common.vocabulary import (
    Department,
    PaymentState,
    PlanState,
    ReservationState,
    Role,
    VocabularyError,
)

AWAITING_PAGE_SIZE = 50
# A budget line's programs are counted by listing their awaiting awards, this many a call, at
# most AWAITING_COUNT_MAX a program (a larger count is shown as "at least").
AWAITING_COUNT_STEP = 500  # the applications service's largest page
AWAITING_COUNT_MAX = 5000
PLANS_PAGE_SIZE = 30
PAYMENT_LINES_STEP = 100
PAYMENT_LINES_MAX = 1000  # the service's own limit of ListPaymentLines
RUNNING_PLAN_STATES = frozenset({PlanState.APPROVED, PlanState.PAYING})
# Still to approve: the approve and cancel forms are offered.
OPEN_PLAN_STATES = frozenset({PlanState.DRAFT, PlanState.AWAITING_SECOND_APPROVAL})
MAX_CANCEL_REASON = 500
PAYMENT_FILTERS = {
    "failed": PaymentState.FAILED,
    "returned": PaymentState.RETURNED,
    "pending": PaymentState.PENDING,
    "paid": PaymentState.PAID,
    "all": None,
}
ACCOUNT_CHANGES_STEP = 100
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _plan_state(number: int) -> PlanState | None:
    try:
        return PlanState.from_proto(number)
    except VocabularyError:
        return None


def _payment_state(number: int) -> PaymentState | None:
    try:
        return PaymentState.from_proto(number)
    except VocabularyError:
        return None


def _reservation_state(number: int) -> ReservationState | None:
    try:
        return ReservationState.from_proto(number)
    except VocabularyError:
        return None


def _department(number: int) -> Department | None:
    try:
        return Department.from_proto(number)
    except VocabularyError:
        return None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


async def _newest_rules(current: Page) -> dict[str, Any]:
    """{program code: ProgramRule} of the catalogue, each by its newest version, in code order."""
    answer = await current.call(
        current.clients.applications.ListPrograms, applications_pb2.ListProgramsRequest()
    )
    newest: dict[str, Any] = {}
    for rule in answer.programs:
        if rule.code not in newest or rule.version > newest[rule.code].version:
            newest[rule.code] = rule
    return {code: newest[code] for code in sorted(newest)}


async def program_names(current: Page) -> dict[str, str]:
    """{program code: name} of the catalogue, by its newest version, in code order."""
    return {code: rule.name for code, rule in (await _newest_rules(current)).items()}


def line_programs(rules: dict[str, Any]) -> dict[str, list[str]]:
    """{budget line code: the codes of the programs drawing on it}, lines in code order; a
    program with its own budget (no line) is in none."""
    lines: dict[str, list[str]] = {}
    for code, rule in rules.items():
        if rule.budget_line_code:
            lines.setdefault(rule.budget_line_code, []).append(code)
    return dict(sorted(lines.items()))


# ------------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class ProgramBudgetRow:
    code: str
    name: str
    budget: disbursement_pb2.ProgramBudget | None
    problem: str = ""


@page(Role.FINANCE)
async def budgets(current: Page) -> Response:
    query = current.request.query_params
    # This year's lines unless the officer asks for another year ("year=" empty: every year).
    this_year = datetime.now(BEIJING).year
    year = _int(query.get("year"), 0) if "year" in query else this_year
    fund = query.get("fund", "").strip()
    errors: dict[str, str] = {}
    lines: list[disbursement_pb2.BudgetLine] = []
    try:
        answer = await current.call(
            current.clients.disbursement.ListBudgetLines,
            disbursement_pb2.ListBudgetLinesRequest(fiscal_year=year, fund_code=fund),
        )
        lines = list(answer.lines)
    except ServiceRefusal as refusal:
        if refusal.code != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        errors = field_errors(refusal, ["fiscal_year", "fund_code"], lang=current.lang)
    names = await program_names(current)

    async def one(code: str) -> ProgramBudgetRow:
        try:
            budget = await current.call(
                current.clients.disbursement.GetProgramBudget,
                disbursement_pb2.GetProgramBudgetRequest(
                    program_code=code, fiscal_year=year if not errors else 0
                ),
            )
        except ServiceRefusal as refusal:
            if refusal.code == grpc.StatusCode.PERMISSION_DENIED:
                raise
            return ProgramBudgetRow(code, names[code], None, refusal.message)
        return ProgramBudgetRow(code, names[code], budget)

    programs = await asyncio.gather(*(one(code) for code in names))
    return current.render(
        "finance/budgets.html",
        status_code=400 if errors else 200,
        title=current.tr("预算科目与项目预算", "Budget lines and program budgets"),
        lines=lines,
        programs=programs,
        names=names,
        year=year,
        fund=fund,
        errors=errors,
        this_year=this_year,
        department=_department,
        short=chinese_name,
    )


# ------------------------------------------------------------------------------- plans


async def _awaiting(current: Page, program: str, token: str) -> tuple[list[Any], str]:
    """The program's awards that wait for a funding plan (one page of them)."""
    answer = await current.call(
        current.clients.applications.ListApplications,
        applications_pb2.ListApplicationsRequest(
            program_code=program,
            status=common_pb2.GRANT_STAGE_AWAITING_FUNDING_PLAN,
            page_size=AWAITING_PAGE_SIZE,
            page_token=token,
        ),
    )
    return list(answer.applications), answer.next_page_token


@dataclass(frozen=True)
class AwaitingProgram:
    """One program of a budget line: how many of its awards wait for a plan, and their sum."""

    code: str
    name: str
    count: int
    total_fen: int
    more: bool  # more than AWAITING_COUNT_MAX wait: count and sum are of the oldest ones


async def _all_awaiting(current: Page, program: str) -> tuple[list[Any], bool]:
    """The program's awards waiting for a plan, up to AWAITING_COUNT_MAX (and whether more wait).
    Counted by listing them: the finance role has no summary call (SummarizeApplications is the
    operators'), and the line's table shows them anyway."""
    awards: list[Any] = []
    token = ""
    while True:
        answer = await current.call(
            current.clients.applications.ListApplications,
            applications_pb2.ListApplicationsRequest(
                program_code=program,
                status=common_pb2.GRANT_STAGE_AWAITING_FUNDING_PLAN,
                page_size=AWAITING_COUNT_STEP,
                page_token=token,
            ),
        )
        awards.extend(answer.applications)
        token = answer.next_page_token
        if not token:
            return awards, False
        if len(awards) >= AWAITING_COUNT_MAX:
            return awards, True


async def _line_awaiting(
    current: Page, programs: list[str], names: dict[str, str]
) -> tuple[list[AwaitingProgram], list[Any]]:
    """Each program of a budget line with its awaiting count and sum, and all those awards,
    oldest first (the order a filter with 最多N项 takes them in)."""
    found = await asyncio.gather(*(_all_awaiting(current, code) for code in programs))
    rows = [
        AwaitingProgram(
            code, names.get(code, code), len(awards), sum(a.award_amount_fen for a in awards), more
        )
        for code, (awards, more) in zip(programs, found, strict=True)
    ]
    merged = [award for awards, _ in found for award in awards]
    merged.sort(key=lambda a: (a.updated_at.seconds, a.updated_at.nanos, a.application_id))
    return rows, merged


async def _plans_page(
    current: Page,
    *,
    values: dict[str, str] | None = None,
    ticked: dict[str, list[str]] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    query = current.request.query_params
    values = dict(values or {})
    errors = dict(errors or {})
    program = values.get("program", query.get("program", "")).strip()
    line = values.get("line", query.get("line", "")).strip()
    rules = await _newest_rules(current)
    names = {code: rule.name for code, rule in rules.items()}
    lines = line_programs(rules)
    if line and line not in lines:
        errors.setdefault(
            "line",
            current.tr(
                "没有项目使用这个预算科目", "No program of the catalogue draws on this budget line"
            ),
        )
        line = ""
    if line:
        program = ""  # one view at a time: the line's programs, or one program
    if program and program not in names:
        errors.setdefault("program", current.tr("没有这个项目", "No such program"))
        program = ""
    plans_token = query.get("plans", "")
    plans_answer = await current.call(
        current.clients.disbursement.ListFundingPlans,
        disbursement_pb2.ListFundingPlansRequest(
            program_code=program,
            page_size=PLANS_PAGE_SIZE,
            page_token=plans_token,
            without_lines=True,  # a city plan has thousands of lines; the list needs none
        ),
    )
    awaiting: list[Any] = []
    next_token = ""
    line_rows: list[AwaitingProgram] = []
    start = max(_int(query.get("start"), 0), 0)
    next_start = 0
    if program:
        awaiting, next_token = await _awaiting(current, program, query.get("awaiting", ""))
    elif line:
        line_rows, every = await _line_awaiting(current, lines[line], names)
        awaiting = every[start : start + AWAITING_PAGE_SIZE]
        next_start = start + AWAITING_PAGE_SIZE if len(every) > start + AWAITING_PAGE_SIZE else 0
    year = datetime.now(BEIJING).year
    values.setdefault("program", program)
    values.setdefault("line", line)
    if program:
        values.setdefault("title", f"{chinese_name(names.get(program, program))} {year}年资助计划")
    elif line:
        values.setdefault("title", f"预算科目{line} {year}年资助计划")
    else:
        values.setdefault("title", "")
    values.setdefault("max_lines", "")
    # A fresh id for each rendering of the form: the same form posted twice makes one plan.
    values.setdefault("request_id", uuid.uuid4().hex)
    # The line's programs are all ticked until the officer unticks some.
    ticked = ticked or {"program_codes": list(lines.get(line, [])), "application_ids": []}
    return current.render(
        "finance/plans.html",
        status_code=status_code,
        title=current.tr("资助计划", "Funding plans"),
        plans=list(plans_answer.plans),
        plans_token=plans_token,
        plans_next=plans_answer.next_page_token,
        names=names,
        lines=lines,
        program=program,
        line=line,
        line_rows=line_rows,
        line_total=sum(row.total_fen for row in line_rows),
        line_count=sum(row.count for row in line_rows),
        awaiting=awaiting,
        awaiting_total=sum(a.award_amount_fen for a in awaiting),
        awaiting_next=next_token,
        awaiting_token=query.get("awaiting", ""),
        start=start,
        next_start=next_start,
        values=values,
        ticked_programs=set(ticked.get("program_codes", [])),
        ticked_awards=set(ticked.get("application_ids", [])),
        errors=errors,
        plan_state=_plan_state,
    )


# The request's fields the form has (a refusal naming another is shown at the top of the form).
PLAN_FORM_FIELDS = {
    "request_id": "request_id",
    "title": "title",
    "program_code": "program",
    "budget_line_code": "line",
    "program_codes": "program_codes",
    "application_ids": "application_ids",
    "max_lines": "max_lines",
}


def _plan_request(
    current: Page, values: dict[str, str], ticked: dict[str, list[str]]
) -> tuple[disbursement_pb2.CreateFundingPlanRequest | None, dict[str, str]]:
    """The CreateFundingPlan request the form asks for, or the form's own field errors (nothing
    is sent then). A filter takes every awaiting award of the view (the line's ticked programs,
    or the one program), at most 最多N项 of them, oldest first; a list takes exactly the ticked
    awards, bounded by the view (so an award of another budget is refused, not planned)."""
    errors: dict[str, str] = {}
    line, program = values["line"].strip(), values["program"].strip()
    listed = values["kind"] == "list"
    max_lines = 0
    text = values["max_lines"].strip()
    if text and not listed:
        if not text.isdigit() or int(text) < 1:
            errors["max_lines"] = current.tr(
                "请填写正整数，或留空表示全部", "A whole number above 0, or empty for all"
            )
        else:
            max_lines = int(text)
    if not (line or program):
        errors[""] = current.tr("请先选择预算科目或项目", "Choose a budget line or a program first")
    if listed and not ticked["application_ids"]:
        # Sent empty, the request would be a filter of the whole line: refuse it here.
        errors["application_ids"] = current.tr(
            "请在下表中勾选要列入计划的资助", "Tick the awards to plan in the table below"
        )
    if not listed and line and not ticked["program_codes"]:
        errors["program_codes"] = current.tr(
            "请至少勾选该预算科目的一个项目", "Tick at least one program of the budget line"
        )
    if errors:
        return None, errors
    request = disbursement_pb2.CreateFundingPlanRequest(
        request_id=values["request_id"], title=values["title"].strip()
    )
    if line:
        request.budget_line_code = line
    if listed:
        request.application_ids.extend(ticked["application_ids"])
        if program:
            request.program_codes.append(program)
    elif line:
        request.program_codes.extend(ticked["program_codes"])
        request.max_lines = max_lines
    else:
        request.program_code = program
        request.max_lines = max_lines
    return request, {}


@page(Role.FINANCE)
async def plans(current: Page) -> Response:
    if current.request.method == "GET":
        return await _plans_page(current)
    form = await current.request.form()
    values = {
        key: str(form.get(key, ""))
        for key in ("request_id", "program", "line", "title", "max_lines", "kind")
    }
    ticked = {
        key: [str(value).strip() for value in form.getlist(key) if str(value).strip()]
        for key in ("program_codes", "application_ids")
    }
    request, errors = _plan_request(current, values, ticked)
    if request is None:
        return await _plans_page(
            current, values=values, ticked=ticked, errors=errors, status_code=400
        )
    try:
        plan = await current.call(current.clients.disbursement.CreateFundingPlan, request)
    except ServiceRefusal as refusal:
        if refusal.code == grpc.StatusCode.INVALID_ARGUMENT:
            errors = {
                PLAN_FORM_FIELDS.get(field, field): message
                for field, message in field_errors(
                    refusal, PLAN_FORM_FIELDS, lang=current.lang
                ).items()
            }
            return await _plans_page(
                current, values=values, ticked=ticked, errors=errors, status_code=400
            )
        if refusal.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS):
            # e.g. no awards wait any more (a colleague's plan took them): say so on the form.
            return await _plans_page(
                current,
                values=values,
                ticked=ticked,
                errors={"": refusal.message},
                status_code=409,
            )
        raise
    return current.redirect(f"/finance/plans/{plan.plan_id}")


@dataclass(frozen=True)
class Progress:
    """Where a plan's payment run stands: lines and money paid, failed and still pending."""

    total: int
    paid: int
    failed: int
    pending: int
    paid_fen: int
    failed_fen: int
    pending_fen: int
    total_fen: int

    @property
    def paid_percent(self) -> int:
        return self.paid * 100 // self.total if self.total else 0

    @property
    def failed_percent(self) -> int:
        return self.failed * 100 // self.total if self.total else 0

    @classmethod
    def of(cls, plan: disbursement_pb2.FundingPlan) -> Progress:
        counts = {state: 0 for state in PaymentState}
        sums = {state: 0 for state in PaymentState}
        for line in plan.lines:
            state = _payment_state(line.state) or PaymentState.PENDING
            counts[state] += 1
            sums[state] += line.amount_fen
        return cls(
            total=len(plan.lines),
            # A payment returned since (退汇) was paid all the same; one settling is pending.
            paid=counts[PaymentState.PAID] + counts[PaymentState.RETURNED],
            failed=counts[PaymentState.FAILED],
            pending=counts[PaymentState.PENDING] + counts[PaymentState.SETTLING],
            paid_fen=sums[PaymentState.PAID] + sums[PaymentState.RETURNED],
            failed_fen=sums[PaymentState.FAILED],
            pending_fen=sums[PaymentState.PENDING] + sums[PaymentState.SETTLING],
            total_fen=sum(sums.values()),
        )


async def _plan(current: Page) -> disbursement_pb2.FundingPlan:
    return await current.call(
        current.clients.disbursement.GetFundingPlan,
        disbursement_pb2.GetFundingPlanRequest(plan_id=current.request.path_params["plan_id"]),
    )


def _progress_values(plan: disbursement_pb2.FundingPlan) -> dict[str, Any]:
    state = _plan_state(plan.state)
    return {
        "plan": plan,
        "state": state,
        "running": state in RUNNING_PLAN_STATES,
        "progress": Progress.of(plan),
        "payment_state": _payment_state,
    }


async def _plan_page(
    current: Page,
    *,
    error: str = "",
    cancel_error: str = "",
    reason: str = "",
    flash: str = "",
    status_code: int = 200,
) -> Response:
    plan = await _plan(current)
    names = await program_names(current)
    program_name = names.get(plan.program_code, plan.program_code)
    subject = current.signed_in.subject
    return current.render(
        "finance/plan.html",
        status_code=status_code,
        title=plan.title,
        program_name=program_name,
        notice=plan_notice(plan, names),
        approve_error=error,
        cancel_error=cancel_error,
        cancel_reason=reason,
        flash=flash,
        is_maker=subject == plan.created_by,
        is_first_approver=bool(plan.first_approved_by) and subject == plan.first_approved_by,
        open_plan=_plan_state(plan.state) in OPEN_PLAN_STATES,
        **_progress_values(plan),
    )


@page(Role.FINANCE)
async def plan_detail(current: Page) -> Response:
    flash = ""
    query = current.request.query_params
    if query.get("approved"):
        flash = current.tr("已审核，开始拨付。", "Approved: payment has started.")
    elif query.get("first_approved"):
        flash = current.tr(
            "一级审批已完成；计划总额超过二级审批额度，须由另一位财政人员二级审批后拨付。",
            "First approval given: the total is above the second-approval level, so another "
            "finance officer must approve it before payment.",
        )
    elif query.get("cancelled"):
        flash = current.tr(
            "资助计划已撤销，其中的项目回到待下达资助计划，可编入新的计划。",
            "The plan is cancelled: its awards wait for the next plan.",
        )
    return await _plan_page(current, flash=flash)


@page(Role.FINANCE)
async def plan_progress(current: Page) -> Response:
    """The progress panel alone, for htmx to poll while the plan is paying."""
    return current.render("finance/_progress.html", **_progress_values(await _plan(current)))


@page(Role.FINANCE)
async def plan_approve(current: Page) -> Response:
    plan_id = current.request.path_params["plan_id"]
    try:
        approved = await current.call(
            current.clients.disbursement.ApproveFundingPlan,
            disbursement_pb2.ApproveFundingPlanRequest(plan_id=plan_id),
        )
    except ServiceRefusal as refusal:
        # The maker's own approval (PERMISSION_DENIED) and a plan no longer in draft
        # (FAILED_PRECONDITION) are the service's rules: its message is the explanation.
        if refusal.code not in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.FAILED_PRECONDITION,
        ):
            raise
        message = refusal.message
        plan = await _plan(current)
        if refusal.code == grpc.StatusCode.PERMISSION_DENIED and (
            plan.first_approved_by == current.signed_in.subject
        ):
            message = (
                current.tr(
                    "您已作一级审批；计划总额超过二级审批额度，须由另一位财政人员作二级审批。",
                    "You gave the first approval: another finance officer must give the second.",
                )
                + f" ({refusal.message})"
            )
        elif refusal.code == grpc.StatusCode.PERMISSION_DENIED:
            message = (
                current.tr(
                    "制单人不能审核自己制作的资助计划，须由另一位财政人员审核（制单审核分离）。",
                    "The maker of a funding plan may not approve it: another finance officer must.",
                )
                + f" ({refusal.message})"
            )
        return await _plan_page(current, error=message, status_code=409)
    if approved.state == PlanState.AWAITING_SECOND_APPROVAL.to_proto():
        return current.redirect(f"/finance/plans/{plan_id}?first_approved=1")
    return current.redirect(f"/finance/plans/{plan_id}?approved=1")


@page(Role.FINANCE)
async def plan_cancel(current: Page) -> Response:
    plan_id = current.request.path_params["plan_id"]
    reason = (await current.form()).get("reason", "")
    try:
        await current.call(
            current.clients.disbursement.CancelFundingPlan,
            disbursement_pb2.CancelFundingPlanRequest(plan_id=plan_id, reason=reason.strip()),
        )
    except ServiceRefusal as refusal:
        # A missing or over-long reason (INVALID_ARGUMENT), a plan approved meanwhile
        # (FAILED_PRECONDITION): the service's message, beside the form.
        if refusal.code == grpc.StatusCode.INVALID_ARGUMENT:
            message = field_errors(refusal, ["reason"], lang=current.lang)
            return await _plan_page(
                current,
                cancel_error=next(iter(message.values())),
                reason=reason,
                status_code=400,
            )
        if refusal.code != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        return await _plan_page(
            current, cancel_error=refusal.message, reason=reason, status_code=409
        )
    return current.redirect(f"/finance/plans/{plan_id}?cancelled=1")


def _download_name(plan: disbursement_pb2.FundingPlan, extension: str) -> str:
    return f"funding-plan-{plan.program_code}-{plan.plan_id[:8]}.{extension}"


@page(Role.FINANCE)
async def plan_export_csv(current: Page) -> Response:
    plan = await _plan(current)
    return Response(
        plan_csv(plan),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_download_name(plan, "csv")}"'},
    )


@page(Role.FINANCE)
async def plan_export_xlsx(current: Page) -> Response:
    plan = await _plan(current)
    names = await program_names(current)
    return Response(
        plan_xlsx(plan, names),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{_download_name(plan, "xlsx")}"'},
    )


# ------------------------------------------------------------------------------- payments


@page(Role.FINANCE)
async def payments(current: Page) -> Response:
    query = current.request.query_params
    chosen = query.get("state", "failed")
    if chosen not in PAYMENT_FILTERS:
        chosen = "failed"
    program = query.get("program", "").strip()
    limit = min(max(_int(query.get("limit"), PAYMENT_LINES_STEP), 1), PAYMENT_LINES_MAX)
    names = await program_names(current)
    if program not in names:
        program = ""
    state = PAYMENT_FILTERS[chosen]
    answer = await current.call(
        current.clients.disbursement.ListPaymentLines,
        disbursement_pb2.ListPaymentLinesRequest(
            state=state.to_proto() if state else disbursement_pb2.PAYMENT_STATE_UNSPECIFIED,
            limit=limit,
            program_code=program,
        ),
    )
    lines = list(answer.lines)
    return current.render(
        "finance/payments.html",
        title=current.tr("支付明细", "Payments"),
        lines=lines,
        chosen=chosen,
        filters=PAYMENT_FILTERS,
        program=program,
        names=names,
        limit=limit,
        more=len(lines) == limit and limit < PAYMENT_LINES_MAX,
        next_limit=min(limit + PAYMENT_LINES_STEP, PAYMENT_LINES_MAX),
        total_fen=sum(line.amount_fen for line in lines),
        payment_state=_payment_state,
    )


# ------------------------------------------------------------------------ account changes


async def _account_changes_page(
    current: Page,
    *,
    errors: dict[str, str] | None = None,
    flash: str = "",
    status_code: int = 200,
) -> Response:
    query = current.request.query_params
    program = query.get("program", "").strip()
    limit = min(max(_int(query.get("limit"), ACCOUNT_CHANGES_STEP), 1), PAYMENT_LINES_MAX)
    names = await program_names(current)
    if program not in names:
        program = ""
    answer = await current.call(
        current.clients.disbursement.ListAccountChanges,
        disbursement_pb2.ListAccountChangesRequest(limit=limit, program_code=program),
    )
    changes = list(answer.changes)
    errors = errors or {}
    listed = {change.application_id for change in changes}
    return current.render(
        "finance/accounts.html",
        status_code=status_code,
        title=current.tr("收款账户变更审批", "Receiving-account changes"),
        changes=changes,
        names=names,
        program=program,
        limit=limit,
        more=len(changes) == limit and limit < PAYMENT_LINES_MAX,
        next_limit=min(limit + ACCOUNT_CHANGES_STEP, PAYMENT_LINES_MAX),
        errors=errors,
        # A refusal for a change no longer waiting (approved or replaced meanwhile) has no row.
        other_errors=[message for key, message in errors.items() if key not in listed],
        flash=flash,
        subject=current.signed_in.subject,
        reservation_state=_reservation_state,
        returned=ReservationState.RETURNED,
    )


@page(Role.FINANCE)
async def account_changes(current: Page) -> Response:
    flash = ""
    approved = current.request.query_params.get("approved", "")
    if approved:
        flash = current.tr(
            f"申报 {approved} 的收款账户变更已审批，新账户即时生效。",
            f"The change of application {approved}'s receiving account is approved: in force now.",
        )
    return await _account_changes_page(current, flash=flash)


@page(Role.FINANCE)
async def account_change_approve(current: Page) -> Response:
    """Approves one waiting change; the proposer's own approval, and a change approved or
    replaced meanwhile, are refused by the service, whose message shows beside the change."""
    application_id = current.request.path_params["application_id"]
    version = _int((await current.form()).get("version"), 0)
    try:
        await current.call(
            current.clients.disbursement.ApproveAccountChange,
            disbursement_pb2.ApproveAccountChangeRequest(
                application_id=application_id, version=version
            ),
        )
    except ServiceRefusal as refusal:
        if refusal.code not in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.INVALID_ARGUMENT,
        ):
            raise
        return await _account_changes_page(
            current,
            errors={application_id: shown(current.lang, refusal.message)},
            status_code=409,
        )
    return current.redirect("/finance/accounts?" + urlencode({"approved": application_id}))


routes = [
    Route("/finance", budgets),
    Route("/finance/plans", plans, methods=["GET", "POST"]),
    Route("/finance/plans/{plan_id}", plan_detail),
    Route("/finance/plans/{plan_id}/progress", plan_progress),
    Route("/finance/plans/{plan_id}/approve", plan_approve, methods=["POST"]),
    Route("/finance/plans/{plan_id}/cancel", plan_cancel, methods=["POST"]),
    Route("/finance/plans/{plan_id}/export.csv", plan_export_csv),
    Route("/finance/plans/{plan_id}/export.xlsx", plan_export_xlsx),
    Route("/finance/payments", payments),
    Route("/finance/accounts", account_changes),
    Route("/finance/accounts/{application_id}/approve", account_change_approve, methods=["POST"]),
]
