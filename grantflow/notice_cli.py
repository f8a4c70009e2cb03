"""`grantflow notices | object | objections | objection …`: the public notices (社会公示) and the
objections (异议, 投诉, 举报) over the review service's NoticeService (notice.proto).

    grantflow notices [--program P] [--open]                     # public: no token needed
    grantflow object <application id> --kind 举报 --text "…" --contact "…" --credit-code C
    grantflow objections [--application A] [--all] --department industry --user li
    grantflow objection show <objection id> --department industry --user li
    grantflow objection decide <objection id> --upheld --consequence fall_away --reason "…"
    grantflow objection decide <objection id> --dismissed --reason "…"

Like the rest of the CLI this module imports only typer and the vocabulary; each command imports
what it needs. Exit status as `grantflow` (0 done, 1 refused, 2 usage, 3 unreachable).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from grantflow import cli
from services.common.vocabulary import (
    Department,
    ObjectionConsequence,
    ObjectionKind,
    ObjectionState,
    Role,
    VocabularyError,
)

if TYPE_CHECKING:
    from services.common.clients import ServiceClients

objection_app = typer.Typer(no_args_is_help=True, help="异议处理 (objections): show, decide.")

# What a person types for a kind: the Chinese word or the English term.
KIND_WORDS = {
    "异议": ObjectionKind.DISPUTE,
    "投诉": ObjectionKind.COMPLAINT,
    "举报": ObjectionKind.REPORT,
    **{kind.value: kind for kind in ObjectionKind},
}
DepartmentOpt = Annotated[str, typer.Option(help="评审部门 / reviewer's department")]
UserOpt = Annotated[str, typer.Option("--user", help="你是谁（开发令牌） / who you are")]


def wan(fen: int) -> str:
    """Integer fen as 万元 (no floats): 200000 -> 0.2万元."""
    whole, rest = divmod(fen, 1_000_000)
    decimals = f"{rest:06d}".rstrip("0")
    return f"{whole}.{decimals}万元" if decimals else f"{whole}万元"


def _call(token: str, rpc: Any) -> Any:
    async def work(clients: ServiceClients) -> Any:
        return await rpc(clients.notices)

    return cli.call(token, "review", work)


def _when(stamp: Any) -> str:
    from services.common.workdays import SHANGHAI

    return str(stamp.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M"))


def _department(value: str) -> str:
    try:
        return Department.parse(value)
    except VocabularyError:
        raise typer.BadParameter(f"one of {', '.join(Department)}") from None


def _reviewer(token: str, user: str, department: str) -> str:
    return cli.token_for(
        cli.get_settings(), token, Role.REVIEWER, user, department=_department(department)
    )


def notices(
    program: Annotated[str, typer.Option(help="只看某个项目 / one program only")] = "",
    open_only: Annotated[bool, typer.Option("--open", help="只看公示中的 / open only")] = False,
    token: cli.TokenOpt = "",
) -> None:
    """社会公示名单（公开，无需令牌） / the public notices (no token needed)."""
    from rich.table import Table

    from grantflow.format import yuan
    from grantflow.v1 import notice_pb2
    from services.common.labels import label

    request = notice_pb2.ListNoticesRequest(program_code=program, open_only=open_only)
    answer = _call(token, lambda stub: stub.ListNotices(request))
    if not answer.notices:
        cli.out().print("暂无公示 (no notices)")
    for notice in answer.notices:
        state = "公示中" if notice.open else "已结束"
        department = label(Department.from_proto(notice.owner_department))
        cli.out().print(
            f"[bold]{notice.program_code} 第{notice.batch_number}批 资助项目公示[/bold] "
            f"（{state}，{_when(notice.opens_at)} 至 {_when(notice.closes_at)}，"
            f"异议受理：{department}） 批次 {notice.batch_id}",
            highlight=False,
        )
        table = Table("序号", "申报单位", "项目名称", "资助金额", "申请编号")
        for number, entry in enumerate(notice.entries, start=1):
            amount = f"{wan(entry.amount_fen)} ({yuan(entry.amount_fen)})"
            name = f"[strike]{entry.applicant_name}[/strike] 已撤销" if entry.struck else ""
            table.add_row(
                str(number),
                name or entry.applicant_name,
                entry.project_title,
                amount,
                entry.application_id,
            )
        cli.out().print(table)
        cli.out().print(
            f"合计 {wan(notice.total_fen)}，{len(notice.entries)} 个项目。"
            f"公示期内如有异议，请实名提出：grantflow object <申请编号> --kind 异议|投诉|举报",
            highlight=False,
        )


def _open_batch(application_id: str, token: str) -> str:
    """The open notice that lists the application."""
    from grantflow.v1 import notice_pb2

    answer = _call(
        token, lambda stub: stub.ListNotices(notice_pb2.ListNoticesRequest(open_only=True))
    )
    for notice in answer.notices:
        if any(entry.application_id == application_id for entry in notice.entries):
            return str(notice.batch_id)
    cli.fail(cli.EXIT_FAILED, f"申请 {application_id} 不在公示中的名单上 (not in an open notice)")


def lodge(
    application_id: str,
    kind: Annotated[str, typer.Option(help="异议 (申报单位本身)、投诉 或 举报")],
    text: Annotated[str, typer.Option(help="异议内容 / what the objection says")],
    contact: Annotated[str, typer.Option(help="联系方式（电话或邮箱） / how to reach you")],
    credit_code: Annotated[str, typer.Option(help="以该单位身份提出 / as this enterprise")] = "",
    batch: Annotated[str, typer.Option(help="公示批次（默认：公示中的那一批）")] = "",
    request_id: Annotated[str, typer.Option(help="idempotency key (default: generated)")] = "",
    token: cli.TokenOpt = "",
) -> None:
    """在公示期内实名提出异议、投诉或举报 / lodge an objection during the notice."""
    from grantflow.v1 import notice_pb2
    from services.common.labels import label

    term = KIND_WORDS.get(kind.strip())
    if term is None:
        raise typer.BadParameter("异议、投诉 或 举报 (dispute, complaint or report)")
    if not token and not credit_code:
        cli.fail(
            cli.EXIT_USAGE,
            "不受理匿名异议：请用 --credit-code 或 --token 表明身份 "
            "(anonymous objections are not accepted)",
        )
    bearer = cli.token_for(
        cli.get_settings(), token, Role.APPLICANT, credit_code, enterprise=credit_code
    )
    request = notice_pb2.LodgeObjectionRequest(
        request_id=request_id or f"objection-{uuid.uuid4().hex}",
        batch_id=batch or _open_batch(application_id, bearer),
        application_id=application_id,
        kind=term.to_proto(),
        text=text,
        contact=contact,
    )
    objection = _call(bearer, lambda stub: stub.LodgeObjection(request))
    cli.out().print(
        f"已受理{label(term)} {objection.objection_id}：由"
        f"{label(Department.from_proto(objection.handling_department))}处理，"
        f"提出人身份仅对处理部门可见 (lodged; your identity is shown only to the handling "
        f"department)",
        highlight=False,
    )


def _objector(objection: Any) -> str:
    if objection.identity_hidden:
        return "（保密）"
    who = objection.objector
    return " ".join(part for part in (who.enterprise, who.subject, who.contact) if part)


def _state(objection: Any) -> str:
    from services.common.labels import label

    state = ObjectionState.from_proto(objection.state)
    text = label(state)
    if objection.consequence:
        text += f"（{label(ObjectionConsequence.from_proto(objection.consequence))}）"
    return text


def objections(
    application: Annotated[str, typer.Option(help="只看某个申请 / one application")] = "",
    show_all: Annotated[bool, typer.Option("--all", help="含已处理 / decided too")] = False,
    department: DepartmentOpt = Department.INDUSTRY.value,
    user: UserOpt = "reviewer",
    token: cli.TokenOpt = "",
) -> None:
    """异议、投诉、举报列表（提出人身份仅处理部门可见） / objections."""
    from rich.table import Table

    from grantflow.v1 import notice_pb2
    from services.common.labels import label

    bearer = _reviewer(token, user, department)
    request = notice_pb2.ListObjectionsRequest(application_id=application, open_only=not show_all)
    answer = _call(bearer, lambda stub: stub.ListObjections(request))
    table = Table("编号", "类型", "申请编号", "状态", "处理部门", "提出人", "内容", "提出时间")
    for o in answer.objections:
        table.add_row(
            o.objection_id,
            label(ObjectionKind.from_proto(o.kind)),
            o.application_id,
            _state(o),
            label(Department.from_proto(o.handling_department)),
            _objector(o),
            o.text,
            _when(o.lodged_at),
        )
    cli.out().print(table)


@objection_app.command("show")
def objection_show(
    objection_id: str,
    department: DepartmentOpt = Department.INDUSTRY.value,
    user: UserOpt = "reviewer",
    token: cli.TokenOpt = "",
) -> None:
    """一条异议的详情 / one objection."""
    from grantflow.v1 import notice_pb2
    from services.common.labels import label

    bearer = _reviewer(token, user, department)
    o = _call(
        bearer,
        lambda stub: stub.GetObjection(notice_pb2.GetObjectionRequest(objection_id=objection_id)),
    )
    lines = [
        f"编号 {o.objection_id}  类型 {label(ObjectionKind.from_proto(o.kind))}  状态 {_state(o)}",
        f"公示批次 {o.batch_id}  申请 {o.application_id}  项目 {o.program_code}",
        f"处理部门 {label(Department.from_proto(o.handling_department))}  提出人 {_objector(o)}",
        f"内容：{o.text}",
    ]
    if o.handled_by:
        lines.append(f"处理人 {o.handled_by}  处理意见：{o.reason}")
    cli.out().print("\n".join(lines), highlight=False)


@objection_app.command("decide")
def objection_decide(
    objection_id: str,
    reason: Annotated[str, typer.Option(help="处理意见（必填） / the reason")],
    upheld: Annotated[bool, typer.Option("--upheld/--dismissed", help="异议成立 / 不成立")] = False,
    consequence: Annotated[
        str, typer.Option(help="成立时：fall_away（取消资助）或 re_review（重新评审）")
    ] = "",
    department: DepartmentOpt = Department.INDUSTRY.value,
    user: UserOpt = "reviewer",
    token: cli.TokenOpt = "",
) -> None:
    """处理异议：成立或不成立 / decide an objection."""
    from grantflow.v1 import notice_pb2

    number: Any = 0
    if consequence:
        try:
            number = ObjectionConsequence.parse(consequence).to_proto()
        except VocabularyError:
            raise typer.BadParameter(", ".join(ObjectionConsequence)) from None
    bearer = _reviewer(token, user, department)
    request = notice_pb2.DecideObjectionRequest(
        objection_id=objection_id, upheld=upheld, consequence=number, reason=reason
    )
    o = _call(bearer, lambda stub: stub.DecideObjection(request))
    cli.out().print(f"已处理 {o.objection_id}：{_state(o)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Adds the notice and objection commands to `grantflow`."""
    app.command("notices")(notices)
    app.command("object")(lodge)
    app.command("objections")(objections)
    app.add_typer(objection_app, name="objection")
