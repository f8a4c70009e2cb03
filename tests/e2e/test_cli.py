"""End to end through the `grantflow` command, as its users would type it, against the real
embedded stack: an applicant files, two departments' reviewers claim and decide, two finance
officers make and check the funding plan, and an operator finds, replays and inspects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grantflow.demo import seed_catalogue
from grantflow.sample import credit_code
from infra.local.stack import LocalStack
from tests.stack_fixture import running_stack

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).parent / "grantflow")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("e2e"), notice_period_seconds=1.0) as s:
        yield s


def grantflow(stack: LocalStack, *args: str, ok: bool = True) -> str:
    result = subprocess.run(
        [CLI, *args],
        env={**stack.environment(), "COLUMNS": "250", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok and result.returncode != 0:
        raise AssertionError(f"grantflow {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def until(stack: LocalStack, args: list[str], pattern: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = grantflow(stack, *args)
        if re.search(pattern, out):
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{args}: {pattern!r} not seen in {out}")
        time.sleep(0.5)


async def test_an_application_from_filing_to_paid_through_the_cli(stack: LocalStack) -> None:
    await seed_catalogue(stack.settings)
    code = credit_code(777_001)
    out = grantflow(
        stack, "submit", "--program", "SME-CLOUD", "--credit-code", code,
        "--name", "Shenzhen CLI Test Co., Ltd.", "--title", "ERP in the cloud",
        "--figure", "cloud_fee_paid_fen=500000", "--figure", "staff_count=30",
        "--figure", "annual_revenue_fen=200000000",
    )  # fmt: skip
    application_id = re.search(r"submitted ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
    until(stack, ["status", application_id], "IN_REVIEW")

    for department, user in (("industry", "li"), ("finance", "wang")):
        tasks = until(stack, ["tasks", "--department", department, "--user", user], application_id)
        task_id = next(
            line.split()[1] for line in tasks.splitlines() if application_id in line
        ).strip("│")
        # A reviewer of another department may not touch it.
        refused = grantflow(
            stack, "claim", task_id, "--department", "hr", "--user", "zhao", ok=False
        )
        assert "PERMISSION_DENIED" in refused
        grantflow(stack, "claim", task_id, "--department", department, "--user", user)
        grantflow(
            stack, "decide", task_id, "approve", "--reason", "meets the rules",
            "--department", department, "--user", user,
        )  # fmt: skip

    until(stack, ["status", application_id], "AWAITING_FUNDING_PLAN")
    out = grantflow(stack, "plan", "create", "SME-CLOUD", "--user", "zhang")
    plan_id = re.search(r"plan ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
    refused = grantflow(stack, "plan", "approve", plan_id, "--user", "zhang", ok=False)
    assert "PERMISSION_DENIED" in refused  # maker and checker differ
    grantflow(stack, "plan", "approve", plan_id, "--user", "chen")
    status = until(stack, ["status", application_id], "PAID")
    assert "¥2,000.00" in status  # 50 % of 5,000 yuan, capped at 2,000 yuan

    plan = grantflow(stack, "plan", "show", plan_id)
    assert "PAID" in plan and "COMPLETED" in plan

    found = grantflow(stack, "ops", "find", "--applicant", code)
    assert f"grant-{application_id}" in found and "PAID" in found
    replay = grantflow(stack, "ops", "replay", f"grant-{application_id}")
    assert "deterministic" in replay
    events = grantflow(stack, "ops", "events", "applications", "--json")
    assert application_id in events and "grantflow.v1.ApplicationSubmitted" in events


def test_tokens_are_minted_and_bad_roles_refused(stack: LocalStack) -> None:
    token = grantflow(stack, "token", "--role", "reviewer", "--department", "finance").strip()
    assert token.count(".") == 2  # a JWT
    refused = grantflow(stack, "token", "--role", "reviewer", ok=False)
    assert "department" in refused
    usage = grantflow(stack, "submit", "--program", "SME-CLOUD", ok=False)
    assert "Missing option" in usage and "Traceback" not in usage
    os.environ.pop("GRANTFLOW_TOKEN", None)
    out = grantflow(stack, "budget", "show", "SME-CLOUD", "--token", "not-a-token", ok=False)
    assert "UNAUTHENTICATED" in out
