"""`grantflow` commands of the review process: the expert pool, the experts' scoring, special
audits and the department inbox's release and reassignment.

    grantflow experts add <expert id> --name 张三 --field industrial_internet \\
        [--employer <credit code>] [--conflict <credit code> …] [--person-id …] [--inactive]
    grantflow experts list [--field F]
    grantflow expert tasks --user <expert id> [--pending]
    grantflow expert show (<task id> | --application <id>) --user <expert id>
    grantflow expert score <task id> --score innovation=52.5 --score market=30 --user <expert id>
    grantflow audit tasks [--all] --user <auditor>
    grantflow audit confirm <task id> --audited-fen N [--note …] --user <auditor>
    grantflow release <task id> --department industry --user li [--head]
    grantflow reassign <task id> <assignee> --reason "…" --department industry --user <head>

Like the rest of the CLI this module imports only typer and the vocabulary; each command imports
what it needs. Exit status as `grantflow` (0 done, 1 refused, 2 usage, 3 unreachable).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer

from grantflow import cli
from services.common.vocabulary import (
    AuditTaskState,
    Department,
    ExpertTaskState,
    Role,
)

experts_app = typer.Typer(no_args_is_help=True, help="专家库 (the expert pool).")
expert_app = typer.Typer(no_args_is_help=True, help="专家评审 (an expert's tasks and scores).")
special_audit_app = typer.Typer(no_args_is_help=True, help="专项审计 (special audits).")

DepartmentOpt = Annotated[str, typer.Option(callback=cli._department)]


def _points(value: int) -> str:
    """Hundredths of a point as points: 5250 -> 52.5."""
    return f"{Decimal(value) / 100:f}".rstrip("0").rstrip(".") if value % 100 else str(value // 100)


def _score(text: str) -> tuple[str, int]:
    code, _, points = text.partition("=")
    try:
        centi = Decimal(points) * 100
    except InvalidOperation:
        raise typer.BadParameter(f"{text!r}: 应为 criterion=points，例如 innovation=52.5") from None
    if not code or centi != centi.to_integral_value():
        raise typer.BadParameter(f"{text!r}: 应为 criterion=points，最多两位小数")
    return code, int(centi)


def _when(timestamp: Any) -> str:
    from services.common.workdays import SHANGHAI

    if not timestamp.seconds:
        return ""
    return str(timestamp.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M"))


# The expert pool -------------------------------------------------------------------------------


@experts_app.command("add")
def experts_add(
    expert_id: str,
    name: Annotated[str, typer.Option(help="专家姓名")],
    field: Annotated[str, typer.Option(help="专业领域，如 industrial_internet")],
    employer: Annotated[str, typer.Option(help="工作单位统一社会信用代码")] = "",
    conflict: Annotated[list[str] | None, typer.Option(help="申报回避的单位（信用代码）")] = None,
    person_id: Annotated[str, typer.Option(help="登记机关记录中的个人标识")] = "",
    inactive: bool = False,
    user: cli.UserOpt = "ops",
    token: cli.TokenOpt = "",
) -> None:
    """Add or update an expert of the pool (ops)."""
    from grantflow.v1 import review_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.OPS, user)
    expert = review_pb2.Expert(
        expert_id=expert_id,
        name=name,
        field=field,
        employer_credit_code=employer,
        declared_conflicts=conflict or [],
        person_id=person_id,
        active=not inactive,
    )
    request = review_pb2.AddExpertRequest(expert=expert)
    answer = cli.call(bearer, "review", lambda c: c.review.AddExpert(request))
    cli.out().print(f"专家已入库 expert saved: {answer.expert_id} {answer.name}（{answer.field}）")


@experts_app.command("list")
def experts_list(field: str = "", user: cli.UserOpt = "ops", token: cli.TokenOpt = "") -> None:
    """The expert pool, by field."""
    from rich.table import Table

    from grantflow.v1 import review_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.OPS, user)
    request = review_pb2.ListExpertsRequest(field=field)
    answer = cli.call(bearer, "review", lambda c: c.review.ListExperts(request))
    table = Table(
        "专家 expert", "姓名 name", "领域 field", "工作单位 employer", "申报回避 conflicts", "在库"
    )
    for e in answer.experts:
        table.add_row(
            e.expert_id,
            e.name,
            e.field,
            e.employer_credit_code,
            ", ".join(e.declared_conflicts),
            "是" if e.active else "否",
        )
    cli.out().print(table)


# An expert's tasks -----------------------------------------------------------------------------


def _expert_token(token: str, user: str) -> str:
    return cli.token_for(cli.get_settings(), token, Role.EXPERT, user)


@expert_app.command("tasks")
def expert_tasks(
    user: cli.UserOpt = "expert", pending: bool = False, token: cli.TokenOpt = ""
) -> None:
    """Your expert tasks."""
    from rich.table import Table

    from grantflow.v1 import review_pb2

    request = review_pb2.ListMyExpertTasksRequest(pending_only=pending)
    answer = cli.call(
        _expert_token(token, user), "review", lambda c: c.review.ListMyExpertTasks(request)
    )
    table = Table(
        "任务 task", "申请 application", "项目 program", "企业", "项目名称", "状态", "截止 due"
    )
    for t in answer.tasks:
        state = ExpertTaskState.from_proto(t.state)
        table.add_row(
            t.task_id,
            t.application_id,
            t.program_code,
            t.applicant_name,
            t.project_title,
            _label(state),
            _when(t.due_at) + (" 已逾期" if t.overdue else ""),
        )
    cli.out().print(table)


@expert_app.command("show")
def expert_show(
    task_id: Annotated[str, typer.Argument()] = "",
    application: str = "",
    user: cli.UserOpt = "expert",
    token: cli.TokenOpt = "",
) -> None:
    """One task: the rubric, your scores, and the panel's once every expert has scored."""
    from grantflow.v1 import review_pb2

    if bool(task_id) == bool(application):
        raise typer.BadParameter("给出任务编号或 --application 之一 (a task id or --application)")
    request = review_pb2.GetExpertTaskRequest(task_id=task_id, application_id=application)
    t = cli.call(_expert_token(token, user), "review", lambda c: c.review.GetExpertTask(request))
    console = cli.out()
    console.print(f"任务 {t.task_id}  申请 {t.application_id}  {t.program_code}", highlight=False)
    console.print(f"{t.applicant_name}：{t.project_title}", highlight=False)
    mine = {s.code: s.score_centi for s in t.scores}
    for criterion in t.rubric:
        given = f"{_points(mine[criterion.code])} 分" if criterion.code in mine else "未评"
        console.print(
            f"  {criterion.name}（{criterion.code}，满分 {criterion.max_points}）：{given}",
            highlight=False,
        )
    if t.state == ExpertTaskState.SUBMITTED.to_proto():
        console.print(f"您的总分 your total: {_points(t.total_centi)}", highlight=False)
    if t.panel_complete:
        console.print(f"评审组得分 panel score: {_points(t.panel_score_centi)}", highlight=False)
        for other in t.others:
            console.print(f"  {other.name or other.expert_id}: {_points(other.total_centi)}")
    else:
        console.print("其他专家的评分在全部专家评分后可见 (others' scores show once all are in)")


