"""The people of the system, for tests on the real stack: an applicant files, reviewers of each
department claim and decide, finance officers make and check funding plans."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from functools import cache

from grantflow.sample import credit_code
from grantflow.timeline import grant_timeline
from grantflow.v1 import applications_pb2, common_pb2, disbursement_pb2, review_pb2
from services.applications.catalogue import load_catalogue
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.vocabulary import Department, Role


@cache
def required_documents(program: str) -> tuple[str, ...]:
    """The documents the newest catalogue version of a program requires at filing."""
    versions = [rule for rule in load_catalogue() if rule.code == program]
    return tuple(max(versions, key=lambda rule: rule.version).required_documents)


def documents_for(program: str, credit_code: str) -> list[common_pb2.DocumentRef]:
    return [
        common_pb2.DocumentRef(
            name=name, uri=f"s3://grantflow-test/{credit_code}/{index}.pdf", sha256="0" * 64
        )
        for index, name in enumerate(required_documents(program))
    ]


class Actors:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        secret = settings.auth_secret
        self.ops = ServiceClients(settings, mint_token(secret, "ops.test", Role.OPS))
        self.reviewers = {
            dept: ServiceClients(
                settings, mint_token(secret, f"{dept}.test", Role.REVIEWER, department=dept)
            )
            for dept in Department
        }
        self.maker = ServiceClients(settings, mint_token(secret, "maker.test", Role.FINANCE))
        self.checker = ServiceClients(settings, mint_token(secret, "checker.test", Role.FINANCE))
        self.second_checker = ServiceClients(
            settings, mint_token(secret, "second-checker.test", Role.FINANCE)
        )

    async def close(self) -> None:
        everyone = [self.ops, self.maker, self.checker, self.second_checker]
        for clients in [*everyone, *self.reviewers.values()]:
            await clients.close()

    async def submit_sme_cloud(self, number: int, fee_fen: int = 300_000) -> str:
        code = credit_code(50_000 + number)
        applicant = ServiceClients(
            self.settings,
            mint_token(self.settings.auth_secret, code, Role.APPLICANT, enterprise=code),
        )
        async with applicant:
            answer = await applicant.applications.SubmitApplication(
                applications_pb2.SubmitApplicationRequest(
                    request_id=f"test-{uuid.uuid4().hex}",
                    program_code="SME-CLOUD",
                    applicant_credit_code=code,
                    applicant_name=f"Test Enterprise {number}",
                    project_title=f"Cloud ERP {number}",
                    figures={
                        "cloud_fee_paid_fen": fee_fen,
                        "staff_count": 40,
                        "annual_revenue_fen": 3_000_000_000,
                    },
                    documents=documents_for("SME-CLOUD", code),
                )
            )
        return answer.application_id

    async def status(self, application_id: str) -> applications_pb2.Application:
        return await self.ops.applications.GetApplication(
            applications_pb2.GetApplicationRequest(application_id=application_id)
        )

    async def wait_for(
        self, application_ids: Iterable[str], stages: set[int], timeout: float = 120.0
    ) -> dict[str, int]:
        ids = list(application_ids)
        deadline = time.monotonic() + timeout
        seen: dict[str, int] = {}
        while True:
            for application_id in ids:
                seen[application_id] = int((await self.status(application_id)).status)
            if all(stage in stages for stage in seen.values()):
                return seen
            if time.monotonic() > deadline:
                names = {k: common_pb2.GrantStage.Name(v) for k, v in seen.items()}  # type: ignore[arg-type]
                stuck = [a for a, stage in seen.items() if stage not in stages]
                raise AssertionError(
                    f"not all reached {stages}: {names}\n{await self.explain(stuck[:3])}"
                )
            await asyncio.sleep(0.3)

    async def explain(self, application_ids: Iterable[str]) -> str:
        """What ops show tells of each grant (stages, tasks, funds, workflow history and retrying
        activities): a failed wait says where a grant stopped, not only that it did."""
        reports = []
        for application_id in application_ids:
            try:
                timeline = await grant_timeline(
                    self.settings,
                    mint_token(self.settings.auth_secret, "ops.test", Role.OPS),
                    application_id,
                )
            except Exception as error:  # the explanation must not hide the failure it explains
                reports.append(f"{application_id}: timeline unreadable: {error!r}")
                continue
            lines = [
                f"{e.at.isoformat()} {e.source} {e.what} {e.who} {e.detail}"
                for e in timeline.ordered()
            ]
            reports.append(
                f"--- {application_id} {timeline.summary} missing={timeline.missing}\n"
                + "\n".join(lines[-40:])
            )
        return "\n".join(reports)

    async def approve(
        self,
        application_id: str,
        departments: Iterable[Department] = (Department.INDUSTRY, Department.FINANCE),
    ) -> None:
        for dept in departments:
            reviewer = self.reviewers[dept]
            task = await self.open_task(application_id, dept)
            await reviewer.review.ClaimTask(review_pb2.ClaimTaskRequest(task_id=task.task_id))
            await reviewer.review.DecideTask(
                review_pb2.DecideTaskRequest(
                    task_id=task.task_id,
                    decision=review_pb2.REVIEW_DECISION_APPROVE,
                    reason="meets the rules",
                )
            )

    async def open_task(
        self, application_id: str, department: Department, timeout: float = 60.0
    ) -> review_pb2.ReviewTask:
        deadline = time.monotonic() + timeout
        while True:
            answer = await self.reviewers[department].review.ListTasks(
                review_pb2.ListTasksRequest(
                    department=department.to_proto(),
                    application_id=application_id,
                    filter=review_pb2.TASK_FILTER_OPEN,
                )
            )
            if answer.tasks:
                return answer.tasks[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no open {department} task for {application_id}")
            await asyncio.sleep(0.2)

    async def fund(self, program: str = "SME-CLOUD") -> disbursement_pb2.FundingPlan:
        plan = await self.maker.disbursement.CreateFundingPlan(
            disbursement_pb2.CreateFundingPlanRequest(
                request_id=f"plan-{uuid.uuid4().hex}",
                program_code=program,
                title=f"{program} batch",
            )
        )
        approve = disbursement_pb2.ApproveFundingPlanRequest(plan_id=plan.plan_id)
        approved = await self.checker.disbursement.ApproveFundingPlan(approve)
        if approved.state == disbursement_pb2.PLAN_STATE_AWAITING_SECOND_APPROVAL:
            approved = await self.second_checker.disbursement.ApproveFundingPlan(approve)
        return approved
