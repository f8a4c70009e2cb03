"""An operator finds and understands grants through `grantflow ops`, on the real embedded stack
(one stack for the module): `ops find` by credit code, pending department, overdue review and
failed payment; `ops show` tells a paid grant's story in Chinese and in time order (filing, each
department's decision with reviewer and reason, the reservation, the funding plan, the payment);
`ops stack status` reports healthy components, the outbox backlog, a consumer group's lag and a
dead letter, and fails when a component does not answer."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from grantflow.demo import seed_catalogue
from grantflow.sample import credit_code
from grantflow.v1 import review_pb2
from infra.local.stack import LocalStack
from services.common import kafka
from services.common.config import Settings
from services.common.vocabulary import Department
from tests.actors import Actors
from tests.e2e.support import cli
from tests.stack_fixture import running_stack
from tests.support import free_port

pytestmark = pytest.mark.integration

REVIEW_SECONDS = 2.0  # review tasks are overdue this long after they were created
REASONS = {Department.INDUSTRY: "符合技术改造条件", Department.FINANCE: "预算充足，同意资助"}
PAID, WAITING, FAILING = 1, 2, 3  # Actors.submit_sme_cloud numbers; credit_code(50_000 + n)


@dataclass
class Scenario:
    stack: LocalStack
    paid: str
    waiting: str  # in review: industry claimed it, finance has not; overdue
    failing: str  # its payee's account refuses payments: the payment line fails
    plan_id: str


async def play(settings: Settings) -> tuple[str, str, str, str]:
    await seed_catalogue(settings)
    actors = Actors(settings)
    try:
        paid = await actors.submit_sme_cloud(PAID)
        waiting = await actors.submit_sme_cloud(WAITING)
        failing = await actors.submit_sme_cloud(FAILING)
        await actors.wait_for([paid, waiting, failing], {4})  # IN_REVIEW
        for application_id in (paid, failing):
            for department, reason in REASONS.items():
                reviewer = actors.reviewers[department]
                task = await actors.open_task(application_id, department)
                await reviewer.review.ClaimTask(review_pb2.ClaimTaskRequest(task_id=task.task_id))
                await reviewer.review.DecideTask(
                    review_pb2.DecideTaskRequest(
                        task_id=task.task_id,
                        decision=review_pb2.REVIEW_DECISION_APPROVE,
                        reason=reason,
                    )
                )
        task = await actors.open_task(waiting, Department.INDUSTRY)
        await actors.reviewers[Department.INDUSTRY].review.ClaimTask(
            review_pb2.ClaimTaskRequest(task_id=task.task_id)
        )
        await actors.wait_for([paid, failing], {7})  # AWAITING_FUNDING_PLAN
        plan = await actors.fund()
        await actors.wait_for([paid], {9})
        await actors.wait_for([failing], {12})  # PAYMENT_FAILED
        # An event nobody can decode: the intake consumer parks it on the dead-letter topic.
        producer = kafka.Producer(settings)
        await producer.start()
        try:
            await producer.send(
                kafka.Outgoing(kafka.topic(settings, kafka.APPLICATIONS), b"\x0a\xff", b"junk")
            )
        finally:
            await producer.close()
        return paid, waiting, failing, plan.plan_id
    finally:
        await actors.close()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with pytest.MonkeyPatch.context() as patch:
        # The stack's processes inherit the environment: the simulated treasury refuses one payee.
        patch.setenv("TREASURY_REJECTED_PAYEES", credit_code(50_000 + FAILING))
        with running_stack(
            tmp_path_factory.mktemp("opsview"),
            notice_period_seconds=1.0,
            review_period_seconds=REVIEW_SECONDS,
        ) as stack:
            paid, waiting, failing, plan_id = asyncio.run(play(stack.settings))
            yield Scenario(stack, paid, waiting, failing, plan_id)


def grantflow(stack: LocalStack, *args: str, env: dict[str, str] | None = None) -> str:
    outcome = cli(env or stack.environment(), *args)
    assert outcome.status == 0 and outcome.clean, f"grantflow {' '.join(args)}: {outcome.output}"
    return outcome.output


def found(stack: LocalStack, *args: str) -> set[str]:
    rows = json.loads(grantflow(stack, "ops", "find", *args, "--json"))
    return {row["application_id"] for row in rows}


def test_find_by_credit_code_department_overdue_and_failed_payment(scenario: Scenario) -> None:
    stack = scenario.stack
    assert found(stack, "--credit-code", credit_code(50_000 + PAID)) == {scenario.paid}
    assert found(stack, "--application", scenario.waiting[:10]) == {scenario.waiting}
    # The waiting grant's review is pending with finance (open) and industry (claimed).
    assert found(stack, "--department", "finance") == {scenario.waiting}
    assert found(stack, "--overdue") == {scenario.waiting}
    assert found(stack, "--failed-payment") == {scenario.failing}
    assert found(stack, "--stage", "PAID", "--program", "SME-CLOUD") == {scenario.paid}

    table = grantflow(stack, "ops", "find", "--failed-payment")
    for heading in ("申请编号", "项目", "企业", "阶段"):
        assert heading in table
    assert scenario.failing in table and "拨付失败" in table and "Cloud ERP 3" in table

    rows = json.loads(grantflow(stack, "ops", "find", "--overdue", "--json"))
    assert rows[0]["stage_label"] == "部门联审" and rows[0]["pending_departments"] == [
        "finance",
        "industry",
    ]
    assert any("逾期" in note for note in rows[0]["notes"])

    refused = cli(stack.environment(), "ops", "find", "--credit-code", "x' OR '1'='1")
    assert refused.status == 2 and refused.clean and "--credit-code" in refused.output


def test_show_tells_a_paid_grant_in_order_and_in_chinese(scenario: Scenario) -> None:
    stack = scenario.stack
    timeline = json.loads(grantflow(stack, "ops", "show", scenario.paid, "--json"))
    assert timeline["missing"] == []
    assert timeline["summary"]["当前阶段"].startswith("已拨付")
    entries = timeline["entries"]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert all(e["at"].endswith("+08:00") for e in entries)  # Beijing time

    def first(source: str, starts: str, who: str = "") -> int:
        for n, e in enumerate(entries):
            if e["source"] == source and e["what"].startswith(starts) and who in e["who"]:
                return n
        raise AssertionError(f"no {source} {starts!r} in {json.dumps(entries, ensure_ascii=False)}")

    submitted = first("申请", "提交申请")
    decisions = []
    for department, label in ((Department.INDUSTRY, "工信局"), (Department.FINANCE, "财政局")):
        n = first("评审", f"评审决定：{label}", f"{department}.test")
        assert REASONS[department] in entries[n]["detail"] and "同意" in entries[n]["what"]
        decisions.append(n)
    reserved = first("资金", "预留预算")
    planned = first("资金", "列入资助计划")
    approved = first("资金", "资助计划《")
    assert entries[approved]["who"] == "checker.test"
    payment = first("资金", "拨付成功")
    assert "收款凭证 TRS" in entries[payment]["detail"]
    notice = first("流程", "公示期开始计时")
    # The grant reserves the money once it has both decisions; the review service records its
    # own copy of the last one as the grant answers, so that copy may follow the reservation.
    received = [first("流程", f"流程收到{label}评审决定") for label in ("工信局", "财政局")]
    assert submitted < min(decisions) and max(received) < reserved < notice < planned < payment
    first("流程", "进入阶段：已拨付")

    text = grantflow(stack, "ops", "show", scenario.paid)
    for words in (
        "办理经过",
        "北京时间",
        "来源",
        "经办人",
        "提交申请",
        "拨付成功",
        REASONS[Department.FINANCE],
    ):
        assert words in text

    failed = json.loads(grantflow(stack, "ops", "show", scenario.failing, "--json"))
    assert any(e["what"].startswith("拨付失败") for e in failed["entries"])

    unknown = cli(stack.environment(), "ops", "show", uuid.uuid4().hex)
    assert unknown.status == 1 and unknown.clean and "未找到" in unknown.output


def test_stack_status_reports_health_backlog_lag_and_dead_letters(scenario: Scenario) -> None:
    stack = scenario.stack
    settings = stack.settings
    dead_letters = kafka.dead_letter_topic(kafka.topic(settings, kafka.APPLICATIONS))
    status: dict[str, object] = {}
    for _ in range(60):  # the intake consumer parks the undecodable event within moments
        status = json.loads(grantflow(stack, "ops", "stack", "status", "--json"))
        if status["dead_letters"].get(dead_letters):  # type: ignore[attr-defined]
            break
    assert status["healthy"] is True
    components = {c["name"]: c for c in status["components"]}  # type: ignore[attr-defined]
    assert set(components) == {
        "applications",
        "review",
        "disbursement",
        "temporal",
        "worker",
        "kafka",
    }
    assert all(c["healthy"] for c in components.values())
    outboxes = {o["service"]: o for o in status["outboxes"]}  # type: ignore[attr-defined]
    assert set(outboxes) == {"applications", "review", "disbursement"}
    assert all(o["published_retained"] > 0 and o["unpublished"] >= 0 for o in outboxes.values())
    lags = {g["group"]: g for g in status["consumer_lag"]}  # type: ignore[attr-defined]
    intake = lags["grant-intake"]
    assert intake["partitions"] and all(
        p["end"] >= p["committed"] and p["lag"] == p["end"] - p["committed"]
        for p in intake["partitions"]
    )
    assert status["dead_letters"][dead_letters] == 1  # type: ignore[index]
    calendar = status["calendar"]
    assert 2026 in calendar["years"] and calendar["error"] == ""  # type: ignore[index]

    table = grantflow(stack, "ops", "stack", "status")
    for words in (
        "组件健康",
        "发件箱积压",
        "消费延迟",
        "grant-intake",
        "死信",
        dead_letters,
        "工作日日历",
    ):
        assert words in table

    broken = {**stack.environment(), "DISBURSEMENT_ADDRESS": f"127.0.0.1:{free_port()}"}
    outcome = cli(broken, "ops", "stack", "status")
    assert outcome.status == 1 and outcome.clean, outcome.output
    assert "disbursement" in outcome.output and "异常" in outcome.output