@expert_app.command("score")
def expert_score(
    task_id: str,
    score: Annotated[list[str], typer.Option(help="criterion=points，每项一个")],
    comment: str = "",
    user: cli.UserOpt = "expert",
    token: cli.TokenOpt = "",
) -> None:
    """Submit your scores, one per rubric criterion (once)."""
    from grantflow.v1 import review_pb2

    scores = [review_pb2.CriterionScore(code=c, score_centi=v) for c, v in map(_score, score)]
    request = review_pb2.SubmitScoresRequest(task_id=task_id, scores=scores, comment=comment)
    t = cli.call(_expert_token(token, user), "review", lambda c: c.review.SubmitScores(request))
    cli.out().print(f"已提交评分 scores submitted: 总分 {_points(t.total_centi)}", highlight=False)
    if t.panel_complete:
        cli.out().print(
            f"评审组已全部评分，得分 {_points(t.panel_score_centi)} (panel complete)",
            highlight=False,
        )


# Special audits --------------------------------------------------------------------------------


@special_audit_app.command("tasks")
def audit_tasks(
    all_tasks: Annotated[bool, typer.Option("--all", help="含已确认的")] = False,
    user: cli.UserOpt = "auditor",
    token: cli.TokenOpt = "",
) -> None:
    """Special audit tasks (open ones unless --all)."""
    from rich.table import Table

    from grantflow.format import yuan
    from grantflow.v1 import review_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.AUDITOR, user)
    request = review_pb2.ListAuditTasksRequest(open_only=not all_tasks)
    answer = cli.call(bearer, "review", lambda c: c.review.ListAuditTasks(request))
    table = Table(
        "任务 task",
        "申请 application",
        "项目",
        "审计科目 figure",
        "申报 declared",
        "审定 audited",
        "状态",
        "截止 due",
    )
    for t in answer.tasks:
        state = AuditTaskState.from_proto(t.state)
        table.add_row(
            t.task_id,
            t.application_id,
            t.program_code,
            t.figure,
            yuan(t.declared_fen),
            yuan(t.audited_fen) if state == AuditTaskState.CONFIRMED else "",
            _label(state),
            _when(t.due_at) + (" 已逾期" if t.overdue else ""),
        )
    cli.out().print(table)


