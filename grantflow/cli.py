"""The `grantflow` command: the embedded stack, the demo, and what applicants, reviewers,
finance officers and operators do, over the services' gRPC APIs.

Calls need a bearer token: `--token` (or GRANTFLOW_TOKEN), else a development token is minted
for the identity given by --user/--department/--enterprise with the local AUTH_SECRET.

Exit status: 0 done, 1 refused or failed (the message says why), 2 usage error, 3 a service could
not be reached, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

# Start-up time is what a person waits for on every command: this module imports only typer.
# Each command imports what it needs (gRPC stubs, settings, rich tables, Temporal, the demo).
if TYPE_CHECKING:
    from rich.console import Console

    from services.common.clients import ServiceClients
    from services.common.config import Settings

# The vocabulary loads no protos until a term is mapped to one, so it is cheap to import here.
from services.common.vocabulary import (
    AuditBreak,
    Decision,
    Department,
    GrantStage,
    PaymentState,
    PlanState,
    Role,
    TaskState,
    VocabularyError,
)

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
stack_app = typer.Typer(no_args_is_help=True, help="Start, stop and inspect the embedded stack.")
plan_app = typer.Typer(no_args_is_help=True, help="Funding plans (finance).")
ops_app = typer.Typer(no_args_is_help=True, help="Operations: find, show, replay, re-drive.")
ops_stack_app = typer.Typer(
    no_args_is_help=True, help="Any deployment's health (settings' addresses)."
)
budget_app = typer.Typer(
    no_args_is_help=True, help="预算科目与项目预算 Budget lines and program budgets (finance)."
)
app.add_typer(stack_app, name="stack")
app.add_typer(plan_app, name="plan")
app.add_typer(ops_app, name="ops")
app.add_typer(budget_app, name="budget")
audit_app = typer.Typer(
    no_args_is_help=True, help="Audit trails: verify each service's hash chain, show a grant's."
)
ops_app.add_typer(audit_app, name="audit")
ops_app.add_typer(ops_stack_app, name="stack")

TokenOpt = Annotated[str, typer.Option("--token", envvar="GRANTFLOW_TOKEN", help="Bearer token")]
UserOpt = Annotated[str, typer.Option("--user", help="Who you are (development tokens)")]


@cache
def out() -> Console:
    from rich.console import Console

    return Console()


@cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def get_settings() -> Settings:
    from services.common.config import get_settings as settings_from_environment

    return settings_from_environment()


EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3

# What each status means to the person at the terminal; the code name follows for searching.
STATUS_WORDS = {
    "INVALID_ARGUMENT": "参数无效",
    "NOT_FOUND": "未找到",
    "ALREADY_EXISTS": "已存在",
    "PERMISSION_DENIED": "无权限",
    "UNAUTHENTICATED": "未认证",
    "FAILED_PRECONDITION": "当前状态不允许",
    "RESOURCE_EXHAUSTED": "资源不足",
    "DEADLINE_EXCEEDED": "超时",
    "UNAVAILABLE": "服务不可用",
    "INTERNAL": "服务内部错误",
}
# Connection failures of the Temporal and Kafka clients, recognised without importing them here.
UNREACHABLE_ERRORS = {"NoBrokersAvailable", "KafkaConnectionError", "KafkaTimeoutError"}


def fail(status: int, message: str) -> NoReturn:
    """Explains a failure on stderr and ends the command with `status`."""
    err().print(message, highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(status)


def unreachable(service: str, address: str, detail: str) -> NoReturn:
    fail(
        EXIT_UNREACHABLE,
        f"无法连接 {service}（{address}）：服务没有运行或地址有误；"
        f"`grantflow stack status` 可查看本地栈。\n(could not reach {service} at {address}: {detail})",
    )


def run(work: Awaitable[T], service: str = "", address: str = "") -> T:
    """Runs one asynchronous operation of a command; a refusal or an unreachable service ends
    the command with a message and its exit status, never a traceback."""
    import asyncio

    import grpc

    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as error:
        code, details = error.code().name, error.details() or ""
        if code == "UNAVAILABLE" and service:
            unreachable(service, address, details)
        status = EXIT_UNREACHABLE if code == "UNAVAILABLE" else EXIT_FAILED
        fail(status, f"{STATUS_WORDS.get(code, '失败')}（{code}）：{details}")
    except Exception as error:
        connect_failed = isinstance(error, OSError) or "Failed client connect" in str(error)
        if service and (connect_failed or type(error).__name__ in UNREACHABLE_ERRORS):
            unreachable(service, address, str(error) or type(error).__name__)
        raise


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
    from services.common.auth import mint_token

    return mint_token(
        settings.auth_secret, user, role, department=department, enterprise=enterprise
    )


async def with_clients(token: str, work: Callable[[ServiceClients], Awaitable[T]]) -> T:
    from services.common.clients import ServiceClients

    async with ServiceClients(get_settings(), token) as clients:
        return await work(clients)


def call(token: str, service: str, rpc: Callable[[ServiceClients], Awaitable[T]]) -> T:
    """One RPC to one service (applications, review or disbursement) as the token's caller."""
    address = getattr(get_settings(), f"{service}_address")
    return run(with_clients(token, rpc), service, address)


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
    from services.common.auth import mint_token

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
        fail(EXIT_USAGE, f"无法签发令牌 (cannot mint the token): {error}")


# ---------------------------------------------------------------------------------- stack


def _stack(settings: Settings | None = None) -> Any:
    from infra.local.stack import EmbeddedPackageMissing, LocalStack

    stack = LocalStack(settings or get_settings())
    try:
        stack.specs()  # finds the binaries: say what to install before anything starts
    except EmbeddedPackageMissing as missing:
        fail(EXIT_FAILED, f"嵌入式栈所需的软件包没有安装 (not installed): {missing}")
    return stack


@stack_app.command("up")
def stack_up(
    timeout: float = 90.0,
    notice_seconds: Annotated[
        float | None, typer.Option(help="Shorten the public notice to seconds (demos)")
    ] = None,
) -> None:
    """Start the embedded stack in the background and wait until it is ready."""
    settings = get_settings()
    if notice_seconds is not None:
        settings = settings.model_copy(update={"notice_period_seconds": notice_seconds})
    _refuse_a_running_stack(settings)
    stack = _stack(settings)
    stack.start(detach=True)
    try:
        stack.wait_ready(timeout)
    except (RuntimeError, TimeoutError) as error:
        stack.stop()
        fail(EXIT_FAILED, f"栈没有启动 (the stack did not start): {error}")
    _print_addresses(stack.addresses())


