"""`grantflow finance` (the ledger's reports) and `grantflow plan notice | export`.

    grantflow finance trial-balance [--program P | --budget K] [--as-of 2026-06-30] [--json]
    grantflow finance statement <application id> [--json] [--enterprise CREDIT_CODE]
    grantflow finance clawback open | repay | show | list   (clawback_cli.py)
    grantflow finance account show | confirm | change | approve-change   (account_cli.py)
    grantflow plan notice <plan id>
    grantflow plan export <plan id> --format csv|xlsx --output FILE

The trial balance (试算平衡表) lists every ledger account of each budget with its debit and credit
totals and balance, the grand totals and whether debits equal credits. The statement (资金对账单)
lists one award's ledger movements with each account's running balance. Amounts print in yuan
(¥1,500.00); --json prints integer fen. The notice text and the exports are those of the
console's finance pages (grantflow/plan_exports.py). Like the rest of the CLI this module imports
only typer and the vocabulary; each command imports what it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from grantflow import cli
from services.common.vocabulary import (
    InstalmentState,
    Milestone,
    ReservationState,
    Role,
    VocabularyError,
)

if TYPE_CHECKING:
    from datetime import datetime

    from grantflow.v1 import disbursement_pb2

finance_app = typer.Typer(
    no_args_is_help=True,
    help="财务报表 The ledger's reports: trial balance and per-grant statements, and the "
    "reconciliation of the gateway's daily statement (finance, ops).",
)

# LedgerAccountKind and LedgerMovement numbers (disbursement.proto) -> what a person reads.
ACCOUNT_WORDS = {
    1: "预算批复",
    2: "可用预算",
    3: "已预留",
    4: "已拨付",
    5: "应收追回款",
    6: "已追回入库",
    10: "应付",
    11: "退汇",
}
MOVEMENT_WORDS = {
    1: "预留",
    2: "释放",
    3: "拨付",
    4: "追回",
    5: "追回款退还",
    10: "计划批准转应付",
    11: "应付转回",
    12: "退汇",
    13: "更正账户后重新待拨",
}
JSON_KINDS = {
    1: "appropriation",
    2: "available",
    3: "reserved",
    4: "paid",
    5: "clawback_receivable",
    6: "recovered",
    10: "payable",
    11: "returned",
}
JSON_MOVEMENTS = {
    1: "reservation",
    2: "release",
    3: "payment",
    4: "clawback",
    5: "repayment",
    10: "payable",
    11: "unpayable",
    12: "return",
    13: "reaward",
}


def balance_text(balance_fen: int) -> str:
    """A balance with its side, as ledgers print it: 借 (debit), 贷 (credit) or 平 (nil)."""
    from grantflow.format import yuan

    if balance_fen == 0:
        return f"平 {yuan(0)}"
    return f"{'借' if balance_fen > 0 else '贷'} {yuan(abs(balance_fen))}"


def account_text(kind: int, account: str) -> str:
    word = ACCOUNT_WORDS.get(kind)
    return f"{word} {account}" if word else account


def budget_text(budget: disbursement_pb2.TrialBalanceBudget) -> str:
    if budget.budget_line_code:
        return f"预算科目 {budget.budget_line_code} {budget.fiscal_year}年度"
    if budget.program_code:
        return f"项目 {budget.program_code} 自有预算"
    return "其他科目"


def _as_of(value: str) -> datetime | None:
    """--as-of: a day (its end, Beijing time) or an ISO time (Beijing time unless it says)."""
    from datetime import date, datetime, time, timedelta

    from services.common.workdays import SHANGHAI

    if not value:
        return None
    try:
        day = date.fromisoformat(value)
        end = datetime.combine(day, time(), tzinfo=SHANGHAI) + timedelta(days=1)
        return end - timedelta(microseconds=1)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        cli.fail(
            cli.EXIT_USAGE,
            f"--as-of 须为日期 YYYY-MM-DD 或时间 YYYY-MM-DDTHH:MM（--as-of must be a date or a "
            f"time）: {value}",
        )
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


@finance_app.command("trial-balance")
def trial_balance(
    program: Annotated[
        str, typer.Option(help="项目代码：该项目所用的预算 a program's budgets")
    ] = "",
    budget: Annotated[
        str, typer.Option(help="预算：项目代码或 科目:年度 one budget, e.g. SME-SUPPORT:2026")
    ] = "",
    as_of: Annotated[
        str, typer.Option("--as-of", help="截至 YYYY-MM-DD（当日终了）或时间，北京时间")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """试算平衡表 Trial balance: each account's debits, credits and balance, by budget."""
    from google.protobuf.timestamp_pb2 import Timestamp

    from grantflow.v1 import disbursement_pb2

    request = disbursement_pb2.GetTrialBalanceRequest(budget_key=budget, program_code=program)
    moment = _as_of(as_of)
    if moment is not None:
        stamp = Timestamp()
        stamp.FromDatetime(moment)
        request.as_of.CopyFrom(stamp)
    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)
    answer = cli.call(bearer, "disbursement", lambda c: c.disbursement.GetTrialBalance(request))
    if as_json:
        import json

        print(json.dumps(trial_balance_json(answer), ensure_ascii=False, indent=1))
        return
    from rich.table import Table

    from grantflow.format import yuan

    title = "试算平衡表" + (
        f"（截至 {_shanghai(answer.as_of)}）" if answer.HasField("as_of") else ""
    )
    table = Table("预算", "科目", "借方", "贷方", "余额", title=title)
    for item in answer.budgets:
        for number, account in enumerate(item.accounts):
            table.add_row(
                budget_text(item) if number == 0 else "",
                account_text(account.kind, account.account),
                yuan(account.debit_fen),
                yuan(account.credit_fen),
                balance_text(account.balance_fen),
            )
        table.add_row("", "小计", yuan(item.debit_fen), yuan(item.credit_fen), "", end_section=True)
    table.add_row(
        "合计",
        "",
        yuan(answer.debit_fen),
        yuan(answer.credit_fen),
        balance_text(answer.debit_fen - answer.credit_fen),
    )
    cli.out().print(table)
    if answer.balanced:
        cli.out().print("借贷平衡 (debits equal credits)", highlight=False)
    else:
        cli.out().print(
            f"借贷不平衡：差额 {yuan(answer.debit_fen - answer.credit_fen)} "
            "(debits and credits differ)",
            highlight=False,
        )
        raise typer.Exit(cli.EXIT_FAILED)


