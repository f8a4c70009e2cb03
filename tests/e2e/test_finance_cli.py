"""Finance's reports through the `grantflow` command on the real embedded stack, for a grant paid
end to end: the trial balance (试算平衡表) balances and counts the payment, the grant's statement
(资金对账单) shows its reservation and payment, to the applicant of its enterprise and no other,
and the funding plan's notice text and CSV/XLSX exports come out of the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from openpyxl import load_workbook

from grantflow.demo import seed_catalogue
from grantflow.sample import credit_code
from grantflow.v1 import disbursement_pb2
from infra.local.stack import LocalStack
from tests.actors import Actors
from tests.e2e.support import cli

pytestmark = pytest.mark.integration

NUMBER = 61_001  # Actors.submit_sme_cloud: credit_code(50_000 + NUMBER), "Test Enterprise 61001"


def grantflow(stack: LocalStack, *args: str) -> str:
    outcome = cli(stack.environment(), *args)
    assert outcome.status == 0 and outcome.clean, f"grantflow {' '.join(args)}: {outcome.output}"
    return outcome.output


async def paid_grant(stack: LocalStack) -> tuple[str, disbursement_pb2.FundingPlan]:
    await seed_catalogue(stack.settings)
    actors = Actors(stack.settings)
    try:
        application_id = await actors.submit_sme_cloud(NUMBER)
        await actors.wait_for([application_id], {4})  # IN_REVIEW
        await actors.approve(application_id)
        await actors.wait_for([application_id], {7})  # AWAITING_FUNDING_PLAN
        plan = await actors.fund()
        await actors.wait_for([application_id], {9})  # PAID
        return application_id, plan
    finally:
        await actors.close()


async def test_a_paid_grant_in_the_trial_balance_statement_notice_and_exports(
    stack: LocalStack, tmp_path: Path
) -> None:
    application_id, plan = await paid_grant(stack)
    [line] = [line for line in plan.lines if line.application_id == application_id]
    award = line.amount_fen

    statement = json.loads(grantflow(stack, "finance", "statement", application_id, "--json"))
    assert (statement["reserved_fen"], statement["paid_fen"], statement["outstanding_fen"]) == (
        award,
        award,
        0,
    )
    assert statement["state"] == "已拨付"
    assert [(e["movement"], e["kind"], e["balance_fen"]) for e in statement["entries"]] == [
        ("reservation", "reserved", award),
        ("reservation", "available", -award),
        ("payable", "payable", award),  # the plan's approval makes it payable
        ("payable", "reserved", 0),
        ("payment", "paid", award),
        ("payment", "payable", 0),
    ]
    shown = grantflow(stack, "finance", "statement", application_id)
    yuan = f"¥{award // 100:,}.{award % 100:02d}"
    for seen in ("资金对账单", "借方", "贷方", "余额", "预留", "拨付", f"pay-{line.line_id}", yuan):
        assert seen in shown, shown
    assert f"已拨付 {yuan}，待拨付 ¥0.00" in shown
    own = credit_code(50_000 + NUMBER)
    assert yuan in grantflow(stack, "finance", "statement", application_id, "--enterprise", own)
    other = cli(
        stack.environment(),
        *("finance", "statement", application_id, "--enterprise", credit_code(50_000 + 1)),
    )
    assert other.status == 1 and "PERMISSION_DENIED" in other.output and other.clean

    balance = json.loads(grantflow(stack, "finance", "trial-balance", "--json"))
    assert balance["balanced"] and balance["debit_fen"] == balance["credit_fen"] > 0
    paid = sum(
        account["balance_fen"]
        for budget in balance["budgets"]
        for account in budget["accounts"]
        if account["kind"] == "paid"
    )
    assert paid >= award
    table = grantflow(stack, "finance", "trial-balance", "--program", "SME-CLOUD")
    for seen in ("试算平衡表", "科目", "借方", "贷方", "余额", "已拨付", "合计", "借贷平衡"):
        assert seen in table, table

    notice = grantflow(stack, "plan", "notice", plan.plan_id)
    assert "安排资金" in notice and f"对{len(plan.lines)}个项目予以资助" in notice
    assert f"Test Enterprise {NUMBER}（{own}）" in notice
    csv_file, xlsx_file = tmp_path / "plan.csv", tmp_path / "plan.xlsx"
    grantflow(stack, "plan", "export", plan.plan_id, "--format", "csv", "--output", str(csv_file))
    text = csv_file.read_bytes()
    assert text.startswith(b"\xef\xbb\xbf") and application_id in text.decode("utf-8-sig")
    grantflow(stack, "plan", "export", plan.plan_id, "--format", "xlsx", "-o", str(xlsx_file))
    sheet = load_workbook(io.BytesIO(xlsx_file.read_bytes())).active
    assert sheet is not None
    cells = [cell for row in sheet.iter_rows(values_only=True) for cell in row]
    assert "申报编号" in cells and application_id in cells and "合计" in cells
    wrong = cli(stack.environment(), "plan", "export", plan.plan_id, "--format", "pdf", "-o", "x")
    assert wrong.status == 2 and "csv" in wrong.output and wrong.clean

    # Reconciliation (对账) of today: the grant's payment is on the treasury's statement and in
    # the ledger alike. Other tests of the session may leave exceptions of their own (exit 1).
    from datetime import datetime

    from services.disbursement.gateway import BEIJING

    today = datetime.now(BEIJING).date().isoformat()
    run = cli(stack.environment(), "finance", "reconcile", today, "--json")
    assert run.status in (0, 1) and run.clean, run.output
    report = json.loads(run.output[run.output.index("{") :])
    assert report["day"] == today and report["matched_count"] >= 1
    assert report["gateway_total_fen"] >= award and report["ledger_total_fen"] >= award
    assert application_id not in {e["application_id"] for e in report["exceptions"]}
    printed = cli(stack.environment(), "finance", "reconcile", today)
    for seen in (f"{today} 对账报告", "国库对账单", "账面已拨付", "核对相符", "差异"):
        assert seen in printed.output, printed.output
    listed = cli(stack.environment(), "finance", "exceptions", "--open")
    assert listed.status == 0 and listed.clean, listed.output
    missing = cli(
        stack.environment(),
        *("finance", "resolve", "987654321", "--resolution", "accepted", "--note", "核实无误"),
    )
    assert missing.status == 1 and "NOT_FOUND" in missing.output and missing.clean
    bogus = cli(
        stack.environment(),
        *("finance", "resolve", "1", "--resolution", "bogus", "--note", "x"),
    )
    assert bogus.status == 2 and "timing_difference" in bogus.output and bogus.clean
    malformed = cli(stack.environment(), "finance", "reconcile", "2026-13-01")
    assert malformed.status == 1 and "day" in malformed.output and malformed.clean
