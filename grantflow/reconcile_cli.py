"""`grantflow finance reconcile | exceptions | resolve`: the gateway's daily statement against the
ledger (对账), and the exceptions finance resolves.

    grantflow finance reconcile <YYYY-MM-DD> [--json]
    grantflow finance exceptions [--open] [--day YYYY-MM-DD] [--json]
    grantflow finance resolve <exception id> --resolution timing_difference|ledger_corrected|
        treasury_corrected|accepted --note TEXT

reconcile runs the day's reconciliation (again: the report is replaced, the exceptions kept
once) and prints its report and exceptions in Chinese; it exits 1 while any of the day's
exceptions is open. Like the rest of the CLI this module imports only typer and the vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from grantflow import cli
from services.common.vocabulary import (
    ReconciliationExceptionState,
    ReconciliationKind,
    ReconciliationResolution,
    Role,
    Term,
    VocabularyError,
)

if TYPE_CHECKING:
    from grantflow.v1 import disbursement_pb2


def _word(vocabulary: type[Term], number: int) -> str:
    from services.common.labels import LABELS

    try:
        return LABELS[vocabulary.from_proto(number)]
    except (KeyError, VocabularyError):
        return ""


def _term(vocabulary: type[Term], number: int) -> str:
    try:
        return str(vocabulary.from_proto(number))
    except VocabularyError:
        return ""


def _shanghai(stamp: Any) -> str:
    from services.common.workdays import SHANGHAI

    return str(stamp.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"))


def exception_json(row: disbursement_pb2.ReconciliationException) -> dict[str, Any]:
    return {
        "exception_id": row.exception_id,
        "day": row.day,
        "kind": _term(ReconciliationKind, row.kind),
        "state": _term(ReconciliationExceptionState, row.state),
        "idempotency_key": row.idempotency_key,
        "line_id": row.line_id,
        "application_id": row.application_id,
        "gateway_reference": row.gateway_reference,
        "gateway_amount_fen": row.gateway_amount_fen,
        "ledger_amount_fen": row.ledger_amount_fen,
        "gateway_payee": row.gateway_payee,
        "ledger_payee": row.ledger_payee,
        "resolution": _term(ReconciliationResolution, row.resolution),
        "resolution_note": row.resolution_note,
        "resolved_by": row.resolved_by,
        "resolved_at": row.resolved_at.ToJsonString() if row.HasField("resolved_at") else None,
    }


def print_exceptions(rows: list[disbursement_pb2.ReconciliationException], title: str) -> None:
    from rich.table import Table

    from grantflow.format import yuan

    table = Table(
        "编号",
        "日期",
        "差异类型",
        "状态",
        "申报编号",
        "支付行",
        "银行金额",
        "账面金额",
        "处理",
        title=title,
    )
    for row in rows:
        handled = ""
        if row.resolved_by:
            handled = (
                f"{_word(ReconciliationResolution, row.resolution)}："
                f"{row.resolution_note}（{row.resolved_by}，{_shanghai(row.resolved_at)}）"
            )
        table.add_row(
            str(row.exception_id),
            row.day,
            _word(ReconciliationKind, row.kind),
            _word(ReconciliationExceptionState, row.state),
            row.application_id or row.idempotency_key,
            row.line_id,
            yuan(row.gateway_amount_fen),
            yuan(row.ledger_amount_fen),
            handled,
        )
    cli.out().print(table)


def reconcile(
    day: Annotated[str, typer.Argument(help="对账日期 YYYY-MM-DD（北京时间）")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """对账 Reconciles the gateway's statement of a day with the ledger and prints the report."""
    from grantflow.v1 import disbursement_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)
    answer = cli.call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.ReconcileDay(disbursement_pb2.ReconcileDayRequest(day=day)),
    )
    if as_json:
        import json

        report = {
            "day": answer.day,
            "gateway_count": answer.gateway_count,
            "gateway_total_fen": answer.gateway_total_fen,
            "ledger_count": answer.ledger_count,
            "ledger_total_fen": answer.ledger_total_fen,
            "matched_count": answer.matched_count,
            "matched_total_fen": answer.matched_total_fen,
            "exception_count": answer.exception_count,
            "open_count": answer.open_count,
            "runs": answer.runs,
            "exceptions": [exception_json(row) for row in answer.exceptions],
        }
        print(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        from grantflow.format import yuan

        lines = [
            f"[bold]{answer.day} 对账报告[/bold]（第 {answer.runs} 次对账，{answer.reconciled_by}，"
            f"{_shanghai(answer.reconciled_at)}）",
            f"国库对账单：{answer.gateway_count} 笔，合计 {yuan(answer.gateway_total_fen)}",
            f"账面已拨付：{answer.ledger_count} 笔，合计 {yuan(answer.ledger_total_fen)}",
            f"核对相符：{answer.matched_count} 笔，合计 {yuan(answer.matched_total_fen)}",
            f"差异：{answer.exception_count} 项，其中待处理 {answer.open_count} 项",
        ]
        for line in lines:
            cli.out().print(line, highlight=False)
        if answer.exceptions:
            print_exceptions(list(answer.exceptions), f"{answer.day} 对账差异")
        else:
            cli.out().print("账实相符，无差异 (everything matches)", highlight=False)
    if answer.open_count:
        raise typer.Exit(cli.EXIT_FAILED)


def exceptions(
    only_open: Annotated[bool, typer.Option("--open", help="只看待处理的差异")] = False,
    day: Annotated[str, typer.Option(help="某一天 YYYY-MM-DD")] = "",
    limit: Annotated[int, typer.Option(help="最多列出几项")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """对账差异 Reconciliation exceptions, newest day first."""
    from grantflow.v1 import disbursement_pb2

    request = disbursement_pb2.ListReconciliationExceptionsRequest(
        state=ReconciliationExceptionState.OPEN.to_proto()
        if only_open
        else disbursement_pb2.RECONCILIATION_EXCEPTION_STATE_UNSPECIFIED,
        day=day,
        page_size=max(0, min(limit, 1000)),
    )
    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)
    answer = cli.call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.ListReconciliationExceptions(request),
    )
    if as_json:
        import json

        rows = [exception_json(row) for row in answer.exceptions]
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    if not answer.exceptions:
        cli.out().print("没有对账差异 (no exceptions)", highlight=False)
        return
    print_exceptions(list(answer.exceptions), "待处理的对账差异" if only_open else "对账差异")


def resolve(
    exception_id: Annotated[int, typer.Argument(help="差异编号 exception id")],
    resolution: Annotated[
        str,
        typer.Option(
            help="处理结果: timing_difference（时间性差异）, ledger_corrected（已更正账务）, "
            "treasury_corrected（国库已更正）, accepted（核实无误）"
        ),
    ],
    note: Annotated[str, typer.Option(help="处理说明（必填）")],
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "finance",
) -> None:
    """处理对账差异 Resolves a reconciliation exception, with a note (who and when recorded)."""
    from grantflow.v1 import disbursement_pb2
    from services.common.labels import LABELS

    try:
        term = ReconciliationResolution.parse(resolution.strip().lower())
    except VocabularyError:
        cli.fail(
            cli.EXIT_USAGE,
            f"--resolution 须为 {', '.join(ReconciliationResolution)} 之一: {resolution}",
        )
    request = disbursement_pb2.ResolveReconciliationExceptionRequest(
        exception_id=exception_id, resolution=term.to_proto(), note=note
    )
    bearer = cli.token_for(cli.get_settings(), token, Role.FINANCE, user)
    answer = cli.call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.ResolveReconciliationException(request),
    )
    cli.out().print(
        f"差异 {answer.exception_id}（{answer.day} {_word(ReconciliationKind, answer.kind)}）"
        f"已处理：{LABELS[term]}，{answer.resolution_note}（{answer.resolved_by}，"
        f"{_shanghai(answer.resolved_at)}）",
        highlight=False,
    )


def register(finance_app: typer.Typer) -> None:
    finance_app.command("reconcile")(reconcile)
    finance_app.command("exceptions")(exceptions)
    finance_app.command("resolve")(resolve)
