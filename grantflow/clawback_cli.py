"""`grantflow finance clawback …`: clawbacks (追回) of paid awards (finance; ops may show).

    grantflow finance clawback open <application id> --amount-fen N --reason 理由 [--request-id K]
    grantflow finance clawback repay <clawback id> --amount-fen N [--request-id K]
    grantflow finance clawback show <clawback id> [--json]
    grantflow finance clawback list [--application A] [--json]

Opening one books a receivable and bars the enterprise from new applications for the configured
years (the credit list, 财政资金追回失信名单); each repayment lowers the receivable until it is
settled. A --request-id makes a retried command do its work once (default: generated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from grantflow import cli
from services.common.vocabulary import ClawbackState, Role, VocabularyError

if TYPE_CHECKING:
    from grantflow.v1 import disbursement_pb2

clawback_app = typer.Typer(
    no_args_is_help=True,
    help="资金追回 Clawbacks of paid awards: open, record repayments, show (finance).",
)

AmountOpt = Annotated[int, typer.Option("--amount-fen", help="金额（分）amount in fen")]
RequestOpt = Annotated[str, typer.Option(help="幂等键 idempotency key (default: generated)")]


def _state_word(state: int) -> str:
    from services.common.labels import LABELS

    try:
        return LABELS[ClawbackState.from_proto(state)]
    except (KeyError, VocabularyError):
        return ""


def _shanghai(stamp: Any) -> str:
    from services.common.workdays import SHANGHAI

    return str(stamp.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"))


def clawback_json(answer: disbursement_pb2.Clawback) -> dict[str, Any]:
    return {
        "clawback_id": answer.clawback_id,
        "application_id": answer.application_id,
        "program_code": answer.program_code,
        "applicant_credit_code": answer.applicant_credit_code,
        "applicant_name": answer.applicant_name,
        "budget_key": answer.budget_key,
        "state": ClawbackState.from_proto(answer.state).value if answer.state else "",
        "amount_fen": answer.amount_fen,
        "repaid_fen": answer.repaid_fen,
        "outstanding_fen": answer.outstanding_fen,
        "reason": answer.reason,
        "opened_by": answer.opened_by,
        "opened_at": answer.opened_at.ToJsonString(),
        "settled_at": answer.settled_at.ToJsonString() if answer.HasField("settled_at") else None,
        "bar_years": answer.bar_years,
        "bar_until": answer.bar_until.ToJsonString(),
        "workflow_id": answer.workflow_id,
        "repayments": [
            {
                "repayment_id": repayment.repayment_id,
                "request_id": repayment.request_id,
                "amount_fen": repayment.amount_fen,
                "recorded_by": repayment.recorded_by,
                "recorded_at": repayment.recorded_at.ToJsonString(),
            }
            for repayment in answer.repayments
        ],
    }


def print_clawback(answer: disbursement_pb2.Clawback) -> None:
    from rich.table import Table

    from grantflow.format import yuan

    facts = {
        "追回编号": answer.clawback_id,
        "申报编号": answer.application_id,
        "申报单位": f"{answer.applicant_name}（{answer.applicant_credit_code}）",
        "项目": answer.program_code,
        "状态": _state_word(answer.state),
        "追回金额": yuan(answer.amount_fen),
        "已退还": yuan(answer.repaid_fen),
        "应收未还": yuan(answer.outstanding_fen),
        "追回理由": answer.reason,
        "发起人": f"{answer.opened_by}（{_shanghai(answer.opened_at)}）",
        "信用惩戒": f"{answer.bar_years}年内不得申报财政资金项目，至 {_shanghai(answer.bar_until)}",
    }
    if answer.HasField("settled_at"):
        facts["结清时间"] = _shanghai(answer.settled_at)
    for name, value in facts.items():
        cli.out().print(f"[bold]{name}[/bold]：{value}", highlight=False)
    if answer.repayments:
        table = Table("时间（北京时间）", "还款编号", "金额", "登记人", title="退还记录")
        for repayment in answer.repayments:
            table.add_row(
                _shanghai(repayment.recorded_at),
                repayment.repayment_id,
                yuan(repayment.amount_fen),
                repayment.recorded_by,
            )
        cli.out().print(table)


def _show(answer: disbursement_pb2.Clawback, as_json: bool) -> None:
    if as_json:
        import json

        print(json.dumps(clawback_json(answer), ensure_ascii=False, indent=1))
    else:
        print_clawback(answer)


@clawback_app.command("open")
def open_clawback(
    application_id: Annotated[str, typer.Argument(help="申报编号 application number")],
    amount_fen: AmountOpt,
    reason: Annotated[str, typer.Option(help="追回理由 why the money is clawed back")],
    request_id: RequestOpt = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """发起追回 Claw back (part of) a paid award: a receivable and a credit bar."""
    import uuid

    from grantflow.v1 import disbursement_pb2

    request = disbursement_pb2.OpenClawbackRequest(
        request_id=request_id or uuid.uuid4().hex,
        application_id=application_id,
        amount_fen=amount_fen,
        reason=reason,
    )
    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)
    answer = cli.call(bearer, "disbursement", lambda c: c.disbursement.OpenClawback(request))
    if not as_json:
        cli.out().print("已发起追回 (clawback opened)", highlight=False)
    _show(answer, as_json)


@clawback_app.command("repay")
def repay(
    clawback_id: Annotated[str, typer.Argument(help="追回编号 clawback id")],
    amount_fen: AmountOpt,
    request_id: RequestOpt = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """登记退还 Record a repayment (full or partial) of a clawback."""
    import uuid

    from grantflow.v1 import disbursement_pb2

    request = disbursement_pb2.RecordRepaymentRequest(
        request_id=request_id or uuid.uuid4().hex, clawback_id=clawback_id, amount_fen=amount_fen
    )
    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)
    answer = cli.call(bearer, "disbursement", lambda c: c.disbursement.RecordRepayment(request))
    if not as_json:
        cli.out().print("已登记退还 (repayment recorded)", highlight=False)
    _show(answer, as_json)


@clawback_app.command("show")
def show(
    clawback_id: Annotated[str, typer.Argument(help="追回编号 clawback id")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """查看追回 A clawback: amount, repayments, what is outstanding and the credit bar."""
    from grantflow.v1 import disbursement_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)
    answer = cli.call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.GetClawback(
            disbursement_pb2.GetClawbackRequest(clawback_id=clawback_id)
        ),
    )
    _show(answer, as_json)


@clawback_app.command("list")
def list_clawbacks(
    application: Annotated[str, typer.Option(help="申报编号 one application's")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """追回列表 Clawbacks, newest first."""
    from grantflow.v1 import disbursement_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)
    answer = cli.call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.ListClawbacks(
            disbursement_pb2.ListClawbacksRequest(application_id=application)
        ),
    )
    if as_json:
        import json

        rows = [clawback_json(item) for item in answer.clawbacks]
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    from rich.table import Table

    from grantflow.format import yuan

    table = Table("追回编号", "申报编号", "单位", "状态", "追回金额", "应收未还", title="资金追回")
    for item in answer.clawbacks:
        table.add_row(
            item.clawback_id,
            item.application_id,
            item.applicant_name,
            _state_word(item.state),
            yuan(item.amount_fen),
            yuan(item.outstanding_fen),
        )
    cli.out().print(table)
