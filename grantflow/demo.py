"""The scripted demo (grantflow/demo_script.py) driven through the real APIs by the people of a
municipal fund: applicants file and supplement, the expert pool scores, an auditor confirms
figures, reviewers of the three bureaus decide, an enterprise objects during a public notice and
the department handles it, and two finance officers make and check the funding plans. Also the
seed every stack needs (programs, budget lines, the expert pool). Ends with a summary in
Chinese."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

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
from grantflow.demo_script import KINDS, SCRIPT, Scenario, scenarios
from grantflow.format import stage_name, yuan
from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2, common_pb2, disbursement_pb2, notice_pb2, review_pb2
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.labels import stage_label
from services.common.vocabulary import (
    CLOSED_STAGES,
    Decision,
    Department,
    ObjectionConsequence,
    ObjectionKind,
    Role,
)

S = common_pb2
FINAL: set[int] = {stage.to_proto() for stage in CLOSED_STAGES}

# Applicants by registration authority (the script's Scenario.authority), in Chinese as the
# notices print them.
NAMES = {
    "9": [
        "深圳市前海云栈科技有限公司",
        "深圳市南山精密模具有限公司",
        "深圳市宝安智能传感器有限公司",
        "深圳市龙岗电池材料有限公司",
        "深圳市福田供应链服务有限公司",
        "深圳市光明光学有限公司",
        "深圳市坪山新能源装备有限公司",
        "深圳市罗湖数码印刷有限公司",
        "深圳市龙华无人机系统有限公司",
        "深圳市盐田冷链物流有限公司",
        "深圳市大鹏海洋仪器有限公司",
        "深圳市深汕工业机器人有限公司",
    ],
    "1": ["深圳市第二职业技术学校", "深圳市宝安职业技术学校", "深圳市龙岗职业技术学校"],
    "5": ["深圳市软件行业协会", "深圳市中小企业发展促进会"],
}
EXPERTS_FILE = Path(__file__).resolve().parents[1] / "infra" / "local" / "experts.json"
OBJECTOR = credit_code(424_424)  # an enterprise that reports a project during its notice


@dataclass
class Tracked:
    index: int
    scenario: Scenario
    application_id: str = ""
    credit_code: str = ""
    name: str = ""
    submitted_at: float = 0.0
    finished_at: float = 0.0
    status: int = 0
    award_fen: int = 0
    reason: str = ""
    reviewed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class DemoSummary:
    ok: bool
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    grants: list[Tracked] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)


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


async def seed_experts(settings: Settings, ops_token: str = "", path: Path = EXPERTS_FILE) -> int:
    """Adds the local expert pool (infra/local/experts.json) to the review service; adding an
    expert again changes nothing. Answers how many experts the pool holds."""
    ops = ops_token or mint_token(settings.auth_secret, "seed", Role.OPS)
    experts = json.loads(await asyncio.to_thread(path.read_text, "utf-8"))["experts"]
    async with ServiceClients(settings, ops) as clients:
        for expert in experts:
            await clients.review.AddExpert(
                review_pb2.AddExpertRequest(expert=review_pb2.Expert(active=True, **expert))
            )
    return len(experts)


class Demo:
    """The people of the script at work: applicants, reviewers of the three bureaus, the expert
    pool and an auditor working their inboxes, an objector, and two finance officers."""

    def __init__(self, settings: Settings, console: Console, count: int) -> None:
        self.settings = settings
        self.console = console
        self.grants = [Tracked(i, s) for i, s in enumerate(scenarios(count))]
        self.by_application: dict[str, Tracked] = {}
        secret = settings.auth_secret
        self.ops = ServiceClients(settings, mint_token(secret, "ops.demo", Role.OPS))
        self.reviewers = {
            dept: ServiceClients(
                settings, mint_token(secret, f"{dept}.reviewer", Role.REVIEWER, department=dept)
            )
            for dept in Department
        }
        self.auditor = ServiceClients(settings, mint_token(secret, "audit.demo", Role.AUDITOR))
        self.objector = ServiceClients(
            settings, mint_token(secret, OBJECTOR, Role.APPLICANT, enterprise=OBJECTOR)
        )
        self.maker = ServiceClients(settings, mint_token(secret, "zhang.finance", Role.FINANCE))
        self.checker = ServiceClients(settings, mint_token(secret, "chen.finance", Role.FINANCE))
        # The second approval of a plan above the configured level (plan_second_approval_fen).
        self.second_checker = ServiceClients(
            settings, mint_token(secret, "wang.finance", Role.FINANCE)
        )
        self.experts: dict[str, ServiceClients] = {}
        self.rules: dict[str, common_pb2.ProgramRule] = {}
        self.progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.bars: dict[str, TaskID] = {}

    async def close(self) -> None:
        everyone = [
            self.ops,
            self.auditor,
            self.objector,
            self.maker,
            self.checker,
            self.second_checker,
        ]
        for clients in [*everyone, *self.reviewers.values(), *self.experts.values()]:
            await clients.close()

    def advance(self, bar: str) -> None:
        self.progress.advance(self.bars[bar])

    async def run(self) -> DemoSummary:
        started = time.monotonic()
        programs = await self.ops.applications.ListPrograms(applications_pb2.ListProgramsRequest())
        for rule in programs.programs:  # the newest version of each program
            if rule.code not in self.rules or rule.version > self.rules[rule.code].version:
                self.rules[rule.code] = rule
        pool = json.loads(await asyncio.to_thread(EXPERTS_FILE.read_text, "utf-8"))["experts"]
        secret = self.settings.auth_secret
        self.experts = {
            e["expert_id"]: ServiceClients(
                self.settings, mint_token(secret, e["expert_id"], Role.EXPERT)
            )
            for e in pool
        }
        total = len(self.grants)
        to_pay = sum(1 for g in self.grants if g.scenario.expected == S.GRANT_STAGE_PAID)
        desks = [asyncio.create_task(self.expert_desk()), asyncio.create_task(self.audit_desk())]
        try:
            with self.progress:
                for bar, size in (
                    ("已申报", total),
                    ("评审完毕", total),
                    ("已办结", total),
                    ("已拨付", to_pay),
                ):
                    self.bars[bar] = self.progress.add_task(bar, total=size)
                await asyncio.gather(*[self.drive(g) for g in self.grants])
        finally:
            for desk in desks:
                desk.cancel()
            await asyncio.gather(*desks, return_exceptions=True)
        summary = DemoSummary(ok=True, seconds=time.monotonic() - started, grants=self.grants)
        for g in self.grants:
            summary.outcomes[stage_name(g.status)] += 1
            if g.status != g.scenario.expected:
                summary.ok = False
        return summary

    # ------------------------------------------------------------------ one application

    async def drive(self, g: Tracked) -> None:
        s = g.scenario
        g.credit_code = credit_code(1000 + g.index, authority=s.authority)
        names = NAMES[s.authority]
        g.name = names[g.index % len(names)]
        applicant = ServiceClients(
            self.settings,
            mint_token(
                self.settings.auth_secret, g.credit_code, Role.APPLICANT, enterprise=g.credit_code
            ),
        )
        try:
            await self.file(applicant, g)
            self.advance("已申报")
            if s.supplemented:  # asked to supplement by the formal check
                await self.wait_for(g, {S.GRANT_STAGE_AWAITING_SUPPLEMENT})
                await self.supplement(applicant, g, s.supplemented)
            # The experts and the auditor work their own inboxes (expert_desk, audit_desk).
            if await self.wait_for(g, {S.GRANT_STAGE_IN_REVIEW}) != S.GRANT_STAGE_IN_REVIEW:
                g.reviewed.set()
                self.advance("评审完毕")
                return await self.finish(g)  # the rule, the experts or the checks ended it
            await self.review_by_departments(applicant, g)
            g.reviewed.set()
            self.advance("评审完毕")
            if s.kind in ("objection_upheld", "objection_dismissed"):
                await self.object_during_notice(g, upheld=s.kind == "objection_upheld")
            await self.finish(g)
        finally:
            g.reviewed.set()
            await applicant.close()

    async def file(self, applicant: ServiceClients, g: Tracked) -> None:
        s = g.scenario
        rule = self.rules[s.program]
        g.submitted_at = time.monotonic()
        answer = await applicant.applications.SubmitApplication(
            applications_pb2.SubmitApplicationRequest(
                request_id=f"demo-{uuid.uuid4().hex}",
                program_code=s.program,
                applicant_credit_code=g.credit_code,
                applicant_name=g.name,
                project_title=f"{rule.name}项目（演示{g.index + 1}）",
                project_description="由 Grantflow 演示脚本申报。",
                figures=s.figures,
                documents=[document(g, name) for name in rule.required_documents],
            )
        )
        g.application_id = answer.application_id
        self.by_application[g.application_id] = g

    async def review_by_departments(self, applicant: ServiceClients, g: Tracked) -> None:
        s = g.scenario
        if s.after is not None:  # the over-budget batch is decided in the script's order
            await self.grants[s.after].reviewed.wait()
        departments = [
            Department.from_proto(d)
            for d in self.rules[s.program].review_departments
            if not s.departments or Department.from_proto(d).value in s.departments
        ]
        first, *others = departments
        if s.kind == "withdrawn":
            await self.open_tasks(g, first, 1)
            await applicant.applications.WithdrawApplication(
                applications_pb2.WithdrawApplicationRequest(
                    application_id=g.application_id, reason="项目推迟实施，主动撤回"
                )
            )
            return
        if s.kind == "rejected":
            await self.review(g, first, Decision.APPROVE)
            await self.review(
                g, others[0], Decision.REJECT, reason="同一项目已获市级其他专项资金资助"
            )
            return
        if s.kind == "returned":
            await self.review(
                g, first, Decision.RETURN_FOR_SUPPLEMENT, reason="缺少云服务费发票，请补充"
            )
            await self.wait_for(g, {S.GRANT_STAGE_AWAITING_SUPPLEMENT})
            await self.supplement(applicant, g, {})
            for department in departments:
                await self.review(g, department, Decision.APPROVE, round_=2)
            return
        await self.review(g, first, Decision.APPROVE, lower=s.kind == "paid_lower")
        for department in others:
            await self.review(g, department, Decision.APPROVE)

    async def finish(self, g: Tracked) -> None:
        status = await self.wait_for(g, {g.scenario.expected} | FINAL)
        g.finished_at = time.monotonic()
        self.advance("已办结")
        if status == S.GRANT_STAGE_PAID:
            self.advance("已拨付")

    async def supplement(
        self, applicant: ServiceClients, g: Tracked, corrected: dict[str, int]
    ) -> None:
        figures = {**g.scenario.figures, **corrected}
        await applicant.applications.SupplementApplication(
            applications_pb2.SupplementApplicationRequest(
                application_id=g.application_id,
                request_id=f"supp-{uuid.uuid4().hex}",
                figures=figures,
                note="已补充申报数据及发票",
                documents=[document(g, "发票")],
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
                    reason=reason or "符合项目申报条件",
                    approved_amount_fen=task.proposed_amount_fen * 8 // 10 if lower else 0,
                )
            )
        )

    async def object_during_notice(self, g: Tracked, *, upheld: bool) -> None:
        """An enterprise reports the project while it is noticed; the program's department
        handles the report: upheld, the award falls away; dismissed, it is noticed again."""
        stage = await self.wait_for(g, {S.GRANT_STAGE_IN_NOTICE})
        if stage != S.GRANT_STAGE_IN_NOTICE:
            return
        notices = await self.objector.notices.ListNotices(
            notice_pb2.ListNoticesRequest(program_code=g.scenario.program, open_only=True)
        )
        batch = next(
            n.batch_id
            for n in notices.notices
            if any(e.application_id == g.application_id for e in n.entries)
        )
        objection = await self.objector.notices.LodgeObjection(
            notice_pb2.LodgeObjectionRequest(
                request_id=f"objection-{uuid.uuid4().hex}",
                batch_id=batch,
                application_id=g.application_id,
                kind=ObjectionKind.REPORT.to_proto(),
                text="该项目与已获资助项目内容重复，涉嫌多头申报。",
                contact="0755-88000000",
            )
        )
        # Not the reviewer who decided the application: one person never decides two stages.
        department = Department.from_proto(self.rules[g.scenario.program].owner_department)
        token = mint_token(
            self.settings.auth_secret,
            f"{department}.objections",
            Role.REVIEWER,
            department=department,
        )
        async with ServiceClients(self.settings, token) as handler:
            await handler.notices.DecideObjection(
                notice_pb2.DecideObjectionRequest(
                    objection_id=objection.objection_id,
                    upheld=upheld,
                    consequence=(
                        ObjectionConsequence.FALL_AWAY.to_proto()
                        if upheld
                        else notice_pb2.OBJECTION_CONSEQUENCE_UNSPECIFIED
                    ),
                    reason=(
                        "经核查，该项目已获市级同类资金资助，举报属实，取消资助"
                        if upheld
                        else "经核查，两个项目建设内容不同，举报不成立"
                    ),
                )
            )

    async def wait_for(self, g: Tracked, stages: set[int]) -> int:
        while True:
            a = await self.ops.applications.GetApplication(
                applications_pb2.GetApplicationRequest(application_id=g.application_id)
            )
            g.status, g.award_fen, g.reason = a.status, a.award_amount_fen, a.status_reason
            if a.status in stages or a.status in FINAL:
                return int(a.status)
            await asyncio.sleep(0.25)

    # ------------------------------------------------------------------ experts and audit

    async def expert_desk(self) -> None:
        await self.keep_working("专家评分", self.score_pending)

    async def audit_desk(self) -> None:
        await self.keep_working("专项审计", self.confirm_open_audits)

    async def keep_working(self, desk: str, work: Callable[[], Awaitable[None]]) -> None:
        """A desk's round every 0.3 s; a refused or failed call is tried again next round (a
        desk that stopped would leave its applications waiting for ever)."""
        while True:
            try:
                await work()
            except grpc.aio.AioRpcError as error:
                self.console.print(f"{desk}：{error.code().name} {error.details()}，稍后重试")
            await asyncio.sleep(0.3)

    async def score_pending(self) -> None:
        """Each expert of the pool scores what he is drawn for, against the rubric, at the share
        of the points the script gives the application."""
        for clients in self.experts.values():
            mine = await clients.review.ListMyExpertTasks(
                review_pb2.ListMyExpertTasksRequest(pending_only=True)
            )
            for task in mine.tasks:
                g = self.by_application.get(task.application_id)
                share = g.scenario.expert_share if g else 80  # a file of an earlier run
                await clients.review.SubmitScores(
                    review_pb2.SubmitScoresRequest(
                        task_id=task.task_id,
                        scores=[
                            review_pb2.CriterionScore(code=c.code, score_centi=c.max_points * share)
                            for c in task.rubric
                        ],
                        comment="依据评分细则独立评分",
                    )
                )

    async def confirm_open_audits(self) -> None:
        """The auditor confirms each audited figure: the declared one, or less where the script
        says the audit found less (the lower counts)."""
        tasks = await self.auditor.review.ListAuditTasks(
            review_pb2.ListAuditTasksRequest(open_only=True)
        )
        for task in tasks.tasks:
            g = self.by_application.get(task.application_id)
            share = g.scenario.audited_share if g else 100
            await self.auditor.review.ConfirmAudit(
                review_pb2.ConfirmAuditRequest(
                    task_id=task.task_id,
                    audited_fen=task.declared_fen * share // 100,
                    note="审计确认" if share == 100 else "部分发票不符合要求，予以核减",
                )
            )

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
                        title=f"{self.rules[program].name} 2026年第1批资助计划",
                    )
                )
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    continue  # nothing noticed in this program
                raise
            await self.confirm_accounts(plan)
            approve = disbursement_pb2.ApproveFundingPlanRequest(plan_id=plan.plan_id)
            plan = await self.checker.disbursement.ApproveFundingPlan(approve)
            if plan.state == disbursement_pb2.PLAN_STATE_AWAITING_SECOND_APPROVAL:
                plan = await self.second_checker.disbursement.ApproveFundingPlan(approve)
            plans.append(plan)
        return plans

    async def confirm_accounts(self, plan: disbursement_pb2.FundingPlan) -> None:
        """Each recipient in the plan confirms its receiving account (收款账户) before it is
        paid: payments go only to a confirmed account."""
        for line in plan.lines:
            code = line.applicant_credit_code
            async with ServiceClients(
                self.settings,
                mint_token(self.settings.auth_secret, code, Role.APPLICANT, enterprise=code),
            ) as applicant:
                digits = "".join(ch for ch in code if ch.isdigit())
                await applicant.disbursement.ConfirmReceivingAccount(
                    disbursement_pb2.ConfirmReceivingAccountRequest(
                        request_id=f"demo-account-{line.application_id}",
                        application_id=line.application_id,
                        account=disbursement_pb2.AccountDetails(
                            account_name=line.applicant_name,
                            account_number=f"44{digits[-14:]:0>14}",
                            bank_code="102584000016",
                            bank_name="中国工商银行深圳分行营业部",
                        ),
                    )
                )


def document(g: Tracked, name: str) -> common_pb2.DocumentRef:
    return common_pb2.DocumentRef(
        name=name,
        uri=f"s3://grantflow-docs/{g.credit_code}/{uuid.uuid4().hex[:8]}.pdf",
        sha256="0" * 64,
    )


async def retry_unavailable(call: Callable[[], Awaitable[object]], attempts: int = 20) -> object:
    for attempt in range(attempts):
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def run_demo(settings: Settings, console: Console, count: int = len(SCRIPT)) -> DemoSummary:
    programs, budgets = await seed_catalogue(settings)
    experts = await seed_experts(settings)
    console.print(f"已发布 {programs} 个项目版本，设定 {budgets} 项预算，专家库 {experts} 位专家")
    topped = await top_up_budgets(settings)
    if topped:
        console.print("此前的演示已用去预算，已追加：" + "，".join(topped))
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
                    f"财政：zhang.finance 编制、chen.finance 审核通过 {len(plans)} 个资助计划："
                    + "，".join(f"{p.title}（{len(p.lines)} 项）" for p in plans)
                )
                break
            await asyncio.sleep(0.5)
        summary = await runner
    finally:
        await demo.close()
    print_summary(console, summary)
    return summary


def print_summary(console: Console, summary: DemoSummary) -> None:
    table = Table("申请编号", "项目类别", "申请单位", "情形", "状态", "资助金额", "用时(秒)")
    for g in summary.grants:
        table.add_row(
            g.application_id[:8],
            g.scenario.program,
            g.name.removeprefix("深圳市").removesuffix("有限公司")[:12],
            KINDS[g.scenario.kind],
            stage_label(stage_name(g.status)),
            yuan(g.award_fen) if g.award_fen else "",
            f"{g.finished_at - g.submitted_at:.1f}" if g.finished_at else "",
        )
    console.print(table)
    paid = [
        g.finished_at - g.submitted_at for g in summary.grants if g.status == S.GRANT_STAGE_PAID
    ]
    console.print(
        f"{len(summary.grants)} 项申请，用时 {summary.seconds:.1f} 秒："
        + "，".join(f"{stage_label(k)} {n} 项" for k, n in sorted(summary.outcomes.items()))
        + (f"；从申报到拨付 {min(paid):.1f}–{max(paid):.1f} 秒" if paid else "")
        + ("" if summary.ok else " [red]（有申请未按脚本办结）[/red]")
    )
