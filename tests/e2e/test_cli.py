"""End to end through the `grantflow` command, as its users would type it, against the real
embedded stack: an applicant files, two departments' reviewers claim and decide, two finance
officers make and check the funding plan, and an operator finds, replays and inspects. Every
failure exits non-zero (1 refused or failed, 2 usage, 3 a service could not be reached) with a
message and no traceback."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from grantflow.demo import seed_catalogue
from grantflow.sample import credit_code
from infra.local.stack import LocalStack
from tests.actors import required_documents
from tests.e2e.support import cli
from tests.support import free_port

pytestmark = pytest.mark.integration


def grantflow(stack: LocalStack, *args: str, ok: bool = True) -> str:
    """Runs the command against the stack; it must succeed (ok) or fail with a non-zero status
    and a message, never a traceback."""
    outcome = cli(stack.environment(), *args)
    if ok and outcome.status != 0:
        raise AssertionError(f"grantflow {' '.join(args)} failed: {outcome.output}")
    if not ok:
        assert outcome.status != 0, f"grantflow {' '.join(args)} exited 0: {outcome.output}"
        assert outcome.clean, outcome.output
    return outcome.output


def until(stack: LocalStack, args: list[str], pattern: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = grantflow(stack, *args)
        if re.search(pattern, out):
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{args}: {pattern!r} not seen in {out}")
        time.sleep(0.5)


def document_options(program: str, folder: Path) -> list[str]:
    """`--document name=file` for each document the program requires, as local files."""
    options = []
    for name in required_documents(program):
        (folder / f"{name}.pdf").write_bytes(name.encode())
        options += ["--document", f"{name}={folder / f'{name}.pdf'}"]
    return options


async def test_an_application_from_filing_to_paid_through_the_cli(
    stack: LocalStack, tmp_path: Path
) -> None:
    await seed_catalogue(stack.settings)
    code = credit_code(777_001)
    documents = document_options("SME-CLOUD", tmp_path)
    out = grantflow(
        stack, "submit", "--program", "SME-CLOUD", "--credit-code", code,
        "--name", "Shenzhen CLI Test Co., Ltd.", "--title", "ERP in the cloud",
        "--figure", "cloud_fee_paid_fen=500000", "--figure", "staff_count=30",
        "--figure", "annual_revenue_fen=200000000", *documents,
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
    draft_id = re.search(r"plan ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
    no_reason = grantflow(stack, "plan", "cancel", draft_id, "--reason", " ", ok=False)
    assert "INVALID_ARGUMENT" in no_reason and "reason" in no_reason
    cancelled = grantflow(stack, "plan", "cancel", draft_id, "--reason", "名单有误", "--user", "li")
    assert "已由 li 撤销" in cancelled
    shown = grantflow(stack, "plan", "show", draft_id)
    assert "CANCELLED" in shown and "名单有误" in shown
    out = grantflow(
        stack, "plan", "create", "SME-CLOUD", "--user", "zhang"
    )  # takes the award again
    plan_id = re.search(r"plan ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
    refused = grantflow(stack, "plan", "approve", plan_id, "--user", "zhang", ok=False)
    assert "PERMISSION_DENIED" in refused  # maker and checker differ
    grantflow(stack, "plan", "approve", plan_id, "--user", "chen")
    status = until(stack, ["status", application_id], "PAID")
    assert "¥2,000.00" in status  # 50 % of 5,000 yuan, capped at 2,000 yuan

    plan = grantflow(stack, "plan", "show", plan_id)
    assert "PAID" in plan and "COMPLETED" in plan

    found = grantflow(stack, "ops", "find", "--applicant", code)
    assert application_id in found and "已拨付 (PAID)" in found
    replay = grantflow(stack, "ops", "replay", f"grant-{application_id}")
    assert "deterministic" in replay
    events = grantflow(stack, "ops", "events", "applications", "--json")
    assert application_id in events and "grantflow.v1.ApplicationSubmitted" in events


def test_tokens_are_minted_and_bad_roles_refused(stack: LocalStack) -> None:
    token = grantflow(stack, "token", "--role", "reviewer", "--department", "finance").strip()
    assert token.count(".") == 2  # a JWT
    refused = grantflow(stack, "token", "--role", "reviewer", ok=False)
    assert "department" in refused
    usage = cli(stack.environment(), "submit", "--program", "SME-CLOUD")
    assert usage.status == 2 and "Missing option" in usage.output and usage.clean
    os.environ.pop("GRANTFLOW_TOKEN", None)
    out = grantflow(stack, "budget", "show", "SME-CLOUD", "--token", "not-a-token", ok=False)
    assert "UNAUTHENTICATED" in out


def test_every_failure_exits_non_zero_with_a_message(stack: LocalStack) -> None:
    env = stack.environment()
    unknown = cli(env, "status", "0" * 32)
    assert unknown.status == 1 and "NOT_FOUND" in unknown.output and unknown.clean

    # The recorded stack really runs: a second one is refused.
    again = cli(env, "stack", "up", "--timeout", "5")
    assert again.status == 1 and "grantflow stack down" in again.output and again.clean

    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    for args, variable in (
        (["status", "0" * 32], "APPLICATIONS_ADDRESS"),
        (["tasks", "--department", "industry"], "REVIEW_ADDRESS"),
        (["budget", "show", "SME-CLOUD"], "DISBURSEMENT_ADDRESS"),
        (["ops", "find"], "TEMPORAL_ADDRESS"),
        (["ops", "events", "grants"], "KAFKA_BOOTSTRAP_SERVERS"),
    ):
        down = cli({**env, variable: closed}, *args)
        assert down.status == 3, (args, down.status, down.output)  # could not reach a service
        assert closed in down.output and down.clean, down.output

    nothing = cli({**env, "DATA_DIR": str(stack.data_dir / "elsewhere")}, "stack", "status")
    assert nothing.status == 1 and "grantflow stack up" in nothing.output and nothing.clean

    unknown_command = cli(env, "no-such-command")
    assert unknown_command.status == 2 and "no-such-command" in unknown_command.output


async def test_the_seeded_budget_lines_are_listed_and_set_through_the_cli(
    stack: LocalStack,
) -> None:
    await seed_catalogue(stack.settings)
    await seed_catalogue(stack.settings)  # idempotent: nothing set twice
    listed = grantflow(stack, "budget", "lines", "--year", "2026")
    for seen in ("SME-SUPPORT", "IIP", "TECH-TRANSFORM", "SERVICE-SYSTEM", "VOC-EDU", "2026"):
        assert seen in listed, listed
    assert "2027" not in listed
    assert "¥1,340,000,000.00" in listed  # 技术改造扶持计划 13.4亿
    raised = grantflow(
        stack, "budget", "set-line", "VOC-EDU", "2027", "1300000000", "--reason", "学生增加"
    )
    assert "¥13,000,000.00" in raised and "2" in raised
    refused = grantflow(stack, "budget", "set-line", "NO-SUCH-LINE", "2027", "100", ok=False)
    assert "INVALID_ARGUMENT" in refused and "support_plan_code" in refused
    denied = grantflow(stack, "budget", "lines", "--user", "x", "--token", "nonsense", ok=False)
    assert "UNAUTHENTICATED" in denied
