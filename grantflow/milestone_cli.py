"""`grantflow grant milestone confirm`: the milestones of awards paid in instalments (TECH-MAJOR).

    grantflow grant milestone confirm <application id> --instalment N [--note 说明]
        [--as reviewer|head|finance] [--department industry]

A confirmed milestone (项目验收 for a middle instalment, 专项审计 for the last) releases the
instalment for the next funding plan. A reviewer or department head of the program's owner
department confirms (by default as the industry bureau's reviewer), or a finance officer. The
grant refuses an instalment whose previous one is not paid yet; one confirmed after its due date
is accepted (and said to be late); confirming again answers the first confirmation.
"""

from __future__ import annotations

from typing import Annotated

import typer

from grantflow import cli
from services.common.vocabulary import GrantStage, Role, VocabularyError

grant_app = typer.Typer(no_args_is_help=True, help="资助项目 Grants (milestones of instalments).")
milestone_app = typer.Typer(
    no_args_is_help=True,
    help="分期里程碑 Milestones that release the instalments of an award (reviewer, finance).",
)
grant_app.add_typer(milestone_app, name="milestone")

ROLES = {"reviewer": Role.REVIEWER, "head": Role.DEPARTMENT_HEAD, "finance": Role.FINANCE}
MILESTONE_WORDS = {"acceptance": "项目验收", "audit": "专项审计", "award": "资助确定"}


def _stage_word(stage: int) -> str:
    from services.common.labels import LABELS

    try:
        return LABELS[GrantStage.from_proto(stage)]
    except (KeyError, VocabularyError):
        return ""


@milestone_app.command("confirm")
def confirm(
    application_id: Annotated[str, typer.Argument(help="申报编号 application number")],
    instalment: Annotated[int, typer.Option(help="第几期 the instalment it releases (2..n)")],
    note: Annotated[str, typer.Option(help="说明，如验收报告编号 a note")] = "",
    as_: Annotated[
        str, typer.Option("--as", help="身份 reviewer | head | finance (who confirms)")
    ] = "reviewer",
    department: Annotated[str, typer.Option(help="处室 the confirming department")] = "industry",
    token: cli.TokenOpt = "",
    user: cli.UserOpt = "industry-reviewer",
) -> None:
    """确认分期里程碑 Confirm the milestone that releases instalment N of an award."""
    from grantflow.v1 import applications_pb2

    role = ROLES.get(as_)
    if role is None:
        cli.fail(cli.EXIT_USAGE, f"--as 只能是 {' | '.join(ROLES)}（unknown role {as_!r}）")
    settings = cli.get_settings()
    bearer = cli.token_for(
        settings, token, role, user, department="" if role == Role.FINANCE else department
    )
    answer = cli.call(
        bearer,
        "applications",
        lambda c: c.applications.ConfirmMilestone(
            applications_pb2.ConfirmMilestoneRequest(
                application_id=application_id, instalment=instalment, note=note
            )
        ),
    )
    from services.common.workdays import SHANGHAI

    due = answer.due_at.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d")
    words = MILESTONE_WORDS.get(answer.milestone, answer.milestone)
    if answer.repeated:
        head = f"第{answer.instalment}期（共{answer.of}期）的{words}此前已确认"
    else:
        head = f"已确认第{answer.instalment}期（共{answer.of}期）的{words}，该期资金待列入资助计划"
    cli.out().print(head, highlight=False)
    cli.out().print(
        f"确认人：{answer.confirmed_by}；应完成日期：{due}"
        + ("（已逾期，仍予受理）" if answer.late else "")
        + (f"；说明：{answer.note}" if answer.note else "")
        + (f"；当前阶段：{_stage_word(answer.stage)}" if answer.stage else ""),
        highlight=False,
    )
