"""The reviewers' pages rendered over a fake review service (no stack): money and points typed
by people become exact integers, the inbox and the task page render what the service answers,
and a refused GetTask shows no data of the task."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from starlette.testclient import TestClient

from console.app import create_app
from console.backend import ServiceRefusal
from console.pages.reviewer import hundredths, points
from grantflow.v1 import applications_pb2, common_pb2, review_pb2
from services.common.config import Settings
from services.common.vocabulary import Department


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1500", 150000),
        ("1,500.01", 150001),
        ("￥0.1", 10),
        (" 2e2 ", 20000),
        ("0.001", None),
        ("abc", None),
        ("", None),
        ("NaN", None),
        ("Infinity", None),
    ],
)
def test_typed_amounts_become_exact_hundredths(typed: str, expected: int | None) -> None:
    assert hundredths(typed) == expected


def test_points_print_without_trailing_zeros() -> None:
    assert [points(5250), points(3000), points(1), points(0)] == ["52.5", "30", "0.01", "0"]


TASK = review_pb2.ReviewTask(
    task_id="t1",
    application_id="a1",
    program_code="SME-CLOUD",
    department=common_pb2.DEPARTMENT_INDUSTRY,
    round=1,
    state=review_pb2.TASK_STATE_CLAIMED,
    assignee="li",
    proposed_amount_fen=150000,
    applicant_name="深圳某科技有限公司",
    project_title="云ERP上云",
    priority=50,
    overdue=True,
)
APPLICATION = applications_pb2.Application(
    application_id="a1",
    program_code="SME-CLOUD",
    applicant_name="深圳某科技有限公司",
    project_title="云ERP上云",
    figures={"cloud_fee_paid_fen": 300000, "staff_count": 40},
    documents=[common_pb2.DocumentRef(name="云服务合同", uri="s3://x/0.pdf", sha256="0" * 64)],
    eligibility=applications_pb2.EligibilityResult(
        passed=False,
        checks=[
            applications_pb2.EligibilityCheck(
                name="duplicate_funding",
                passed=False,
                reason_zh="同一项目已获资助",
                evidence_json='{"其他申请": ["a0"]}',
            )
        ],
        remaining_year_cap_fen=-1,
    ),
)


class FakeBackend:
    """Answers like the services for user "li" of industry; another department is refused."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.clients = self

    def __getattr__(self, name: str) -> Any:
        if name in ("review", "applications"):
            return self
        return name  # a stub method stands for itself: `call` dispatches on its name

    async def call(self, user: Any, method: Any, request: Any, **_: Any) -> Any:
        self.calls.append(method)
        if user.department != Department.INDUSTRY:
            raise ServiceRefusal(grpc.StatusCode.PERMISSION_DENIED, "another department")
        if method == "ListTasks":
            return review_pb2.ListTasksResponse(
                tasks=[TASK] if not request.application_id else [],
                counts=review_pb2.TaskCounts(open=3, unclaimed=2, mine=1, overdue=1),
                next_page_token="tok",
            )
        if method == "GetTask":
            return TASK
        if method == "ClaimTask":
            claimed = review_pb2.ReviewTask()
            claimed.CopyFrom(TASK)
            claimed.assignee = user.subject
            return claimed
        if method == "GetApplication":
            return APPLICATION
        if method == "ListAuditTasks":
            return review_pb2.ListAuditTasksResponse()
        if method == "DecideTask":
            if request.approved_amount_fen > TASK.proposed_amount_fen:
                raise ServiceRefusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "must not exceed the proposed amount of 150000 fen",
                    "approved_amount_fen",
                )
            return TASK
        raise AssertionError(method)

    async def close(self) -> None:
        pass


def _client(department: Department, role: str = "reviewer") -> tuple[TestClient, FakeBackend]:
    """A signed-in `role` of `department` (through the sign-in form, with its CSRF token)."""
    app = create_app(Settings())
    backend = FakeBackend()
    app.__wrapped__.state.backend = backend  # type: ignore[attr-defined]  # inside asgi_csrf
    client = TestClient(app)
    client.get("/signin")
    answer = client.post(
        "/signin",
        data={
            "user": "li",
            "role": role,
            "department": department.value,
            "csrftoken": client.cookies["grantflow_csrf"],
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    return client, backend


def test_the_inbox_shows_counts_rows_and_the_next_page() -> None:
    client, _ = _client(Department.INDUSTRY)
    page = client.get("/inbox")
    assert page.status_code == 200, page.text
    assert 'data-task-id="t1"' in page.text
    assert "云ERP上云" in page.text and "已逾期" in page.text
    assert "page=tok" in page.text
    assert ">3</span>" in page.text  # the open count


def test_the_task_page_shows_the_file_and_the_evidence() -> None:
    client, _ = _client(Department.INDUSTRY)
    page = client.get("/inbox/t1")
    assert page.status_code == 200, page.text
    assert "¥1,500.00" in page.text and "¥3,000.00" in page.text
    assert "云服务合同" in page.text and "同一项目已获资助" in page.text
    assert "&#34;其他申请&#34;: [\n    &#34;a0&#34;\n  ]" in page.text  # pretty-printed
    assert 'name="decision"' in page.text  # li has claimed it: the decision form


def test_another_departments_reviewer_sees_no_data_of_the_task() -> None:
    client, backend = _client(Department.HR)
    page = client.get("/inbox/t1")
    assert page.status_code == 403
    assert "无权访问" in page.text
    assert "云ERP" not in page.text and "1,500" not in page.text
    assert backend.calls == ["GetTask"]  # the application was never asked for


def test_an_amount_above_the_rule_is_shown_beside_the_amount() -> None:
    client, _ = _client(Department.INDUSTRY)
    form = {
        "decision": "approve_lower",
        "amount_yuan": "1500.01",
        "reason": "核减",
        "csrftoken": client.cookies["grantflow_csrf"],
    }
    page = client.post("/inbox/t1", data=form)
    assert page.status_code == 400
    assert 'data-field="amount_yuan">不能超过规则核定金额' in page.text
    missing = client.post("/inbox/t1", data={**form, "decision": "reject", "reason": " "})
    assert missing.status_code == 400
    assert 'data-field="reason">请填写理由' in missing.text


def test_only_a_department_head_is_offered_reassignment() -> None:
    reviewer, _ = _client(Department.INDUSTRY)
    head, _ = _client(Department.INDUSTRY, "department_head")
    assert "/inbox/t1/reassign" not in reviewer.get("/inbox").text
    assert "/inbox/t1/reassign" in head.get("/inbox").text
    refused = reviewer.post(
        "/inbox/t1/reassign",
        data={"assignee": "x", "reason": "y", "csrftoken": reviewer.cookies["grantflow_csrf"]},
    )
    assert refused.status_code == 403


def test_a_claim_by_htmx_answers_the_row_alone() -> None:
    client, backend = _client(Department.INDUSTRY)
    row = client.post(
        "/inbox/t1/claim",
        headers={"hx-request": "true", "x-csrftoken": client.cookies["grantflow_csrf"]},
    )
    assert row.status_code == 200
    assert row.text.lstrip().startswith('<tr id="task-t1"')
    assert "<html" not in row.text
    assert backend.calls == ["ClaimTask"]
