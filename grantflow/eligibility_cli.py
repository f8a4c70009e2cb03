"""`grantflow credit`: the credit list (信用名单) that bars enterprises from fiscal funds, and
how `grantflow status` prints an application's eligibility checks.

    grantflow credit add <credit code> --list 失信联合惩戒对象名单 --reason "…" --from 2026-01-01 \\
        [--until 2028-01-01] [--source "…"]
    grantflow credit list [--credit-code C] [--on 2026-06-01]

Dates are calendar days in Asia/Shanghai: --from is the first day the entry bars, --until the
first day it no longer does. Like the rest of the CLI this module imports only typer and the
vocabulary; each command imports what it needs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import typer

from grantflow import cli
from services.common.vocabulary import EligibilityCheck, Role

credit_app = typer.Typer(
    no_args_is_help=True, help="信用名单 (the credit list): entries with validity periods (ops)."
)


def _day(value: str, option: str) -> datetime:
    """Midnight in Asia/Shanghai at the start of a YYYY-MM-DD day."""
    from services.common.workdays import SHANGHAI

    try:
        day = date.fromisoformat(value)
    except ValueError:
        cli.fail(
            cli.EXIT_USAGE, f"{option} 须为日期 YYYY-MM-DD（{option} must be a date）: {value}"
        )
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)


def _timestamp(at: datetime) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _date_text(stamp: Any) -> str:
    from services.common.workdays import SHANGHAI

    return stamp.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d")


@credit_app.command("add")
def credit_add(
    credit_code: str,
    list_name: Annotated[str, typer.Option("--list", help="名单名称, e.g. 失信联合惩戒对象名单")],
    reason: Annotated[str, typer.Option(help="列入事由")],
    valid_from: Annotated[str, typer.Option("--from", help="生效日期 YYYY-MM-DD")],
    valid_until: Annotated[str, typer.Option("--until", help="失效日期 YYYY-MM-DD（不含）")] = "",
    source: Annotated[str, typer.Option(help="列入机关及文号")] = "",
    request_id: Annotated[str, typer.Option(help="idempotency key (default: generated)")] = "",
    user: cli.UserOpt = "ops",
    token: cli.TokenOpt = "",
) -> None:
    """Put an enterprise on the credit list for a period (audited)."""
    import uuid

    from grantflow.v1 import applications_pb2

    request = applications_pb2.AddCreditListEntryRequest(
        request_id=request_id or f"credit-{uuid.uuid4().hex}",
        credit_code=credit_code,
        list_name=list_name,
        reason=reason,
        source=source,
        valid_from=_timestamp(_day(valid_from, "--from")),
    )
    if valid_until:
        request.valid_until.CopyFrom(_timestamp(_day(valid_until, "--until")))
    bearer = cli.token_for(cli.get_settings(), token, Role.OPS, user)
    entry = cli.call(bearer, "applications", lambda c: c.applications.AddCreditListEntry(request))
    until = _date_text(entry.valid_until) if entry.HasField("valid_until") else "长期"
    cli.out().print(
        f"已列入 {entry.list_name}：{entry.credit_code} {_date_text(entry.valid_from)} 至 {until}"
        f"（条目 {entry.entry_id}）",
        highlight=False,
    )


@credit_app.command("list")
def credit_list(
    credit_code: Annotated[str, typer.Option(help="只看这家单位")] = "",
    on: Annotated[str, typer.Option(help="只看这一天有效的条目 YYYY-MM-DD")] = "",
    user: cli.UserOpt = "ops",
    token: cli.TokenOpt = "",
) -> None:
    """List the credit list's entries, newest first."""
    from rich.table import Table

    from grantflow.v1 import applications_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.OPS, user)
    entries: list[Any] = []
    page_token = ""
    while True:
        request = applications_pb2.ListCreditListEntriesRequest(
            credit_code=credit_code, page_size=1000, page_token=page_token
        )
        if on:
            request.valid_at.CopyFrom(_timestamp(_day(on, "--on")))
        page = cli.call(
            bearer,
            "applications",
            lambda c, r=request: c.applications.ListCreditListEntries(r),  # type: ignore[misc]
        )
        entries.extend(page.entries)
        page_token = page.next_page_token
        if not page_token:
            break
    table = Table("统一社会信用代码", "名单", "生效", "失效", "事由", "来源", "登记人", "条目")
    for e in entries:
        table.add_row(
            e.credit_code,
            e.list_name,
            _date_text(e.valid_from),
            _date_text(e.valid_until) if e.HasField("valid_until") else "长期",
            e.reason,
            e.source,
            e.created_by,
            e.entry_id,
        )
    cli.out().print(table)
    cli.out().print(f"共 {len(entries)} 条")


def print_eligibility(application: Any) -> None:
    """The application's last eligibility checks, one line each: 通过/未通过, the check's
    Chinese name, the reason."""
    from services.common.labels import label
    from services.common.workdays import SHANGHAI

    if not application.HasField("eligibility"):
        cli.out().print("资格审查：尚未进行")
        return
    result = application.eligibility
    at = result.checked_at.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M")
    verdict = "通过" if result.passed else "未通过"
    cli.out().print(f"资格审查（{at}）：{verdict}", highlight=False)
    for check in result.checks:
        try:
            name = label(EligibilityCheck(check.name))
        except ValueError:
            name = check.name
        mark = "✓" if check.passed else "✗"
        cli.out().print(f"  {mark} {name}（{check.name}）：{check.reason_zh}", highlight=False)
