"""`grantflow calendar`: the working-day calendar the applications service keeps, and
`grantflow notifications` / `grantflow contact`: what applicants were told, and where.

    grantflow calendar show 2026 [--json]
    grantflow calendar set-year 2027 --holiday 2027-01-01=元旦 … --workday 2027-02-07=春节 … \\
        --source "国办发明电〔2026〕X号" [--from-file 2027.json]
    grantflow notifications <application id> [--credit-code C]
    grantflow contact --credit-code C [--email E] [--mobile M]

A --from-file is JSON as `calendar show --json` prints it ({"holidays": [{"date", "name"}],
"adjusted_working_days": [...], "source"}); days given on the command line are added to it.
Like the rest of the CLI this module imports only typer and the vocabulary; each command imports
what it needs. Exit status as `grantflow` (0 done, 1 refused, 2 usage, 3 unreachable).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from grantflow import cli
from services.common.vocabulary import DeliveryStatus, NotificationChannel, Role, VocabularyError

calendar_app = typer.Typer(
    no_args_is_help=True,
    help="工作日日历 (working-day calendar): holidays and adjusted working days per year.",
)

WEEKDAYS = "一二三四五六日"


def _day(value: str) -> dict[str, str]:
    """D or D=name."""
    day, _, name = value.partition("=")
    return {"date": day.strip(), "name": name.strip()}


def _from_file(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"{path}: {error}", param_hint="--from-file") from None
    if not isinstance(content, dict):
        raise typer.BadParameter(f"{path}: not a JSON object", param_hint="--from-file")
    return content


def _days(values: Any) -> list[dict[str, str]]:
    days = []
    for value in values or []:
        days.append(_day(value) if isinstance(value, str) else dict(value))
    return days


@calendar_app.command("show")
def calendar_show(
    year: int,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "ops",
) -> None:
    """一年的法定节假日与调休上班日 (one year's holidays and adjusted working days)."""
    from google.protobuf.json_format import MessageToDict

    from grantflow.v1 import calendar_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.OPS, user)
    answer = cli.call(
        bearer,
        "applications",
        lambda c: c.calendar.GetCalendarYear(calendar_pb2.GetCalendarYearRequest(year=year)),
    )
    if as_json:
        print(json.dumps(MessageToDict(answer), ensure_ascii=False, indent=1))
        return
    from datetime import date

    from rich.table import Table

    table = Table("日期", "星期", "类别", "名称", title=f"{year} 年工作日日历")
    rows = [(d, "放假") for d in answer.holidays] + [
        (d, "调休上班") for d in answer.adjusted_working_days
    ]
    for day, kind in sorted(rows, key=lambda row: row[0].date):
        weekday = WEEKDAYS[date.fromisoformat(day.date).weekday()]
        table.add_row(day.date, f"周{weekday}", kind, day.name)
    cli.out().print(table)
    set_at = answer.set_at.ToDatetime().isoformat(timespec="seconds")
    cli.out().print(
        f"来源 (source)：{answer.source}；录入人 (set by)：{answer.set_by}，{set_at}Z",
        highlight=False,
    )


@calendar_app.command("set-year")
def calendar_set_year(
    year: int,
    holiday: Annotated[
        list[str] | None, typer.Option("--holiday", help="a day off: YYYY-MM-DD[=name]")
    ] = None,
    workday: Annotated[
        list[str] | None,
        typer.Option("--workday", help="an adjusted working weekend day: YYYY-MM-DD[=name]"),
    ] = None,
    source: Annotated[str, typer.Option(help="where the dates come from (the notice)")] = "",
    from_file: Annotated[Path | None, typer.Option("--from-file")] = None,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "ops",
) -> None:
    """录入或更正一年的节假日安排（运维；留痕审计）(set a year's calendar; ops, audited)."""
    from grantflow.v1 import calendar_pb2

    content = _from_file(from_file) if from_file else {}
    holidays = _days(content.get("holidays")) + [_day(d) for d in holiday or []]
    workdays = _days(content.get("adjusted_working_days", content.get("adjustedWorkingDays")))
    workdays += [_day(d) for d in workday or []]
    request = calendar_pb2.SetCalendarYearRequest(
        year=year,
        holidays=[calendar_pb2.CalendarDay(**d) for d in holidays],
        adjusted_working_days=[calendar_pb2.CalendarDay(**d) for d in workdays],
        source=source or str(content.get("source", "")),
    )
    bearer = cli.token_for(cli.get_settings(), token, Role.OPS, user)
    answer = cli.call(bearer, "applications", lambda c: c.calendar.SetCalendarYear(request))
    cli.out().print(
        f"已录入 {answer.year} 年：放假 {len(answer.holidays)} 天，调休上班 "
        f"{len(answer.adjusted_working_days)} 天 (calendar {answer.year} set)",
        highlight=False,
    )