def _refuse_a_running_stack(settings: Settings) -> None:
    """Refuses while a recorded stack still runs; forgets one whose processes all died (killed,
    crashed, a reboot) so that it can start again."""
    from infra.local.stack import forget_state, recorded_processes

    data_dir = settings.data_dir.resolve()
    processes = recorded_processes(data_dir)
    if processes is None:
        return
    running = [name for name, alive in processes.items() if alive]
    if running:
        fail(
            EXIT_FAILED,
            f"{data_dir} 记录的栈仍在运行（{', '.join(running)}）；先执行 `grantflow stack down`。\n"
            f"(a stack recorded in {data_dir} still runs: {', '.join(running)})",
        )
    forget_state(data_dir)
    err().print(
        "上次的栈没有正常停止，记录的进程都已不在运行；已清除记录，重新启动。\n"
        "(the recorded stack was not stopped cleanly and none of its processes runs: "
        "record cleared)",
        highlight=False,
        markup=False,
    )


@stack_app.command("down")
def stack_down() -> None:
    """Stop the stack started by `stack up`."""
    from infra.local.stack import stop_detached

    stopped = stop_detached(get_settings().data_dir.resolve())
    out().print(f"stopped {', '.join(stopped)}" if stopped else "no stack is running")


@stack_app.command("status")
def stack_status() -> None:
    """Show the stack's processes and whether each answers."""
    from rich.table import Table

    from infra.local.stack import grpc_serving, is_ours, port_open, read_state

    data_dir = get_settings().data_dir.resolve()
    state = read_state(data_dir)
    if not state:
        fail(
            EXIT_FAILED,
            "没有正在运行的栈；用 `grantflow stack up` 启动。\n"
            f"(no stack is recorded in {data_dir})",
        )
    table = Table("process", "pid", "alive")
    pids: dict[str, int] = state.get("pids", {})  # type: ignore[assignment]
    argv: dict[str, list[str]] = state.get("argv", {})  # type: ignore[assignment]
    stopped = [name for name, pid in pids.items() if not is_ours(pid, argv.get(name))]
    for name, pid in pids.items():
        table.add_row(name, str(pid), "[red]no[/red]" if name in stopped else "yes")
    out().print(table)
    addresses: dict[str, str] = state.get("addresses", {})  # type: ignore[assignment]
    checks = Table("endpoint", "address", "answers")
    silent = []
    for name, address in addresses.items():
        if address.startswith("http"):
            ok = port_open(address.split("//", 1)[1].split("/", 1)[0])
        elif name in ("applications", "review", "disbursement"):
            ok = grpc_serving(address)
        else:
            ok = port_open(address.split(",")[0])
        if not ok:
            silent.append(name)
        checks.add_row(name, address, "yes" if ok else "[red]no[/red]")
    out().print(checks)
    if stopped or silent or not pids:
        fail(
            EXIT_FAILED,
            "栈没有完全运行：全部进程都已停止时 `grantflow stack up` 会清理并重新启动，"
            "否则先 `grantflow stack down`。\n"
            f"(not running: {', '.join(stopped) or '-'}; not answering: {', '.join(silent) or '-'})",
        )


def _print_addresses(addresses: dict[str, str]) -> None:
    from rich.table import Table

    table = Table("服务端点", "地址", title="Grantflow 服务中")
    for name, address in addresses.items():
        table.add_row("控制台 (console)" if name == "console" else name, address)
    out().print(table)
    if "console" in addresses:
        out().print(
            f"[bold]控制台[/bold]：浏览器打开 {addresses['console']}，以开发身份登录"
            "（角色、部门或企业、用户名）"
        )


@app.command("seed")
def seed(
    ops_token: Annotated[str, typer.Option(help="publishes the catalogue")] = "",
    finance_token: Annotated[str, typer.Option(help="sets the budgets")] = "",
) -> None:
    """Publish the program catalogue, set budgets where none is set and add the local expert
    pool (idempotent)."""
    from grantflow.demo import seed_catalogue, seed_experts

    settings = get_settings()
    counts = run(seed_catalogue(settings, ops_token, finance_token))
    experts = run(seed_experts(settings, ops_token))
    out().print(
        f"项目目录：{counts[0]} 个项目版本；新设预算 {counts[1]} 项（预算行年度及项目自有预算，"
        f"已设的不变）；专家库 {experts} 位专家"
    )


@app.command("demo")
def demo(count: int = 24) -> None:
    """Run the scripted demo against a running stack (best with short timers: see `run`)."""
    from grantflow.demo import run_demo

    settings = get_settings()
    summary = run(run_demo(settings, out(), count))
    if not summary.ok:
        raise typer.Exit(1)


