"""`grantflow ops repair`: named repairs of grants over the RepairService (repair.proto).

    grantflow ops repair cancel <application id> --reason "…" [--dry-run]
    grantflow ops repair cancel --query "GrantStage = 'IN_REVIEW' AND GrantProgram = 'SME-CLOUD'" --reason "…"
    grantflow ops repair reopen-review <application id> --department industry --reason "…"
    grantflow ops repair move-to-stage <application id> --stage IN_REVIEW --reason "…"
    grantflow ops repair retry-payment <application id> --reason "…"
    grantflow ops repair resume-stuck <application id> --reason "…"
    grantflow ops repair approve <repair id> --user <another ops user>
    grantflow ops repair pause|resume|show <repair id>;  grantflow ops repair list

Like the rest of the CLI this module imports only typer and the vocabulary; each command imports
what it needs. Exit status as `grantflow` (0 done, 1 refused, 2 usage, 3 unreachable).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from grantflow import cli
from services.common.labels import LABELS
from services.common.vocabulary import (
    Department,
    GrantRepairState,
    GrantStage,
    RepairAction,
    RepairState,
    Role,
    VocabularyError,
)

if TYPE_CHECKING:
    from services.common.clients import ServiceClients

repair_app = typer.Typer(
    no_args_is_help=True,
    help="修复 (repairs): named actions with a reason, dry run, four eyes, batches by query.",
)

# States a batch's progress bar stops at (nothing more happens without a person).
SETTLED = {RepairState.COMPLETED, RepairState.LAPSED, RepairState.PAUSED, RepairState.PREVIEWED}

ReasonOpt = Annotated[str, typer.Option("--reason", help="为什么修复（必填） / why (required)")]
QueryOpt = Annotated[
    str, typer.Option("--query", help="批量：Temporal 查询 / a visibility query over grants")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="只预览，不做更改 / preview only")]
UserOpt = Annotated[str, typer.Option("--user", help="你是谁（开发令牌） / who you are")]
WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="等待批量执行并显示进度")]


def _bearer(token: str, user: str) -> str:
    return cli.token_for(cli.get_settings(), token, Role.OPS, user)


def _call(token: str, rpc: Any) -> Any:
    async def work(clients: ServiceClients) -> Any:
        return await rpc(clients.repairs)

    return cli.call(token, "applications", work)


def _request(
    action: RepairAction,
    application_id: str,
    query: str,
    reason: str,
    dry_run: bool,
    token: str,
    user: str,
    wait: bool,
    *,
    department: str = "",
    stage: str = "",
) -> None:
    from grantflow.v1 import repair_pb2

    if bool(application_id) == bool(query):
        raise typer.BadParameter("给出一个申请编号，或用 --query 批量（二选一） / one of the two")
    bearer = _bearer(token, user)
    # Proto enum numbers (0: not given).
    department_number: Any = Department.parse(department).to_proto() if department else 0
    stage_number: Any = GrantStage.parse(stage).to_proto() if stage else 0
    request = repair_pb2.RequestRepairRequest(
        request_id=f"repair-{uuid.uuid4().hex}",
        action=action.to_proto(),
        application_id=application_id,
        query=query,
        reason=reason,
        dry_run=dry_run,
        department=department_number,
        stage=stage_number,
    )
    repair = _call(bearer, lambda stub: stub.RequestRepair(request))
    _show(repair)
    if RepairState.from_proto(repair.state) == RepairState.AWAITING_APPROVAL:
        cli.out().print(
            f"需要另一位运维人员审批后才会执行： grantflow ops repair approve {repair.repair_id} "
            f"--user <另一位运维人员>\n(needs a second ops person's approval)",
            highlight=False,
        )
    elif wait and not dry_run:
        _follow(bearer, repair.repair_id)


def _action_command(action: RepairAction, name: str, extra: str = "") -> None:
    help_text = f"{LABELS[action]} ({action.value})"

    if extra == "department":

        @repair_app.command(name, help=help_text)
        def with_department(
            department: Annotated[str, typer.Option(help="industry, finance or hr")],
            reason: ReasonOpt,
            application_id: Annotated[str, typer.Argument()] = "",
            query: QueryOpt = "",
            dry_run: DryRunOpt = False,
            token: cli.TokenOpt = "",
            user: UserOpt = "ops",
            wait: WaitOpt = True,
        ) -> None:
            try:
                Department.parse(department)
            except VocabularyError:
                raise typer.BadParameter(f"one of {', '.join(Department)}") from None
            _request(
                action, application_id, query, reason, dry_run, token, user, wait,
                department=department,
            )  # fmt: skip

    elif extra == "stage":

        @repair_app.command(name, help=help_text)
        def with_stage(
            stage: Annotated[str, typer.Option(help="e.g. IN_REVIEW")],
            reason: ReasonOpt,
            application_id: Annotated[str, typer.Argument()] = "",
            query: QueryOpt = "",
            dry_run: DryRunOpt = False,
            token: cli.TokenOpt = "",
            user: UserOpt = "ops",
            wait: WaitOpt = True,
        ) -> None:
            try:
                GrantStage.parse(stage.upper())
            except VocabularyError:
                raise typer.BadParameter(f"one of {', '.join(GrantStage)}") from None
            _request(
                action, application_id, query, reason, dry_run, token, user, wait,
                stage=stage.upper(),
            )  # fmt: skip

    else:

        @repair_app.command(name, help=help_text)
        def plain(
            reason: ReasonOpt,
            application_id: Annotated[str, typer.Argument()] = "",
            query: QueryOpt = "",
            dry_run: DryRunOpt = False,
            token: cli.TokenOpt = "",
            user: UserOpt = "ops",
            wait: WaitOpt = True,
        ) -> None:
            _request(action, application_id, query, reason, dry_run, token, user, wait)


_action_command(RepairAction.CANCEL, "cancel")
_action_command(RepairAction.REOPEN_REVIEW, "reopen-review", "department")
_action_command(RepairAction.MOVE_TO_STAGE, "move-to-stage", "stage")
_action_command(RepairAction.RETRY_PAYMENT, "retry-payment")
_action_command(RepairAction.RESUME, "resume-stuck")


def _ref(repair_id: str) -> Any:
    from grantflow.v1 import repair_pb2

    return repair_pb2.RepairRef(repair_id=repair_id)


@repair_app.command("approve")
def approve(
    repair_id: str, token: cli.TokenOpt = "", user: UserOpt = "ops", wait: WaitOpt = True
) -> None:
    """审批修复（须为另一位运维人员） / approve a repair (another ops person)."""
    bearer = _bearer(token, user)
    repair = _call(bearer, lambda stub: stub.ApproveRepair(_ref(repair_id)))
    cli.out().print(f"已由 {repair.approved_by} 审批 (approved)", highlight=False)
    if wait:
        _follow(bearer, repair_id)
    else:
        _show(repair)


@repair_app.command("pause")
def pause(repair_id: str, token: cli.TokenOpt = "", user: UserOpt = "ops") -> None:
    """暂停批量修复（当前申请完成后停下） / pause a batch before its next grant."""
    _show(_call(_bearer(token, user), lambda stub: stub.PauseRepair(_ref(repair_id))))


@repair_app.command("resume")
def resume(
    repair_id: str, token: cli.TokenOpt = "", user: UserOpt = "ops", wait: WaitOpt = True
) -> None:
    """继续已暂停的批量修复 / resume a paused batch."""
    bearer = _bearer(token, user)
    repair = _call(bearer, lambda stub: stub.ResumeRepair(_ref(repair_id)))
    if wait:
        _follow(bearer, repair_id)
    else:
        _show(repair)


@repair_app.command("show")
def show(repair_id: str, token: cli.TokenOpt = "", user: UserOpt = "ops") -> None:
    """修复的进度与每个申请的结果 / progress and a result per grant."""
    _show(_call(_bearer(token, user), lambda stub: stub.GetRepair(_ref(repair_id))))


@repair_app.command("list")
def list_repairs(limit: int = 20, token: cli.TokenOpt = "", user: UserOpt = "ops") -> None:
    """最近的修复 / recent repairs."""
    from rich.table import Table

    from grantflow.v1 import repair_pb2

    answer = _call(
        _bearer(token, user),
        lambda stub: stub.ListRepairs(repair_pb2.ListRepairsRequest(limit=limit)),
    )
    table = Table(
        "修复编号 repair",
        "动作 action",
        "状态 state",
        "申请人 by",
        "审批人 approver",
        "完成/失败/共",
    )
    for repair in answer.repairs:
        table.add_row(
            repair.repair_id,
            RepairAction.from_proto(repair.action).value,
            LABELS[RepairState.from_proto(repair.state)],
            repair.requested_by,
            repair.approved_by or "-",
            f"{repair.done}/{repair.failed}/{repair.total}",
        )
    cli.out().print(table)


def _follow(token: str, repair_id: str) -> None:
    """A progress bar over the repair's grants, polling its progress until it settles."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    repair = _call(token, lambda stub: stub.GetRepair(_ref(repair_id)))
    with Progress(
        TextColumn("[bold]修复 {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        console=cli.out(),
        transient=True,
    ) as bar:
        task = bar.add_task(repair_id, total=repair.total or None, state="")
        while True:
            state = RepairState.from_proto(repair.state)
            bar.update(
                task,
                total=repair.total or None,
                completed=repair.done + repair.failed,
                state=LABELS[state],
            )
            if state in SETTLED:
                break
            time.sleep(0.5)
            repair = _call(token, lambda stub: stub.GetRepair(_ref(repair_id)))
    _show(repair)
    if repair.failed:
        raise typer.Exit(cli.EXIT_FAILED)


def _show(repair: Any) -> None:
    from rich.table import Table

    state = RepairState.from_proto(repair.state)
    action = RepairAction.from_proto(repair.action)
    console = cli.out()
    console.print(
        f"修复 {repair.repair_id}：{LABELS[action]}；状态：{LABELS[state]}"
        f"（{state.value}）\n原因：{repair.reason}\n申请人：{repair.requested_by}"
        + (f"；审批人：{repair.approved_by}" if repair.approved_by else "")
        + (f"\n查询：{repair.query}" if repair.query else "")
        + f"\n完成 {repair.done}，失败 {repair.failed}，共 {repair.total} 个申请",
        highlight=False,
    )
    if repair.results:
        table = Table("申请编号 application", "结果 result", "说明 detail")
        for result in repair.results:
            table.add_row(
                result.application_id,
                LABELS[GrantRepairState.from_proto(result.state)],
                result.detail,
            )
        console.print(table)
