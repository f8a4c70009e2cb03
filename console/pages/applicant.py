"""The applicants' console (申报单位): the programs open now with their rules in plain words, the
application form built from a program's rule, the enterprise's own applications with their
status (refreshed while the person watches), 补正 and withdrawal, the award's receiving account
(收款账户: confirmed by the applicant, a change proposed for finance to approve) and its instalment
schedule, and the public notices with objections (公示 and 异议/投诉/举报; public, so every role
and signed-out visitors read them).

Everything goes through the services with the signed-in user's token: the applications service
decides who sees what and refuses bad input naming the field, which the pages show beside it.
What the console checks itself is only what cannot reach a service at all: a figure that is not
a number, in the unit the person typed it in (yuan, per cent, a count).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.routing import Route

from console.backend import ServiceRefusal
from console.figures import Figure, figure, hundredths
from console.i18n import BEIJING, pick, term_label
from console.service_text import shown
from console.web import Page, field_errors, page
from grantflow.format import yuan
from grantflow.v1 import (
    applications_pb2,
    common_pb2,
    disbursement_pb2,
    notice_pb2,
    notifications_pb2,
)
from services.common.vocabulary import (
    AmountKind,
    DeliveryStatus,
    Department,
    EligibilityCheck,
    GrantStage,
    InstalmentState,
    Milestone,
    ObjectionKind,
    ObjectionState,
    RegistrationKind,
    Role,
    Term,
    VocabularyError,
)

TermT = TypeVar("TermT", bound=Term)

APPLICATIONS_PAGE_SIZE = 20
NOTICES_PAGE_SIZE = 10
# A document is hashed as it streams in; the console keeps nothing of it but the hash.
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
HASH_CHUNK = 1024 * 1024

# Stages after which nothing changes any more: the status panel stops polling.
FINAL_STAGES = frozenset({GrantStage.PAID, GrantStage.REJECTED, GrantStage.WITHDRAWN})
# Stages a withdrawal cannot reach (the money is planned or paid); the service has the last word.
NOT_WITHDRAWABLE = FINAL_STAGES | {GrantStage.IN_PAYMENT, GrantStage.PAYMENT_FAILED}
# Stages of an award past its notice: it has a receiving account to confirm (收款账户) and, when
# paid in instalments, a schedule to follow.
AWARDED_STAGES = frozenset(
    {
        GrantStage.AWAITING_FUNDING_PLAN,
        GrantStage.IN_PAYMENT,
        GrantStage.PAYMENT_FAILED,
        GrantStage.PAID,
        GrantStage.INSTALMENTS,
        GrantStage.MILESTONE_OVERDUE,
    }
)
ACCOUNT_FIELDS = ("account_name", "account_number", "bank_code", "bank_name", "reason")


# ------------------------------------------------------------------------------------- figures


class FigureError(ValueError):
    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en


NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def parse_figure(spec: Figure, text: str) -> int:
    """What a person typed, as the integer the service keeps: yuan to fen and per cent to basis
    points exactly (Decimal, never a float), a count as it is. Thousands separators, spaces and
    a ¥ or 元 are forgiven; a sign is kept, so the service judges a negative figure itself."""
    cleaned = re.sub(r"[,\s，¥￥元%]", "", text)
    if not cleaned:
        raise FigureError("请填写", "required")
    if not NUMBER.match(cleaned):
        raise FigureError("请填写数字", "enter a number")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise FigureError("请填写数字", "enter a number") from None
    if spec.scaled:
        stored = amount * 100
        if stored != stored.to_integral_value():
            raise FigureError("最多两位小数", "at most two decimals")
        return int(stored)
    if amount != amount.to_integral_value():
        raise FigureError("请填写整数", "enter a whole number")
    return int(amount)


# ----------------------------------------------------------------------------- rules in words


def latest_programs(programs: Any) -> list[common_pb2.ProgramRule]:
    """The newest version of each program, by code."""
    newest: dict[str, common_pb2.ProgramRule] = {}
    for rule in programs:
        if rule.code not in newest or rule.version > newest[rule.code].version:
            newest[rule.code] = rule
    return [newest[code] for code in sorted(newest)]


def is_open(rule: common_pb2.ProgramRule, now: datetime) -> bool:
    """Within the application window, where the rule has one (an unset end is no end)."""
    at = now.timestamp()
    if rule.HasField("window_opens_at") and at < rule.window_opens_at.seconds:
        return False
    if rule.HasField("window_closes_at") and at >= rule.window_closes_at.seconds:
        return False
    return True


def percent(basis_points: int) -> str:
    return f"{hundredths(basis_points)}%"


def _term(vocabulary: type[TermT], number: int) -> TermT | None:
    try:
        return vocabulary.from_proto(number)
    except VocabularyError:
        return None


def amount_rule_words(rule: common_pb2.ProgramRule, lang: str) -> list[str]:
    """The amount rule as sentences a person reads."""
    amount = rule.amount_rule
    kind = _term(AmountKind, amount.kind) or AmountKind.RATIO_CAP
    words: list[str] = []
    if kind == AmountKind.RATIO_CAP:
        basis = figure(amount.basis_figure).label(lang)
        words.append(
            pick(
                lang,
                f"按{basis}的 {percent(amount.rate_basis_points)} 资助，"
                f"每项最高 {yuan(amount.cap_fen)}",
                f"{percent(amount.rate_basis_points)} of {basis.lower()}, "
                f"at most {yuan(amount.cap_fen)}",
            )
        )
        if amount.minimum_basis_fen:
            words.append(
                pick(
                    lang,
                    f"{basis}不足 {yuan(amount.minimum_basis_fen)} 的不予资助",
                    f"nothing if {basis.lower()} is below {yuan(amount.minimum_basis_fen)}",
                )
            )
    elif kind == AmountKind.PER_UNIT:
        unit = figure(amount.unit_figure)
        words.append(
            pick(
                lang,
                f"按{unit.label(lang)}每{unit.unit} {yuan(amount.amount_per_unit_fen)}",
                f"{yuan(amount.amount_per_unit_fen)} per unit of {unit.label(lang).lower()}",
            )
        )
        if amount.cap_fen:
            words.append(
                pick(lang, f"每项最高 {yuan(amount.cap_fen)}", f"at most {yuan(amount.cap_fen)}")
            )
    elif kind == AmountKind.SCORE_TIERS:
        tiers = "；".join(
            pick(
                lang,
                f"{hundredths(tier.min_score_centi)} 分以上 {yuan(tier.amount_fen)}",
                f"{hundredths(tier.min_score_centi)} points or more: {yuan(tier.amount_fen)}",
            )
            for tier in amount.tiers
        )
        words.append(
            pick(lang, f"按专家评审得分分档奖励：{tiers}", f"by expert score tier: {tiers}")
        )
    if amount.enterprise_year_cap_fen:
        words.append(
            pick(
                lang,
                f"同一单位每年合计最高 {yuan(amount.enterprise_year_cap_fen)}",
                f"at most {yuan(amount.enterprise_year_cap_fen)} per enterprise a year",
            )
        )
    if amount.instalments > 1:
        words.append(
            pick(
                lang,
                f"分 {amount.instalments} 期拨付",
                f"paid in {amount.instalments} instalments",
            )
        )
    return words


def who_may_apply(rule: common_pb2.ProgramRule, lang: str) -> str:
    kinds = [
        term_label(lang, RegistrationKind.parse(kind))
        for kind in rule.eligible_registration_kinds
        if kind in set(RegistrationKind)
    ]
    who = ("、" if lang != "en" else ", ").join(kinds) or pick(lang, "各类单位", "any body")
    if rule.sme_only:
        who = pick(
            lang,
            f"{who}，须为中小微企业（按 2011 年标准划型）",
            f"{who}; small and medium enterprises only (2011 standard)",
        )
    return pick(lang, f"在本市登记注册的{who}", f"{who} registered in the city")


def departments(numbers: Any, lang: str) -> list[str]:
    return [term_label(lang, term) for n in numbers if (term := _term(Department, n)) is not None]


@dataclass
class ProgramView:
    rule: common_pb2.ProgramRule
    open: bool
    name: str
    who: str
    amount: list[str]
    figures: list[Figure]
    owner: str
    reviewers: list[str]
    stages: list[str]  # expert review, audit: what else the application goes through


def program_view(rule: common_pb2.ProgramRule, now: datetime, lang: str) -> ProgramView:
    stages = []
    if rule.expert_review.panel_size:
        stages.append(
            pick(
                lang,
                f"专家评审（{rule.expert_review.panel_size} 人评审组）",
                f"expert review (panel of {rule.expert_review.panel_size})",
            )
        )
    if rule.special_audit.audited_figure:
        audited = figure(rule.special_audit.audited_figure).label(lang)
        stages.append(pick(lang, f"专项审计（{audited}）", f"special audit ({audited.lower()})"))
    owner = _term(Department, rule.owner_department)
    return ProgramView(
        rule=rule,
        open=is_open(rule, now),
        name=rule.name,
        who=who_may_apply(rule, lang),
        amount=amount_rule_words(rule, lang),
        figures=[figure(name) for name in rule.required_figures],
        owner=term_label(lang, owner),
        reviewers=departments(rule.review_departments, lang),
        stages=stages,
    )


async def open_program(current: Page, code: str) -> common_pb2.ProgramRule | None:
    answer = await current.call(
        current.clients.applications.ListPrograms, applications_pb2.ListProgramsRequest(code=code)
    )
    rules = [rule for rule in latest_programs(answer.programs) if rule.code == code]
    return rules[0] if rules else None


# ------------------------------------------------------------------------------------ messages


# The services' field messages are English; the common ones read in Chinese first.
def service_message(current: Page, message: str) -> str:
    return shown(current.lang, message)


def refusal_errors(current: Page, refusal: ServiceRefusal, fields: list[str]) -> dict[str, str]:
    """A refusal as errors beside the form's fields; others (not found, not allowed now) at the
    top of the form."""
    if refusal.code.name != "INVALID_ARGUMENT":
        return {"": service_message(current, refusal.message)}
    return field_errors(refusal, fields, lang=current.lang)


# -------------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Upload:
    filename: str
    sha256: str

    @property
    def uri(self) -> str:
        """The file by its content: the console keeps no file (the document store is outside
        Grantflow, as for `grantflow submit --document`), so the reference is the SHA-256 of
        the bytes the applicant uploaded, with the file's name."""
        return f"urn:sha256:{self.sha256}#{quote(self.filename)}"


