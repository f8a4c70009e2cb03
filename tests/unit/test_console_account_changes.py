"""The finance console's receiving-account changes over a fake disbursement service (no stack):
the changes waiting for approval listed with the account in force beside the proposed one, the
proposer's own approval refused with the service's reason in Chinese beside the change and
nothing approved, another officer's approval taking the change off the list, the approve form
refused without its CSRF token; and a returned payment's reason (退汇原因) on the plan and
payments pages."""

from __future__ import annotations

from typing import Any

import grpc
from starlette.testclient import TestClient

from console.app import create_app
from console.backend import ServiceRefusal
from grantflow.v1 import applications_pb2
from grantflow.v1 import disbursement_pb2 as pb
from services.common.config import Settings


def account(version: int, number: str, given_by: str, **more: Any) -> pb.ReceivingAccount:
    return pb.ReceivingAccount(
        application_id="app-1",
        version=version,
        account_name="深圳市甲科技有限公司",
        account_number=number,
        bank_code="102584000016",
        bank_name="中国工商银行深圳分行营业部",
        given_by=given_by,
        **more,
    )


class FakeDisbursement:
    """One change of app-1's account proposed by fin-a, its award returned (退汇); a plan whose
    one line came back."""

    def __init__(self) -> None:
        self.clients = self
        self.calls: list[tuple[str, Any]] = []
        self.changes = [
            pb.AccountChange(
                application_id="app-1",
                applicant_name="深圳市甲科技有限公司",
                applicant_credit_code="91440300MA5DC1XX1A",
                program_code="SME-CLOUD",
                award_fen=200_000,
                award_state=pb.RESERVATION_STATE_RETURNED,
                current=account(1, "400000000000000001", "applicant-1"),
                proposed=account(2, "622202000000009876", "fin-a", reason="开户行来函：已销户"),
            )
        ]
        line = pb.PaymentLine(
            line_id="l1",
            plan_id="p1",
            application_id="app-1",
            applicant_name="深圳市甲科技有限公司",
            amount_fen=200_000,
            state=pb.PAYMENT_STATE_RETURNED,
            gateway_reference="TRX-1",
            return_reason="账户已销户",
        )
        line.returned_at.GetCurrentTime()
        self.plan = pb.FundingPlan(
            plan_id="p1",
            program_code="SME-CLOUD",
            title="上云补贴第一批",
            state=pb.PLAN_STATE_COMPLETED,
            created_by="maker",
            approved_by="checker",
            total_fen=200_000,
            lines=[line],
        )

    def __getattr__(self, name: str) -> Any:
        if name in ("disbursement", "applications"):
            return self
        return name

    async def call(self, user: Any, method: Any, request: Any, **_: Any) -> Any:
        self.calls.append((method, request))
        if method == "ListPrograms":
            return applications_pb2.ListProgramsResponse()
        if method == "ListAccountChanges":
            return pb.ListAccountChangesResponse(changes=self.changes)
        if method == "ApproveAccountChange":
            [change] = [c for c in self.changes if c.application_id == request.application_id]
            if user.subject == change.proposed.given_by:
                raise ServiceRefusal(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{user.subject} proposed this change: a second finance officer must "
                    "approve it (变更收款账户须另一名财务人员审批)",
                )
            assert request.version == change.proposed.version
            self.changes.remove(change)
            return pb.ReceivingAccounts(application_id=request.application_id)
        if method == "GetFundingPlan":
            return self.plan
        if method == "ListPaymentLines":
            return pb.ListPaymentLinesResponse(lines=self.plan.lines)
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


def approve(client: TestClient, **data: str) -> Any:
    return client.post(
        "/finance/accounts/app-1/approve",
        data={"version": "2", "csrftoken": client.cookies["grantflow_csrf"], **data},
    )


def approvals(backend: FakeDisbursement) -> list[Any]:
    return [request for method, request in backend.calls if method == "ApproveAccountChange"]


def test_the_proposer_is_refused_in_chinese_and_another_officer_approves() -> None:
    backend = FakeDisbursement()
    proposer = signed_in(backend, "fin-a")
    page = proposer.get("/finance/accounts")
    assert page.status_code == 200, page.text
    assert "收款账户变更" in page.text  # in the finance navigation and the title
    row = page.text.split('data-application="app-1"')[1]
    assert "400000000000000001" in row and "622202000000009876" in row  # both, to compare
    assert "已退汇，待更正收款账户后重新拨付" in row and "开户行来函：已销户" in row
    assert "此变更由您提出" in row  # the hint before trying

    refused = approve(proposer)
    assert refused.status_code == 409
    assert 'data-testid="approve-error">此项变更由您提出，须由另一名财务人员审批' in refused.text
    assert "fin-a proposed this change" in refused.text  # the service's words kept beside
    assert len(backend.changes) == 1  # nothing approved

    checker = signed_in(backend, "fin-b")
    done = approve(checker)
    assert done.status_code == 200, done.text
    assert "申报 app-1 的收款账户变更已审批" in done.text
    assert "没有待审批的收款账户变更" in done.text
    assert [(r.application_id, r.version) for r in approvals(backend)] == [
        ("app-1", 2),
        ("app-1", 2),
    ]


def test_the_approve_form_needs_its_csrf_token() -> None:
    backend = FakeDisbursement()
    client = signed_in(backend, "fin-b")
    answer = client.post("/finance/accounts/app-1/approve", data={"version": "2"})
    assert answer.status_code == 403
    assert approvals(backend) == [] and len(backend.changes) == 1


def test_a_returned_line_shows_its_reason_on_the_plan_and_payments_pages() -> None:
    backend = FakeDisbursement()
    client = signed_in(backend, "fin-b")
    plan = client.get("/finance/plans/p1").text
    assert 'data-testid="return-reason">退汇原因：账户已销户' in plan
    assert "已退汇" in plan
    payments = client.get("/finance/payments?state=returned").text
    assert 'data-testid="return-reason">退汇原因：账户已销户' in payments
    [(_, listed)] = [call for call in backend.calls if call[0] == "ListPaymentLines"]
    assert listed.state == pb.PAYMENT_STATE_RETURNED
