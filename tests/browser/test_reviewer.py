"""The reviewers' console in a browser: two departments' reviewers claim and approve one grant
from their inboxes, another department's reviewer cannot open the task, and a refused decision
is shown beside its field and changes nothing.

An expert drawn for an industrial-internet platform scores it against the rubric (a score out
of its range refused beside the criterion), and the auditor then confirms the audited figure.

The filing is the applicant's job, so it goes through the service (tests/actors.py); claiming and
deciding are the reviewers' own job, so they go through the browser.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from playwright.async_api import expect

from grantflow.demo import EXPERTS_FILE
from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2, common_pb2, review_pb2
from infra.local.stack import LocalStack
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.vocabulary import Department, Role
from tests.actors import Actors, documents_for

IN_REVIEW = common_pb2.GRANT_STAGE_IN_REVIEW
# Past the department review: both approvals joined (approved, waiting for or in the notice,
# or already waiting for a funding plan: the notice period is 1 s here).
PAST_REVIEW: set[int] = {
    common_pb2.GRANT_STAGE_APPROVED,
    common_pb2.GRANT_STAGE_AWAITING_NOTICE,
    common_pb2.GRANT_STAGE_IN_NOTICE,
    common_pb2.GRANT_STAGE_AWAITING_FUNDING_PLAN,
}
FEE_FEN = 300_000  # SME-CLOUD gives 50 %: the rule's amount is ¥1,500.00


async def _filed(actors: Actors, number: int) -> tuple[str, dict[Department, str]]:
    """An SME-CLOUD application in review, and its open task of each department (industry and
    finance review it in parallel)."""
    application_id = await actors.submit_sme_cloud(number, fee_fen=FEE_FEN)
    await actors.wait_for([application_id], {IN_REVIEW})
    tasks = {
        department: (await actors.open_task(application_id, department)).task_id
        for department in (Department.INDUSTRY, Department.FINANCE)
    }
    return application_id, tasks


async def _task(actors: Actors, department: Department, task_id: str) -> review_pb2.ReviewTask:
    return await actors.reviewers[department].review.GetTask(
        review_pb2.GetTaskRequest(task_id=task_id)
    )


async def _claim_in_inbox(console: Any, task_id: str, user: str) -> None:
    await console.go("/inbox")
    row = console.page.locator(f"tr[data-task-id='{task_id}']")
    await row.locator("[data-testid=claim]").click()
    # htmx swaps the row: the claimant shows and the claim button is gone.
    await expect(row.locator("[data-testid=assignee]")).to_have_text(user)
    await expect(row.locator("[data-testid=claim]")).to_have_count(0)


async def test_two_departments_claim_and_approve_and_the_grant_moves_on(
    open_console: Any, seeded: LocalStack
) -> None:
    actors = Actors(seeded.settings)
    try:
        application_id, tasks = await _filed(actors, 9101)
        for department, user in ((Department.INDUSTRY, "wang"), (Department.FINANCE, "chen")):
            task_id = tasks[department]
            console = await open_console()
            await console.sign_in(user, "reviewer", department=department.value)
            await _claim_in_inbox(console, task_id, user)
            mine = console.page.locator("[data-testid=tab-mine] .badge")
            await console.go("/inbox?tab=mine")
            assert int(await mine.inner_text()) >= 1
            await expect(console.page.locator(f"tr[data-task-id='{task_id}']")).to_have_count(1)
            if department == Department.INDUSTRY:
                await console.screenshot("reviewer-inbox")

            await console.go(f"/inbox/{task_id}")
            page = console.page
            await expect(page.locator("[data-testid=proposed]")).to_have_text("¥1,500.00")
            figures = page.locator("[data-testid=figures]")
            await expect(figures).to_contain_text("cloud_fee_paid_fen")
            await expect(figures).to_contain_text("¥3,000.00")
            await expect(page.locator("[data-testid=documents]")).to_contain_text("云服务合同")
            await expect(
                page.locator("[data-testid=eligibility] tr[data-check]")
            ).not_to_have_count(0)
            if department == Department.INDUSTRY:
                await console.screenshot("reviewer-task")
            await page.check("input[name=decision][value=approve]")
            await page.fill("textarea[name=reason]", f"{department.value} 审核通过，材料齐全")
            await page.click("[data-testid=submit-decision]")
            await page.wait_for_url("**/inbox")
            await expect(page.locator(".flash")).to_contain_text("已提交评审意见")

            decided = await _task(actors, department, task_id)
            assert decided.state == review_pb2.TASK_STATE_DECIDED
            assert decided.assignee == user
            assert decided.decision == review_pb2.REVIEW_DECISION_APPROVE
            assert decided.decided_amount_fen == FEE_FEN // 2
        await actors.wait_for([application_id], PAST_REVIEW)
    finally:
        await actors.close()


async def test_a_reviewer_of_another_department_cannot_open_the_task(
    open_console: Any, seeded: LocalStack
) -> None:
    actors = Actors(seeded.settings)
    try:
        application_id, tasks = await _filed(actors, 9102)
        task_id = tasks[Department.INDUSTRY]
        console = await open_console()
        await console.sign_in("zhou", "reviewer", department="hr")
        answer = await console.page.goto(f"{console.url}/inbox/{task_id}")
        assert answer is not None and answer.status == 403
        body = await console.page.inner_text("main")
        assert "无权访问" in body
        for secret in (application_id, "Test Enterprise 9102", "Cloud ERP 9102", "¥1,500.00"):
            assert secret not in body
        assert await console.page.locator("[data-testid=figures]").count() == 0
        # Nor can it claim the task behind the page's back, and its inbox does not list it.
        await console.go("/inbox")
        assert await console.page.locator(f"tr[data-task-id='{task_id}']").count() == 0
        still = await _task(actors, Department.INDUSTRY, task_id)
        assert still.state == review_pb2.TASK_STATE_OPEN
    finally:
        await actors.close()


async def test_a_refused_decision_shows_beside_its_field_and_changes_nothing(
    open_console: Any, seeded: LocalStack
) -> None:
    actors = Actors(seeded.settings)
    try:
        application_id, tasks = await _filed(actors, 9103)
        task_id = tasks[Department.INDUSTRY]
        console = await open_console()
        await console.sign_in("liu", "reviewer", department="industry")
        await _claim_in_inbox(console, task_id, "liu")
        await console.go(f"/inbox/{task_id}")
        page = console.page

        # More than the rule's ¥1,500.00: the review service refuses the amount.
        await page.check("input[name=decision][value=approve_lower]")
        await page.fill("input[name=amount_yuan]", "1500.01")
        await page.fill("textarea[name=reason]", "核减部分费用")
        await page.click("[data-testid=submit-decision]")
        amount_error = page.locator(".field-error[data-field=amount_yuan]")
        await expect(amount_error).to_contain_text("150000")
        assert await page.locator(".field-error[data-field=reason]").count() == 0
        # What was typed is kept for the correction.
        assert await page.input_value("input[name=amount_yuan]") == "1500.01"

        # A rejection without its reason.
        await page.check("input[name=decision][value=reject]")
        await page.fill("input[name=amount_yuan]", "")
        await page.fill("textarea[name=reason]", "")
        await page.click("[data-testid=submit-decision]")
        await expect(page.locator(".field-error[data-field=reason]")).to_contain_text("理由")
        assert await page.locator(".field-error[data-field=amount_yuan]").count() == 0

        still = await _task(actors, Department.INDUSTRY, task_id)
        assert still.state == review_pb2.TASK_STATE_CLAIMED
        assert still.assignee == "liu"
        assert still.decision == review_pb2.REVIEW_DECISION_UNSPECIFIED
        assert still.decided_amount_fen == 0
        grant = await actors.ops.applications.GetApplication(
            applications_pb2.GetApplicationRequest(application_id=application_id)
        )
        assert grant.status == IN_REVIEW
    finally:
        await actors.close()


IIP_INVESTMENT_FEN = 1_000_000_000  # ¥10,000,000.00 declared platform investment


async def _file_platform(settings: Settings, number: int) -> str:
    """An IIP-INDUSTRY application: its program draws an expert panel, then a special audit."""
    code = credit_code(60_000 + number)
    token = mint_token(settings.auth_secret, code, Role.APPLICANT, enterprise=code)
    async with ServiceClients(settings, token) as applicant:
        answer = await applicant.applications.SubmitApplication(
            applications_pb2.SubmitApplicationRequest(
                request_id=f"test-{uuid.uuid4().hex}",
                program_code="IIP-INDUSTRY",
                applicant_credit_code=code,
                applicant_name=f"平台企业 {number}",
                project_title=f"工业互联网平台 {number}",
                figures={"platform_investment_fen": IIP_INVESTMENT_FEN},
                documents=documents_for("IIP-INDUSTRY", code),
            )
        )
    return str(answer.application_id)


def _experts(settings: Settings) -> dict[str, ServiceClients]:
    pool = json.loads(EXPERTS_FILE.read_text("utf-8"))["experts"]
    return {
        e["expert_id"]: ServiceClients(
            settings, mint_token(settings.auth_secret, e["expert_id"], Role.EXPERT)
        )
        for e in pool
        if e["field"] == "industrial_internet"
    }


async def _drawn(
    experts: dict[str, ServiceClients], application_id: str, timeout: float = 60.0
) -> dict[str, review_pb2.ExpertTask]:
    """The experts drawn for the application, with their tasks (the panel is drawn once the
    formal and eligibility checks have passed)."""
    deadline = time.monotonic() + timeout
    while True:
        drawn = {}
        for expert_id, clients in experts.items():
            answer = await clients.review.ListMyExpertTasks(
                review_pb2.ListMyExpertTasksRequest(program_code="IIP-INDUSTRY")
            )
            for task in answer.tasks:
                if task.application_id == application_id:
                    drawn[expert_id] = task
        if drawn:
            return drawn
        assert time.monotonic() < deadline, f"no expert drawn for {application_id}"
        await asyncio.sleep(0.3)


async def test_an_expert_scores_against_the_rubric_and_the_auditor_confirms(
    open_console: Any, seeded: LocalStack
) -> None:
    settings = seeded.settings
    actors = Actors(settings)
    experts = _experts(settings)
    try:
        application_id = await _file_platform(settings, 9104)
        drawn = await _drawn(experts, application_id)
        expert_id, task = sorted(drawn.items())[0]
        console = await open_console()
        await console.sign_in(expert_id, "expert")
        await console.go("/expert")
        await console.page.click(
            f"tr[data-task-id='{task.task_id}'] [data-testid=open-expert-task]"
        )
        page = console.page
        await expect(page.locator("[data-testid=figures]")).to_contain_text("¥10,000,000.00")
        await expect(page.locator("[data-testid=others-hidden]")).to_be_visible()
        await console.screenshot("expert-task")

        # 31 of at most 30 points: refused beside that criterion, nothing submitted.
        for code, typed in (
            ("technology", "31"),
            ("service_capability", "25.5"),
            ("investment", "18"),
            ("sustainability", "15"),
        ):
            await page.fill(f"input[name=score_{code}]", typed)
        await page.click("[data-testid=submit-scores]")
        await expect(page.locator(".field-error[data-field=score_technology]")).to_contain_text(
            "30"
        )
        assert await page.locator(".field-error").count() == 1
        unchanged = await experts[expert_id].review.GetExpertTask(
            review_pb2.GetExpertTaskRequest(task_id=task.task_id)
        )
        assert unchanged.state == review_pb2.EXPERT_TASK_STATE_PENDING

        await page.fill("input[name=score_technology]", "27.25")
        await page.fill("textarea[name=comment]", "平台架构合理，投资明细清楚")
        await page.click("[data-testid=submit-scores]")
        await expect(page.locator("[data-testid=my-total]")).to_have_text("85.75")
        scored = await experts[expert_id].review.GetExpertTask(
            review_pb2.GetExpertTaskRequest(task_id=task.task_id)
        )
        assert scored.state == review_pb2.EXPERT_TASK_STATE_SUBMITTED
        assert {s.code: s.score_centi for s in scored.scores}["technology"] == 2725

        # The rest of the panel scores through the service; then the audit is asked for.
        for other, other_task in drawn.items():
            if other == expert_id:
                continue
            await experts[other].review.SubmitScores(
                review_pb2.SubmitScoresRequest(
                    task_id=other_task.task_id,
                    scores=[
                        review_pb2.CriterionScore(code=c.code, score_centi=c.max_points * 80)
                        for c in other_task.rubric
                    ],
                )
            )
        await actors.wait_for([application_id], {common_pb2.GRANT_STAGE_SPECIAL_AUDIT})

        auditor = await open_console()
        await auditor.sign_in("shenji", "auditor")
        await auditor.go("/audit")
        await auditor.page.click(
            f"tr:has(a[href='/audit/{application_id}']) [data-testid=open-audit-task]"
        )
        audit_page = auditor.page
        await audit_page.fill("input[name=audited_yuan]", "8,000,000.50")
        await audit_page.fill("textarea[name=note]", "部分发票不予认定")
        await auditor.screenshot("audit-task")
        await audit_page.click("[data-testid=confirm-audit]")
        await expect(audit_page.locator("[data-testid=audit-state]")).to_have_text("已确认")
        async with ServiceClients(
            settings, mint_token(settings.auth_secret, "audit.check", Role.AUDITOR)
        ) as check:
            audits = await check.review.ListAuditTasks(
                review_pb2.ListAuditTasksRequest(application_id=application_id)
            )
        assert [a.audited_fen for a in audits.tasks] == [800_000_050]
        await actors.wait_for([application_id], {IN_REVIEW})
    finally:
        for clients in experts.values():
            await clients.close()
        await actors.close()
