"""The local stack's money as data (infra/local/budgets.json): funds, support plans and their
yearly budget lines, and the budgets of programs that name no line. The seed sets what is not set
yet and never overrides what finance set; a repeated demo tops lines up again."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

from grantflow.v1 import disbursement_pb2
from services.common.clients import ServiceClients
from services.common.vocabulary import Department

BUDGETS_FILE = Path(__file__).resolve().parents[1] / "infra" / "local" / "budgets.json"


@dataclass(frozen=True)
class SeedLine:
    fund_code: str
    fund_name: str
    support_plan_code: str
    support_plan_name: str
    department: Department
    line_code: str
    line_name: str
    fiscal_year: int
    total_fen: int

    def request(self) -> disbursement_pb2.SetBudgetLineRequest:
        return disbursement_pb2.SetBudgetLineRequest(
            line_code=self.line_code,
            fiscal_year=self.fiscal_year,
            total_fen=self.total_fen,
            name=self.line_name,
            support_plan_code=self.support_plan_code,
            support_plan_name=self.support_plan_name,
            department=self.department.to_proto(),
            fund_code=self.fund_code,
            fund_name=self.fund_name,
            reason="初始化预算（infra/local/budgets.json）",
        )


def configured_lines(path: Path = BUDGETS_FILE) -> list[SeedLine]:
    lines = []
    for fund in json.loads(path.read_text())["funds"]:
        for plan in fund["support_plans"]:
            for line in plan["lines"]:
                for year, total in sorted(line["years_fen"].items()):
                    lines.append(
                        SeedLine(
                            fund["code"],
                            fund["name"],
                            plan["code"],
                            plan["name"],
                            Department.parse(plan["department"]),
                            line["code"],
                            line["name"],
                            int(year),
                            int(total),
                        )
                    )
    return lines


def configured_budgets(path: Path = BUDGETS_FILE) -> dict[str, int]:
    """Budgets of programs of their own (for programs whose catalogue rule names no line)."""
    loaded: dict[str, int] = json.loads(path.read_text()).get("budgets_fen", {})
    return loaded


async def seed_lines(clients: ServiceClients, lines: list[SeedLine]) -> int:
    """Sets each configured line's year that has no budget yet (as finance); answers how many."""
    disbursement = clients.disbursement
    set_now = 0
    for line in lines:
        try:
            await disbursement.GetBudgetLine(
                disbursement_pb2.GetBudgetLineRequest(
                    line_code=line.line_code, fiscal_year=line.fiscal_year
                )
            )
            continue  # finance already set it; seeding never overrides a budget
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
        await disbursement.SetBudgetLine(line.request())
        set_now += 1
    return set_now


async def top_up_lines(clients: ServiceClients, lines: list[SeedLine]) -> list[str]:
    """For a repeated demo on the same data: raises each configured line's year so that its
    configured amount is available again (as finance). Answers what it changed."""
    disbursement = clients.disbursement
    changed = []
    for line in lines:
        current = await disbursement.GetBudgetLine(
            disbursement_pb2.GetBudgetLineRequest(
                line_code=line.line_code, fiscal_year=line.fiscal_year
            )
        )
        if current.available_fen < line.total_fen:
            total = current.total_fen + line.total_fen - current.available_fen
            await disbursement.SetBudgetLine(
                disbursement_pb2.SetBudgetLineRequest(
                    line_code=line.line_code,
                    fiscal_year=line.fiscal_year,
                    total_fen=total,
                    reason="演示重复运行：补足预算",
                )
            )
            changed.append(f"{line.line_code} {line.fiscal_year}")
    return changed