@special_audit_app.command("confirm")
def audit_confirm(
    task_id: str,
    audited_fen: Annotated[int, typer.Option(help="审定金额（分）")],
    note: str = "",
    user: cli.UserOpt = "auditor",
    token: cli.TokenOpt = "",
) -> None:
    """Confirm the audited figure (就低原则: the grant uses the lower of audited and declared)."""
    from grantflow.format import yuan
    from grantflow.v1 import review_pb2

    bearer = cli.token_for(cli.get_settings(), token, Role.AUDITOR, user)
    request = review_pb2.ConfirmAuditRequest(task_id=task_id, audited_fen=audited_fen, note=note)
    t = cli.call(bearer, "review", lambda c: c.review.ConfirmAudit(request))
    cli.out().print(
        f"审计已确认 audit confirmed: {t.figure} 申报 {yuan(t.declared_fen)}，审定 {yuan(t.audited_fen)}",
        highlight=False,
    )


# The inbox -------------------------------------------------------------------------------------


def release(
    task_id: str,
    reason: str = "",
    department: DepartmentOpt = Department.INDUSTRY.value,
    head: Annotated[bool, typer.Option(help="以处室负责人身份")] = False,
    user: cli.UserOpt = "reviewer",
    token: cli.TokenOpt = "",
) -> None:
    """Give a claimed task back to the department (the claimant, or a head with --head)."""
    from grantflow.v1 import review_pb2

    role = Role.DEPARTMENT_HEAD if head else Role.REVIEWER
    bearer = cli.token_for(cli.get_settings(), token, role, user, department=department)
    request = review_pb2.ReleaseTaskRequest(task_id=task_id, reason=reason)
    cli.call(bearer, "review", lambda c: c.review.ReleaseTask(request))
    cli.out().print(f"已退回 released: {task_id}")


def reassign(
    task_id: str,
    assignee: str,
    reason: Annotated[str, typer.Option(help="改派原因（必填）")],
    department: DepartmentOpt = Department.INDUSTRY.value,
    user: cli.UserOpt = "head",
    token: cli.TokenOpt = "",
) -> None:
    """Give a task of your department to a named reviewer (department heads)."""
    from grantflow.v1 import review_pb2

    bearer = cli.token_for(
        cli.get_settings(), token, Role.DEPARTMENT_HEAD, user, department=department
    )
    request = review_pb2.ReassignTaskRequest(task_id=task_id, assignee=assignee, reason=reason)
    cli.call(bearer, "review", lambda c: c.review.ReassignTask(request))
    cli.out().print(f"已改派 reassigned: {task_id} → {assignee}")


def _label(term: Any) -> str:
    from services.common.labels import label

    return label(term)
