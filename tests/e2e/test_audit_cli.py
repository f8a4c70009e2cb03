"""The audit trail end to end through the `grantflow` command on the real embedded stack: one
grant from filing to paid leaves its decisions, plan (maker and checker) and payment in the
services' chains, `ops audit show` merges them in time order and `ops audit verify` finds every
chain intact."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grantflow.demo import seed_catalogue
from grantflow.sample import credit_code
from infra.local.stack import LocalStack
from tests.e2e.test_cli import document_options, grantflow, until

pytestmark = pytest.mark.integration


async def test_a_paid_grant_leaves_its_acts_in_the_audit_trail(
    stack: LocalStack, tmp_path: Path
) -> None:
    await seed_catalogue(stack.settings)
    out = grantflow(
        stack, "submit", "--program", "SME-CLOUD", "--credit-code", credit_code(777_101),
        "--name", "Shenzhen Audit Test Co., Ltd.", "--title", "CRM in the cloud",
        "--figure", "cloud_fee_paid_fen=300000", "--figure", "staff_count=30",
        "--figure", "annual_revenue_fen=200000000",
        *document_options("SME-CLOUD", tmp_path),
    )  # fmt: skip
    application_id = re.search(r"submitted ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
    for department, user in (("industry", "li"), ("finance", "wang")):
        tasks = until(stack, ["tasks", "--department", department, "--user", user], application_id)
        task_id = next(
            line.split()[1] for line in tasks.splitlines() if application_id in line
        ).strip("│")
        grantflow(stack, "claim", task_id, "--department", department, "--user", user)
        grantflow(
            stack, "decide", task_id, "approve", "--reason", "符合条件",
            "--department", department, "--user", user,
        )  # fmt: skip
    until(stack, ["status", application_id], "AWAITING_FUNDING_PLAN")
    out = grantflow(stack, "plan", "create", "SME-CLOUD", "--user", "zhang")
    plan_id = re.search(r"plan ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
    grantflow(stack, "plan", "approve", plan_id, "--user", "chen")
    until(stack, ["status", application_id], "PAID")

    shown = until(stack, ["ops", "audit", "show", application_id], "资金已拨付")
    for expected in (
        "评审决定 review.decided",
        "审定通过并公示 grant.in_notice",
        "预留资金 reservation.made",
        "编制资助计划（经办）",
        "审批资助计划（复核）",
        "支付成功 payment.settled",
        "资金已拨付 grant.paid",
    ):
        assert expected in shown, (expected, shown)
    rows = [line for line in shown.splitlines() if "review.decided" in line]
    assert (
        len(rows) == 2 and any("li" in row for row in rows) and any("wang" in row for row in rows)
    )
    approved = next(line for line in shown.splitlines() if "plan.approved" in line)
    assert "chen" in approved and "财政" in approved

    verified = grantflow(stack, "ops", "audit", "verify")
    assert verified.count("审计链完好") == 3, verified
