"""`grantflow finance account …`: an award's receiving account (收款账户).

    grantflow finance account show <application id> [--enterprise CODE] [--json]
    grantflow finance account confirm <application id> --enterprise CODE --name 户名
        --number 账号 --bank-code 联行号 --bank-name 开户行 [--request-id K]
    grantflow finance account change <application id> --name … --number … --bank-code …
        --bank-name … --reason 理由 [--enterprise CODE] [--request-id K]
    grantflow finance account approve-change <application id> --version N

The applicant (--enterprise: its credit code) confirms the account before the first payment;
the name must be the enterprise's registered name. A change is proposed by the applicant
(--enterprise) or a finance officer, and is in force only once another finance officer approves
it; an award whose payment came back (退汇) is then paid again by a later plan. A --request-id
makes a retried command do its work once (default: generated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from grantflow import cli
from services.common.vocabulary import AccountState, Role, VocabularyError

if TYPE_CHECKING:
    from grantflow.v1 import disbursement_pb2

account_app = typer.Typer(
    no_args_is_help=True,
    help="收款账户 An award's receiving account: show, confirm (applicant), change and approve "
    "the change (a second finance officer).",
)

ApplicationArg = Annotated[str, typer.Argument(help="申报编号 application number")]
EnterpriseOpt = Annotated[str, typer.Option(help="申报单位统一社会信用代码 (act as the applicant)")]
RequestOpt = Annotated[str, typer.Option(help="幂等键 idempotency key (default: generated)")]
NameOpt = Annotated[str, typer.Option("--name", help="户名（须与单位登记名称一致）account name")]
NumberOpt = Annotated[str, typer.Option("--number", help="账号 account number")]
BankCodeOpt = Annotated[str, typer.Option("--bank-code", help="开户行联行号（12位）CNAPS code")]
BankNameOpt = Annotated[str, typer.Option("--bank-name", help="开户行名称 bank name")]


def _state_word(state: int) -> str:
    from services.common.labels import LABELS

    try:
        return LABELS[AccountState.from_proto(state)]
    except (KeyError, VocabularyError):
        return ""


def _shanghai(stamp: Any) -> str:
    from services.common.workdays import SHANGHAI

    return str(stamp.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"))


def _bearer(token: str, user: str, enterprise: str) -> str:
    settings = cli.get_settings()
    if enterprise:
        return cli.token_for(settings, token, Role.APPLICANT, user, enterprise=enterprise)
    return cli.token_for(settings, token, Role.FINANCE, user)


def account_json(row: disbursement_pb2.ReceivingAccount) -> dict[str, Any]:
    return {
        "version": row.version,
        "state": AccountState.from_proto(row.state).value if row.state else "",
        "account_name": row.account_name,
        "account_number": row.account_number,
        "bank_code": row.bank_code,
        "bank_name": row.bank_name,
        "given_by": row.given_by,
        "given_at": row.given_at.ToJsonString(),
        "approved_by": row.approved_by,
        "approved_at": row.approved_at.ToJsonString() if row.HasField("approved_at") else None,
        "reason": row.reason,
    }


def accounts_json(answer: disbursement_pb2.ReceivingAccounts) -> dict[str, Any]:
    return {
        "application_id": answer.application_id,
        "applicant_name": answer.applicant_name,
        "current": account_json(answer.current) if answer.HasField("current") else None,
        "proposed": account_json(answer.proposed) if answer.HasField("proposed") else None,
        "history": [account_json(row) for row in answer.history],
    }


def print_accounts(answer: disbursement_pb2.ReceivingAccounts) -> None:
    from rich.table import Table

    out = cli.out()
    out.print(f"[bold]申报编号[/bold]：{answer.application_id}", highlight=False)
    out.print(f"[bold]登记名称[/bold]：{answer.applicant_name}", highlight=False)
    if answer.HasField("current"):
        c = answer.current
        out.print(
            f"[bold]生效账户[/bold]：{c.account_name}，{c.bank_name}（联行号 {c.bank_code}），"
            f"账号 {c.account_number}（第{c.version}版）",
            highlight=False,
        )
    else:
        out.print("[bold]生效账户[/bold]：尚未确认，不能拨付 (none confirmed)", highlight=False)
    if answer.HasField("proposed"):
        p = answer.proposed
        out.print(
            f"[bold]待审批变更[/bold]：第{p.version}版 {p.bank_name} 账号 {p.account_number}，"
            f"由 {p.given_by} 提出：{p.reason}（须另一名财务人员审批）",
            highlight=False,
        )
    table = Table(
        "版本", "状态", "户名", "账号", "联行号", "开户行", "提出", "审批", title="账户记录"
    )
    for row in answer.history:
        table.add_row(
            str(row.version),
            _state_word(row.state),
            row.account_name,
            row.account_number,
            row.bank_code,
            row.bank_name,
            f"{row.given_by} {_shanghai(row.given_at)}",
            f"{row.approved_by} {_shanghai(row.approved_at)}" if row.approved_by else "",
        )
    out.print(table)


def _show(answer: disbursement_pb2.ReceivingAccounts, as_json: bool, said: str = "") -> None:
    if as_json:
        import json

        print(json.dumps(accounts_json(answer), ensure_ascii=False, indent=1))
        return
    if said:
        cli.out().print(said, highlight=False)
    print_accounts(answer)


def _details(name: str, number: str, bank_code: str, bank_name: str) -> Any:
    from grantflow.v1 import disbursement_pb2

    return disbursement_pb2.AccountDetails(
        account_name=name, account_number=number, bank_code=bank_code, bank_name=bank_name
    )


@account_app.command("show")
def show(
    application_id: ApplicationArg,
    enterprise: EnterpriseOpt = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """查看收款账户 The account in force, a change waiting for approval, and every version."""
    from grantflow.v1 import disbursement_pb2

    request = disbursement_pb2.GetReceivingAccountRequest(application_id=application_id)
    answer = cli.call(
        _bearer(token, user, enterprise),
        "disbursement",
        lambda c: c.disbursement.GetReceivingAccount(request),
    )
    _show(answer, as_json)


@account_app.command("confirm")
def confirm(
    application_id: ApplicationArg,
    enterprise: Annotated[str, typer.Option(help="申报单位统一社会信用代码 (the applicant)")],
    name: NameOpt,
    number: NumberOpt,
    bank_code: BankCodeOpt,
    bank_name: BankNameOpt,
    request_id: RequestOpt = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "applicant",
) -> None:
    """确认收款账户 The applicant confirms where its award is paid (before the first payment)."""
    import uuid

    from grantflow.v1 import disbursement_pb2

    request = disbursement_pb2.ConfirmReceivingAccountRequest(
        request_id=request_id or uuid.uuid4().hex,
        application_id=application_id,
        account=_details(name, number, bank_code, bank_name),
    )
    bearer = cli.token_for(cli.get_settings(), token, Role.APPLICANT, user, enterprise=enterprise)
    answer = cli.call(
        bearer, "disbursement", lambda c: c.disbursement.ConfirmReceivingAccount(request)
    )
    _show(answer, as_json, "收款账户已确认 (receiving account confirmed)")


@account_app.command("change")
def change(
    application_id: ApplicationArg,
    name: NameOpt,
    number: NumberOpt,
    bank_code: BankCodeOpt,
    bank_name: BankNameOpt,
    reason: Annotated[str, typer.Option(help="变更理由 why the account changes")],
    enterprise: EnterpriseOpt = "",
    request_id: RequestOpt = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """申请变更收款账户 Propose a new account; the old one stays in force until approved."""
    import uuid

    from grantflow.v1 import disbursement_pb2

    request = disbursement_pb2.ProposeAccountChangeRequest(
        request_id=request_id or uuid.uuid4().hex,
        application_id=application_id,
        account=_details(name, number, bank_code, bank_name),
        reason=reason,
    )
    answer = cli.call(
        _bearer(token, user, enterprise),
        "disbursement",
        lambda c: c.disbursement.ProposeAccountChange(request),
    )
    _show(answer, as_json, "已提出账户变更，待另一名财务人员审批 (change proposed)")


@account_app.command("approve-change")
def approve_change(
    application_id: ApplicationArg,
    version: Annotated[int, typer.Option(help="待审批的账户版本 the proposal's version")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance-checker",
) -> None:
    """审批账户变更 A finance officer other than the proposer puts the new account in force."""
    from grantflow.v1 import disbursement_pb2

    request = disbursement_pb2.ApproveAccountChangeRequest(
        application_id=application_id, version=version
    )
    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)
    answer = cli.call(
        bearer, "disbursement", lambda c: c.disbursement.ApproveAccountChange(request)
    )
    _show(answer, as_json, "账户变更已审批生效 (change approved, in force)")