@app.command("run")
def run_everything(
    count: Annotated[int, typer.Option(help="applications in the demo (1-24)")] = 24,
    notice_seconds: float = 5.0,
    serve: Annotated[bool, typer.Option(help="keep serving after the demo")] = True,
) -> None:
    """Start the stack, seed it, run the demo, then serve until Ctrl-C or SIGTERM."""
    import signal
    import time

    from grantflow.demo import run_demo

    started = time.monotonic()
    settings = get_settings().model_copy(
        update={
            "notice_period_seconds": notice_seconds,
            "notice_batch_seconds": 3.0,
            "supplement_period_seconds": 600.0,
            "review_period_seconds": 3600.0,
        }
    )
    out().print(
        f"[bold]演示计时[/bold]：7 个工作日的公示缩短为 {notice_seconds:g} 秒，同批公示汇集 3 秒，"
        "补正期限 10 分钟，评审期限 1 小时，演示几分钟内完成；不缩短时各期限按中国法定节假日日历的"
        "工作日计算。(Demo timers: shortened as above; otherwise working days.)"
    )
    _refuse_a_running_stack(settings)
    stack = _stack(settings)
    stop = {"now": False}

    def request_stop(*_: object) -> None:
        stop["now"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    try:
        with out().status("正在启动 Temporal、Tansu、三个服务、worker、intake 和控制台"):
            stack.start()
            stack.wait_ready(120)
        out().print(
            f"系统已就绪，用时 {time.monotonic() - started:.1f} 秒（日志：{settings.data_dir}/logs）"
        )
        summary = run(run_demo(settings, out(), count))
        out().print(f"演示完成：自 `grantflow run` 启动起 {time.monotonic() - started:.1f} 秒")
        _print_addresses(stack.addresses())
        if not summary.ok:
            raise typer.Exit(1)
        if serve:
            out().print("服务中；Ctrl-C 或 SIGTERM 停止全部进程")
            while not stop["now"]:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        with out().status("正在停止全部进程"):
            stack.stop()
        out().print("已停止")


# ---------------------------------------------------------------------------------- applicants


def _document(item: str) -> Any:
    """`name=path` of a local file: a document reference with the file's URI and SHA-256 (the
    document store is outside Grantflow; the hash lets a reviewer check the file is the one
    filed)."""
    import hashlib

    from grantflow.v1 import common_pb2

    name, _, path = item.partition("=")
    file = Path(path).expanduser()
    if not name or not file.is_file():
        err().print(
            f"[red]--document {item!r}: give 名称=一个存在的文件 (name=an existing file)[/red]"
        )
        raise typer.Exit(2)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    return common_pb2.DocumentRef(name=name, uri=file.resolve().as_uri(), sha256=digest)


@app.command()
def submit(
    program: Annotated[str, typer.Option(help="program code, e.g. SME-CLOUD")],
    credit_code: Annotated[str, typer.Option(help="applicant's unified social credit code")],
    name: Annotated[str, typer.Option(help="applicant's name")],
    title: Annotated[str, typer.Option(help="project title")],
    figure: Annotated[list[str], typer.Option(help="name=value (fen for *_fen), repeatable")] = [],  # noqa: B006
    request_id: Annotated[str, typer.Option(help="idempotency key (default: generated)")] = "",
    project_code: Annotated[
        str, typer.Option(help="项目编号, e.g. 备案号 (duplicate funding; default: the title)")
    ] = "",
    document: Annotated[
        list[str],
        typer.Option(help="申报材料 name=local file (its SHA-256 is sent), repeatable"),
    ] = [],  # noqa: B006
    token: TokenOpt = "",
) -> None:
    """File an application, with the program's required documents (材料)."""
    import uuid

    from grantflow.v1 import applications_pb2

    settings = get_settings()
    documents = [_document(item) for item in document]
    figures = {}
    for item in figure:
        key, _, value = item.partition("=")
        try:
            figures[key] = int(value)
        except ValueError:
            err().print(f"[red]figure {key!r} must be an integer (fen or a count)[/red]")
            raise typer.Exit(2) from None
    bearer = token_for(settings, token, Role.APPLICANT, credit_code, enterprise=credit_code)
    request = applications_pb2.SubmitApplicationRequest(
        request_id=request_id or uuid.uuid4().hex,
        program_code=program,
        applicant_credit_code=credit_code,
        applicant_name=name,
        project_title=title,
        figures=figures,
        project_code=project_code,
        documents=documents,
    )
    answer = call(bearer, "applications", lambda c: c.applications.SubmitApplication(request))
    out().print(f"submitted {answer.application_id} (workflow {answer.workflow_id})")


@app.command()
def status(application_id: str, token: TokenOpt = "", user: UserOpt = "ops") -> None:
    """Show an application and the status the applicant sees."""
    from grantflow.format import stage_name, yuan
    from grantflow.v1 import applications_pb2

    bearer = token_for(get_settings(), token, Role.OPS, user)
    a = call(
        bearer,
        "applications",
        lambda c: c.applications.GetApplication(
            applications_pb2.GetApplicationRequest(application_id=application_id)
        ),
    )
    out().print(
        f"{a.application_id} {a.program_code} v{a.rule_version} {a.applicant_name} "
        f"[bold]{stage_name(a.status)}[/bold] {a.status_reason} award {yuan(a.award_amount_fen)}"
    )
    from grantflow.eligibility_cli import print_eligibility

    if a.project_code:
        out().print(f"项目编号：{a.project_code}", highlight=False)
    print_eligibility(a)


@app.command()
def withdraw(
    application_id: str,
    reason: str = "申请单位撤回申请",
    credit_code: Annotated[str, typer.Option(help="applicant's credit code")] = "",
    token: TokenOpt = "",
) -> None:
    """Withdraw an application."""
    from grantflow.v1 import applications_pb2

    settings = get_settings()
    bearer = (
        token_for(settings, token, Role.APPLICANT, credit_code, enterprise=credit_code)
        if credit_code
        else token_for(settings, token, Role.OPS, "ops")  # an operator withdraws on request
    )
    answer = call(
        bearer,
        "applications",
        lambda c: c.applications.WithdrawApplication(
            applications_pb2.WithdrawApplicationRequest(
                application_id=application_id, reason=reason
            )
        ),
    )
    # The grant answers once it has honoured the withdrawal; one not started yet takes it as
    # it starts.
    if GrantStage.from_proto(answer.status) == GrantStage.WITHDRAWN:
        out().print(f"已撤回 withdrawn: {application_id}")
    else:
        out().print(f"撤回申请已提交 withdrawal filed, taken as the grant starts: {application_id}")


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
    head: Annotated[bool, typer.Option(help="以处室负责人身份 (as department head)")] = False,
    token: TokenOpt = "",
) -> None:
    """Your department's open review tasks, highest priority first (--mine, --overdue)."""
    from rich.table import Table

    from grantflow.format import yuan
    from grantflow.v1 import review_pb2
    from services.common.labels import label
    from services.common.vocabulary import ReviewStage
    from services.common.workdays import SHANGHAI

    role = Role.DEPARTMENT_HEAD if head else Role.REVIEWER
    bearer = token_for(get_settings(), token, role, user, department=department)
    if mine:
        task_filter = review_pb2.TASK_FILTER_MINE
    elif overdue:
        task_filter = review_pb2.TASK_FILTER_OVERDUE
    else:
        task_filter = review_pb2.TASK_FILTER_OPEN
    request = review_pb2.ListTasksRequest(
        department=Department.parse(department).to_proto(), filter=task_filter
    )
    answer = call(bearer, "review", lambda c: c.review.ListTasks(request))
    table = Table(
        "task", "application", "program", "环节 stage", "round", "state", "assignee",
        "优先级", "proposed", "due",
    )  # fmt: skip
    for t in answer.tasks:
        stage = ReviewStage.from_proto(t.stage) if t.stage else ReviewStage.DEPARTMENT_REVIEW
        table.add_row(
            t.task_id,
            t.application_id,
            t.program_code,
            label(stage),
            str(t.round),
            TaskState.from_proto(t.state).name,
            t.assignee,
            str(t.priority),
            yuan(t.proposed_amount_fen),
            t.due_at.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M")
            + (" overdue" if t.overdue else ""),
        )
    out().print(table)
    counts = answer.counts
    out().print(
        f"待办 {counts.open}（未领取 {counts.unclaimed}，我的 {counts.mine}，逾期 {counts.overdue}）"
        f" open {counts.open}, unclaimed {counts.unclaimed}, mine {counts.mine}, "
        f"overdue {counts.overdue}",
        highlight=False,
    )


