"""The `grantflow` command: the embedded stack, the demo, and what applicants, reviewers,
finance officers and operators do, over the services' gRPC APIs.

Calls need a bearer token: `--token` (or GRANTFLOW_TOKEN), else a development token is minted
for the identity given by --user/--department/--enterprise with the local AUTH_SECRET.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import grpc
import typer
from rich.console import Console
from rich.table import Table

from grantflow.format import stage_name, yuan
from grantflow.v1 import applications_pb2, disbursement_pb2, review_pb2
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.config import Settings, get_settings
from services.common.process import run_and_exit
from services.common.vocabulary import (
    Decision,
    Department,
    GrantStage,
    PaymentState,
    PlanState,
    Role,
    TaskState,
    VocabularyError,
)
from services.common.workdays import SHANGHAI

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
stack_app = typer.Typer(no_args_is_help=True, help="Start, stop and inspect the embedded stack.")
plan_app = typer.Typer(no_args_is_help=True, help="Funding plans (finance).")
ops_app = typer.Typer(no_args_is_help=True, help="Operations: find, replay, re-drive.")
budget_app = typer.Typer(no_args_is_help=True, help="Program budgets (finance).")
app.add_typer(stack_app, name="stack")
app.add_typer(plan_app, name="plan")
app.add_typer(ops_app, name="ops")
app.add_typer(budget_app, name="budget")
console = Console()
err_console = Console(stderr=True)

TokenOpt = Annotated[str, typer.Option("--token", envvar="GRANTFLOW_TOKEN", help="Bearer token")]
UserOpt = Annotated[str, typer.Option("--user", help="Who you are (development tokens)")]


class CliError(Exception):
    """An error already explained to the user."""


def run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as error:
        err_console.print(f"[red]{error.code().name}[/red]: {error.details()}")
        raise typer.Exit(2) from None


def token_for(
    settings: Settings,
    token: str,
    role: str,
    user: str,
    *,
    department: str = "",
    enterprise: str = "",
) -> str:
    if token:
        return token
    return mint_token(
        settings.auth_secret, user, role, department=department, enterprise=enterprise
    )


async def with_clients(token: str, work: Callable[[ServiceClients], Awaitable[T]]) -> T:
    async with ServiceClients(get_settings(), token) as clients:
        return await work(clients)


# ---------------------------------------------------------------------------------- tokens


@app.command()
def token(
    role: Annotated[str, typer.Option(help="applicant, reviewer, finance, ops or system")],
    user: UserOpt = "dev",
    department: Annotated[str, typer.Option(help="reviewers: industry, finance or hr")] = "",
    enterprise: Annotated[str, typer.Option(help="applicants: credit code")] = "",
    ttl_hours: int = 24 * 30,
) -> None:
    """Mint a development bearer token signed with AUTH_SECRET."""
    try:
        print(
            mint_token(
                get_settings().auth_secret,
                user,
                role,
                department=department,
                enterprise=enterprise,
                ttl_seconds=ttl_hours * 3600,
            )
        )
    except ValueError as error:
        err_console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


# ---------------------------------------------------------------------------------- stack


def _stack(settings: Settings | None = None) -> Any:
    from infra.local.stack import LocalStack

    return LocalStack(settings or get_settings())


@stack_app.command("up")
def stack_up(
    timeout: float = 90.0,
    notice_seconds: Annotated[
        float | None, typer.Option(help="Shorten the public notice to seconds (demos)")
    ] = None,
) -> None:
    """Start the embedded stack in the background and wait until it is ready."""
    from infra.local.stack import read_state

    settings = get_settings()
    if notice_seconds is not None:
        settings = settings.model_copy(update={"notice_period_seconds": notice_seconds})
    if read_state(settings.data_dir.resolve()):
        err_console.print("a stack is already recorded in the data folder; `grantflow stack down`")
        raise typer.Exit(1)
    stack = _stack(settings)
    stack.start(detach=True)
    try:
        stack.wait_ready(timeout)
    except (RuntimeError, TimeoutError) as error:
        err_console.print(f"[red]{error}[/red]")
        stack.stop()
        raise typer.Exit(1) from None
    _print_addresses(stack.addresses())


@stack_app.command("down")
def stack_down() -> None:
    """Stop the stack started by `stack up`."""
    from infra.local.stack import stop_detached

    stopped = stop_detached(get_settings().data_dir.resolve())
    console.print(f"stopped {', '.join(stopped)}" if stopped else "no stack is running")


@stack_app.command("status")
def stack_status() -> None:
    """Show the stack's processes and whether each answers."""
    from infra.local.stack import grpc_serving, pid_alive, port_open, read_state

    state = read_state(get_settings().data_dir.resolve())
    if not state:
        console.print("no stack is running (no state in the data folder)")
        raise typer.Exit(1)
    table = Table("process", "pid", "alive")
    pids: dict[str, int] = state["pids"]  # type: ignore[assignment]
    for name, pid in pids.items():
        table.add_row(name, str(pid), "yes" if pid_alive(pid) else "[red]no[/red]")
    console.print(table)
    addresses: dict[str, str] = state["addresses"]  # type: ignore[assignment]
    checks = Table("endpoint", "address", "answers")
    for name, address in addresses.items():
        if address.startswith("http"):
            ok = port_open(address.split("//", 1)[1])
        elif name in ("applications", "review", "disbursement"):
            ok = grpc_serving(address)
        else:
            ok = port_open(address.split(",")[0])
        checks.add_row(name, address, "yes" if ok else "[red]no[/red]")
    console.print(checks)