async def hashed(upload: UploadFile) -> Upload | None:
    """The upload's name and SHA-256, read in chunks; None when no file was chosen."""
    if not upload.filename:
        return None
    digest = hashlib.sha256()
    size = 0
    while chunk := await upload.read(HASH_CHUNK):
        size += len(chunk)
        if size > MAX_DOCUMENT_BYTES:
            raise FigureError("文件超过 50 MB", "the file is larger than 50 MB")
        digest.update(chunk)
    return Upload(filename=upload.filename, sha256=digest.hexdigest())


async def documents_from(
    form: Any, names: list[str], errors: dict[str, str], lang: str
) -> dict[int, Upload]:
    """The uploaded documents by their index in `names` (`document_<i>`), or the ones uploaded
    with an earlier, refused post of the same form (`document_<i>_sha256` hidden fields), so a
    person fixing a figure need not choose every file again."""
    uploads: dict[int, Upload] = {}
    for index, _ in enumerate(names):
        field = f"document_{index}"
        value = form.get(field)
        upload = None
        if isinstance(value, UploadFile):
            try:
                upload = await hashed(value)
            except FigureError as error:
                errors[field] = pick(lang, error.zh, error.en)
                continue
        if upload is None:
            sha = str(form.get(f"{field}_sha256") or "")
            if re.fullmatch(r"[0-9a-f]{64}", sha):
                upload = Upload(filename=str(form.get(f"{field}_filename") or ""), sha256=sha)
        if upload is not None:
            uploads[index] = upload
    return uploads