@app.command()
def claim(
    task_id: str,
    department: Annotated[str, typer.Option(callback=_department)] = Department.INDUSTRY.value,
    user: UserOpt = "reviewer",
    token: TokenOpt = "",
) -> None:
    """Claim a review task."""
    from grantflow.v1 import review_pb2

    bearer = token_for(get_settings(), token, Role.REVIEWER, user, department=department)
    call(
        bearer, "review", lambda c: c.review.ClaimTask(review_pb2.ClaimTaskRequest(task_id=task_id))
    )
    out().print(f"claimed {task_id}")


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
    from grantflow.v1 import review_pb2

    try:
        term = Decision.parse(decision)
    except VocabularyError:
        raise typer.BadParameter(", ".join(Decision)) from None
    bearer = token_for(get_settings(), token, Role.REVIEWER, user, department=department)
    request = review_pb2.DecideTaskRequest(
        task_id=task_id, decision=term.to_proto(), reason=reason, approved_amount_fen=amount_fen
    )
    call(bearer, "review", lambda c: c.review.DecideTask(request))
    out().print(f"{decision}: {task_id}")


# ---------------------------------------------------------------------------------- finance


@budget_app.command("show")
def budget_show(program: str, token: TokenOpt = "", user: UserOpt = "finance") -> None:
    from grantflow.format import yuan
    from grantflow.v1 import disbursement_pb2

    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    b = call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.GetProgramBudget(
            disbursement_pb2.GetProgramBudgetRequest(program_code=program)
        ),
    )
    out().print(
        f"{program}: total {yuan(b.total_fen)}, reserved {yuan(b.reserved_fen)}, "
        f"paid {yuan(b.paid_fen)}, available {yuan(b.available_fen)}"
    )
    if b.budget_line_code:
        out().print(
            f"预算科目 {b.budget_line_code} {b.fiscal_year} 年度，总额 {yuan(b.line_total_fen)}；"
            f"候补 {b.waitlisted_count} 项 {yuan(b.waitlisted_fen)}"
        )


@budget_app.command("lines")
def budget_lines(
    year: Annotated[int, typer.Option(help="年度 fiscal year; 0 = every year")] = 0,
    fund: Annotated[str, typer.Option(help="资金代码 fund code; empty = every fund")] = "",
    token: TokenOpt = "",
    user: UserOpt = "finance",
) -> None:
    """预算科目一览 The budget lines: fund, support plan, line, year and their money."""
    from rich.table import Table

    from grantflow.format import yuan
    from grantflow.v1 import disbursement_pb2

    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    answer = call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.ListBudgetLines(
            disbursement_pb2.ListBudgetLinesRequest(fiscal_year=year, fund_code=fund)
        ),
    )
    table = Table(
        "资金", "扶持计划", "预算科目", "年度", "总额", "已预留", "已拨付", "可用", title="预算科目"
    )
    for line in answer.lines:
        table.add_row(
            line.fund.name,
            line.support_plan.name,
            f"{line.name} ({line.line_code})",
            str(line.fiscal_year),
            yuan(line.total_fen),
            yuan(line.reserved_fen),
            yuan(line.paid_fen),
            yuan(line.available_fen),
        )
    out().print(table)
    if not answer.lines:
        out().print("没有预算科目 (no budget lines)")


@budget_app.command("set-line")
def budget_set_line(
    line: str,
    year: int,
    total_fen: Annotated[int, typer.Argument(help="总额（分） total in fen")],
    reason: Annotated[str, typer.Option(help="理由，记入审计 reason, audited")] = "",
    token: TokenOpt = "",
    user: UserOpt = "finance",
) -> None:
    """设定已有预算科目某年度的总额 Set a known budget line's total for a year (never below
    what is reserved or paid)."""
    from grantflow.format import yuan
    from grantflow.v1 import disbursement_pb2

    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    answer = call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.SetBudgetLine(
            disbursement_pb2.SetBudgetLineRequest(
                line_code=line, fiscal_year=year, total_fen=total_fen, reason=reason
            )
        ),
    )
    out().print(
        f"{answer.line_code} {answer.fiscal_year}: 总额 {yuan(answer.total_fen)}，"
        f"可用 {yuan(answer.available_fen)}（第 {answer.revision} 版）"
    )


def _plan_summary(plan: Any, verb: str) -> None:
    """A plan's headline and its totals per program, Chinese first."""
    from grantflow.format import yuan

    where = f"预算科目 {plan.budget_line_code}，" if plan.budget_line_code else ""
    approvals = "，需二级审批" if plan.second_approval_required else ""
    out().print(
        f"资助计划 {plan.plan_id} {verb}（草稿）：{where}{len(plan.lines)} 个项目，"
        f"合计 {yuan(plan.total_fen)}{approvals}"
        f"（plan {plan.plan_id}: {len(plan.lines)} lines, {yuan(plan.total_fen)}）",
        highlight=False,
        soft_wrap=True,
    )
    for program in plan.programs:
        out().print(
            f"  项目类别 {program.program_code}：{program.line_count} 个项目，"
            f"{yuan(program.amount_fen)}",
            highlight=False,
            soft_wrap=True,
        )


