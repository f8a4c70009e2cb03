"""Finance officers in the console: one makes a funding plan from the awaiting awards, a colleague
approves it and the grant is paid; the maker cannot approve their own plan; the plan's XLSX
export downloads and opens.

The grants reach AWAITING_FUNDING_PLAN through the services (applicants and reviewers are other
groups' pages); everything finance does happens in the browser. Each test ends with its awards
paid or in an approved plan, so no award of the shared stack is left in a draft.
"""

from __future__ import annotations

import io
import re
from decimal import Decimal
from typing import Any

from openpyxl import load_workbook
from playwright.async_api import expect

from grantflow.v1 import common_pb2, disbursement_pb2
from infra.local.stack import LocalStack
from tests.actors import Actors

AWAITING: set[int] = {common_pb2.GRANT_STAGE_AWAITING_FUNDING_PLAN}
PLAN_URL = re.compile(r"/finance/plans/([0-9a-f]{32})$")


async def awaiting_plan(actors: Actors, number: int) -> str:
    """An SME-CLOUD grant filed, approved by both departments and through its 1 s notice."""
    application_id = await actors.submit_sme_cloud(number)
    await actors.approve(application_id)
    await actors.wait_for([application_id], AWAITING)
    return application_id


async def make_plan_in_browser(console: Any, application_id: str) -> str:
    """The signed-in officer makes an SME-CLOUD plan on /finance/plans; its id."""
    await console.go("/finance/plans")
    await console.page.select_option("[data-testid=program-select]", "SME-CLOUD")
    await console.page.click("text=查看待列入计划的资助")
    await expect(console.page.locator("[data-testid=awaiting-awards]")).to_contain_text(
        application_id
    )
    await console.page.click("[data-testid=create-plan-form] button[type=submit]")
    await console.page.wait_for_url(PLAN_URL)
    match = PLAN_URL.search(console.page.url)
    assert match is not None
    return match.group(1)


async def test_finance_makes_and_a_colleague_approves_a_plan_and_the_grant_is_paid(
    seeded: LocalStack, open_console: Any
) -> None:
    actors = Actors(seeded.settings)
    try:
        application_id = await awaiting_plan(actors, 9401)

        maker = await open_console()
        await maker.sign_in("wang.cz", "finance")
        await maker.go("/finance/plans?program=SME-CLOUD")
        awaiting = maker.page.locator("[data-testid=awaiting-awards]")
        await expect(awaiting).to_contain_text(application_id)
        await expect(awaiting).to_contain_text("Test Enterprise 9401")
        plan_id = await make_plan_in_browser(maker, application_id)
        await expect(maker.page.locator("[data-testid=plan-state]")).to_have_text("草拟")
        await expect(maker.page.locator("[data-testid=plan-maker]")).to_contain_text("wang.cz")
        line = maker.page.locator(f"tr[data-application='{application_id}']")
        await expect(line).to_contain_text("待拨付")
        notice = maker.page.locator("[data-testid=notice-text]")
        await expect(notice).to_contain_text(re.compile(r"安排资金[0-9.]+万元对\d+个项目予以资助"))
        await expect(notice).to_contain_text("Test Enterprise 9401")

        checker = await open_console()
        await checker.sign_in("zhao.cz", "finance")
        await checker.go(f"/finance/plans/{plan_id}")
        await checker.page.click("[data-testid=approve-form] button[type=submit]")
        await expect(checker.page.locator("[data-testid=plan-checker]")).to_contain_text("zhao.cz")
        # The progress panel polls every 2 s while the plan pays: no reload here.
        line = checker.page.locator(f"tr[data-application='{application_id}']")
        await expect(line.locator("[data-testid=line-state]")).to_have_text(
            "已拨付", timeout=90_000
        )
        await expect(checker.page.locator("[data-testid=progress-state]")).to_have_text(
            "已完成", timeout=30_000
        )
        await expect(checker.page.locator("[data-testid=count-pending]")).to_have_text("0")
        await checker.screenshot("finance-plan")

        # The grant itself, as the services tell it, is paid.
        await actors.wait_for([application_id], {common_pb2.GRANT_STAGE_PAID}, timeout=60)

        await checker.go("/finance")
        programs = checker.page.locator("[data-testid=program-budgets]")
        await expect(programs).to_contain_text("SME-CLOUD")
        await expect(
            checker.page.locator("[data-testid=budget-lines] tbody tr").first
        ).to_be_visible()
        await checker.screenshot("finance-budgets")

        await checker.go("/finance/payments?state=paid&program=SME-CLOUD")
        await expect(checker.page.locator("[data-testid=payment-lines]")).to_contain_text(
            application_id
        )
        await checker.screenshot("finance-payments")
    finally:
        await actors.close()