def notifications(
    application_id: str,
    credit_code: Annotated[str, typer.Option(help="as the applicant (its credit code)")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "ops",
) -> None:
    """一件申请发给申报单位的通知及投递情况 (what the applicant was told, per channel)."""
    from grantflow.v1 import notifications_pb2

    settings = cli.get_settings()
    bearer = (
        cli.token_for(settings, token, Role.APPLICANT, credit_code, enterprise=credit_code)
        if credit_code
        else cli.token_for(settings, token, Role.OPS, user)
    )
    answer = cli.call(
        bearer,
        "applications",
        lambda c: c.notifications.ListNotifications(
            notifications_pb2.ListNotificationsRequest(application_id=application_id)
        ),
    )
    if as_json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(answer), ensure_ascii=False, indent=1))
        return
    from rich.table import Table

    from services.common.labels import label
    from services.common.workdays import SHANGHAI

    table = Table("时间", "渠道", "地址", "状态", "次数", "通知", title=f"{application_id} 的通知")
    for n in answer.notifications:
        try:
            status = label(DeliveryStatus.from_proto(n.status))
        except VocabularyError:
            status = str(n.status)
        if n.last_error and n.status != DeliveryStatus.SENT.to_proto():
            status += f"：{n.last_error}"
        table.add_row(
            n.created_at.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M"),
            label(n.channel)
            if n.channel not in set(NotificationChannel)
            else label(NotificationChannel(n.channel)),
            n.address,
            status,
            str(n.attempts),
            n.subject,
        )
    cli.out().print(table)


def contact(
    credit_code: Annotated[str, typer.Option(help="the enterprise")],
    email: Annotated[str | None, typer.Option(help="mail address ('' for none)")] = None,
    mobile: Annotated[str | None, typer.Option(help="mobile number ('' for none)")] = None,
    as_applicant: Annotated[bool, typer.Option("--as-applicant")] = False,
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "ops",
) -> None:
    """申报单位接收通知的邮箱与手机 (show, or set with --email/--mobile)."""
    from grantflow.v1 import notifications_pb2

    settings = cli.get_settings()
    bearer = (
        cli.token_for(settings, token, Role.APPLICANT, credit_code, enterprise=credit_code)
        if as_applicant
        else cli.token_for(settings, token, Role.OPS, user)
    )

    async def work(clients: Any) -> Any:
        import grpc

        try:
            current = await clients.notifications.GetNotificationContact(
                notifications_pb2.GetNotificationContactRequest(credit_code=credit_code)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND or (email is None and mobile is None):
                raise
            current = notifications_pb2.NotificationContact(credit_code=credit_code)
        if email is None and mobile is None:
            return current
        # What is not given stays as it was.
        return await clients.notifications.SetNotificationContact(
            notifications_pb2.SetNotificationContactRequest(
                credit_code=credit_code,
                email=current.email if email is None else email,
                mobile=current.mobile if mobile is None else mobile,
            )
        )

    answer = cli.call(bearer, "applications", work)
    cli.out().print(
        f"{answer.credit_code} 邮箱 {answer.email or '-'} 手机 {answer.mobile or '-'}",
        highlight=False,
    )