def _application_ids(listed: list[str], from_file: Path | None) -> list[str]:
    """Ids given on the command line, then those of the file (one a line; blank lines and
    lines starting with # skipped)."""
    ids = list(listed)
    if from_file is not None:
        for raw in from_file.read_text(encoding="utf-8").splitlines():
            text = raw.strip()
            if text and not text.startswith("#"):
                ids.append(text.split(",")[0].strip())
    return ids


@plan_app.command("create")
def plan_create(
    program_arg: Annotated[
        str, typer.Argument(metavar="[PROGRAM]", help="one program's awards (the first form)")
    ] = "",
    title: str = "",
    budget_line: Annotated[
        str, typer.Option("--budget-line", help="预算科目：the awards of this budget line")
    ] = "",
    program: Annotated[
        list[str] | None,
        typer.Option("--program", help="项目类别 (repeatable): only these programs of the line"),
    ] = None,
    application: Annotated[
        list[str] | None,
        typer.Option("--application", help="申报编号 (repeatable): exactly these awards"),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", help="a file of application ids, one a line (or CSV)"),
    ] = None,
    year: Annotated[int, typer.Option("--year", help="only the line's awards of this year")] = 0,
    awarded_before: Annotated[
        str, typer.Option("--awarded-before", help="YYYY-MM-DD: awards noticed before this day")
    ] = "",
    max_lines: Annotated[
        int, typer.Option("--max-lines", help="at most this many awards, oldest first")
    ] = 0,
    user: UserOpt = "finance-maker",
    token: TokenOpt = "",
) -> None:
    """编制资助计划 Collect noticed awards into a funding plan (you are the maker): one program's
    (PROGRAM), a budget line's programs by filter, or a list of application ids."""
    import uuid
    from datetime import date, datetime, timedelta, timezone

    from google.protobuf.timestamp_pb2 import Timestamp

    from grantflow.v1 import disbursement_pb2

    ids = _application_ids(application or [], from_file)
    programs = list(program or [])
    if not (program_arg or budget_line or programs or ids):
        raise typer.BadParameter(
            "请指定项目类别、预算科目或申报编号 (give a program, --budget-line, --program or "
            "--application/--from-file)"
        )
    label = program_arg or budget_line or ",".join(programs) or f"{len(ids)} 项"
    request = disbursement_pb2.CreateFundingPlanRequest(
        request_id=uuid.uuid4().hex,
        program_code=program_arg,
        title=title or f"{label} 资助计划",
        budget_line_code=budget_line,
        program_codes=programs,
        fiscal_year=year,
        max_lines=max_lines,
        application_ids=ids,
    )
    if awarded_before:
        try:
            day = date.fromisoformat(awarded_before)
        except ValueError as error:
            raise typer.BadParameter(
                f"日期格式应为 YYYY-MM-DD (not {awarded_before!r})", param_hint="--awarded-before"
            ) from error
        beijing = timezone(timedelta(hours=8))
        stamp = Timestamp()
        stamp.FromDatetime(datetime(day.year, day.month, day.day, tzinfo=beijing))
        request.awarded_before.CopyFrom(stamp)
    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    plan = call(bearer, "disbursement", lambda c: c.disbursement.CreateFundingPlan(request))
    _plan_summary(plan, "已编制")


def _plan_edit(
    plan_id: str, add: list[str], remove: list[str], reason: str, user: str, token: str
) -> None:
    import uuid

    from grantflow.v1 import disbursement_pb2

    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    request = disbursement_pb2.EditFundingPlanRequest(
        request_id=uuid.uuid4().hex,
        plan_id=plan_id,
        add_application_ids=add,
        remove_application_ids=remove,
        reason=reason,
    )
    plan = call(bearer, "disbursement", lambda c: c.disbursement.EditFundingPlan(request))
    _plan_summary(plan, "已调整")


@plan_app.command("add")
def plan_add(
    plan_id: str,
    applications: Annotated[list[str], typer.Argument(help="申报编号 application ids")],
    reason: Annotated[str, typer.Option(help="why (recorded in the audit trail)")] = "",
    user: UserOpt = "finance-maker",
    token: TokenOpt = "",
) -> None:
    """资助计划增加项目 Add noticed awards to a draft plan."""
    _plan_edit(plan_id, applications, [], reason, user, token)


@plan_app.command("remove")
def plan_remove(
    plan_id: str,
    applications: Annotated[list[str], typer.Argument(help="申报编号 application ids")],
    reason: Annotated[str, typer.Option(help="why (recorded in the audit trail)")] = "",
    user: UserOpt = "finance-maker",
    token: TokenOpt = "",
) -> None:
    """资助计划移出项目 Remove awards from a draft plan; they wait for the next plan."""
    _plan_edit(plan_id, [], applications, reason, user, token)


@plan_app.command("approve")
def plan_approve(plan_id: str, user: UserOpt = "finance-checker", token: TokenOpt = "") -> None:
    """Approve a funding plan (you are the checker, not its maker); payment starts."""
    from grantflow.v1 import disbursement_pb2

    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    plan = call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.ApproveFundingPlan(
            disbursement_pb2.ApproveFundingPlanRequest(plan_id=plan_id)
        ),
    )
    if plan.state == PlanState.AWAITING_SECOND_APPROVAL.to_proto():
        out().print(
            f"资助计划 {plan.plan_id}：{plan.first_approved_by} 已一级审核；总额超过二级审批额度，"
            "待另一位财政人员二级审批（待二级审批）"
        )
        return
    out().print(
        f"资助计划 {plan.plan_id} 已由 {plan.approved_by} 审核，开始拨付"
        f"（流程 plan-{plan.plan_id}）"
    )


@plan_app.command("cancel")
def plan_cancel(
    plan_id: str,
    reason: Annotated[str, typer.Option(help="why the plan is cancelled (required; audited)")],
    user: UserOpt = "finance-maker",
    token: TokenOpt = "",
) -> None:
    """Cancel a funding plan not yet approved; its awards wait for the next plan, nothing is paid."""
    from grantflow.v1 import disbursement_pb2

    bearer = token_for(get_settings(), token, Role.FINANCE, user)
    plan = call(
        bearer,
        "disbursement",
        lambda c: c.disbursement.CancelFundingPlan(
            disbursement_pb2.CancelFundingPlanRequest(plan_id=plan_id, reason=reason)
        ),
    )
    out().print(
        f"资助计划 {plan.plan_id} 已由 {plan.cancelled_by} 撤销（{plan.cancel_reason}）；"
        f"其中 {len(plan.lines)} 项资助待下一个资助计划安排"
    )


