"""The operations engineers' console pages in a real browser on the embedded stack: finding a
grant by its credit code and by program and stage and reading its timeline, the overview's
counts, charts, outbox backlog and dead letters, and the refusal every other role meets.

Grants are filed through the services (tests/actors.py): filing is the applicants' job, not
the console's ops pages'."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from grantflow.sample import credit_code
from infra.local.stack import LocalStack
from services.common import kafka
from tests.actors import Actors

IN_REVIEW = 4  # common_pb2.GRANT_STAGE_IN_REVIEW


@pytest.fixture(scope="module")
async def actors(seeded: LocalStack) -> AsyncIterator[Actors]:
    team = Actors(seeded.settings)
    yield team
    await team.close()


def fresh_number() -> int:
    """An enterprise of its own (credit_code(50_000 + n)), apart from other tests' filings."""
    return random.randint(600_000, 900_000)


@pytest.fixture(scope="module")
async def in_review(actors: Actors) -> tuple[str, str]:
    """One SME-CLOUD grant in department review: (application id, its credit code)."""
    number = fresh_number()
    application_id = await actors.submit_sme_cloud(number)
    await actors.wait_for([application_id], {IN_REVIEW})
    return application_id, credit_code(50_000 + number)


async def signed_in_ops(open_console: Any) -> Any:
    console = await open_console()
    await console.sign_in("wang.ops", "ops")
    return console


async def test_ops_finds_a_grant_by_credit_code_and_by_program_and_stage_and_reads_its_timeline(
    open_console: Any, in_review: tuple[str, str]
) -> None:
    application_id, code = in_review
    console = await signed_in_ops(open_console)
    page = console.page

    # A bad credit code is named beside its field, and nothing is listed.
    await console.go("/ops/grants")
    await page.fill("input[name=credit_code]", "91440300000000Y1BX")
    await page.click("form[data-testid=search] button[type=submit]")
    assert "credit code" in await page.locator("#credit_code + .field-error").inner_text()
    assert await page.locator("[data-testid=results]").count() == 0

    await page.fill("input[name=credit_code]", code)
    await page.click("form[data-testid=search] button[type=submit]")
    rows = page.locator("[data-testid=results] tbody tr")
    assert await rows.count() == 1
    row = page.locator(f"tr[data-application='{application_id}']")
    assert await row.locator("[data-testid=stage]").inner_text() == "部门联审"
    assert code in await row.inner_text()
    headers = await page.locator("[data-testid=results] thead").inner_text()
    for heading in ("申请编号", "项目名称", "申报单位", "统一社会信用代码", "阶段"):
        assert heading in headers

    await console.go("/ops/grants")
    await page.select_option("select[name=program]", "SME-CLOUD")
    await page.select_option("select[name=stage]", "IN_REVIEW")
    await page.click("form[data-testid=search] button[type=submit]")
    assert "stage=IN_REVIEW" in page.url and "program=SME-CLOUD" in page.url
    found = page.locator(f"tr[data-application='{application_id}']")
    assert await found.count() == 1
    stages = await page.locator("[data-testid=results] [data-testid=stage]").all_inner_texts()
    assert set(stages) == {"部门联审"}
    await console.screenshot("ops-find")

    await found.locator("a").first.click()
    await page.wait_for_selector("[data-testid=timeline]")
    assert page.url.endswith(f"/ops/grants/{application_id}")
    assert (
        "部门联审" in await page.locator("[data-testid=summary] [data-testid=stage]").inner_text()
    )
    timeline = await page.locator("[data-testid=timeline]").inner_text()
    assert "提交申请" in timeline and "创建评审任务：工信局第1轮评审" in timeline
    departments = await page.locator("[data-testid=tasks] tbody tr").all_inner_texts()
    assert any("工信局" in task for task in departments)
    assert any("财政局" in task for task in departments)
    link = await page.locator("[data-testid=temporal-link]").get_attribute("href")
    assert link is not None and link.endswith(f"/workflows/grant-{application_id}")
    assert await page.locator("[data-testid=repair-form] select[name=action] option").count() == 6
    await console.screenshot("ops-timeline")

    # A repair without its reason is refused beside the field, and no repair is made.
    await page.select_option("select[name=action]", "resume")
    await page.click("[data-testid=repair-form] button[type=submit]")
    assert await page.locator("#reason + .field-error").count() == 1
    assert await page.locator("[data-testid=grant-repairs]").count() == 0


