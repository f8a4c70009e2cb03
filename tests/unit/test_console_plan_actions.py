"""The finance console's plan page over a fake disbursement service (no stack): a plan above the
second-approval level shows its two approvals (待二级审批 after the first), the first approver
approving again is told another officer must, and a plan not yet approved can be cancelled with a
reason (a missing one shown beside the form)."""

from __future__ import annotations

from typing import Any

import grpc
from starlette.testclient import TestClient

from console.app import create_app
from console.backend import ServiceRefusal
from grantflow.v1 import applications_pb2
from grantflow.v1 import disbursement_pb2 as pb
from services.common.config import Settings


class FakeDisbursement:
    """One plan of 6,000,000.00 yuan made by "maker", as the service keeps it."""

    def __init__(self) -> None:
        self.clients = self
        self.plan = pb.FundingPlan(
            plan_id="p1",
            program_code="SME-CLOUD",
            title="上云补贴第一批",
            state=pb.PLAN_STATE_DRAFT,
            created_by="maker",
            total_fen=600_000_000,
            second_approval_required=True,
            lines=[
                pb.PaymentLine(
                    line_id="l1",
                    plan_id="p1",
                    application_id="a1",
                    applicant_name="深圳某科技有限公司",
                    amount_fen=600_000_000,
                    state=pb.PAYMENT_STATE_PENDING,
                )
            ],
        )
        self.plan.created_at.GetCurrentTime()

    def __getattr__(self, name: str) -> Any:
        if name in ("disbursement", "applications"):
            return self
        return name

    async def call(self, user: Any, method: Any, request: Any, **_: Any) -> Any:
        plan = self.plan
        if method == "ListPrograms":
            return applications_pb2.ListProgramsResponse()
        if method == "GetFundingPlan":
            return plan
        if method == "ApproveFundingPlan":
            if user.subject == plan.created_by:
                raise ServiceRefusal(grpc.StatusCode.PERMISSION_DENIED, "the maker may not")
            if plan.state == pb.PLAN_STATE_DRAFT:
                plan.state = pb.PLAN_STATE_AWAITING_SECOND_APPROVAL
                plan.first_approved_by = user.subject
                plan.first_approved_at.GetCurrentTime()
            elif plan.first_approved_by == user.subject:
                raise ServiceRefusal(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "the second approval must come from another finance officer",
                )
            else:
                plan.state = pb.PLAN_STATE_APPROVED
                plan.approved_by = user.subject
            return plan
        if method == "CancelFundingPlan":
            if not request.reason:
                raise ServiceRefusal(grpc.StatusCode.INVALID_ARGUMENT, "is required", "reason")
            plan.state = pb.PLAN_STATE_CANCELLED
            plan.cancelled_by, plan.cancel_reason = user.subject, request.reason
            plan.lines[0].state = pb.PAYMENT_STATE_CANCELLED
            return plan
        raise AssertionError(method)

    async def close(self) -> None:
        pass


def signed_in(backend: FakeDisbursement, user: str) -> TestClient:
    app = create_app(Settings())
    app.__wrapped__.state.backend = backend  # type: ignore[attr-defined]  # inside asgi_csrf
    client = TestClient(app)
    client.get("/signin")
    answer = client.post(
        "/signin",
        data={"user": user, "role": "finance", "csrftoken": client.cookies["grantflow_csrf"]},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


def post(client: TestClient, path: str, **data: str) -> Any:
    return client.post(path, data={**data, "csrftoken": client.cookies["grantflow_csrf"]})


def test_two_approvals_are_shown_and_the_first_approver_cannot_give_the_second() -> None:
    backend = FakeDisbursement()
    first = signed_in(backend, "fin-b")
    page = first.get("/finance/plans/p1")
    assert page.status_code == 200, page.text
    assert "一级审批通过" in page.text and 'data-testid="cancel-form"' in page.text

    page = post(first, "/finance/plans/p1/approve")
    assert page.status_code == 200, page.text
    assert "待二级审批" in page.text  # the state's label
    assert 'data-testid="plan-first-checker">fin-b' in page.text
    assert "二级审批通过，开始拨付" in page.text

    refused = post(first, "/finance/plans/p1/approve")
    assert refused.status_code == 409
    assert "您已作一级审批" in refused.text

    second = signed_in(backend, "fin-c")
    page = post(second, "/finance/plans/p1/approve")
    assert "已审核，开始拨付" in page.text
    assert 'data-testid="plan-checker">fin-c' in page.text
    assert 'data-testid="approve-form"' not in page.text
    assert 'data-testid="cancel-form"' not in page.text


def test_a_plan_is_cancelled_with_a_reason() -> None:
    backend = FakeDisbursement()
    client = signed_in(backend, "maker")
    refused = post(client, "/finance/plans/p1/cancel", reason="  ")
    assert refused.status_code == 400
    assert 'data-testid="cancel-error"' in refused.text
    assert backend.plan.state == pb.PLAN_STATE_DRAFT

    page = post(client, "/finance/plans/p1/cancel", reason="名单有误")
    assert page.status_code == 200, page.text
    assert "已撤销" in page.text and "名单有误" in page.text
    assert "项目回到待下达资助计划" in page.text  # the flash
    assert 'data-testid="approve-form"' not in page.text