@plan_app.command("show")
def plan_show(
    plan_id: str,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="跟随拨付进度直到拨付结束 / follow the payment run until it ends"
        ),
    ] = False,
    user: UserOpt = "finance",
    token: TokenOpt = "",
) -> None:
    """A plan's lines and state; while it is being paid, its progress (--watch: followed)."""
    from rich.table import Table

    from grantflow.format import yuan
    from grantflow.v1 import disbursement_pb2
    from services.common.labels import label
    from services.common.vocabulary import PAYABLE_PLAN_STATES

    settings = get_settings()
    bearer = token_for(settings, token, Role.FINANCE, user)

    def get_plan() -> disbursement_pb2.FundingPlan:
        return call(
            bearer,
            "disbursement",
            lambda c: c.disbursement.GetFundingPlan(
                disbursement_pb2.GetFundingPlanRequest(plan_id=plan_id)
            ),
        )

    plan = get_plan()
    table = Table("支付行", "申请编号", "收款单位", "金额", "状态", "支付流水号", title=plan.title)
    for line in plan.lines:
        table.add_row(
            line.line_id,
            line.application_id,
            line.applicant_name,
            yuan(line.amount_fen),
            f"{label(PaymentState.from_proto(line.state))} ({PaymentState.from_proto(line.state).name})",
            line.gateway_reference,
        )
    out().print(table)

    def print_state(plan: disbursement_pb2.FundingPlan) -> None:
        state = PlanState.from_proto(plan.state)
        checkers = plan.approved_by or "—"
        if plan.second_approval_required:
            checkers = f"{plan.first_approved_by or '—'}（一级），{plan.approved_by or '—'}（二级）"
        out().print(
            f"状态 {label(state)} ({state.name})，制单人 {plan.created_by}，审核人 {checkers}，"
            f"总额 {yuan(plan.total_fen)}"
        )
        for program in plan.programs if len(plan.programs) > 1 else ():
            out().print(
                f"  项目类别 {program.program_code}：{program.line_count} 个项目，"
                f"{yuan(program.amount_fen)}",
                highlight=False,
            )
        if state == PlanState.CANCELLED:
            out().print(f"已由 {plan.cancelled_by} 撤销：{plan.cancel_reason}")

    print_state(plan)
    if PlanState.from_proto(plan.state) not in PAYABLE_PLAN_STATES:
        return
    # Being paid: the run's own counts, below the lines (a plan of thousands of lines scrolls).
    from grantflow.plan_progress import follow, show_once, snapshot
    from services.common.temporal import connect_temporal

    async def progress() -> None:
        client = await connect_temporal(settings)
        if watch:
            await follow(client, plan_id, out())
        else:
            show_once(out(), await snapshot(client, plan_id))

    run(progress(), "Temporal", settings.temporal_address)
    if watch:
        print_state(get_plan())  # as the run left it


# ---------------------------------------------------------------------------------- ops


@ops_app.command("replay")
def ops_replay(
    workflow_id: Annotated[str, typer.Argument()] = "",
    save: Annotated[Path | None, typer.Option(help="also write the history as JSON here")] = None,
    sample: Annotated[
        int, typer.Option(help="replay the N most recently closed grants and plans instead")
    ] = 0,
) -> None:
    """Replay a running or closed workflow's history against the current code."""
    from grantflow.ops import replay_workflow

    settings = get_settings()
    if sample > 0:
        _replay_sample(settings, sample)
        return
    if not workflow_id:
        raise typer.BadParameter("给出流程编号，或 --sample N (a workflow id, or --sample N)")
    report = run(
        replay_workflow(settings, workflow_id, save), "Temporal", settings.temporal_address
    )
    if report.error:
        err().print(f"[red]NONDETERMINISM[/red] in {workflow_id}: {report.error}")
        raise typer.Exit(1)
    out().print(
        f"{workflow_id}: {report.events} events replayed against the current code; deterministic"
    )


def _replay_sample(settings: Settings, size: int) -> None:
    from grantflow.ops import replay_sample

    reports = run(replay_sample(settings, size), "Temporal", settings.temporal_address)
    broken = [r for r in reports if r.error]
    for report in broken:
        err().print(f"[red]不确定性 NONDETERMINISM[/red] {report.workflow_id}: {report.error}")
    out().print(
        f"已回放最近结束的 {len(reports)} 个流程，{len(broken)} 个与当前代码不一致 "
        f"({len(reports)} recently closed workflows replayed, {len(broken)} nondeterministic)",
        highlight=False,
    )
    if broken:
        raise typer.Exit(EXIT_FAILED)


def _stage(value: str) -> str:
    try:
        return GrantStage.parse(value.upper()) if value else ""
    except VocabularyError:
        raise typer.BadParameter(f"one of {', '.join(GrantStage)}") from None