def chart_json(text: str) -> dict[str, Any]:
    return json.loads(text)  # type: ignore[no-any-return]


def program_total(charts: dict[str, Any], program: str) -> int:
    for dataset in charts["stages"]["datasets"]:
        if dataset["label"] == program:
            return sum(dataset["data"])
    return 0


async def test_the_overview_charts_the_filed_grants_and_shows_backlog_and_dead_letters(
    open_console: Any, actors: Actors, in_review: tuple[str, str], seeded: LocalStack
) -> None:
    console = await signed_in_ops(open_console)
    page = console.page
    await console.go("/ops")
    before = chart_json(await page.locator("#ops-chart-data").inner_text())
    dead_before = int(await page.locator("[data-testid=dead-letter-total]").inner_text())

    # One more filing, and one event parked on the applications stream's dead-letter topic.
    await actors.submit_sme_cloud(fresh_number())
    settings = seeded.settings
    producer = kafka.Producer(settings)
    await producer.start()
    try:
        parked = kafka.dead_letter_topic(kafka.topic(settings, kafka.APPLICATIONS))
        await producer.send(kafka.Outgoing(parked, b"\x0a\xff", b"ops-console-test"))
    finally:
        await producer.close()

    dead_after = dead_before
    for _ in range(20):  # the broker's high watermark follows the acknowledged write promptly
        await console.go("/ops")
        dead_after = int(await page.locator("[data-testid=dead-letter-total]").inner_text())
        if dead_after > dead_before:
            break
        await asyncio.sleep(0.5)
    assert dead_after == dead_before + 1
    applications_row = page.locator("[data-testid=dead-letters] tr[data-stream=applications]")
    assert parked in await applications_row.inner_text()

    after = chart_json(await page.locator("#ops-chart-data").inner_text())
    assert program_total(after, "SME-CLOUD") == program_total(before, "SME-CLOUD") + 1
    assert "部门联审" in after["stages"]["labels"]
    in_review_at = after["stages"]["codes"].index("IN_REVIEW")
    sme = next(d for d in after["stages"]["datasets"] if d["label"] == "SME-CLOUD")
    assert sme["data"][in_review_at] >= 1
    assert any(d["label"] == "SME-CLOUD" and sum(d["data"]) >= 2 for d in after["days"]["datasets"])
    table_row = page.locator(
        "[data-testid=stage-table] tr[data-program=SME-CLOUD][data-stage=IN_REVIEW]"
    )
    assert (
        int(await table_row.locator("td.money a").first.inner_text()) == sme["data"][in_review_at]
    )
    # Chart.js drew the canvas (it sizes it when it renders).
    await page.wait_for_function(
        "Chart.getChart(document.getElementById('stage-chart')) !== undefined"
    )

    outboxes = page.locator("[data-testid=outboxes] tbody tr")
    assert [await r.get_attribute("data-service") for r in await outboxes.all()] == [
        "applications",
        "review",
        "disbursement",
    ]
    for unpublished in await page.locator(
        "[data-testid=outboxes] [data-testid=unpublished]"
    ).all_inner_texts():
        assert int(unpublished) >= 0
    await console.screenshot("ops-overview")


async def test_a_non_ops_user_is_refused_every_ops_page_and_sees_no_data(
    open_console: Any, in_review: tuple[str, str]
) -> None:
    application_id, code = in_review
    console = await open_console()
    await console.sign_in(code, "applicant", enterprise=code)
    for path in ("/ops", f"/ops/grants?credit_code={code}", f"/ops/grants/{application_id}"):
        response = await console.page.goto(f"{console.url}{path}")
        assert response is not None and response.status == 403, path
        body = await console.page.inner_text("main")
        assert "无权访问" in body
        assert "Cloud ERP" not in body and application_id not in body
        assert await console.page.locator("#ops-chart-data, [data-testid=outboxes]").count() == 0
