"""The scripted demo: many applications across SME-CLOUD and the industrial-internet programs,
driven through the real APIs as applicants, reviewers of two departments and two finance
officers would: approved and paid, approved at a lower amount, rejected, withdrawn, returned for
supplement then approved, and incomplete at filing then completed. Ends with a summary."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from grantflow.budget_seed import configured_budgets, configured_lines, seed_lines, top_up_lines
from grantflow.format import stage_name, yuan
from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2, common_pb2, disbursement_pb2, review_pb2
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.vocabulary import CLOSED_STAGES, Decision, Department, Role

S = common_pb2
FINAL: set[int] = {stage.to_proto() for stage in CLOSED_STAGES}

COMPANIES = [
    "Shenzhen Qianhai Cloudstack Technology Co., Ltd.",
    "Shenzhen Nanshan Precision Moulding Co., Ltd.",
    "Shenzhen Bao'an Smart Sensor Co., Ltd.",
    "Shenzhen Longgang Battery Materials Co., Ltd.",
    "Shenzhen Futian Supply-Chain Services Co., Ltd.",
    "Shenzhen Guangming Optics Co., Ltd.",
    "Shenzhen Pingshan New Energy Equipment Co., Ltd.",
    "Shenzhen Luohu Digital Printing Co., Ltd.",
    "Shenzhen Longhua Drone Systems Co., Ltd.",
    "Shenzhen Yantian Cold-Chain Logistics Co., Ltd.",
    "Shenzhen Dapeng Marine Instruments Co., Ltd.",
    "Shenzhen Shenshan Industrial Robotics Co., Ltd.",
]


@dataclass
class Scenario:
    kind: str  # paid, paid_lower, rejected, withdrawn, returned, incomplete
    program: str
    figures: dict[str, int]
    expected: int


@dataclass
class Tracked:
    scenario: Scenario
    application_id: str = ""
    credit_code: str = ""
    name: str = ""
    submitted_at: float = 0.0
    finished_at: float = 0.0
    status: int = 0
    award_fen: int = 0
    reason: str = ""


@dataclass
class DemoSummary:
    ok: bool
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    grants: list[Tracked] = field(default_factory=list)


def scenarios(count: int) -> list[Scenario]:
    kinds = [
        "paid",
        "paid",
        "returned",
        "paid",
        "rejected",
        "paid_lower",
        "withdrawn",
        "paid",
        "incomplete",
        "paid",
        "rejected",
        "paid",
    ]
    programs = ["SME-CLOUD", "IIP-CROSS", "SME-CLOUD", "IIP-INDUSTRY"]
    result = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        program = programs[i % len(programs)]
        if program == "SME-CLOUD":
            figures = {
                "cloud_fee_paid_fen": 150_000 + 25_000 * (i % 13),
                "staff_count": 20 + 7 * i,
                "annual_revenue_fen": (5 + i) * 1_000_000_00,
            }
        else:
            figures = {"platform_investment_fen": (800 + 150 * i) * 10_000_00}
        if kind == "incomplete":
            figures.pop(next(iter(figures)))
        expected = {
            "rejected": S.GRANT_STAGE_REJECTED,
            "withdrawn": S.GRANT_STAGE_WITHDRAWN,
        }.get(kind, S.GRANT_STAGE_PAID)
        result.append(Scenario(kind, program, figures, expected))
    return result


async def seed_catalogue(
    settings: Settings, ops_token: str = "", finance_token: str = ""
) -> tuple[int, int]:
    """Publishes every program version of the catalogue and sets the budget lines, and the
    budgets of programs that name no line, where none is set. Answers the program versions
    published and the budgets (line years and programs) set now."""
    from services.applications.catalogue import load_catalogue

    ops = ops_token or mint_token(settings.auth_secret, "seed", Role.OPS)
    finance = finance_token or mint_token(settings.auth_secret, "seed", Role.FINANCE)
    rules = await asyncio.to_thread(load_catalogue)
    async with ServiceClients(settings, ops) as clients:
        for rule in rules:
            await clients.applications.PublishProgramVersion(
                applications_pb2.PublishProgramVersionRequest(rule=rule)
            )
    latest: dict[str, common_pb2.ProgramRule] = {}
    for rule in rules:
        if rule.code not in latest or rule.version > latest[rule.code].version:
            latest[rule.code] = rule
    budgets = await asyncio.to_thread(configured_budgets)
    lines = await asyncio.to_thread(configured_lines)
    async with ServiceClients(settings, finance) as clients:
        set_now = await seed_lines(clients, lines)
        for program, total in budgets.items():
            if program in latest and latest[program].budget_line_code:
                continue  # the program draws on its budget line
            try:
                await clients.disbursement.GetProgramBudget(
                    disbursement_pb2.GetProgramBudgetRequest(program_code=program)
                )
                continue  # finance already set it; seeding never overrides a budget
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await clients.disbursement.SetProgramBudget(
                disbursement_pb2.SetProgramBudgetRequest(program_code=program, total_fen=total)
            )
            set_now += 1
    return len(rules), set_now


async def top_up_budgets(settings: Settings) -> list[str]:
    """For a repeated demo on the same data: raises each budget line's year and each program's
    own total so that its configured budget is available again (a new budget year, as it were).
    Returns what it changed."""
    finance = mint_token(settings.auth_secret, "demo.finance", Role.FINANCE)
    budgets = await asyncio.to_thread(configured_budgets)
    lines = await asyncio.to_thread(configured_lines)
    async with ServiceClients(settings, finance) as clients:
        changed = await top_up_lines(clients, lines)
        for program, wanted in budgets.items():
            budget = await clients.disbursement.GetProgramBudget(
                disbursement_pb2.GetProgramBudgetRequest(program_code=program)
            )
            if budget.budget_line_code:
                continue  # topped up with its line
            if budget.available_fen < wanted:
                total = budget.total_fen + wanted - budget.available_fen
                await clients.disbursement.SetProgramBudget(
                    disbursement_pb2.SetProgramBudgetRequest(program_code=program, total_fen=total)
                )
                changed.append(f"{program} to {yuan(total)}")
    return changed


class Demo:
    def __init__(self, settings: Settings, console: Console, count: int) -> None:
        self.settings = settings
        self.console = console
        self.grants = [Tracked(s) for s in scenarios(count)]
        secret = settings.auth_secret
        self.ops = ServiceClients(settings, mint_token(secret, "ops.demo", Role.OPS))
        self.reviewers = {
            dept: ServiceClients(
                settings, mint_token(secret, f"{dept}.reviewer", Role.REVIEWER, department=dept)
            )
            for dept in (Department.INDUSTRY, Department.FINANCE)
        }
        self.maker = ServiceClients(settings, mint_token(secret, "zhang.finance", Role.FINANCE))
        self.checker = ServiceClients(settings, mint_token(secret, "chen.finance", Role.FINANCE))
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.bars: dict[str, TaskID] = {}

    async def close(self) -> None:
        for clients in [self.ops, self.maker, self.checker, *self.reviewers.values()]:
            await clients.close()

    def advance(self, bar: str) -> None:
        self.progress.advance(self.bars[bar])

    async def run(self) -> DemoSummary:
        started = time.monotonic()
        total = len(self.grants)
        to_pay = sum(1 for g in self.grants if g.scenario.expected == S.GRANT_STAGE_PAID)
        with self.progress:
            for bar, size in (
                ("submitted", total),
                ("reviewed by every department", total),
                ("closed (paid/rejected/out)", total),
                ("paid", to_pay),
            ):
                self.bars[bar] = self.progress.add_task(bar, total=size)
            await asyncio.gather(*[self.drive(i, g) for i, g in enumerate(self.grants)])
        summary = DemoSummary(ok=True, seconds=time.monotonic() - started, grants=self.grants)
        for g in self.grants:
            summary.outcomes[stage_name(g.status)] += 1
            if g.status != g.scenario.expected:
                summary.ok = False
        return summary

    # ------------------------------------------------------------------ one application

    async def drive(self, index: int, g: Tracked) -> None:
        s = g.scenario
        g.credit_code = credit_code(1000 + index)
        g.name = COMPANIES[index % len(COMPANIES)]
        applicant = ServiceClients(
            self.settings,
            mint_token(
                self.settings.auth_secret, g.credit_code, Role.APPLICANT, enterprise=g.credit_code
            ),
        )
        try:
            g.submitted_at = time.monotonic()
            answer = await applicant.applications.SubmitApplication(
                applications_pb2.SubmitApplicationRequest(
                    request_id=f"demo-{uuid.uuid4().hex}",
                    program_code=s.program,
                    applicant_credit_code=g.credit_code,
                    applicant_name=g.name,
                    project_title=f"{s.program} project {index + 1}",
                    project_description="Filed by the Grantflow demo.",
                    figures=s.figures,
                )
            )
            g.application_id = answer.application_id
            self.advance("submitted")

            if s.kind == "incomplete":
                await self.wait_for(g, {S.GRANT_STAGE_AWAITING_SUPPLEMENT})
                await self.supplement(applicant, g, complete=True)
            await self.wait_for(g, {S.GRANT_STAGE_IN_REVIEW})

            if s.kind == "withdrawn":
                await self.open_tasks(g, Department.INDUSTRY, 1)
                await applicant.applications.WithdrawApplication(
                    applications_pb2.WithdrawApplicationRequest(
                        application_id=g.application_id, reason="project postponed"
                    )
                )
                self.advance("reviewed by every department")
                await self.finish(g)
                return
            if s.kind == "rejected":
                await self.review(g, Department.INDUSTRY, Decision.APPROVE)
                await self.review(
                    g,
                    Department.FINANCE,
                    Decision.REJECT,
                    reason="same project funded by another municipal program",
                )
                self.advance("reviewed by every department")
                await self.finish(g)
                return
            if s.kind == "returned":
                await self.review(
                    g,
                    Department.INDUSTRY,
                    Decision.RETURN_FOR_SUPPLEMENT,
                    reason="invoice for the cloud fee is missing",
                )
                await self.wait_for(g, {S.GRANT_STAGE_AWAITING_SUPPLEMENT})
                await self.supplement(applicant, g, complete=False)
                await self.review(g, Department.INDUSTRY, Decision.APPROVE, round_=2)
                await self.review(g, Department.FINANCE, Decision.APPROVE, round_=2)
            else:
                lower = s.kind == "paid_lower"
                await self.review(g, Department.INDUSTRY, Decision.APPROVE, lower=lower)
                await self.review(g, Department.FINANCE, Decision.APPROVE)
            self.advance("reviewed by every department")
            await self.wait_for(g, {S.GRANT_STAGE_AWAITING_FUNDING_PLAN})
            await self.finish(g)
        finally:
            await applicant.close()

    async def finish(self, g: Tracked) -> None:
        status = await self.wait_for(g, FINAL)
        g.finished_at = time.monotonic()
        self.advance("closed (paid/rejected/out)")
        if status == S.GRANT_STAGE_PAID:
            self.advance("paid")

    async def supplement(self, applicant: ServiceClients, g: Tracked, complete: bool) -> None:
        figures = dict(g.scenario.figures)
        if complete:  # the figure left out at filing
            if g.scenario.program == "SME-CLOUD":
                figures.setdefault("cloud_fee_paid_fen", 180_000)
            else:
                figures.setdefault("platform_investment_fen", 900 * 10_000_00)
        await applicant.applications.SupplementApplication(
            applications_pb2.SupplementApplicationRequest(
                application_id=g.application_id,
                request_id=f"supp-{uuid.uuid4().hex}",
                figures=figures,
                note="figures and invoice added",
                documents=[
                    common_pb2.DocumentRef(
                        name="invoice.pdf",
                        uri=f"s3://grantflow-docs/{g.application_id}/invoice.pdf",
                        sha256="0" * 64,
                    )
                ],
            )
        )

    async def open_tasks(
        self, g: Tracked, department: Department, round_: int
    ) -> list[review_pb2.ReviewTask]:
        reviewer = self.reviewers[department]
        while True:
            answer = await reviewer.review.ListTasks(
                review_pb2.ListTasksRequest(
                    department=department.to_proto(),
                    application_id=g.application_id,
                    filter=review_pb2.TASK_FILTER_OPEN,
                )
            )
            tasks = [t for t in answer.tasks if t.round == round_]
            if tasks:
                return tasks
            await asyncio.sleep(0.2)

    async def review(
        self,
        g: Tracked,
        department: Department,
        decision: Decision,
        *,
        reason: str = "",
        lower: bool = False,
        round_: int = 1,
    ) -> None:
        reviewer = self.reviewers[department]
        task = (await self.open_tasks(g, department, round_))[0]
        await retry_unavailable(
            lambda: reviewer.review.ClaimTask(review_pb2.ClaimTaskRequest(task_id=task.task_id))
        )
        await retry_unavailable(
            lambda: reviewer.review.DecideTask(
                review_pb2.DecideTaskRequest(
                    task_id=task.task_id,
                    decision=decision.to_proto(),
                    reason=reason or f"{department}: meets the program's rules",
                    approved_amount_fen=task.proposed_amount_fen * 8 // 10 if lower else 0,
                )
            )
        )

    async def wait_for(self, g: Tracked, stages: set[int]) -> int:
        while True:
            a = await self.ops.applications.GetApplication(
                applications_pb2.GetApplicationRequest(application_id=g.application_id)
            )
            g.status, g.award_fen, g.reason = a.status, a.award_amount_fen, a.status_reason
            if a.status in stages:
                return int(a.status)
            if a.status in FINAL and a.status not in stages:
                return int(a.status)
            await asyncio.sleep(0.25)

    # ------------------------------------------------------------------ finance

    async def pay_noticed_awards(self) -> list[disbursement_pb2.FundingPlan]:
        """Once every award to be paid is noticed: one plan per program, maker then checker."""
        plans = []
        for program in sorted({g.scenario.program for g in self.grants}):
            try:
                plan = await self.maker.disbursement.CreateFundingPlan(
                    disbursement_pb2.CreateFundingPlanRequest(
                        request_id=f"demo-plan-{uuid.uuid4().hex}",
                        program_code=program,
                        title=f"{program} 2026 batch 1",
                    )
                )
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    continue  # nothing noticed in this program
                raise
            plans.append(
                await self.checker.disbursement.ApproveFundingPlan(
                    disbursement_pb2.ApproveFundingPlanRequest(plan_id=plan.plan_id)
                )
            )
        return plans


async def retry_unavailable(call: Callable[[], Awaitable[object]], attempts: int = 20) -> object:
    for attempt in range(attempts):
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def run_demo(settings: Settings, console: Console, count: int = 24) -> DemoSummary:
    programs, budgets = await seed_catalogue(settings)
    console.print(f"seeded {programs} program versions and {budgets} budgets")
    topped = await top_up_budgets(settings)
    if topped:
        console.print("earlier runs spent the budgets; raised " + ", ".join(topped))
    demo = Demo(settings, console, count)
    try:
        runner = asyncio.create_task(demo.run())
        # Finance acts once every award that will be paid is noticed (or the run ended).
        while not runner.done():
            awaiting = [g for g in demo.grants if g.scenario.expected == S.GRANT_STAGE_PAID]
            if (
                awaiting
                and all(g.status in (S.GRANT_STAGE_AWAITING_FUNDING_PLAN, *FINAL) for g in awaiting)
                and any(g.status == S.GRANT_STAGE_AWAITING_FUNDING_PLAN for g in awaiting)
            ):
                plans = await demo.pay_noticed_awards()
                console.print(
                    f"finance: {len(plans)} funding plans made by zhang.finance and approved by "
                    f"chen.finance: "
                    + ", ".join(f"plan-{p.plan_id} ({len(p.lines)} lines)" for p in plans)
                )
                break
            await asyncio.sleep(0.5)
        summary = await runner
    finally:
        await demo.close()
    print_summary(console, summary)
    return summary


def print_summary(console: Console, summary: DemoSummary) -> None:
    table = Table("application", "program", "applicant", "scenario", "status", "award", "s")
    for g in summary.grants:
        table.add_row(
            g.application_id[:8],
            g.scenario.program,
            g.name.removeprefix("Shenzhen ").removesuffix(" Co., Ltd.")[:22],
            g.scenario.kind,
            stage_name(g.status),
            yuan(g.award_fen) if g.award_fen else "",
            f"{g.finished_at - g.submitted_at:.1f}" if g.finished_at else "",
        )
    console.print(table)
    paid = [
        g.finished_at - g.submitted_at for g in summary.grants if g.status == S.GRANT_STAGE_PAID
    ]
    console.print(
        f"{len(summary.grants)} applications in {summary.seconds:.1f} s: "
        + ", ".join(f"{n} {k.lower()}" for k, n in sorted(summary.outcomes.items()))
        + (f"; submission to paid {min(paid):.1f}-{max(paid):.1f} s" if paid else "")
        + ("" if summary.ok else " [red](some applications did not end as scripted)[/red]")
    )