@ops_app.command("find")
def ops_find(
    application: Annotated[str, typer.Option(help="application number, or its start")] = "",
    credit_code: Annotated[
        str, typer.Option("--credit-code", "--applicant", help="applicant's credit code")
    ] = "",
    program: Annotated[str, typer.Option(help="program code, e.g. SME-CLOUD")] = "",
    stage: Annotated[str, typer.Option(callback=_stage, help="e.g. IN_REVIEW")] = "",
    department: Annotated[
        str, typer.Option(help="its review is pending with: industry, finance or hr")
    ] = "",
    overdue: Annotated[bool, typer.Option(help="a review task is past its due date")] = False,
    failed_payment: Annotated[
        bool, typer.Option(help="payment failed (stage or a failed payment line)")
    ] = False,
    limit: int = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: TokenOpt = "",
    user: UserOpt = "ops",
) -> None:
    """Find grants by business keys: 按申请编号、企业信用代码、项目类别、阶段、待审部门、逾期、拨付失败查找。"""
    from grantflow.ops_find import BadKey, GrantSearch, find_grants

    if department:
        department = _department(department)
    settings = get_settings()
    search = GrantSearch(
        application=application,
        credit_code=credit_code,
        program=program,
        stage=GrantStage.parse(stage) if stage else None,
        department=Department.parse(department) if department else None,
        overdue=overdue,
        failed_payment=failed_payment,
        limit=limit,
    )
    bearer = token_for(settings, token, Role.OPS, user)
    try:
        rows = run(find_grants(settings, bearer, search), "Temporal", settings.temporal_address)
    except BadKey as bad:
        fail(EXIT_USAGE, f"查询条件无效 (invalid search key) {bad}")
    if as_json:
        import json

        print(json.dumps([row.as_json() for row in rows], ensure_ascii=False, indent=1))
        return
    from rich.table import Table

    from services.common.labels import label, stage_label

    table = Table(
        "申请编号", "项目", "企业", "信用代码", "项目类别", "阶段", "待审部门", "备注",
        title=f"找到 {len(rows)} 件 (grants found)",
    )  # fmt: skip
    for row in rows:
        table.add_row(
            row.application_id,
            row.project_title,
            row.applicant_name,
            row.credit_code,
            row.program,
            stage_label(row.stage),
            "、".join(label(Department(d)) for d in row.pending_departments),
            "；".join(row.notes),
        )
    out().print(table)