def document_refs(names: list[str], uploads: dict[int, Upload]) -> list[common_pb2.DocumentRef]:
    return [
        common_pb2.DocumentRef(name=names[index], uri=upload.uri, sha256=upload.sha256)
        for index, upload in sorted(uploads.items())
    ]


def refused_status(current: Page, status: int) -> int:
    """The status of a form shown again with its errors. htmx swaps only a 2xx answer into the
    page, and the forms with files post through htmx (see form.html), so they are answered 200."""
    return 200 if current.request.headers.get("hx-request") else status


def strings(form: Any) -> dict[str, str]:
    return {key: value for key, value in form.items() if isinstance(value, str)}


# ----------------------------------------------------------------------------------- programs


@page(Role.APPLICANT)
async def programs(current: Page) -> Response:
    answer = await current.call(
        current.clients.applications.ListPrograms, applications_pb2.ListProgramsRequest()
    )
    now = datetime.now(UTC)
    views = [program_view(rule, now, current.lang) for rule in latest_programs(answer.programs)]
    return current.render(
        "applicant/programs.html",
        title=current.tr("申报项目", "Programs"),
        open_programs=[view for view in views if view.open],
        closed_programs=[view for view in views if not view.open],
    )


# ------------------------------------------------------------------------------------- the form


def form_fields(rule: common_pb2.ProgramRule) -> list[str]:
    return [
        "applicant_name",
        "project_title",
        "project_code",
        "project_description",
        *rule.required_figures,
        *(f"document_{index}" for index in range(len(rule.required_documents))),
        "documents",
        "figures",
        "request_id",
        "program_code",
        "applicant_credit_code",
    ]