def _print_addresses(addresses: dict[str, str]) -> None:
    table = Table("endpoint", "address", title="Grantflow is serving")
    for name, address in addresses.items():
        table.add_row(name, address)
    console.print(table)


@app.command("seed")
def seed(
    ops_token: Annotated[str, typer.Option(help="publishes the catalogue")] = "",
    finance_token: Annotated[str, typer.Option(help="sets the budgets")] = "",
) -> None:
    """Publish the program catalogue and set budgets where none is set (idempotent)."""
    from grantflow.demo import seed_catalogue

    settings = get_settings()
    counts = run(seed_catalogue(settings, ops_token, finance_token))
    console.print(
        f"catalogue: {counts[0]} program versions; budgets of {counts[1]} programs set where none was"
    )


@app.command("demo")
def demo(count: int = 24) -> None:
    """Run the scripted demo against a running stack (best with short timers: see `run`)."""
    from grantflow.demo import run_demo

    settings = get_settings()
    summary = run(run_demo(settings, console, count))
    if not summary.ok:
        raise typer.Exit(1)


@app.command("run")
def run_everything(
    count: Annotated[int, typer.Option(help="applications in the demo")] = 24,
    notice_seconds: float = 5.0,
    serve: Annotated[bool, typer.Option(help="keep serving after the demo")] = True,
) -> None:
    """Start the stack, seed it, run the demo, then serve until Ctrl-C or SIGTERM."""
    from grantflow.demo import run_demo

    started = time.monotonic()
    settings = get_settings().model_copy(
        update={
            "notice_period_seconds": notice_seconds,
            "supplement_period_seconds": 600.0,
            "review_period_seconds": 3600.0,
        }
    )
    console.print(
        f"[bold]Demo timers[/bold]: the 7-working-day public notice lasts {notice_seconds:g} s, "
        "supplement deadlines 10 min and review deadlines 1 h, so the demo finishes in minutes. "
        "Without these overrides the periods are working days on the Chinese holiday calendar."
    )
    stack = _stack(settings)
    stop = {"now": False}

    def request_stop(*_: object) -> None:
        stop["now"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    try:
        with console.status("starting Temporal, Tansu, the services, the worker and intake"):
            stack.start()
            stack.wait_ready(120)
        console.print(
            f"stack ready in {time.monotonic() - started:.1f} s (logs: {settings.data_dir}/logs)"
        )
        summary = run(run_demo(settings, console, count))
        console.print(
            f"demo finished {time.monotonic() - started:.1f} s after `grantflow run` started "
            "the stack"
        )
        _print_addresses(stack.addresses())
        if not summary.ok:
            raise typer.Exit(1)
        if serve:
            console.print("serving; Ctrl-C or SIGTERM stops every process")
            while not stop["now"]:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        with console.status("stopping every process"):
            stack.stop()
        console.print("stopped")


# ---------------------------------------------------------------------------------- applicants


@app.command()
def submit(
    program: Annotated[str, typer.Option(help="program code, e.g. SME-CLOUD")],
    credit_code: Annotated[str, typer.Option(help="applicant's unified social credit code")],
    name: Annotated[str, typer.Option(help="applicant's name")],
    title: Annotated[str, typer.Option(help="project title")],
    figure: Annotated[list[str], typer.Option(help="name=value (fen for *_fen), repeatable")] = [],  # noqa: B006
    request_id: Annotated[str, typer.Option(help="idempotency key (default: generated)")] = "",
    token: TokenOpt = "",
) -> None:
    """File an application."""
    import uuid

    settings = get_settings()
    figures = {}
    for item in figure:
        key, _, value = item.partition("=")
        try:
            figures[key] = int(value)
        except ValueError:
            err_console.print(f"[red]figure {key!r} must be an integer (fen or a count)[/red]")
            raise typer.Exit(2) from None
    bearer = token_for(settings, token, Role.APPLICANT, credit_code, enterprise=credit_code)
    request = applications_pb2.SubmitApplicationRequest(
        request_id=request_id or uuid.uuid4().hex,
        program_code=program,
        applicant_credit_code=credit_code,
        applicant_name=name,
        project_title=title,
        figures=figures,
    )
    answer = run(with_clients(bearer, lambda c: c.applications.SubmitApplication(request)))
    console.print(f"submitted {answer.application_id} (workflow {answer.workflow_id})")


@app.command()
def status(application_id: str, token: TokenOpt = "", user: UserOpt = "ops") -> None:
    """Show an application and the status the applicant sees."""
    bearer = token_for(get_settings(), token, Role.OPS, user)
    a = run(
        with_clients(
            bearer,
            lambda c: c.applications.GetApplication(
                applications_pb2.GetApplicationRequest(application_id=application_id)
            ),
        )
    )
    console.print(
        f"{a.application_id} {a.program_code} v{a.rule_version} {a.applicant_name} "
        f"[bold]{stage_name(a.status)}[/bold] {a.status_reason} award {yuan(a.award_amount_fen)}"
    )


@app.command()
def withdraw(
    application_id: str,
    reason: str = "withdrawn by the applicant",
    credit_code: Annotated[str, typer.Option(help="applicant's credit code")] = "",
    token: TokenOpt = "",
) -> None:
    """Withdraw an application."""
    settings = get_settings()
    bearer = (
        token_for(settings, token, Role.APPLICANT, credit_code, enterprise=credit_code)
        if credit_code
        else token_for(settings, token, Role.OPS, "ops")  # an operator withdraws on request
    )
    run(
        with_clients(
            bearer,
            lambda c: c.applications.WithdrawApplication(
                applications_pb2.WithdrawApplicationRequest(
                    application_id=application_id, reason=reason
                )
            ),
        )
    )
    console.print(f"withdrawal of {application_id} requested")


# ---------------------------------------------------------------------------------- reviewers


def _department(value: str) -> str:
    try:
        return Department.parse(value)
    except VocabularyError:
        raise typer.BadParameter(f"one of {', '.join(Department)}") from None


@app.command()
def tasks(
    department: Annotated[str, typer.Option(callback=_department)] = Department.INDUSTRY.value,
    user: UserOpt = "reviewer",
    mine: bool = False,
    overdue: bool = False,
    token: TokenOpt = "",
) -> None:
    """List your department's open review tasks."""
    bearer = token_for(get_settings(), token, Role.REVIEWER, user, department=department)
    request = review_pb2.ListTasksRequest(
        department=Department.parse(department).to_proto(),
        assignee=user if mine else "",
        filter=review_pb2.TASK_FILTER_OVERDUE if overdue else review_pb2.TASK_FILTER_OPEN,
    )
    answer = run(with_clients(bearer, lambda c: c.review.ListTasks(request)))
    table = Table("task", "application", "program", "round", "state", "assignee", "proposed", "due")
    for t in answer.tasks:
        table.add_row(
            t.task_id,
            t.application_id,
            t.program_code,
            str(t.round),
            TaskState.from_proto(t.state).name,
            t.assignee,
            yuan(t.proposed_amount_fen),
            t.due_at.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M")
            + (" overdue" if t.overdue else ""),
        )
    console.print(table)


@app.command()
def claim(
    task_id: str,
    department: Annotated[str, typer.Option(callback=_department)] = Department.INDUSTRY.value,
    user: UserOpt = "reviewer",
    token: TokenOpt = "",
) -> None:
    """Claim a review task."""
    bearer = token_for(get_settings(), token, Role.REVIEWER, user, department=department)
    run(
        with_clients(
            bearer, lambda c: c.review.ClaimTask(review_pb2.ClaimTaskRequest(task_id=task_id))
        )
    )
    console.print(f"claimed {task_id}")


@app.command()
def decide(
    task_id: str,
    decision: Annotated[str, typer.Argument(help="approve, reject or return")],
    reason: str = "",
    amount_fen: Annotated[int, typer.Option(help="approve a lower amount (fen)")] = 0,
    department: Annotated[str, typer.Option(callback=_department)] = Department.INDUSTRY.value,
    user: UserOpt = "reviewer",
    token: TokenOpt = "",
) -> None:
    """Decide a claimed review task."""
    try:
        term = Decision.parse(decision)
    except VocabularyError:
        raise typer.BadParameter(", ".join(Decision)) from None
    bearer = token_for(get_settings(), token, Role.REVIEWER, user, department=department)
    request = review_pb2.DecideTaskRequest(
        task_id=task_id, decision=term.to_proto(), reason=reason, approved_amount_fen=amount_fen
    )
    run(with_clients(bearer, lambda c: c.review.DecideTask(request)))
    console.print(f"{decision}: {task_id}")


# ---------------------------------------------------------------------------------- finance


@budget_app.command("show")
def budget_show(program: str, token: TokenOpt = "", user: UserOpt = "finance") -> None:
    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    b = run(
        with_clients(
            bearer,
            lambda c: c.disbursement.GetProgramBudget(
                disbursement_pb2.GetProgramBudgetRequest(program_code=program)
            ),
        )
    )
    console.print(
        f"{program}: total {yuan(b.total_fen)}, reserved {yuan(b.reserved_fen)}, "
        f"paid {yuan(b.paid_fen)}, available {yuan(b.available_fen)}"
    )


@plan_app.command("create")
def plan_create(
    program: str, title: str = "", user: UserOpt = "finance-maker", token: TokenOpt = ""
) -> None:
    """Collect a program's noticed awards into a funding plan (you are the maker)."""
    import uuid

    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    request = disbursement_pb2.CreateFundingPlanRequest(
        request_id=uuid.uuid4().hex, program_code=program, title=title or f"{program} funding plan"
    )
    plan = run(with_clients(bearer, lambda c: c.disbursement.CreateFundingPlan(request)))
    console.print(f"plan {plan.plan_id}: {len(plan.lines)} lines, {yuan(plan.total_fen)}")


@plan_app.command("approve")
def plan_approve(plan_id: str, user: UserOpt = "finance-checker", token: TokenOpt = "") -> None:
    """Approve a funding plan (you are the checker, not its maker); payment starts."""
    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    plan = run(
        with_clients(
            bearer,
            lambda c: c.disbursement.ApproveFundingPlan(
                disbursement_pb2.ApproveFundingPlanRequest(plan_id=plan_id)
            ),
        )
    )
    console.print(
        f"plan {plan.plan_id} approved by {plan.approved_by}; workflow plan-{plan.plan_id}"
    )


@plan_app.command("show")
def plan_show(plan_id: str, user: UserOpt = "finance", token: TokenOpt = "") -> None:
    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    plan = run(
        with_clients(
            bearer,
            lambda c: c.disbursement.GetFundingPlan(
                disbursement_pb2.GetFundingPlanRequest(plan_id=plan_id)
            ),
        )
    )
    table = Table("line", "application", "payee", "amount", "state", "reference", title=plan.title)
    for line in plan.lines:
        table.add_row(
            line.line_id,
            line.application_id,
            line.applicant_name,
            yuan(line.amount_fen),
            PaymentState.from_proto(line.state).name,
            line.gateway_reference,
        )
    console.print(table)
    console.print(
        f"state {PlanState.from_proto(plan.state).name}, "
        f"maker {plan.created_by}, checker {plan.approved_by}, total {yuan(plan.total_fen)}"
    )


# ---------------------------------------------------------------------------------- ops


@ops_app.command("replay")
def ops_replay(
    workflow_id: str,
    save: Annotated[Path | None, typer.Option(help="also write the history as JSON here")] = None,
) -> None:
    """Replay a running or closed workflow's history against the current code."""
    from grantflow.ops import replay_workflow

    report = asyncio.run(replay_workflow(get_settings(), workflow_id, save))
    if report.error:
        err_console.print(f"[red]NONDETERMINISM[/red] in {workflow_id}: {report.error}")
        raise typer.Exit(1)
    console.print(
        f"{workflow_id}: {report.events} events replayed against the current code; deterministic"
    )


def _stage(value: str) -> str:
    try:
        return GrantStage.parse(value.upper()) if value else ""
    except VocabularyError:
        raise typer.BadParameter(f"one of {', '.join(GrantStage)}") from None


@ops_app.command("find")
def ops_find(
    stage: Annotated[str, typer.Option(callback=_stage)] = "",
    program: str = "",
    applicant: str = "",
    limit: int = 50,
) -> None:
    """Find grants by business keys (search attributes), like `temporal workflow list --query`."""
    from grantflow.ops import find_grants

    rows = asyncio.run(find_grants(get_settings(), stage, program, applicant, limit))
    table = Table("workflow", "status", "stage", "program", "applicant")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@ops_app.command("redrive")
def ops_redrive(
    stream: Annotated[str, typer.Argument(help="applications, grants, review or disbursement")],
) -> None:
    """Send a topic's dead-lettered events back to it."""
    from services.common import kafka

    settings = get_settings()
    moved = asyncio.run(kafka.redrive(settings, kafka.topic(settings, stream)))
    console.print(f"re-drove {moved} events to {kafka.topic(settings, stream)}")


@ops_app.command("events")
def ops_events(
    stream: Annotated[str, typer.Argument(help="applications, grants, review or disbursement")],
    limit: int = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read events from the broker with a plain Kafka client and decode them with the protos."""
    from grantflow.ops import read_events

    for envelope in asyncio.run(read_events(get_settings(), stream, limit)):
        if as_json:
            from google.protobuf.json_format import MessageToDict

            print(json.dumps(MessageToDict(envelope), ensure_ascii=False))
        else:
            console.print(f"{envelope.type} {envelope.subject} {envelope.event_id}")


def main() -> None:
    def entry() -> int:
        try:
            app(standalone_mode=False)
        except typer.Exit as done:
            return int(done.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            return 130
        except Exception as error:
            # Usage errors come from the click that typer bundles; they know how to show
            # themselves and which exit status they mean.
            show, exit_code = getattr(error, "show", None), getattr(error, "exit_code", None)
            if callable(show) and isinstance(exit_code, int):
                show()
                return exit_code
            raise
        return 0

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.stdout.flush()
    run_and_exit(entry)


if __name__ == "__main__":
    main()