@ops_app.command("show")
def ops_show(
    application_id: Annotated[str, typer.Argument(help="application number")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: TokenOpt = "",
    user: UserOpt = "ops",
) -> None:
    """One grant's business timeline: 一件申请的办理经过（申请、评审、资金、流程），按时间排列。"""
    from grantflow.timeline import grant_timeline, shanghai

    settings = get_settings()
    bearer = token_for(settings, token, Role.OPS, user)
    timeline = run(
        grant_timeline(settings, bearer, application_id),
        "applications",
        settings.applications_address,
    )
    if as_json:
        import json

        print(json.dumps(timeline.as_json(), ensure_ascii=False, indent=1))
        return
    from rich.table import Table

    for name, value in timeline.summary.items():
        out().print(f"[bold]{name}[/bold]：{value}", highlight=False)
    table = Table("时间（北京时间）", "来源", "事项", "经办人", "详情", title="办理经过")
    for entry in timeline.ordered():
        table.add_row(shanghai(entry.at), entry.source, entry.what, entry.who, entry.detail)
    out().print(table)
    for missing in timeline.missing:
        err().print(f"未能读取 (could not read) {missing}", highlight=False, markup=False)


@ops_stack_app.command("status")
def ops_stack_status(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    token: TokenOpt = "",
    user: UserOpt = "ops",
) -> None:
    """Health of every component, outbox backlog per service, consumer lag per group, dead
    letters per topic: 各组件健康状况、发件箱积压、消费延迟、死信数量。Exit 1 when a component is
    unhealthy."""
    from grantflow.stack_health import age, stack_status

    settings = get_settings()
    bearer = token_for(settings, token, Role.OPS, user)
    status = run(stack_status(settings, bearer))
    if as_json:
        import json

        print(json.dumps(status.as_json(), ensure_ascii=False, indent=1))
    else:
        from rich.table import Table

        components = Table("组件", "地址", "状态", "说明", title="组件健康 (components)")
        for c in status.components:
            ok = "正常" if c.healthy else "[red]异常[/red]"
            components.add_row(c.name, c.address, ok, c.detail)
        outboxes = Table(
            "服务", "待发布事件", "最早积压时长", "已发布保留", title="发件箱积压 (outbox backlog)"
        )
        for o in status.outboxes:
            outboxes.add_row(
                o.service, str(o.unpublished), age(o.oldest_age_s), str(o.published_retained)
            )
        lags = Table(
            "消费组", "主题", "分区", "已提交", "末尾", "延迟", title="消费延迟 (consumer lag)"
        )
        for group in status.lags:
            for p in group.partitions:
                lags.add_row(
                    group.group, p.topic, str(p.partition), str(p.committed), str(p.end), str(p.lag)
                )
            lags.add_row(group.group, "合计 (total)", "", "", "", str(group.total))
        dead = Table("死信主题", "记录数", title="死信 (dead letters)")
        for topic, count in status.dead_letters.items():
            dead.add_row(topic, f"[red]{count}[/red]" if count else "0")
        for table in (components, outboxes, lags, dead):
            out().print(table)
        for line in status.calendar_lines():
            warn = line.startswith("警告") or "无法读取" in line
            out().print(f"[yellow]{line}[/yellow]" if warn else line, highlight=False)
    if not status.healthy:
        broken = ", ".join(c.name for c in status.components if not c.healthy)
        fail(EXIT_FAILED, f"有组件异常 (unhealthy): {broken}")


@ops_app.command("redrive")
def ops_redrive(
    stream: Annotated[str, typer.Argument(help="applications, grants, review or disbursement")],
) -> None:
    """Send a topic's dead-lettered events back to it."""
    from services.common import kafka

    settings = get_settings()
    moved = run(
        kafka.redrive(settings, kafka.topic(settings, stream)),
        "Kafka",
        settings.kafka_bootstrap_servers,
    )
    out().print(f"re-drove {moved} events to {kafka.topic(settings, stream)}")


@ops_app.command("events")
def ops_events(
    stream: Annotated[str, typer.Argument(help="applications, grants, review or disbursement")],
    limit: int = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read events from the broker with a plain Kafka client and decode them with the protos."""
    from grantflow.ops import read_events

    settings = get_settings()
    envelopes = run(read_events(settings, stream, limit), "Kafka", settings.kafka_bootstrap_servers)
    for envelope in envelopes:
        if as_json:
            import json

            from google.protobuf.json_format import MessageToDict

            print(json.dumps(MessageToDict(envelope), ensure_ascii=False))
        else:
            out().print(f"{envelope.type} {envelope.subject} {envelope.event_id}")


# ---------------------------------------------------------------------------------- audit

AUDITED_SERVICES = ("applications", "review", "disbursement")


def _audited(value: str) -> str:
    if value != "all" and value not in AUDITED_SERVICES:
        raise typer.BadParameter(f"one of {', '.join(AUDITED_SERVICES)} or all")
    return value


ServiceOpt = Annotated[
    str,
    typer.Option("--service", callback=_audited, help="applications, review, disbursement or all"),
]


@audit_app.command("verify")
def ops_audit_verify(
    service: ServiceOpt = "all", token: TokenOpt = "", user: UserOpt = "ops"
) -> None:
    """Walk each service's audit chain; exit 1 at an edited, deleted or inserted record."""
    from functools import partial

    from grantflow.format import audit_break

    bearer = token_for(get_settings(), token, Role.OPS, user)
    broken = False
    for name in AUDITED_SERVICES if service == "all" else (service,):
        report = call(bearer, name, partial(_verify_chain, name))
        if report.intact:
            out().print(
                f"{name}: 审计链完好 (intact)，{report.records_checked} 条记录，"
                f"链头 #{report.last_sequence} {report.last_hash}",
                highlight=False,
            )
            continue
        broken = True
        kind = AuditBreak.from_proto(report.first_break.kind)
        out().print(
            f"{name}: {audit_break(kind)}，序号 {report.first_break.sequence}"
            f"（service {name}, sequence {report.first_break.sequence}: "
            f"{report.first_break.detail}）",
            highlight=False,
            markup=False,
        )
    if broken:
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("show")
def ops_audit_show(
    application_id: str, service: ServiceOpt = "all", token: TokenOpt = "", user: UserOpt = "ops"
) -> None:
    """The audit records about one application from every service (and of its funding plans),
    oldest first."""
    from functools import partial

    from rich.table import Table

    from grantflow.format import ROLE_WORDS, audit_action, audit_details
    from services.common.workdays import SHANGHAI

    bearer = token_for(get_settings(), token, Role.OPS, user)
    names = AUDITED_SERVICES if service == "all" else (service,)
    entries = []
    for name in names:
        entries += call(bearer, name, partial(_audit_entries, name, application_id))
    if "disbursement" in names:
        # Who made and who checked the plans that paid it are recorded about the plans.
        for plan_id in sorted(_plan_ids(entries)):
            entries += call(
                bearer, "disbursement", partial(_audit_entries, "disbursement", plan_id)
            )
    if not entries:
        fail(EXIT_FAILED, f"没有关于 {application_id} 的审计记录 (no audit records about it)")
    entries.sort(key=lambda e: (e.recorded_at.ToDatetime(), e.service, e.sequence))
    table = Table(
        "时间", "服务", "序号", "事项", "操作人", "角色", "原因", "详情",
        title=f"审计记录 {application_id}",
    )  # fmt: skip
    for entry in entries:
        table.add_row(
            entry.recorded_at.ToDatetime(tzinfo=SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            entry.service,
            str(entry.sequence),
            audit_action(entry.action),
            entry.actor,
            ROLE_WORDS.get(entry.actor_role, entry.actor_role),
            entry.reason,
            audit_details(entry.details_json),
        )
    out().print(table)


async def _verify_chain(service: str, clients: ServiceClients) -> Any:
    from grantflow.v1 import audit_pb2

    return await clients.audit[service].VerifyAuditChain(audit_pb2.VerifyAuditChainRequest())


async def _audit_entries(service: str, subject: str, clients: ServiceClients) -> list[Any]:
    from grantflow.v1 import audit_pb2

    entries: list[Any] = []
    page_token = ""
    while True:
        page = await clients.audit[service].ListAuditEntries(
            audit_pb2.ListAuditEntriesRequest(subject=subject, page_token=page_token)
        )
        entries += page.entries
        page_token = page.next_page_token
        if not page_token:
            return entries


def _plan_ids(entries: list[Any]) -> set[str]:
    import json

    plans = set()
    for entry in entries:
        if entry.service == "disbursement" and entry.details_json:
            plan_id = json.loads(entry.details_json).get("plan_id")
            if plan_id and plan_id != entry.subject:
                plans.add(str(plan_id))
    return plans


# `grantflow ops repair …` lives in its own module (it imports this one for the shared helpers).
from grantflow.repair_cli import repair_app  # noqa: E402

ops_app.add_typer(repair_app, name="repair")

# `grantflow notices | object | objections | objection …` (public notices and objections).
from grantflow.notice_cli import register as register_notice_commands  # noqa: E402

register_notice_commands(app)
# The review process's commands (experts, audits, release and reassign) live in their own module.
from grantflow.review_cli import (  # noqa: E402
    expert_app,
    experts_app,
    reassign,
    release,
    special_audit_app,
)

app.add_typer(experts_app, name="experts")
app.add_typer(expert_app, name="expert")
app.add_typer(special_audit_app, name="audit")
app.command("release")(release)
app.command("reassign")(reassign)
# `grantflow credit …` (the credit list) lives in its own module too.
from grantflow.eligibility_cli import credit_app  # noqa: E402

app.add_typer(credit_app, name="credit")
# `grantflow calendar …` and `grantflow notifications …` live in their own module too.
from grantflow.calendar_cli import calendar_app, contact, notifications  # noqa: E402

app.add_typer(calendar_app, name="calendar")
app.command("notifications")(notifications)
app.command("contact")(contact)
# `grantflow finance …` (the ledger's reports) and `grantflow plan notice | export`.
from grantflow.finance_cli import register as register_finance_commands  # noqa: E402

register_finance_commands(app, plan_app)
# `grantflow grant milestone confirm` (awards paid in instalments).
from grantflow.milestone_cli import grant_app  # noqa: E402

app.add_typer(grant_app, name="grant")


def main() -> None:
    def entry() -> int:
        try:
            # Outside standalone mode typer does not exit: it returns the status of a typer.Exit
            # (and a command's own return value, None, when it simply finishes).
            status = app(standalone_mode=False)
        except typer.Abort:
            return 130
        except Exception as error:
            # Usage errors come from the click that typer bundles; they know how to show
            # themselves and which exit status they mean.
            show, exit_code = getattr(error, "show", None), getattr(error, "exit_code", None)
            if callable(show) and isinstance(exit_code, int):
                show()
                return exit_code
            raise
        return status if isinstance(status, int) else 0

    from services.common.process import run_and_exit

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.stdout.flush()
    run_and_exit(entry)


if __name__ == "__main__":
    main()
