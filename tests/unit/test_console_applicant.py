"""The applicants' pages without the stack: figures typed in yuan or per cent become exact
integers, the catalogue's rules read in plain words, and the pages call the services as they
should (a stand-in backend records every call). The browser tests drive the real stack."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from starlette.testclient import TestClient

from console import app as console_app
from console.backend import ServiceRefusal
from console.pages.applicant import (
    FigureError,
    amount_rule_words,
    figure,
    is_open,
    latest_programs,
    parse_figure,
    who_may_apply,
)
from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2, common_pb2, notice_pb2
from grantflow.v1 import disbursement_pb2 as dpb
from services.applications.catalogue import load_catalogue
from services.common.config import Settings

CATALOGUE = {rule.code: rule for rule in load_catalogue()}


@pytest.mark.parametrize(
    ("name", "typed", "stored"),
    [
        ("cloud_fee_paid_fen", "3000", 300_000),
        ("cloud_fee_paid_fen", "1,500.50", 150_050),
        ("cloud_fee_paid_fen", "¥0.1", 10),
        ("cloud_fee_paid_fen", "12345678901.99", 1_234_567_890_199),  # beyond a float's cents
        ("cloud_fee_paid_fen", "-5", -500),  # the service refuses negatives, naming the figure
        ("satisfaction_basis_points", "92.5", 9250),
        ("staff_count", "40", 40),
    ],
)
def test_a_typed_figure_becomes_the_exact_integer_the_service_keeps(
    name: str, typed: str, stored: int
) -> None:
    assert parse_figure(figure(name), typed) == stored


@pytest.mark.parametrize(
    ("name", "typed", "zh"),
    [
        ("cloud_fee_paid_fen", "", "请填写"),
        ("cloud_fee_paid_fen", "三千", "请填写数字"),
        ("cloud_fee_paid_fen", "1e3", "请填写数字"),
        ("cloud_fee_paid_fen", "1.005", "最多两位小数"),
        ("staff_count", "40.5", "请填写整数"),
    ],
)
def test_what_is_not_a_figure_is_refused_in_words(name: str, typed: str, zh: str) -> None:
    with pytest.raises(FigureError) as refused:
        parse_figure(figure(name), typed)
    assert refused.value.zh == zh


def test_the_catalogues_rules_read_in_plain_words() -> None:
    sme = CATALOGUE["SME-CLOUD"]
    assert amount_rule_words(sme, "zh-CN") == [
        "按云服务实际支付费用的 50% 资助，每项最高 ¥2,000.00"
    ]
    assert "中小微企业" in who_may_apply(sme, "zh-CN")
    assert "企业" in who_may_apply(sme, "zh-CN")
    tuition = amount_rule_words(CATALOGUE["VOC-TUITION"], "zh-CN")
    assert tuition == ["按符合条件的学生数每人 ¥4,000.00"]
    tiers = amount_rule_words(CATALOGUE["DEMO-PLATFORM"], "zh-CN")[0]
    assert "60 分以上 ¥300,000.00" in tiers and "90 分以上 ¥1,000,000.00" in tiers
    smart = amount_rule_words(CATALOGUE["TECH-SMART"], "zh-CN")
    assert "智能化改造投资额不足 ¥5,000,000.00 的不予资助" in smart
    assert "同一单位每年合计最高 ¥20,000,000.00" in smart
    assert "分 3 期拨付" in amount_rule_words(CATALOGUE["TECH-MAJOR"], "zh-CN")


def test_a_program_is_open_within_its_window_and_its_newest_version_counts() -> None:
    old = common_pb2.ProgramRule(code="SME-CLOUD", version=1, name="old")
    new = common_pb2.ProgramRule(code="SME-CLOUD", version=2, name="new")
    new.window_opens_at.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    new.window_closes_at.FromDatetime(datetime(2026, 6, 30, tzinfo=UTC))
    assert [rule.name for rule in latest_programs([new, old])] == ["new"]
    assert is_open(new, datetime(2026, 3, 1, tzinfo=UTC))
    assert not is_open(new, datetime(2026, 6, 30, tzinfo=UTC))
    assert not is_open(new, datetime(2025, 12, 31, tzinfo=UTC))
    assert is_open(old, datetime(2030, 1, 1, tzinfo=UTC))  # no window: always


# The pages over a stand-in backend ---------------------------------------------------------------


class Stub:
    """A service stub whose methods record their requests and answer from `answers`."""

    def __init__(self, calls: list[tuple[str, Any]], answers: dict[str, Any]) -> None:
        self._calls = calls
        self._answers = answers

    def __getattr__(self, name: str) -> Any:
        async def method(request: Any, **_: Any) -> Any:
            self._calls.append((name, request))
            answer = self._answers[name]
            if isinstance(answer, Exception):
                raise answer
            return answer(request) if callable(answer) else answer

        method.__name__ = name
        return method


class FakeBackend:
    calls: list[tuple[str, Any]] = []
    answers: dict[str, Any] = {}

    def __init__(self, settings: Settings) -> None:
        stub = Stub(self.calls, self.answers)
        self.clients = type("Clients", (), {"applications": stub, "notices": stub})()
        self.clients.notifications = stub
        self.clients.disbursement = stub

    async def call(self, user: Any, method: Any, request: Any) -> Any:
        try:
            return await method(request)
        except grpc.aio.AioRpcError as error:  # pragma: no cover - the stubs raise refusals
            raise ServiceRefusal.from_rpc(error) from None

    async def close(self) -> None:
        pass


ENTERPRISE = credit_code(7)


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    FakeBackend.calls = []
    FakeBackend.answers = {}
    monkeypatch.setattr(console_app, "Backend", FakeBackend)
    with TestClient(console_app.create_app(Settings())) as client:
        yield client


def csrf(page: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', page)
    assert found, "the form carries its CSRF token"
    return found.group(1)


def htmx(page: str) -> dict[str, str]:
    """The headers htmx sends with a form: the CSRF token (base.html's hx-headers) and its own."""
    return {"x-csrftoken": csrf(page), "hx-request": "true"}


def sign_in(client: TestClient, role: str = "applicant") -> None:
    token = csrf(client.get("/signin").text)
    answer = client.post(
        "/signin",
        data={"csrftoken": token, "user": "zhao", "role": role, "enterprise": ENTERPRISE},
        follow_redirects=False,
    )
    assert answer.status_code == 303


def open_notice() -> notice_pb2.Notice:
    notice = notice_pb2.Notice(
        batch_id="SME-CLOUD-2026-1",
        program_code="SME-CLOUD",
        batch_number=1,
        owner_department=common_pb2.DEPARTMENT_INDUSTRY,
        open=True,
        total_fen=200_000,
        entries=[
            notice_pb2.NoticeEntry(
                application_id="app-1",
                applicant_name="深圳市云帆科技有限公司",
                project_title="ERP 上云",
                amount_fen=200_000,
            )
        ],
    )
    notice.closes_at.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
    return notice


def test_an_objection_is_lodged_once_signed_in_and_a_visitor_is_asked_to_sign_in(
    console: TestClient,
) -> None:
    """The browser stack's notices close after a second, too soon for a person to object, so
    the lodging itself is shown here against a notice that stays open."""
    FakeBackend.answers["GetNotice"] = open_notice()
    FakeBackend.answers["LodgeObjection"] = lambda request: notice_pb2.Objection(
        objection_id="obj-1",
        batch_id=request.batch_id,
        application_id=request.application_id,
        kind=request.kind,
        state=notice_pb2.OBJECTION_STATE_LODGED,
    )
    path = "/notices/SME-CLOUD-2026-1/objections/app-1"
    visitor = console.get(path)
    assert visitor.status_code == 200
    assert "请先" in visitor.text and "/signin?next=" in visitor.text
    assert "<select" not in visitor.text

    sign_in(console)
    form = console.get(path)
    answer = console.post(
        path,
        data={
            "csrftoken": csrf(form.text),
            "request_id": re.search(r'name="request_id" value="([0-9a-f]+)"', form.text).group(1),  # type: ignore[union-attr]
            "kind": "report",
            "text": "发票与实际不符",
            "contact": "13800000000",
        },
    )
    assert answer.status_code == 200
    assert "已受理您的举报" in answer.text and "obj-1" in answer.text
    lodged = [request for name, request in FakeBackend.calls if name == "LodgeObjection"]
    assert len(lodged) == 1
    assert lodged[0].kind == notice_pb2.OBJECTION_KIND_REPORT
    assert (lodged[0].batch_id, lodged[0].application_id) == ("SME-CLOUD-2026-1", "app-1")
    assert lodged[0].contact == "13800000000"


def test_a_refused_objection_is_shown_beside_its_field(console: TestClient) -> None:
    FakeBackend.answers["GetNotice"] = open_notice()
    FakeBackend.answers["LodgeObjection"] = ServiceRefusal(
        grpc.StatusCode.INVALID_ARGUMENT, "is required", field="text"
    )
    sign_in(console)
    path = "/notices/SME-CLOUD-2026-1/objections/app-1"
    answer = console.post(
        path,
        data={"csrftoken": csrf(console.get(path).text), "kind": "complaint", "contact": "x"},
    )
    assert answer.status_code == 400
    assert re.search(r'data-field="text">必填（is required）', answer.text)
    assert 'value="x"' in answer.text  # the input is kept


def test_the_form_sends_yuan_as_fen_and_a_refusal_keeps_the_input(console: TestClient) -> None:
    FakeBackend.answers["ListPrograms"] = applications_pb2.ListProgramsResponse(
        programs=[CATALOGUE["SME-CLOUD"]]
    )
    FakeBackend.answers["SubmitApplication"] = ServiceRefusal(
        grpc.StatusCode.INVALID_ARGUMENT, "must not be negative", field="figures[staff_count]"
    )
    sign_in(console)
    form = console.get("/apply/SME-CLOUD").text
    assert "云服务实际支付费用（元）" in form
    request_id = re.search(r'name="request_id" value="([0-9a-f]{32})"', form).group(1)  # type: ignore[union-attr]
    answer = console.post(
        "/apply/SME-CLOUD",
        headers=htmx(form),
        data={
            "request_id": request_id,
            "applicant_name": "深圳市云帆科技有限公司",
            "project_title": "ERP 上云",
            "cloud_fee_paid_fen": "1,234.56",
            "staff_count": "-1",
            "annual_revenue_fen": "30000000",
        },
        files={f"document_{i}": (f"{i}.pdf", b"%PDF-1.4 " + bytes([i])) for i in range(3)},
    )
    assert answer.status_code == 200  # htmx swaps the refused form in
    assert re.search(r'data-field="staff_count">不能为负数', answer.text)
    assert 'value="1,234.56"' in answer.text and "ERP 上云" in answer.text
    (sent,) = [request for name, request in FakeBackend.calls if name == "SubmitApplication"]
    assert sent.request_id == request_id
    assert sent.applicant_credit_code == ENTERPRISE
    assert dict(sent.figures) == {
        "cloud_fee_paid_fen": 123_456,
        "staff_count": -1,
        "annual_revenue_fen": 3_000_000_000,
    }
    import hashlib

    assert [(d.name, d.sha256) for d in sent.documents] == [
        (name, hashlib.sha256(b"%PDF-1.4 " + bytes([i])).hexdigest())
        for i, name in enumerate(["申报书", "云服务合同", "付款凭证"])
    ]
    assert all(d.uri == f"urn:sha256:{d.sha256}#{i}.pdf" for i, d in enumerate(sent.documents))
    # The uploaded files are remembered by their hashes: fixing a figure needs no new upload.
    assert answer.text.count("已上传") == 3


def test_a_figure_that_is_not_a_number_never_reaches_the_service(console: TestClient) -> None:
    FakeBackend.answers["ListPrograms"] = applications_pb2.ListProgramsResponse(
        programs=[CATALOGUE["SME-CLOUD"]]
    )
    sign_in(console)
    form = console.get("/apply/SME-CLOUD").text
    answer = console.post(
        "/apply/SME-CLOUD",
        data={"csrftoken": csrf(form), "project_title": "x", "cloud_fee_paid_fen": "abc"},
    )
    assert answer.status_code == 400  # posted without htmx: a plain refused form
    assert re.search(r'data-field="cloud_fee_paid_fen">请填写数字', answer.text)
    assert re.search(r'data-field="document_0">请上传申报书', answer.text)
    assert not [name for name, _ in FakeBackend.calls if name == "SubmitApplication"]


def test_other_roles_may_not_open_the_applicants_pages(console: TestClient) -> None:
    sign_in(console, role="finance")
    assert console.get("/apply").status_code == 403
    assert console.get("/my/applications").status_code == 403


def awaiting_supplement() -> applications_pb2.Application:
    return applications_pb2.Application(
        application_id="app-9",
        program_code="SME-CLOUD",
        rule_version=CATALOGUE["SME-CLOUD"].version,
        applicant_credit_code=ENTERPRISE,
        project_title="ERP 上云",
        figures={"cloud_fee_paid_fen": 300_000, "staff_count": 40},
        status=common_pb2.GRANT_STAGE_AWAITING_SUPPLEMENT,
        status_reason="缺少申报数据：annual_revenue_fen",
    )


def test_a_supplement_sends_only_the_figures_that_changed(console: TestClient) -> None:
    FakeBackend.answers.update(
        GetApplication=awaiting_supplement(),
        ListPrograms=applications_pb2.ListProgramsResponse(programs=[CATALOGUE["SME-CLOUD"]]),
        ListNotifications=ServiceRefusal(grpc.StatusCode.UNAVAILABLE, "down"),
        SupplementApplication=awaiting_supplement(),
    )
    sign_in(console)
    page = console.get("/my/applications/app-9").text
    assert "补正" in page and 'value="3000"' in page  # the figures as typed, in yuan
    assert "暂无通知" in page  # the notifications log is a help: its outage hides only it
    answer = console.post(
        "/my/applications/app-9/supplement",
        headers=htmx(page),
        data={
            "request_id": "0" * 32,
            "cloud_fee_paid_fen": "3000",
            "staff_count": "40",
            "annual_revenue_fen": "30,000,000",
            "note": "补充营业收入",
        },
        follow_redirects=False,
    )
    assert answer.headers["hx-redirect"] == "/my/applications/app-9?supplemented=1"
    (sent,) = [request for name, request in FakeBackend.calls if name == "SupplementApplication"]
    assert dict(sent.figures) == {"annual_revenue_fen": 3_000_000_000}
    assert sent.note == "补充营业收入" and sent.request_id == "0" * 32


def test_the_status_panel_asks_for_a_reload_only_when_the_actions_change(
    console: TestClient,
) -> None:
    FakeBackend.answers.update(
        GetApplication=awaiting_supplement(),
        ListNotifications=ServiceRefusal(grpc.StatusCode.UNAVAILABLE, "down"),
    )
    sign_in(console)
    submitted = common_pb2.GRANT_STAGE_SUBMITTED
    formal_check = common_pb2.GRANT_STAGE_FORMAL_CHECK
    panel = console.get(f"/my/applications/app-9/status?shown={submitted}").text
    assert "待补正" in panel and "刷新页面" in panel
    assert f"shown={submitted}" in panel  # the next poll still compares with the page's stage
    FakeBackend.answers["GetApplication"] = applications_pb2.Application(
        application_id="app-9", status=common_pb2.GRANT_STAGE_IN_REVIEW
    )
    assert "刷新页面" not in console.get(f"/my/applications/app-9/status?shown={formal_check}").text
    FakeBackend.answers["GetApplication"] = applications_pb2.Application(
        application_id="app-9", status=common_pb2.GRANT_STAGE_WITHDRAWN
    )
    final = console.get(f"/my/applications/app-9/status?shown={formal_check}").text
    assert "已撤回" in final and "hx-trigger" not in final  # an ended grant is not polled


# The award's receiving account (收款账户) and instalments -------------------------------------------

REGISTERED = "深圳市重大装备有限公司"


def awarded(
    stage: common_pb2.GrantStage.ValueType = common_pb2.GRANT_STAGE_AWAITING_FUNDING_PLAN,
) -> applications_pb2.Application:
    return applications_pb2.Application(
        application_id="app-7",
        program_code="TECH-MAJOR",
        rule_version=CATALOGUE["TECH-MAJOR"].version,
        applicant_credit_code=ENTERPRISE,
        applicant_name=REGISTERED,
        project_title="智能产线",
        status=stage,
        award_amount_fen=3_000_000_000,
    )


def account(
    version: int, number: str, state: dpb.AccountState.ValueType, **more: Any
) -> dpb.ReceivingAccount:
    return dpb.ReceivingAccount(
        application_id="app-7",
        version=version,
        state=state,
        account_name=REGISTERED,
        account_number=number,
        bank_code="102584000016",
        bank_name="中国工商银行深圳分行营业部",
        given_by="zhao",
        **more,
    )


def award_answers(**more: Any) -> None:
    FakeBackend.answers.update(
        GetApplication=awarded(),
        ListPrograms=applications_pb2.ListProgramsResponse(programs=[CATALOGUE["TECH-MAJOR"]]),
        ListNotifications=ServiceRefusal(grpc.StatusCode.UNAVAILABLE, "down"),
        GetReceivingAccount=dpb.ReceivingAccounts(
            application_id="app-7", applicant_name=REGISTERED
        ),
        GetInstalmentSchedule=dpb.InstalmentSchedule(application_id="app-7"),
    )
    FakeBackend.answers.update(more)


def account_form(page: str, **typed: str) -> dict[str, str]:
    request_id = re.search(
        r'name="request_id" value="([0-9a-f]{32})"', page.split('id="account"')[1]
    )
    mode = re.search(r'name="mode" value="(\w+)"', page)
    assert request_id and mode
    return {
        "csrftoken": csrf(page),
        "request_id": request_id.group(1),
        "mode": mode.group(1),
        "account_name": REGISTERED,
        "bank_code": "102584000016",
        "bank_name": "中国工商银行深圳分行营业部",
        **typed,
    }


def test_before_the_notice_the_page_asks_nothing_of_the_disbursement_service(
    console: TestClient,
) -> None:
    award_answers(GetApplication=awarded(common_pb2.GRANT_STAGE_IN_NOTICE))
    sign_in(console)
    page = console.get("/my/applications/app-7").text
    assert "收款账户" not in page
    assert not [
        n for n, _ in FakeBackend.calls if n in ("GetReceivingAccount", "GetInstalmentSchedule")
    ]


def test_the_applicant_confirms_its_account_a_refusal_beside_its_field_and_one_request_id(
    console: TestClient,
) -> None:
    refusals = iter(
        [
            ServiceRefusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                "must be 8 to 32 digits (账号: digits only)",
                "account.account_number",
            )
        ]
    )

    def confirm(request: dpb.ConfirmReceivingAccountRequest) -> dpb.ReceivingAccounts:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        return dpb.ReceivingAccounts(application_id="app-7")

    award_answers(ConfirmReceivingAccount=confirm)
    sign_in(console)
    page = console.get("/my/applications/app-7").text
    assert "尚未确认收款账户" in page
    assert f'name="account_name" value="{REGISTERED}"' in page  # prefilled: the registered name
    form = account_form(page, account_number="6222-02")
    assert form["mode"] == "confirm"
    refused = console.post("/my/applications/app-7/account", data=form)
    assert refused.status_code == 400
    assert re.search(r'data-field="account_number">须为 8 至 32 位数字', refused.text)
    assert 'value="6222-02"' in refused.text  # what was typed stays to be corrected
    assert account_form(refused.text)["request_id"] == form["request_id"]

    done = console.post(
        "/my/applications/app-7/account",
        data={**form, "account_number": "6222 0200 0000 0001"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/my/applications/app-7?account=confirmed#account"
    sent = [r for n, r in FakeBackend.calls if n == "ConfirmReceivingAccount"]
    assert [r.request_id for r in sent] == [form["request_id"]] * 2  # a double submit writes once
    assert sent[-1].account.account_number == "6222 0200 0000 0001"
    assert sent[-1].account.account_name == REGISTERED and sent[-1].application_id == "app-7"
    assert not [n for n, _ in FakeBackend.calls if n == "ProposeAccountChange"]


def test_the_account_in_force_is_masked_a_change_waits_and_the_instalments_are_listed(
    console: TestClient,
) -> None:
    schedule = dpb.InstalmentSchedule(
        application_id="app-7",
        instalments=[
            dpb.Instalment(
                number=1,
                of=2,
                amount_fen=1_500_000_000,
                milestone=dpb.MILESTONE_AWARD,
                state=dpb.INSTALMENT_STATE_PAID,
            ),
            dpb.Instalment(
                number=2,
                of=2,
                amount_fen=1_500_000_000,
                milestone=dpb.MILESTONE_ACCEPTANCE,
                state=dpb.INSTALMENT_STATE_SCHEDULED,
            ),
        ],
    )
    schedule.instalments[0].paid_at.FromDatetime(datetime(2026, 3, 2, 2, 0, tzinfo=UTC))
    schedule.instalments[1].due_at.FromDatetime(datetime(2027, 6, 30, 16, 0, tzinfo=UTC))
    accounts = dpb.ReceivingAccounts(
        application_id="app-7",
        applicant_name=REGISTERED,
        current=account(1, "400000000000000001", dpb.ACCOUNT_STATE_CONFIRMED),
        proposed=account(2, "622202000000009876", dpb.ACCOUNT_STATE_PROPOSED, reason="更换基本户"),
    )
    award_answers(
        GetApplication=awarded(common_pb2.GRANT_STAGE_INSTALMENTS),
        GetReceivingAccount=accounts,
        GetInstalmentSchedule=schedule,
        ProposeAccountChange=ServiceRefusal(
            grpc.StatusCode.FAILED_PRECONDITION,
            "that account is the one in force already: nothing to change",
        ),
    )
    sign_in(console)
    page = console.get("/my/applications/app-7").text
    assert "**************0001" in page and "400000000000000001" not in page
    assert "**************9876" in page and "622202000000009876" not in page
    assert "变更待审批" in page and "更换基本户" in page
    assert "申请变更收款账户" in page and 'name="reason"' in page
    rows = re.findall(r'<tr data-instalment="(\d)">(.*?)</tr>', page, re.S)
    assert [n for n, _ in rows] == ["1", "2"]
    assert "第1/2期" in rows[0][1] and "¥15,000,000.00" in rows[0][1] and "资助确定" in rows[0][1]
    assert "已拨付" in rows[0][1] and "2026-03-02 10:00" in rows[0][1]
    assert "项目验收" in rows[1][1] and "2027-07-01" in rows[1][1]  # due: the Beijing day
    assert "待里程碑确认" in rows[1][1]

    form = account_form(page, account_number="400000000000000001", reason="核对")
    assert form["mode"] == "change"
    refused = console.post("/my/applications/app-7/account", data=form)
    assert refused.status_code == 409
    assert "该账户已是生效账户，无需变更" in refused.text
    (sent,) = [r for n, r in FakeBackend.calls if n == "ProposeAccountChange"]
    assert sent.reason == "核对" and sent.request_id == form["request_id"]
    assert not [n for n, _ in FakeBackend.calls if n == "ConfirmReceivingAccount"]