def _document_field(refusal_field: str) -> str:
    """The service names a document by its index (documents[1].sha256): the form's field."""
    match = re.match(r"documents\[(\d+)\]", refusal_field)
    return f"document_{match.group(1)}" if match else refusal_field


@page(Role.APPLICANT)
async def apply_form(current: Page) -> Response:
    code = current.request.path_params["code"]
    rule = await open_program(current, code)
    now = datetime.now(UTC)
    if rule is None or not is_open(rule, now):
        return current.render(
            "error.html",
            status_code=404,
            title=current.tr("该项目现在不受理申报", "This program is not open for applications"),
            detail=code,
        )
    view = program_view(rule, now, current.lang)
    names = list(rule.required_documents)
    values: dict[str, str] = {"request_id": uuid.uuid4().hex}
    errors: dict[str, str] = {}
    uploads: dict[int, Upload] = {}
    if current.request.method == "POST":
        form = await current.request.form(max_part_size=64 * 1024)
        values = strings(form)
        if not re.fullmatch(r"[0-9a-f]{32}", values.get("request_id", "")):
            values["request_id"] = uuid.uuid4().hex
        figures: dict[str, int] = {}
        for spec in view.figures:
            try:
                figures[spec.name] = parse_figure(spec, values.get(spec.name, ""))
            except FigureError as error:
                errors[spec.name] = pick(current.lang, error.zh, error.en)
        uploads = await documents_from(form, names, errors, current.lang)
        for index, name in enumerate(names):
            if index not in uploads and f"document_{index}" not in errors:
                errors[f"document_{index}"] = current.tr(
                    f"请上传{name}", f"upload the {name} document"
                )
        if not errors:
            request = applications_pb2.SubmitApplicationRequest(
                request_id=values["request_id"],
                program_code=rule.code,
                applicant_credit_code=current.signed_in.enterprise,
                applicant_name=values.get("applicant_name", ""),
                project_title=values.get("project_title", ""),
                project_description=values.get("project_description", ""),
                project_code=values.get("project_code", ""),
                figures=figures,
                documents=document_refs(names, uploads),
            )
            try:
                filed = await current.call(current.clients.applications.SubmitApplication, request)
            except ServiceRefusal as refusal:
                if refusal.code.name not in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
                    raise
                refusal.field = _document_field(refusal.field)
                errors.update(refusal_errors(current, refusal, form_fields(rule)))
            else:
                return current.redirect(f"/my/applications/{filed.application_id}?filed=1")
    return current.render(
        "applicant/form.html",
        status_code=refused_status(current, 400) if errors else 200,
        title=current.tr(f"申报：{rule.name}", f"Apply: {rule.name}"),
        program=view,
        documents=names,
        uploads=uploads,
        values=values,
        errors=errors,
    )


# ------------------------------------------------------------------------------ applications


@dataclass
class ApplicationRow:
    application: applications_pb2.Application
    stage: GrantStage | None


def row(application: applications_pb2.Application) -> ApplicationRow:
    return ApplicationRow(application, _term(GrantStage, application.status))


@page(Role.APPLICANT)
async def my_applications(current: Page) -> Response:
    page_token = current.request.query_params.get("page_token", "")
    answer = await current.call(
        current.clients.applications.ListApplications,
        applications_pb2.ListApplicationsRequest(
            applicant_credit_code=current.signed_in.enterprise,
            page_size=APPLICATIONS_PAGE_SIZE,
            page_token=page_token,
        ),
    )
    return current.render(
        "applicant/applications.html",
        title=current.tr("我的申报", "My applications"),
        rows=[row(application) for application in answer.applications],
        next_page=(
            "/my/applications?" + urlencode({"page_token": answer.next_page_token})
            if answer.next_page_token
            else ""
        ),
        first_page="/my/applications" if page_token else "",
    )


async def _application(current: Page, application_id: str) -> applications_pb2.Application:
    return await current.call(
        current.clients.applications.GetApplication,
        applications_pb2.GetApplicationRequest(application_id=application_id),
    )


