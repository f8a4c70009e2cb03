"""`grantflow ops find`: grants found by business keys. The keys a grant's workflow carries as
search attributes (stage, program, credit code, pending departments, the application number in
its workflow id) are asked of Temporal's visibility store; overdue reviews are asked of the
review service, which owns tasks and their due dates, and failed payment lines of the
disbursement service, which owns payments. The rows are completed with the applicant's and the
project's names from the applications service."""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
from temporalio.common import SearchAttributeKey

from grantflow.v1 import applications_pb2, disbursement_pb2, review_pb2
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.labels import label
from services.common.temporal import connect_temporal
from services.common.vocabulary import Department, GrantStage, PaymentState
from workflows import contracts

# What may appear inside a quoted literal of a visibility query: the keys' own alphabets.
_LITERAL = re.compile(r"^[0-9A-Za-z_.-]+$")
# Overdue tasks or failed lines asked of a service per search (the newest grants first).
MAX_KEYS_FROM_SERVICES = 1000
_STAGE = SearchAttributeKey.for_keyword(contracts.SA_STAGE)
_PROGRAM = SearchAttributeKey.for_keyword(contracts.SA_PROGRAM)
_APPLICANT = SearchAttributeKey.for_keyword(contracts.SA_APPLICANT)
_PENDING = SearchAttributeKey.for_keyword_list(contracts.SA_PENDING_DEPARTMENTS)


class BadKey(ValueError):
    """A search key that cannot be one (it names the option)."""

    def __init__(self, option: str, value: str) -> None:
        super().__init__(f"{option}: {value!r} is not a valid value")
        self.option = option


@dataclass(frozen=True)
class GrantSearch:
    application: str = ""  # an application id or the start of one
    credit_code: str = ""
    program: str = ""
    stage: GrantStage | None = None
    department: Department | None = None  # its review is pending
    overdue: bool = False  # a review task past its due date
    failed_payment: bool = False  # stage PAYMENT_FAILED or a failed payment line
    limit: int = 50


@dataclass
class FoundGrant:
    application_id: str
    workflow_id: str
    workflow_status: str
    stage: str
    program: str
    credit_code: str
    pending_departments: list[str]
    applicant_name: str = ""
    project_title: str = ""
    notes: list[str] = field(default_factory=list)  # why it matched overdue / failed payment

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "stage_label": label(self.stage) if self.stage else ""}


def _literal(option: str, value: str) -> str:
    if not _LITERAL.match(value):
        raise BadKey(option, value)
    return f"'{value}'"


def _ids_clause(application_ids: set[str]) -> str:
    ids = ", ".join(
        _literal("application", contracts.grant_workflow_id(a)) for a in sorted(application_ids)
    )
    return f"WorkflowId IN ({ids})"


def visibility_query(
    search: GrantSearch,
    overdue_ids: set[str] | None = None,
    failed_ids: set[str] | None = None,
) -> str | None:
    """The visibility query of a search; None when the services' answers leave no grant."""
    clauses = [f"WorkflowType = '{contracts.GRANT_WORKFLOW}'"]
    if search.application:
        application = search.application.removeprefix("grant-")
        workflow_id = _literal("--application", contracts.grant_workflow_id(application))
        if re.fullmatch(r"[0-9a-f]{32}", application):
            clauses.append(f"WorkflowId = {workflow_id}")
        else:
            clauses.append(f"WorkflowId STARTS_WITH {workflow_id}")
    if search.credit_code:
        clauses.append(
            f"{contracts.SA_APPLICANT} = {_literal('--credit-code', search.credit_code)}"
        )
    if search.program:
        clauses.append(f"{contracts.SA_PROGRAM} = {_literal('--program', search.program)}")
    if search.stage is not None:
        clauses.append(f"{contracts.SA_STAGE} = '{search.stage.value}'")
    if search.department is not None:
        clauses.append(f"{contracts.SA_PENDING_DEPARTMENTS} = '{search.department.value}'")
    if overdue_ids is not None:
        if not overdue_ids:
            return None
        clauses.append(_ids_clause(overdue_ids))
    if failed_ids is not None:
        failed = f"{contracts.SA_STAGE} = '{GrantStage.PAYMENT_FAILED.value}'"
        clauses.append(f"({failed} OR {_ids_clause(failed_ids)})" if failed_ids else failed)
    return " AND ".join(clauses)


async def overdue_reviews(clients: ServiceClients) -> dict[str, list[str]]:
    """Application id -> what is overdue, from the review service (open or claimed tasks past
    their due date, every department)."""
    found: dict[str, list[str]] = {}
    token = ""
    while len(found) < MAX_KEYS_FROM_SERVICES:
        page = await clients.review.ListTasks(
            review_pb2.ListTasksRequest(
                filter=review_pb2.TASK_FILTER_OVERDUE, page_size=500, page_token=token
            )
        )
        for task in page.tasks:
            department = label(Department.from_proto(task.department))
            due = task.due_at.ToDatetime().strftime("%Y-%m-%d %H:%M")
            found.setdefault(task.application_id, []).append(
                f"{department}评审逾期（{due} UTC 到期）"
            )
        token = page.next_page_token
        if not token:
            break
    return found


async def failed_payments(clients: ServiceClients) -> dict[str, list[str]]:
    """Application id -> its failed payment lines, from the disbursement service."""
    answer = await clients.disbursement.ListPaymentLines(
        disbursement_pb2.ListPaymentLinesRequest(
            state=PaymentState.FAILED.to_proto(), limit=MAX_KEYS_FROM_SERVICES
        )
    )
    found: dict[str, list[str]] = {}
    for line in answer.lines:
        found.setdefault(line.application_id, []).append(
            f"拨付失败（计划 {line.plan_id}，尝试 {line.attempts} 次）：{line.failure_reason}"
        )
    return found


async def find_grants(settings: Settings, token: str, search: GrantSearch) -> list[FoundGrant]:
    async with ServiceClients(settings, token) as clients:
        overdue = await overdue_reviews(clients) if search.overdue else None
        failed = await failed_payments(clients) if search.failed_payment else None
        query = visibility_query(
            search,
            set(overdue) if overdue is not None else None,
            set(failed) if failed is not None else None,
        )
        if query is None:
            return []
        client = await connect_temporal(settings)
        rows: list[FoundGrant] = []
        async for execution in client.list_workflows(query, limit=search.limit):
            attributes = execution.typed_search_attributes
            application_id = execution.id.removeprefix("grant-")
            rows.append(
                FoundGrant(
                    application_id=application_id,
                    workflow_id=execution.id,
                    workflow_status=execution.status.name if execution.status else "",
                    stage=str(attributes.get(_STAGE) or ""),
                    program=str(attributes.get(_PROGRAM) or ""),
                    credit_code=str(attributes.get(_APPLICANT) or ""),
                    pending_departments=list(attributes.get(_PENDING) or []),
                    notes=[
                        *(overdue or {}).get(application_id, []),
                        *(failed or {}).get(application_id, []),
                    ],
                )
            )
        await asyncio.gather(*(_add_names(clients, row) for row in rows))
        return rows


async def _add_names(clients: ServiceClients, row: FoundGrant) -> None:
    try:
        application = await clients.applications.GetApplication(
            applications_pb2.GetApplicationRequest(application_id=row.application_id)
        )
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:  # a grant filed elsewhere: ids only
            raise
        return
    row.applicant_name = application.applicant_name
    row.project_title = application.project_title
