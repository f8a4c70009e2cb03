"""The applicants' console in a browser on the real stack: an enterprise files an application
through the form and watches its status move on the application page; bad input is shown beside
its field and files nothing; a noticed award's receiving account is confirmed; an application
is withdrawn; the public notices are read and an objection is taken to the service.

Grants are moved along by the services directly (tests/actors.py) where it is another group's
job (reviewers approving); the applicant's own steps go through the browser.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2, common_pb2, notice_pb2
from infra.local.stack import LocalStack
from services.common.auth import mint_token
from services.common.clients import ServiceClients, system_token
from services.common.db import now_utc, to_timestamp
from services.common.vocabulary import Role
from tests.actors import Actors, documents_for

SME_CLOUD_DOCUMENTS = ("申报书", "云服务合同", "付款凭证")


def pdf(name: str) -> dict[str, Any]:
    return {"name": name, "mimeType": "application/pdf", "buffer": f"%PDF-1.4 {name}".encode()}


async def fill_sme_cloud(
    console: Any, *, title: str, fee: str, staff: str = "40", documents: bool = True
) -> None:
    page = console.page
    await page.fill("input[name=applicant_name]", "深圳市云帆科技有限公司")
    await page.fill("input[name=project_title]", title)
    await page.fill("input[name=project_code]", "HUAWEI-CLOUD")
    await page.fill("textarea[name=project_description]", "首次购买华为云 ERP 服务")
    await page.fill("input[name=cloud_fee_paid_fen]", fee)
    await page.fill("input[name=staff_count]", staff)
    await page.fill("input[name=annual_revenue_fen]", "30,000,000")
    if documents:
        for index, name in enumerate(SME_CLOUD_DOCUMENTS):
            await page.set_input_files(f"input[name=document_{index}]", pdf(name))


def applicant(settings: Any, code: str) -> ServiceClients:
    return ServiceClients(
        settings, mint_token(settings.auth_secret, code, Role.APPLICANT, enterprise=code)
    )


async def test_an_applicant_files_sme_cloud_and_watches_its_status_change(
    open_console: Any, seeded: LocalStack
) -> None:
    code = credit_code(71_001)
    console = await open_console()
    await console.sign_in("yunfan", "applicant", enterprise=code)
    await console.go("/apply")
    program = console.page.locator("[data-testid=program-SME-CLOUD]")
    words = await program.inner_text()
    assert "按云服务实际支付费用的 50% 资助，每项最高 ¥2,000.00" in words
    assert "中小微企业" in words and "云服务合同" in words and "财政局" in words
    assert "2027-12-31 18:00" in words  # the window's end, in Beijing time
    await console.screenshot("applicant-programs")

    await program.locator("text=在线申报").click()
    await console.page.wait_for_url("**/apply/SME-CLOUD")
    await fill_sme_cloud(console, title="ERP 上云", fee="3,000.50")
    await console.screenshot("applicant-form")
    await console.page.click("button[type=submit]")
    await console.page.wait_for_url("**/my/applications/*")
    application_id = console.page.url.rsplit("/", 1)[-1].split("?")[0]

    # The page is not reloaded from here on: a marker on the window survives only if it is not.
    await console.page.evaluate("window.stillTheSamePage = true")
    stage = console.page.locator("[data-testid=stage]")
    first = await stage.inner_text()
    assert first in ("已申报", "合规性初审"), first
    await stage.filter(has_text="部门联审").wait_for(timeout=90_000)
    assert await console.page.evaluate("window.stillTheSamePage === true")

    async with applicant(seeded.settings, code) as clients:
        filed = await clients.applications.GetApplication(
            applications_pb2.GetApplicationRequest(application_id=application_id)
        )
    assert dict(filed.figures) == {
        "cloud_fee_paid_fen": 300_050,
        "staff_count": 40,
        "annual_revenue_fen": 3_000_000_000,
    }
    assert [d.name for d in filed.documents] == list(SME_CLOUD_DOCUMENTS)
    figures = await console.page.locator("[data-testid=figures]").inner_text()
    assert "¥3,000.50" in figures and "¥30,000,000.00" in figures
    await console.screenshot("applicant-application")

    await console.go("/my/applications")
    listed = await console.page.locator("[data-testid=applications]").inner_text()
    assert "ERP 上云" in listed and "部门联审" in listed
    await console.screenshot("applicant-list")


async def test_bad_input_is_shown_beside_its_field_and_files_nothing(
    open_console: Any, seeded: LocalStack
) -> None:
    code = credit_code(71_002)
    console = await open_console()
    await console.sign_in("zhao", "applicant", enterprise=code)
    await console.go("/apply/SME-CLOUD")
    page = console.page

    def beside(field: str) -> Any:
        return page.locator(f".field-error[data-field='{field}']")

    # Not a number: the console cannot send it at all.
    await fill_sme_cloud(console, title="ERP 上云", fee="三千元")
    await page.click("button[type=submit]")
    assert "请填写数字" in await beside("cloud_fee_paid_fen").inner_text()

    # No title: the service refuses, naming the field. The files chosen before are remembered.
    await page.fill("input[name=cloud_fee_paid_fen]", "3000")
    await page.fill("input[name=project_title]", "")
    await page.click("button[type=submit]")
    assert "必填" in await beside("project_title").inner_text()
    assert await page.locator(".uploaded").count() == 3

    # A negative figure: the service's rule, beside the figure; the rest of the input is kept.
    await page.fill("input[name=project_title]", "ERP 上云")
    await page.fill("input[name=staff_count]", "-5")
    await page.click("button[type=submit]")
    assert "不能为负数" in await beside("staff_count").inner_text()
    assert await page.input_value("input[name=cloud_fee_paid_fen]") == "3000"
    assert await page.input_value("input[name=project_title]") == "ERP 上云"
    assert "/apply/SME-CLOUD" in page.url

    async with applicant(seeded.settings, code) as clients:
        listed = await clients.applications.ListApplications(
            applications_pb2.ListApplicationsRequest(applicant_credit_code=code)
        )
    assert list(listed.applications) == []


async def test_withdrawal_and_the_public_notices(open_console: Any, seeded: LocalStack) -> None:
    settings = seeded.settings
    actors = Actors(settings)
    try:
        # A grant approved by both departments is noticed (for a second on this stack).
        noticed = await actors.submit_sme_cloud(71_003)
        await actors.wait_for([noticed], {common_pb2.GRANT_STAGE_IN_REVIEW})
        await actors.approve(noticed)
        await actors.wait_for([noticed], {common_pb2.GRANT_STAGE_AWAITING_FUNDING_PLAN})
    finally:
        await actors.close()

    # Its applicant confirms the receiving account the award is paid to (收款账户): the name
    # comes prefilled with the registered one, the page shows only the number's last 4 digits.
    console = await open_console()
    await console.sign_in("sun", "applicant", enterprise=credit_code(50_000 + 71_003))
    await console.go(f"/my/applications/{noticed}")
    card = console.page.locator("[data-testid=receiving-account]")
    assert "尚未确认收款账户" in await card.inner_text()
    assert await card.locator("input[name=account_name]").input_value() == "Test Enterprise 71003"
    await card.locator("input[name=account_number]").fill("6222 0200 0000 0012 34")
    await card.locator("input[name=bank_code]").fill("102584000016")
    await card.locator("input[name=bank_name]").fill("中国工商银行深圳分行营业部")
    await card.locator("button[type=submit]").click()
    await console.page.wait_for_url(f"**/my/applications/{noticed}?account=confirmed*")
    assert await console.page.locator("[data-testid=account-number]").inner_text() == (
        "*" * 14 + "1234"
    )
    assert "622202000000001234" not in await console.page.content()
    assert "申请变更收款账户" in await card.inner_text()  # another account is now a change

    # The applicant withdraws its own application through the confirm step.
    code = credit_code(71_004)
    async with applicant(settings, code) as clients:
        filed = await clients.applications.SubmitApplication(
            applications_pb2.SubmitApplicationRequest(
                request_id=f"test-{uuid.uuid4().hex}",
                program_code="SME-CLOUD",
                applicant_credit_code=code,
                applicant_name="深圳市撤回科技有限公司",
                project_title="CRM 上云",
                figures={
                    "cloud_fee_paid_fen": 300_000,
                    "staff_count": 40,
                    "annual_revenue_fen": 3_000_000_000,
                },
                documents=documents_for("SME-CLOUD", code),
            )
        )
    withdrawn = filed.application_id
    console = await open_console()
    await console.sign_in("qian", "applicant", enterprise=code)
    await console.go(f"/my/applications/{withdrawn}")
    await console.page.click("[data-testid=withdraw]")
    await console.page.wait_for_url(f"**/my/applications/{withdrawn}/withdraw")
    await console.page.fill("textarea[name=reason]", "项目调整，不再申请")
    await console.page.click("button:has-text('确认撤回')")
    await console.page.wait_for_url(f"**/my/applications/{withdrawn}?withdrawn=1")
    assert await console.page.locator("[data-testid=stage]").inner_text() == "已撤回"
    assert "撤回申请已提交" in await console.page.locator(".flash").inner_text()
    assert await console.page.locator("[data-testid=withdraw]").count() == 0  # nothing left

    # Anyone, signed out, reads the notice of the approved grant; it has closed.
    visitor = await open_console()
    await visitor.go("/notices")
    notice = visitor.page.locator("[data-testid=notice]", has_text="Cloud ERP 71003")
    text = await notice.inner_text()
    assert "Test Enterprise 71003" in text and "¥1,500.00" in text and "公示期已结束" in text
    assert credit_code(50_000 + 71_003) not in text  # a public notice shows no credit code

    # An open notice (published as the batcher would) takes objections from the identified only.
    batch_id = f"SME-CLOUD-test-{uuid.uuid4().hex[:8]}"
    async with ServiceClients(settings, system_token(settings)) as system:
        await system.notices.PublishNotice(
            notice_pb2.PublishNoticeRequest(
                batch_id=batch_id,
                program_code="SME-CLOUD",
                batch_number=99,
                owner_department=common_pb2.DEPARTMENT_INDUSTRY,
                opens_at=to_timestamp(now_utc() - timedelta(hours=1)),
                closes_at=to_timestamp(now_utc() + timedelta(days=9)),
                entries=[
                    notice_pb2.NoticeEntryInput(
                        application_id=withdrawn,
                        applicant_name="深圳市撤回科技有限公司",
                        project_title="CRM 上云",
                        amount_fen=150_000,
                        applicant_credit_code=code,
                    )
                ],
            )
        )
    await visitor.go("/notices?open=1")
    open_notice = visitor.page.locator(f"[data-batch='{batch_id}']")
    assert "公示中" in await open_notice.inner_text()
    await visitor.go("/notices")
    await visitor.screenshot("notices")
    await visitor.go("/notices?open=1")
    await open_notice.locator("text=异议/投诉/举报").click()
    assert "请先" in await visitor.page.locator("[data-testid=sign-in-to-object]").inner_text()

    await console.go(f"/notices/{batch_id}/objections/{withdrawn}")
    await console.page.select_option("select[name=kind]", "dispute")
    await console.page.fill("textarea[name=text]", "核定金额有误")
    await console.page.fill("input[name=contact]", "13800000000")
    await console.page.click("button[type=submit]")
    # The service asked the grant first; a withdrawn grant takes no objection, and says so.
    refused = await console.page.locator(".error[role=alert]").inner_text()
    assert "public notice" in refused
    assert await console.page.input_value("input[name=contact]") == "13800000000"
    async with ServiceClients(settings, mint_token(settings.auth_secret, "ops", Role.OPS)) as ops:
        objections = await ops.notices.ListObjections(
            notice_pb2.ListObjectionsRequest(batch_id=batch_id)
        )
    assert list(objections.objections) == []