async def _notifications(current: Page, application_id: str) -> list[Any]:
    """What the applicant was told about the application; the log is a help, not the page's
    point, so a service that cannot answer now leaves it empty."""
    try:
        answer = await current.call(
            current.clients.notifications.ListNotifications,
            notifications_pb2.ListNotificationsRequest(application_id=application_id),
        )
    except ServiceRefusal:
        return []
    return list(answer.notifications)


def _checks(application: applications_pb2.Application) -> list[tuple[Term | None, Any]]:
    if not application.HasField("eligibility"):
        return []
    return [
        (EligibilityCheck(check.name) if check.name in set(EligibilityCheck) else None, check)
        for check in application.eligibility.checks
    ]


async def _status_context(
    current: Page, application: applications_pb2.Application
) -> dict[str, Any]:
    stage = _term(GrantStage, application.status)
    return {
        "application": application,
        "stage": stage,
        "final": stage in FINAL_STAGES,
        "notifications": [
            (notification, _term(DeliveryStatus, notification.status))
            for notification in await _notifications(current, application.application_id)
        ],
        "checks": _checks(application),
    }


# ---------------------------------------------------------------------- receiving account


def masked(number: str) -> str:
    """An account number as the page shows it: every digit hidden but the last four, so the
    page (and whatever caches it) never holds a whole account number."""
    if len(number) <= 4:
        return "*" * len(number)
    return "*" * (len(number) - 4) + number[-4:]


@dataclass
class InstalmentRow:
    instalment: disbursement_pb2.Instalment
    milestone: Milestone | None
    state: InstalmentState | None
    due: str  # the milestone's due day in Beijing, "" when unset

    @classmethod
    def of(cls, instalment: disbursement_pb2.Instalment) -> InstalmentRow:
        due = ""
        if instalment.HasField("due_at"):
            due = instalment.due_at.ToDatetime(tzinfo=UTC).astimezone(BEIJING).date().isoformat()
        return cls(
            instalment,
            _term(Milestone, instalment.milestone),
            _term(InstalmentState, instalment.state),
            due,
        )