def trial_balance_json(answer: disbursement_pb2.TrialBalance) -> dict[str, Any]:
    return {
        "as_of": answer.as_of.ToJsonString() if answer.HasField("as_of") else None,
        "budgets": [
            {
                "budget_key": item.budget_key,
                "program_code": item.program_code,
                "budget_line_code": item.budget_line_code,
                "fiscal_year": item.fiscal_year,
                "accounts": [
                    {
                        "account": account.account,
                        "kind": JSON_KINDS.get(account.kind, ""),
                        "debit_fen": account.debit_fen,
                        "credit_fen": account.credit_fen,
                        "balance_fen": account.balance_fen,
                    }
                    for account in item.accounts
                ],
                "debit_fen": item.debit_fen,
                "credit_fen": item.credit_fen,
            }
            for item in answer.budgets
        ],
        "debit_fen": answer.debit_fen,
        "credit_fen": answer.credit_fen,
        "balanced": answer.balanced,
    }


def _shanghai(stamp: Any) -> str:
    from services.common.workdays import SHANGHAI

    return str(stamp.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"))


def _state_word(state: int) -> str:
    from services.common.labels import LABELS

    try:
        return LABELS[ReservationState.from_proto(state)]
    except (KeyError, VocabularyError):
        return ""


@finance_app.command("statement")
def statement(
    application_id: Annotated[str, typer.Argument(help="申报编号 application number")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    enterprise: Annotated[
        str, typer.Option(help="申报单位查看本单位的对账单：统一社会信用代码 (as the applicant)")
    ] = "",
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """资金对账单 One award's ledger movements (reservation, release, payments, returned
    payments 退汇) with running balances, and what was reserved, paid and is still to pay."""
    from grantflow.v1 import disbursement_pb2

    settings = cli.get_settings()
    if enterprise:
        bearer = cli.token_for(settings, token, Role.APPLICANT, user, enterprise=enterprise)
    else:
        bearer = cli.token_for(settings, token, Role.FINANCE, user)
    answer = cli.call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.GetGrantStatement(
            disbursement_pb2.GetGrantStatementRequest(application_id=application_id)
        ),
    )
    if as_json:
        import json

        print(json.dumps(statement_json(answer), ensure_ascii=False, indent=1))
        return
    from rich.table import Table

    from grantflow.format import yuan

    facts = {
        "申报编号": answer.application_id,
        "申报单位": f"{answer.applicant_name}（{answer.applicant_credit_code}）",
        "项目": answer.program_code,
        "预算": answer.budget_key,
        "状态": _state_word(answer.state),
    }
    for name, value in facts.items():
        cli.out().print(f"[bold]{name}[/bold]：{value}", highlight=False)
    table = Table(
        "时间（北京时间）", "业务", "凭证号", "科目", "借方", "贷方", "余额", title="资金对账单"
    )
    for entry in answer.entries:
        table.add_row(
            _shanghai(entry.posted_at),
            MOVEMENT_WORDS.get(entry.movement, ""),
            entry.journal_id,
            account_text(entry.kind, entry.account),
            yuan(entry.debit_fen),
            yuan(entry.credit_fen),
            balance_text(entry.balance_fen),
        )
    cli.out().print(table)
    cli.out().print(
        f"预留 {yuan(answer.reserved_fen)}，释放 {yuan(answer.released_fen)}，"
        f"已拨付 {yuan(answer.paid_fen)}，待拨付 {yuan(answer.outstanding_fen)}",
        highlight=False,
    )
    if answer.returned_fen:
        cli.out().print(
            f"退汇 {yuan(answer.returned_fen)}：款项被收款行退回，更正收款账户并经审批后重新拨付"
            f"（grantflow finance account show {answer.application_id}）",
            highlight=False,
        )
    if answer.clawed_back_fen:
        cli.out().print(
            f"追回 {yuan(answer.clawed_back_fen)}，已退还 {yuan(answer.repaid_fen)}，"
            f"应收未还 {yuan(answer.receivable_fen)}",
            highlight=False,
        )
    if answer.instalments:
        schedule = Table(
            "期次", "金额", "放款条件", "应完成日期", "状态", "资助计划", title="分期计划"
        )
        for part in answer.instalments:
            schedule.add_row(
                f"{part.number}/{part.of}",
                yuan(part.amount_fen),
                _term_word(Milestone, part.milestone),
                _shanghai(part.due_at)[:10],
                _term_word(InstalmentState, part.state),
                part.plan_id,
            )
        cli.out().print(schedule)


def _term_word(vocabulary: type[Milestone] | type[InstalmentState], number: int) -> str:
    from services.common.labels import LABELS

    try:
        return LABELS[vocabulary.from_proto(number)]
    except (KeyError, VocabularyError):
        return ""


def statement_json(answer: disbursement_pb2.GrantStatement) -> dict[str, Any]:
    return {
        "application_id": answer.application_id,
        "program_code": answer.program_code,
        "applicant_credit_code": answer.applicant_credit_code,
        "applicant_name": answer.applicant_name,
        "budget_key": answer.budget_key,
        "state": _state_word(answer.state),
        "reserved_fen": answer.reserved_fen,
        "released_fen": answer.released_fen,
        "paid_fen": answer.paid_fen,
        "outstanding_fen": answer.outstanding_fen,
        "clawed_back_fen": answer.clawed_back_fen,
        "repaid_fen": answer.repaid_fen,
        "receivable_fen": answer.receivable_fen,
        "returned_fen": answer.returned_fen,
        "entries": [
            {
                "entry_id": entry.entry_id,
                "posted_at": entry.posted_at.ToJsonString(),
                "movement": JSON_MOVEMENTS.get(entry.movement, ""),
                "journal_id": entry.journal_id,
                "account": entry.account,
                "kind": JSON_KINDS.get(entry.kind, ""),
                "debit_fen": entry.debit_fen,
                "credit_fen": entry.credit_fen,
                "balance_fen": entry.balance_fen,
                "memo": entry.memo,
            }
            for entry in answer.entries
        ],
        "instalments": [
            {
                "number": part.number,
                "of": part.of,
                "amount_fen": part.amount_fen,
                "milestone": str(Milestone.from_proto(part.milestone)),
                "due_at": part.due_at.ToJsonString(),
                "state": str(InstalmentState.from_proto(part.state)),
                "plan_id": part.plan_id,
                "confirmed_by": part.confirmed_by,
            }
            for part in answer.instalments
        ],
    }


# ---------------------------------------------------------------------------------- plans


def _plan_and_names(plan_id: str, token: str, user: str) -> tuple[Any, dict[str, str]]:
    """The funding plan with its lines, and {program code: name in the catalogue} of the
    programs it funds (newest version; a code the catalogue does not know is left out)."""
    from grantflow.v1 import applications_pb2, disbursement_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)

    async def work(clients: Any) -> tuple[Any, dict[str, str]]:
        plan = await clients.disbursement.GetFundingPlan(
            disbursement_pb2.GetFundingPlanRequest(plan_id=plan_id)
        )
        codes = {line.program_code or plan.program_code for line in plan.lines}
        codes |= {program.program_code for program in plan.programs}
        names: dict[str, str] = {}
        for code in sorted(codes - {""}):
            programs = await clients.applications.ListPrograms(
                applications_pb2.ListProgramsRequest(code=code)
            )
            versions = [rule for rule in programs.programs if rule.code == code]
            if versions:
                names[code] = max(versions, key=lambda rule: rule.version).name
        return plan, names

    return cli.call(bearer, "disbursement", work)


def plan_notice(
    plan_id: Annotated[str, typer.Argument(help="资助计划编号 plan id")],
    user: cli.UserOpt = "finance",
    token: cli.TokenOpt = "",
) -> None:
    """资助计划公示文本 The plan's notice text ("安排资金X万元对N个项目予以资助" and its projects)."""
    from grantflow import plan_exports

    plan, names = _plan_and_names(plan_id, token, user)
    print(plan_exports.plan_notice(plan, names).text)


def plan_export(
    plan_id: Annotated[str, typer.Argument(help="资助计划编号 plan id")],
    output: Annotated[Path, typer.Option("--output", "-o", help="写入的文件 file to write")],
    export_format: Annotated[str, typer.Option("--format", help="csv 或 xlsx")] = "csv",
    user: cli.UserOpt = "finance",
    token: cli.TokenOpt = "",
) -> None:
    """导出资助计划明细 The plan's lines with their totals as CSV (UTF-8, BOM) or XLSX."""
    if export_format not in ("csv", "xlsx"):
        cli.fail(
            cli.EXIT_USAGE,
            f"--format 须为 csv 或 xlsx（--format must be csv or xlsx）: {export_format}",
        )
    from grantflow import plan_exports
    from grantflow.format import yuan

    plan, names = _plan_and_names(plan_id, token, user)
    data = (
        plan_exports.plan_csv(plan)
        if export_format == "csv"
        else plan_exports.plan_xlsx(plan, names)
    )
    try:
        output.write_bytes(data)
    except OSError as error:
        cli.fail(cli.EXIT_FAILED, f"无法写入 {output}（cannot write the file）: {error}")
    total = sum(line.amount_fen for line in plan.lines)
    cli.out().print(
        f"已导出 {len(plan.lines)} 个项目，合计 {yuan(total)} → {output}", highlight=False
    )


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    from grantflow import reconcile_cli

    reconcile_cli.register(finance_app)
    from grantflow.clawback_cli import clawback_app

    finance_app.add_typer(clawback_app, name="clawback")
    from grantflow.account_cli import account_app

    finance_app.add_typer(account_app, name="account")
    app.add_typer(finance_app, name="finance")
    plan_app.command("notice")(plan_notice)
    plan_app.command("export")(plan_export)
