"""The local stack's money as data (infra/local/budgets.json): the funds, their support plans and
the plans' yearly budget lines that programs draw on (ProgramRule.budget_line_code), and the
per-program budgets the disbursement service used before budget lines existed.

Pure loading and checking; whoever seeds (grantflow seed, the demo) sends what it reads here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from grantflow.v1 import common_pb2
from services.common.vocabulary import Department

BUDGETS_FILE = Path(__file__).with_name("budgets.json")


@dataclass(frozen=True)
class BudgetLineYear:
    """One budget line's money for one fiscal year (the calendar year in China)."""

    fund_code: str
    fund_name: str
    department: Department
    plan_code: str
    plan_name: str
    line_code: str
    line_name: str
    fiscal_year: int
    amount_fen: int


def load_budget_lines(path: Path = BUDGETS_FILE) -> list[BudgetLineYear]:
    """Every (line, fiscal year) of every support plan of every fund, in file order. A bad data
    file fails loudly, naming the entry."""
    document = json.loads(path.read_text(encoding="utf-8"))
    lines: list[BudgetLineYear] = []
    seen: set[tuple[str, int]] = set()
    for fund in document["funds"]:
        department = Department.from_proto(common_pb2.Department.Value(fund["department"]))
        for plan in fund["support_plans"]:
            for line in plan["budget_lines"]:
                for year in line["years"]:
                    key = (line["line_code"], int(year["fiscal_year"]))
                    amount = int(year["amount_fen"])
                    if key in seen:
                        raise ValueError(f"{path}: budget line {key[0]} {key[1]} is listed twice")
                    if amount <= 0:
                        raise ValueError(f"{path}: budget line {key[0]} {key[1]} has no money")
                    seen.add(key)
                    lines.append(
                        BudgetLineYear(
                            fund_code=fund["code"],
                            fund_name=fund["name"],
                            department=department,
                            plan_code=plan["code"],
                            plan_name=plan["name"],
                            line_code=key[0],
                            line_name=line["name"],
                            fiscal_year=key[1],
                            amount_fen=amount,
                        )
                    )
    return lines


def legacy_program_budgets(path: Path = BUDGETS_FILE) -> dict[str, int]:
    """Per-program budgets (fen) for the disbursement service's SetProgramBudget, kept until
    budget lines replace them."""
    loaded: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))["budgets_fen"]
    return {program: int(total) for program, total in loaded.items()}