async def _award_context(
    current: Page,
    application: applications_pb2.Application,
    stage: GrantStage | None,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The receiving-account card and the instalment schedule of a noticed award; nothing
    before the notice, or when the disbursement service holds no award for it (the card is
    the applicant's help, not the page's point)."""
    if stage not in AWARDED_STAGES:
        return {"accounts": None, "instalments": []}
    application_id = application.application_id

    async def accounts() -> disbursement_pb2.ReceivingAccounts | None:
        try:
            return await current.call(  # type: ignore[no-any-return]
                current.clients.disbursement.GetReceivingAccount,
                disbursement_pb2.GetReceivingAccountRequest(application_id=application_id),
            )
        except ServiceRefusal as refusal:
            if refusal.code.name not in ("NOT_FOUND", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
                raise
            return None

    async def schedule() -> list[InstalmentRow]:
        try:
            answer = await current.call(
                current.clients.disbursement.GetInstalmentSchedule,
                disbursement_pb2.GetInstalmentScheduleRequest(application_id=application_id),
            )
        except ServiceRefusal as refusal:
            if refusal.code.name not in ("NOT_FOUND", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
                raise
            return []
        return [InstalmentRow.of(instalment) for instalment in answer.instalments]

    found, rows = await asyncio.gather(accounts(), schedule())
    form = dict(values or {})
    if found is not None:
        form.setdefault("account_name", found.applicant_name or application.applicant_name)
        form.setdefault("request_id", uuid.uuid4().hex)
    return {
        "accounts": found,
        # An unset message field reads as an empty message, which a template takes for one.
        "account_current": found.current if found and found.HasField("current") else None,
        "account_proposed": found.proposed if found and found.HasField("proposed") else None,
        "account_values": form,
        "account_errors": errors or {},
        "masked": masked,
        "instalments": rows,
    }


@page(Role.APPLICANT)
async def receiving_account(current: Page) -> Response:
    """Confirms the award's receiving account, or proposes a change of the confirmed one (in
    force once a finance officer approves it): the service decides which is allowed and refuses
    bad input naming the field, shown beside it with nothing written."""
    application_id = current.request.path_params["application_id"]
    values = await current.form()
    values = {key: values.get(key, "") for key in (*ACCOUNT_FIELDS, "request_id", "mode")}
    if not re.fullmatch(r"[0-9a-f]{32}", values["request_id"]):
        values["request_id"] = uuid.uuid4().hex
    account = disbursement_pb2.AccountDetails(
        account_name=values["account_name"],
        account_number=values["account_number"],
        bank_code=values["bank_code"],
        bank_name=values["bank_name"],
    )
    change = values["mode"] == "change"
    try:
        if change:
            await current.call(
                current.clients.disbursement.ProposeAccountChange,
                disbursement_pb2.ProposeAccountChangeRequest(
                    request_id=values["request_id"],
                    application_id=application_id,
                    account=account,
                    reason=values["reason"].strip(),
                ),
            )
        else:
            await current.call(
                current.clients.disbursement.ConfirmReceivingAccount,
                disbursement_pb2.ConfirmReceivingAccountRequest(
                    request_id=values["request_id"], application_id=application_id, account=account
                ),
            )
    except ServiceRefusal as refusal:
        if refusal.code.name not in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "ALREADY_EXISTS"):
            raise
        errors = refusal_errors(current, refusal, list(ACCOUNT_FIELDS))
        return await _application_page(
            current,
            application_id,
            account_values=values,
            account_errors=errors,
            status_code=400 if refusal.code.name == "INVALID_ARGUMENT" else 409,
        )
    done = "proposed" if change else "confirmed"
    return current.redirect(f"/my/applications/{application_id}?account={done}#account")


def _rule_for(
    rules: Any, application: applications_pb2.Application
) -> common_pb2.ProgramRule | None:
    for rule in rules:
        if rule.code == application.program_code and rule.version == application.rule_version:
            return rule  # type: ignore[no-any-return]
    return None


async def _application_page(
    current: Page,
    application_id: str,
    *,
    supplement_values: dict[str, str] | None = None,
    supplement_errors: dict[str, str] | None = None,
    account_values: dict[str, str] | None = None,
    account_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    application = await _application(current, application_id)
    answer = await current.call(
        current.clients.applications.ListPrograms,
        applications_pb2.ListProgramsRequest(code=application.program_code),
    )
    rule = _rule_for(answer.programs, application)
    names = [*application.figures.keys()]
    if rule is not None:
        names = list(dict.fromkeys([*rule.required_figures, *names]))
    figures = [(figure(name), application.figures.get(name)) for name in names]
    context = await _status_context(current, application)
    stage = context["stage"]
    values = supplement_values
    if values is None:
        values = {spec.name: spec.typed(value) for spec, value in figures if value is not None}
        values["request_id"] = uuid.uuid4().hex
    query = current.request.query_params
    flash = ""
    if query.get("filed"):
        flash = current.tr("申报已提交。", "Your application was filed.")
    elif query.get("supplemented"):
        flash = current.tr("补正材料已提交。", "Your supplement was filed.")
    elif query.get("withdrawn"):
        flash = current.tr("撤回申请已提交。", "Your withdrawal was filed.")
    elif query.get("account") == "confirmed":
        flash = current.tr(
            "收款账户已确认，资金将拨付至该账户。",
            "Your receiving account is confirmed: the award is paid to it.",
        )
    elif query.get("account") == "proposed":
        flash = current.tr(
            "收款账户变更已提交，经财务人员审批后生效；审批前仍拨付至原账户。",
            "The change is filed: it is in force once finance approves it; until then the "
            "account in force is paid.",
        )
    return current.render(
        "applicant/application.html",
        status_code=status_code,
        title=application.project_title,
        flash=flash,
        figures=figures,
        program_name=rule.name if rule is not None else application.program_code,
        supplement=actions(stage)[0],
        required_documents=list(rule.required_documents) if rule is not None else [],
        withdrawable=actions(stage)[1],
        values=values,
        errors=supplement_errors or {},
        **context,
        **await _award_context(
            current, application, stage, values=account_values, errors=account_errors
        ),
    )


@page(Role.APPLICANT)
async def application_page(current: Page) -> Response:
    return await _application_page(current, current.request.path_params["application_id"])


@page(Role.APPLICANT)
async def status_panel(current: Page) -> Response:
    """The status panel alone, for htmx to swap in every few seconds."""
    application = await _application(current, current.request.path_params["application_id"])
    context = await _status_context(current, application)
    shown = _term(GrantStage, _int(current.request.query_params.get("shown", "")))
    # The page's forms (补正, withdrawal) follow the status it was drawn with: a change that
    # alters what the person may do asks them to reload, rather than swapping forms out from
    # under their typing.
    stage = context["stage"]
    context["changed"] = shown is not None and actions(shown) != actions(stage)
    context["shown"] = shown.to_proto() if shown is not None else application.status
    return current.render("applicant/status_panel.html", **context)


def actions(stage: GrantStage | None) -> tuple[bool, bool]:
    """What the application page offers at a stage: 补正, and withdrawal."""
    return stage == GrantStage.AWAITING_SUPPLEMENT, stage not in NOT_WITHDRAWABLE


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


@page(Role.APPLICANT)
async def supplement(current: Page) -> Response:
    application_id = current.request.path_params["application_id"]
    application = await _application(current, application_id)
    answer = await current.call(
        current.clients.applications.ListPrograms,
        applications_pb2.ListProgramsRequest(code=application.program_code),
    )
    rule = _rule_for(answer.programs, application)
    names = list(rule.required_documents) if rule is not None else []
    form = await current.request.form(max_part_size=64 * 1024)
    values = strings(form)
    if not re.fullmatch(r"[0-9a-f]{32}", values.get("request_id", "")):
        values["request_id"] = uuid.uuid4().hex
    errors: dict[str, str] = {}
    changed: dict[str, int] = {}
    figure_names = list(
        dict.fromkeys([*(rule.required_figures if rule else []), *application.figures])
    )
    for name in figure_names:
        text = values.get(name, "").strip()
        if not text:
            continue  # left empty: unchanged
        spec = figure(name)
        try:
            value = parse_figure(spec, text)
        except FigureError as error:
            errors[name] = pick(current.lang, error.zh, error.en)
            continue
        if application.figures.get(name) != value:
            changed[name] = value
    uploads = await documents_from(form, names, errors, current.lang)
    if not errors:
        try:
            await current.call(
                current.clients.applications.SupplementApplication,
                applications_pb2.SupplementApplicationRequest(
                    application_id=application_id,
                    request_id=values["request_id"],
                    figures=changed,
                    documents=document_refs(names, uploads),
                    note=values.get("note", ""),
                ),
            )
        except ServiceRefusal as refusal:
            if refusal.code.name not in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
                raise
            refusal.field = _document_field(refusal.field)
            fields = [*figure_names, "note", "figures", "documents"]
            fields += [f"document_{index}" for index in range(len(names))]
            errors.update(refusal_errors(current, refusal, fields))
        else:
            return current.redirect(f"/my/applications/{application_id}?supplemented=1")
    return await _application_page(
        current,
        application_id,
        supplement_values=values,
        supplement_errors=errors,
        status_code=refused_status(current, 400),
    )


@page(Role.APPLICANT)
async def withdraw(current: Page) -> Response:
    """GET: the confirm step with a reason; POST: the withdrawal (the grant decides)."""
    application_id = current.request.path_params["application_id"]
    application = await _application(current, application_id)
    values = {"reason": ""}
    error = ""
    if current.request.method == "POST":
        values = await current.form()
        try:
            await current.call(
                current.clients.applications.WithdrawApplication,
                applications_pb2.WithdrawApplicationRequest(
                    application_id=application_id,
                    reason=values.get("reason", "").strip() or "申请单位撤回申请",
                ),
            )
        except ServiceRefusal as refusal:
            if refusal.code.name not in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
                raise
            error = service_message(current, refusal.message)
        else:
            return current.redirect(f"/my/applications/{application_id}?withdrawn=1")
    return current.render(
        "applicant/withdraw.html",
        status_code=409 if error else 200,
        title=current.tr("撤回申请", "Withdraw the application"),
        application=application,
        stage=_term(GrantStage, application.status),
        values=values,
        error=error,
    )


# ------------------------------------------------------------------------------------ notices


def _notice_department(notice: notice_pb2.Notice) -> Term | None:
    return _term(Department, notice.owner_department)


@page(public=True)
async def notices(current: Page) -> Response:
    program = current.request.query_params.get("program", "").strip()
    open_only = current.request.query_params.get("open") == "1"
    page_token = current.request.query_params.get("page_token", "")
    answer = await current.call(
        current.clients.notices.ListNotices,
        notice_pb2.ListNoticesRequest(
            program_code=program,
            open_only=open_only,
            page_size=NOTICES_PAGE_SIZE,
            page_token=page_token,
        ),
    )
    keep = {"program": program, "open": "1" if open_only else ""}
    keep = {key: value for key, value in keep.items() if value}
    return current.render(
        "applicant/notices.html",
        title=current.tr("社会公示", "Public notices"),
        notices=[(notice, _notice_department(notice)) for notice in answer.notices],
        program=program,
        open_only=open_only,
        next_page=(
            "/notices?" + urlencode({**keep, "page_token": answer.next_page_token})
            if answer.next_page_token
            else ""
        ),
        first_page=("/notices?" + urlencode(keep)) if page_token else "",
    )


@page(public=True)
async def notice_page(current: Page) -> Response:
    notice = await current.call(
        current.clients.notices.GetNotice,
        notice_pb2.GetNoticeRequest(batch_id=current.request.path_params["batch_id"]),
    )
    return current.render(
        "applicant/notice.html",
        title=current.tr(
            f"{notice.program_code} 第 {notice.batch_number} 批公示",
            f"{notice.program_code} batch {notice.batch_number} notice",
        ),
        notice=notice,
        department=_notice_department(notice),
    )


OBJECTION_KINDS = (ObjectionKind.DISPUTE, ObjectionKind.COMPLAINT, ObjectionKind.REPORT)


@page(public=True)
async def objection(current: Page) -> Response:
    """异议/投诉/举报 against one entry of an open notice. Reading is public; lodging needs an
    identified caller, so a signed-out visitor is asked to sign in and comes back here."""
    batch_id = current.request.path_params["batch_id"]
    application_id = current.request.path_params["application_id"]
    here = f"/notices/{quote(batch_id)}/objections/{quote(application_id)}"
    notice = await current.call(
        current.clients.notices.GetNotice, notice_pb2.GetNoticeRequest(batch_id=batch_id)
    )
    entries = [entry for entry in notice.entries if entry.application_id == application_id]
    if not entries:
        return current.render(
            "error.html",
            status_code=404,
            title=current.tr("公示中没有该项目", "No such entry in the notice"),
        )
    values: dict[str, str] = {"request_id": uuid.uuid4().hex, "kind": ""}
    errors: dict[str, str] = {}
    lodged = None
    if current.request.method == "POST":
        if current.user is None:
            return current.redirect(f"/signin?next={quote(here)}")
        values = await current.form()
        if not re.fullmatch(r"[0-9a-f]{32}", values.get("request_id", "")):
            values["request_id"] = uuid.uuid4().hex
        kind = values.get("kind", "")
        if kind not in set(ObjectionKind):
            errors["kind"] = current.tr("请选择类型", "choose a kind")
        else:
            try:
                lodged = await current.call(
                    current.clients.notices.LodgeObjection,
                    notice_pb2.LodgeObjectionRequest(
                        request_id=values["request_id"],
                        batch_id=batch_id,
                        application_id=application_id,
                        kind=ObjectionKind(kind).to_proto(),
                        text=values.get("text", ""),
                        contact=values.get("contact", ""),
                    ),
                )
            except ServiceRefusal as refusal:
                if refusal.code.name not in (
                    "INVALID_ARGUMENT",
                    "FAILED_PRECONDITION",
                    "PERMISSION_DENIED",
                ):
                    raise
                errors.update(refusal_errors(current, refusal, ["kind", "text", "contact"]))
    return current.render(
        "applicant/objection.html",
        status_code=400 if errors else 200,
        title=current.tr("提出异议、投诉或举报", "Object to a notice"),
        notice=notice,
        entry=entries[0],
        kinds=OBJECTION_KINDS,
        values=values,
        errors=errors,
        lodged=lodged,
        lodged_state=_term(ObjectionState, lodged.state) if lodged is not None else None,
        lodged_kind=_term(ObjectionKind, lodged.kind) if lodged is not None else None,
        here=here,
    )


routes = [
    Route("/apply", programs),
    Route("/apply/{code}", apply_form, methods=["GET", "POST"]),
    Route("/my/applications", my_applications),
    Route("/my/applications/{application_id}", application_page),
    Route("/my/applications/{application_id}/status", status_panel),
    Route("/my/applications/{application_id}/supplement", supplement, methods=["POST"]),
    Route("/my/applications/{application_id}/withdraw", withdraw, methods=["GET", "POST"]),
    Route("/my/applications/{application_id}/account", receiving_account, methods=["POST"]),
    Route("/notices", notices),
    Route("/notices/{batch_id}", notice_page),
    Route(
        "/notices/{batch_id}/objections/{application_id}",
        objection,
        methods=["GET", "POST"],
    ),
]