async def test_the_maker_cannot_approve_their_own_plan(
    seeded: LocalStack, open_console: Any
) -> None:
    actors = Actors(seeded.settings)
    try:
        application_id = await awaiting_plan(actors, 9402)
        maker = await open_console()
        await maker.sign_in("qian.cz", "finance")
        # The plans page with an award waiting (and, after the first test, a paid plan listed).
        await maker.go("/finance/plans?program=SME-CLOUD")
        await expect(maker.page.locator("[data-testid=awaiting-awards]")).to_contain_text(
            application_id
        )
        await maker.screenshot("finance-plans")
        plans_before = len(
            (
                await actors.checker.disbursement.ListFundingPlans(
                    disbursement_pb2.ListFundingPlansRequest(program_code="SME-CLOUD")
                )
            ).plans
        )
        # A plan without a title: the service's field error beside the field, no plan made.
        await maker.page.fill("[data-testid=create-plan-form] input[name=title]", "")
        await maker.page.click("[data-testid=create-plan-form] button[type=submit]")
        await expect(
            maker.page.locator("[data-testid=create-plan-form] .field-error")
        ).to_be_visible()
        answer = await actors.checker.disbursement.ListFundingPlans(
            disbursement_pb2.ListFundingPlansRequest(program_code="SME-CLOUD")
        )
        assert len(answer.plans) == plans_before
        assert (await actors.status(application_id)).status in AWAITING

        plan_id = await make_plan_in_browser(maker, application_id)

        await maker.page.click("[data-testid=approve-form] button[type=submit]")
        error = maker.page.locator("[data-testid=approve-error]")
        await expect(error).to_contain_text("制单人不能审核自己制作的资助计划")
        await expect(maker.page.locator("[data-testid=plan-state]")).to_have_text("草拟")
        plan = await actors.checker.disbursement.GetFundingPlan(
            disbursement_pb2.GetFundingPlanRequest(plan_id=plan_id)
        )
        assert plan.state == disbursement_pb2.PLAN_STATE_DRAFT
        assert plan.approved_by == ""
        assert (await actors.status(application_id)).status in AWAITING

        # A colleague approves it, so the shared stack keeps no award in a draft.
        await actors.checker.disbursement.ApproveFundingPlan(
            disbursement_pb2.ApproveFundingPlanRequest(plan_id=plan_id)
        )
    finally:
        await actors.close()


async def test_the_xlsx_export_downloads_with_the_plans_lines_and_total(
    seeded: LocalStack, open_console: Any
) -> None:
    actors = Actors(seeded.settings)
    try:
        application_id = await awaiting_plan(actors, 9403)
        plan = await actors.fund()
        assert application_id in {line.application_id for line in plan.lines}

        console = await open_console()
        await console.sign_in("sun.cz", "finance")
        await console.go(f"/finance/plans/{plan.plan_id}")
        async with console.page.expect_download() as download_info:
            await console.page.click("[data-testid=export-xlsx]")
        download = await download_info.value
        assert download.suggested_filename.endswith(".xlsx")
        path = await download.path()
        book = load_workbook(io.BytesIO(path.read_bytes()))
        sheet = book.active
        assert sheet is not None
        rows = [list(row) for row in sheet.iter_rows(values_only=True)]

        header = next(
            i for i, row in enumerate(rows) if row[:3] == ["序号", "申报编号", "单位名称"]
        )
        lines = rows[header + 1 : header + 1 + len(plan.lines)]
        assert {row[1] for row in lines} == {line.application_id for line in plan.lines}
        total = rows[header + 1 + len(plan.lines)]
        assert total[0] == "合计"
        assert Decimal(str(total[4])) == Decimal(plan.total_fen) / 100
        assert sum(Decimal(str(row[4])) for row in lines) == Decimal(plan.total_fen) / 100
    finally:
        await actors.close()
