"""The finance console's plan form over fake services (no stack): a budget line's view lists each
of its programs with what awaits a plan; the form sends CreateFundingPlan as a filter (the line,
the ticked programs, 最多N项) or as a list (the ticked awards); a refusal is shown beside its
field with nothing made, and an empty list is refused by the form before anything is sent."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from starlette.testclient import TestClient

from console.app import create_app
from console.backend import ServiceRefusal
from grantflow.v1 import applications_pb2, common_pb2
from grantflow.v1 import disbursement_pb2 as pb
from services.common.config import Settings

LINE = "2130199-DIGITAL"


def award(application_id: str, program: str, fen: int, at: int) -> applications_pb2.Application:
    answer = applications_pb2.Application(
        application_id=application_id,
        program_code=program,
        applicant_name=f"企业{application_id}",
        project_title="上云项目",
        award_amount_fen=fen,
    )
    answer.updated_at.seconds = at
    return answer


class FakeServices:
    """Three programs, two of them drawing on LINE; the awards awaiting a plan; the plans made."""

    def __init__(self) -> None:
        self.clients = self
        self.awaiting = {
            "SME-CLOUD": [
                award("a1", "SME-CLOUD", 10_000_000, 300),
                award("a2", "SME-CLOUD", 5, 100),
            ],
            "SME-DATA": [award("b1", "SME-DATA", 20_000_000, 200)],
            "TECH-MAJOR": [award("t1", "TECH-MAJOR", 7_000_000, 50)],
        }
        self.sent: list[pb.CreateFundingPlanRequest] = []
        self.made: list[pb.FundingPlan] = []
        self.refusal: ServiceRefusal | None = None

    def __getattr__(self, name: str) -> Any:
        if name in ("disbursement", "applications"):
            return self
        return name

    async def call(self, user: Any, method: Any, request: Any, **_: Any) -> Any:
        if method == "ListPrograms":
            return applications_pb2.ListProgramsResponse(
                programs=[
                    common_pb2.ProgramRule(
                        code="SME-CLOUD", name="上云补贴", version=2, budget_line_code=LINE
                    ),
                    common_pb2.ProgramRule(code="SME-CLOUD", name="上云补贴（旧）", version=1),
                    common_pb2.ProgramRule(
                        code="SME-DATA", name="数据补贴", version=1, budget_line_code=LINE
                    ),
                    common_pb2.ProgramRule(code="TECH-MAJOR", name="重大专项", version=1),
                ]
            )
        if method == "ListFundingPlans":
            return pb.ListFundingPlansResponse(plans=self.made)
        if method == "ListApplications":
            assert request.status == common_pb2.GRANT_STAGE_AWAITING_FUNDING_PLAN
            return applications_pb2.ListApplicationsResponse(
                applications=self.awaiting.get(request.program_code, [])
            )
        if method == "CreateFundingPlan":
            self.sent.append(request)
            if self.refusal is not None:
                raise self.refusal
            plan = pb.FundingPlan(plan_id=f"p{len(self.made) + 1}", title=request.title)
            self.made.append(plan)
            return plan
        raise AssertionError(method)

    async def close(self) -> None:
        pass


@pytest.fixture
def backend() -> FakeServices:
    return FakeServices()


@pytest.fixture
def client(backend: FakeServices) -> TestClient:
    app = create_app(Settings())
    app.__wrapped__.state.backend = backend  # type: ignore[attr-defined]  # inside asgi_csrf
    client = TestClient(app)
    client.get("/signin")
    answer = client.post(
        "/signin",
        data={"user": "maker", "role": "finance", "csrftoken": client.cookies["grantflow_csrf"]},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


def post(client: TestClient, **data: Any) -> Any:
    return client.post(
        "/finance/plans",
        data={
            "request_id": "r" * 32,
            "title": "数字化第一批",
            **data,
            "csrftoken": client.cookies["grantflow_csrf"],
        },
        follow_redirects=False,
    )


def test_a_budget_line_lists_its_programs_with_what_awaits_a_plan(client: TestClient) -> None:
    page = client.get(f"/finance/plans?line={LINE}")
    assert page.status_code == 200, page.text
    programs = page.text.split('data-testid="line-programs"')[1].split("</table>")[0]
    assert "上云补贴" in programs and "数据补贴" in programs and "重大专项" not in programs
    assert "100,000.05" in programs  # SME-CLOUD: two awards, 100,000.00 + 0.05 yuan
    assert "300,000.05" in programs  # the line's total
    assert programs.count('name="program_codes"') == 2 and programs.count("checked") == 2
    awaiting = page.text.split('data-testid="awaiting-awards"')[1].split("</table>")[0]
    # Every award of the line, oldest first, each with a box to tick.
    assert awaiting.index("a2") < awaiting.index("b1") < awaiting.index("a1")
    assert "t1" not in awaiting
    assert awaiting.count('name="application_ids"') == 3
    assert f'<option value="{LINE}" selected' in page.text


def test_an_unknown_budget_line_is_said_beside_the_select(client: TestClient) -> None:
    page = client.get("/finance/plans?line=NOPE")
    assert page.status_code == 200
    assert 'data-testid="line-error"' in page.text and "没有项目使用这个预算科目" in page.text
    assert 'data-testid="create-plan-form"' not in page.text


def test_a_filter_sends_the_line_its_ticked_programs_and_at_most_n(
    client: TestClient, backend: FakeServices
) -> None:
    answer = post(client, line=LINE, kind="filter", program_codes=["SME-DATA"], max_lines="1")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].endswith("/finance/plans/p1")
    (sent,) = backend.sent
    assert sent.budget_line_code == LINE
    assert list(sent.program_codes) == ["SME-DATA"]
    assert sent.max_lines == 1
    assert not sent.application_ids and not sent.program_code
    assert sent.request_id == "r" * 32 and sent.title == "数字化第一批"


def test_a_list_sends_exactly_the_ticked_awards_of_the_line(
    client: TestClient, backend: FakeServices
) -> None:
    answer = post(
        client, line=LINE, kind="list", program_codes=["SME-CLOUD"], application_ids=["a2", "b1"]
    )
    assert answer.status_code == 303, answer.text
    (sent,) = backend.sent
    assert list(sent.application_ids) == ["a2", "b1"]
    assert sent.budget_line_code == LINE
    # A list is bounded by the line only: the programs ticked for a filter do not narrow it.
    assert not sent.program_codes and not sent.max_lines and not sent.program_code


def test_one_programs_view_makes_its_filter_as_before_or_a_list_of_it(
    client: TestClient, backend: FakeServices
) -> None:
    assert post(client, program="TECH-MAJOR").status_code == 303
    assert post(client, program="TECH-MAJOR", kind="list", application_ids="t1").status_code == 303
    first, second = backend.sent
    assert first.program_code == "TECH-MAJOR" and not first.budget_line_code
    assert not first.program_codes and not first.application_ids
    assert list(second.application_ids) == ["t1"] and list(second.program_codes) == ["TECH-MAJOR"]
    assert not second.program_code


def test_a_refusal_is_shown_beside_its_field_and_nothing_is_made(
    client: TestClient, backend: FakeServices
) -> None:
    backend.refusal = ServiceRefusal(
        grpc.StatusCode.INVALID_ARGUMENT, "b1 is not waiting for a funding plan", "application_ids"
    )
    page = post(client, line=LINE, kind="list", application_ids=["a1", "b1"])
    assert page.status_code == 400
    error = page.text.split('data-testid="application-ids-error"')[1].split("</p>")[0]
    assert "b1" in error
    assert not backend.made
    # The form comes back as it was sent: the same request id, the list chosen, the ticks kept.
    assert 'value="' + "r" * 32 + '"' in page.text
    assert 'value="list" checked' in page.text
    assert 'value="a1" checked' in page.text and 'value="a2" checked' not in page.text

    backend.refusal = ServiceRefusal(
        grpc.StatusCode.INVALID_ARGUMENT, "names SME-DATA more than once", "program_codes[1]"
    )
    page = post(client, line=LINE, program_codes=["SME-DATA", "SME-DATA"])
    assert page.status_code == 400
    assert 'data-testid="program-codes-error"' in page.text

    backend.refusal = ServiceRefusal(
        grpc.StatusCode.FAILED_PRECONDITION, "no noticed awards waiting for a funding plan"
    )
    page = post(client, line=LINE, program_codes=["SME-DATA"])
    assert page.status_code == 409
    top = page.text.split('data-testid="plan-error"')[1].split("</p>")[0]
    assert "no noticed awards" in top or "没有" in top
    assert not backend.made


def test_the_form_refuses_an_empty_list_and_a_bad_n_before_sending(
    client: TestClient, backend: FakeServices
) -> None:
    page = post(client, line=LINE, kind="list", program_codes=["SME-CLOUD", "SME-DATA"])
    assert page.status_code == 400
    assert "请在下表中勾选要列入计划的资助" in page.text  # sent empty it would plan the whole line
    page = post(client, line=LINE, kind="filter", max_lines="十")
    assert page.status_code == 400
    assert 'data-testid="max-lines-error"' in page.text
    assert 'data-testid="program-codes-error"' in page.text  # no program of the line ticked
    assert backend.sent == []
