"""`grantflow plan create | add | remove`: what the commands ask the disbursement service
(filter, list from a file, the awarded-before day as Beijing midnight) and what they print,
Chinese first with the totals per program. The service is stood in for at the CLI's one gRPC
entry point (grantflow.cli.call); the integration tests cover the service itself."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from grantflow import cli
from grantflow.v1 import disbursement_pb2 as pb

PLAN = pb.FundingPlan(
    plan_id="f" * 32,
    budget_line_code="SME-SUPPORT",
    total_fen=350_000,
    second_approval_required=True,
    lines=[pb.PaymentLine(application_id=a) for a in ("a-1", "a-2", "b-1")],
    programs=[
        pb.FundingPlanProgram(program_code="SME-CLOUD", line_count=2, amount_fen=300_000),
        pb.FundingPlanProgram(program_code="SME-DIGITAL", line_count=1, amount_fen=50_000),
    ],
)


class Disbursement:
    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def CreateFundingPlan(self, request: Any) -> pb.FundingPlan:
        self.requests.append(request)
        return PLAN

    async def EditFundingPlan(self, request: Any) -> pb.FundingPlan:
        self.requests.append(request)
        return PLAN


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Disbursement:
    stand_in = Disbursement()

    class Clients:
        disbursement = stand_in

    def call(token: str, name: str, rpc: Any) -> Any:
        import asyncio

        assert name == "disbursement"
        return asyncio.run(rpc(Clients()))

    monkeypatch.setattr(cli, "call", call)
    monkeypatch.setattr(cli, "token_for", lambda *args, **kwargs: "token")
    return stand_in


def test_create_by_filter_and_by_list_from_a_file(service: Disbursement, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli.app,
        ["plan", "create", "--budget-line", "SME-SUPPORT", "--program", "SME-CLOUD",
         "--program", "SME-DIGITAL", "--awarded-before", "2026-06-01", "--max-lines", "500"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [request] = service.requests
    assert (request.budget_line_code, list(request.program_codes), request.max_lines) == (
        "SME-SUPPORT",
        ["SME-CLOUD", "SME-DIGITAL"],
        500,
    )
    # The day starts at midnight in Beijing: 16:00 UTC the day before.
    assert request.awarded_before.ToDatetime(tzinfo=UTC) == datetime(2026, 5, 31, 16, tzinfo=UTC)
    lines = result.output.splitlines()
    assert lines[0].startswith(
        f"资助计划 {'f' * 32} 已编制（草稿）：预算科目 SME-SUPPORT，3 个项目"
    )
    assert "需二级审批" in lines[0] and f"plan {'f' * 32}: 3 lines" in lines[0]
    assert "项目类别 SME-CLOUD：2 个项目，¥3,000.00" in result.output
    assert "项目类别 SME-DIGITAL：1 个项目，¥500.00" in result.output

    listing = tmp_path / "awards.csv"
    listing.write_text("# 第二批\na-2,某公司\n\nb-1\n", encoding="utf-8")
    result = runner.invoke(
        cli.app, ["plan", "create", "--application", "a-1", "--from-file", str(listing)]
    )
    assert result.exit_code == 0, result.output
    assert list(service.requests[-1].application_ids) == ["a-1", "a-2", "b-1"]

    refused = runner.invoke(cli.app, ["plan", "create"])
    assert refused.exit_code != 0
    assert "请指定" in refused.output
    bad_day = runner.invoke(cli.app, ["plan", "create", "X", "--awarded-before", "June"])
    assert bad_day.exit_code != 0 and "YYYY-MM-DD" in bad_day.output


def test_add_and_remove_edit_a_draft(service: Disbursement) -> None:
    runner = CliRunner()
    added = runner.invoke(cli.app, ["plan", "add", "p" * 32, "a-2", "a-3", "--reason", "补充"])
    assert added.exit_code == 0, added.output
    removed = runner.invoke(cli.app, ["plan", "remove", "p" * 32, "a-1"])
    assert removed.exit_code == 0, removed.output
    add, remove = service.requests
    assert (add.plan_id, list(add.add_application_ids), add.reason) == (
        "p" * 32,
        ["a-2", "a-3"],
        "补充",
    )
    assert list(remove.remove_application_ids) == ["a-1"] and not remove.add_application_ids
    assert add.request_id != remove.request_id
    assert removed.output.startswith(f"资助计划 {'f' * 32} 已调整（草稿）")
