"""The ledger's reports over real gRPC on SQLite and PostgreSQL: the trial balance (试算平衡表)
after reservations, releases and payments, and an award's statement (资金对账单)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from grantflow.v1 import disbursement_pb2 as pb
from services.common.vocabulary import Role
from tests.integration.test_disbursement_service import (
    LINE,
    LINED_PROGRAM,
    PROGRAM,
    Harness,
    _batch_request,
    _line_request,
    awarded_plan,
    credit_code,
    expect_error,
    reserve,
    service,
    violated_field,
)

LINE_KEY = f"{LINE}:2026"


async def books(h: Harness) -> pb.FundingPlan:
    """Money in every state: on the program's own budget app-1 paid, app-2 in a plan unpaid,
    app-3 reserved and released; on the budget line two awards of a batch reserved."""
    plan = await awarded_plan(h, {"app-1": 150_000, "app-2": 250_000})
    [line_1] = [line for line in plan.lines if line.application_id == "app-1"]
    paid = await h.system.ExecutePayment(
        pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=line_1.line_id)
    )
    assert paid.state == pb.PAYMENT_STATE_PAID
    await reserve(h.system, "app-3", 70_000, 3)
    await h.system.ReleaseReservation(
        pb.ReleaseReservationRequest(application_id="app-3", reason="撤回申报")
    )
    await h.as_("fin-a", Role.FINANCE).SetBudgetLine(_line_request())
    entries = [
        pb.AllocationEntry(
            application_id=f"app-{n}",
            amount_fen=amount,
            applicant_credit_code=credit_code(n),
            applicant_name=f"Enterprise {n} Ltd",
        )
        for n, amount in ((11, 100), (12, 120))
    ]
    await h.system.AllocateBatch(_batch_request(entries=entries))
    return plan


def sums(entries: Any) -> dict[str, tuple[int, int]]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for entry in entries:
        totals[entry.account][0] += entry.debit_fen
        totals[entry.account][1] += entry.credit_fen
    return {account: (debit, credit) for account, (debit, credit) in totals.items()}


def accounts(balance: pb.TrialBalance) -> dict[str, tuple[int, int]]:
    return {
        account.account: (account.debit_fen, account.credit_fen)
        for budget in balance.budgets
        for account in budget.accounts
    }


async def test_the_trial_balance_balances_and_agrees_with_the_ledger(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await books(h)
        finance = h.as_("fin-1", Role.FINANCE)
        ledger = (await finance.ListLedgerEntries(pb.ListLedgerEntriesRequest())).entries

        balance = await finance.GetTrialBalance(pb.GetTrialBalanceRequest())
        assert balance.balanced
        assert balance.debit_fen == balance.credit_fen == sum(e.debit_fen for e in ledger)
        assert accounts(balance) == sums(ledger)
        assert [b.budget_key for b in balance.budgets] == [PROGRAM, LINE_KEY]
        own, line = balance.budgets
        assert (own.program_code, own.budget_line_code, own.fiscal_year) == (PROGRAM, "", 0)
        assert (line.program_code, line.budget_line_code, line.fiscal_year) == ("", LINE, 2026)
        by_kind = {a.kind: a.balance_fen for a in own.accounts}
        assert by_kind == {
            pb.LEDGER_ACCOUNT_KIND_APPROPRIATION: -10_000_000,
            pb.LEDGER_ACCOUNT_KIND_AVAILABLE: 10_000_000 - 400_000,
            # app-2's line is in an approved plan: payable (应付), not merely reserved.
            pb.LEDGER_ACCOUNT_KIND_RESERVED: 0,
            pb.LEDGER_ACCOUNT_KIND_PAYABLE: 250_000,
            pb.LEDGER_ACCOUNT_KIND_PAID: 150_000,
        }
        for budget in balance.budgets:
            assert budget.debit_fen == budget.credit_fen
            for account in budget.accounts:
                assert account.balance_fen == account.debit_fen - account.credit_fen
        assert {a.kind: a.balance_fen for a in line.accounts} == {
            pb.LEDGER_ACCOUNT_KIND_APPROPRIATION: -300,
            pb.LEDGER_ACCOUNT_KIND_AVAILABLE: 80,
            pb.LEDGER_ACCOUNT_KIND_RESERVED: 220,
        }

        ops = h.as_("ops-1", Role.OPS)
        one = await ops.GetTrialBalance(pb.GetTrialBalanceRequest(budget_key=LINE_KEY))
        assert [b.budget_key for b in one.budgets] == [LINE_KEY] and one.balanced
        assert list(one.budgets) == [line]
        of_program = await ops.GetTrialBalance(pb.GetTrialBalanceRequest(program_code=PROGRAM))
        assert list(of_program.budgets) == [own]
        # A program on a budget line: the line's years (shared with the line's programs).
        lined = await ops.GetTrialBalance(pb.GetTrialBalanceRequest(program_code=LINED_PROGRAM))
        assert list(lined.budgets) == [line]

        # As of a moment: only what was posted by then (here: up to app-3's reservation).
        [reserved_3] = [e for e in ledger if e.journal_id == "reserve-app-3" and e.debit_fen > 0]
        cutoff = reserved_3.posted_at.ToDatetime()
        earlier = [e for e in ledger if e.posted_at.ToDatetime() <= cutoff]
        assert {e.journal_id for e in earlier} >= {"reserve-app-3"}
        assert "release-app-3" not in {e.journal_id for e in earlier}
        then = await finance.GetTrialBalance(pb.GetTrialBalanceRequest(as_of=reserved_3.posted_at))
        assert then.as_of == reserved_3.posted_at
        assert accounts(then) == sums(earlier) and then.balanced
        before = await finance.GetTrialBalance(
            pb.GetTrialBalanceRequest(as_of=Timestamp(seconds=86_400))
        )
        assert (list(before.budgets), before.debit_fen, before.balanced) == ([], 0, True)

        denied = grpc.StatusCode.PERMISSION_DENIED
        for caller in (
            h.system,
            h.as_("rev-1", Role.REVIEWER, department="industry"),
            h.as_("ent-1", Role.APPLICANT, enterprise=credit_code(1)),
        ):
            await expect_error(caller.GetTrialBalance(pb.GetTrialBalanceRequest()), denied)

        await expect_error(
            finance.GetTrialBalance(pb.GetTrialBalanceRequest(program_code="NEVER-PUBLISHED")),
            grpc.StatusCode.NOT_FOUND,
        )
        cases = [
            (pb.GetTrialBalanceRequest(budget_key="bad key"), "budget_key"),
            (pb.GetTrialBalanceRequest(budget_key=f"{LINE}:20x6"), "budget_key"),
            (pb.GetTrialBalanceRequest(budget_key=f"{LINE}:1999"), "budget_key"),
            (pb.GetTrialBalanceRequest(budget_key="A:B:2026"), "budget_key"),
            (pb.GetTrialBalanceRequest(program_code="A:B"), "program_code"),
            (pb.GetTrialBalanceRequest(budget_key=PROGRAM, program_code=PROGRAM), "program_code"),
            (pb.GetTrialBalanceRequest(as_of=Timestamp(seconds=10**12)), "as_of"),
        ]
        for request, field in cases:
            error = await expect_error(
                finance.GetTrialBalance(request), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert violated_field(error) == field, (request, error.details())


async def test_a_grant_statement_shows_the_awards_movements_to_whom_may_see_them(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        plan = await books(h)
        [line_1] = [line for line in plan.lines if line.application_id == "app-1"]
        request = pb.GetGrantStatementRequest(application_id="app-1")
        statement = await h.as_("fin-1", Role.FINANCE).GetGrantStatement(request)
        assert (statement.program_code, statement.budget_key, statement.state) == (
            PROGRAM,
            PROGRAM,
            pb.RESERVATION_STATE_PAID,
        )
        assert statement.applicant_credit_code == credit_code(1)
        assert (
            statement.reserved_fen,
            statement.released_fen,
            statement.paid_fen,
            statement.outstanding_fen,
        ) == (150_000, 0, 150_000, 0)
        assert [
            (e.movement, e.journal_id, e.account, e.debit_fen, e.credit_fen, e.balance_fen)
            for e in statement.entries
        ] == [
            (
                pb.LEDGER_MOVEMENT_RESERVATION,
                "reserve-app-1",
                f"budget:{PROGRAM}:reserved",
                150_000,
                0,
                150_000,
            ),
            (
                pb.LEDGER_MOVEMENT_RESERVATION,
                "reserve-app-1",
                f"budget:{PROGRAM}:available",
                0,
                150_000,
                -150_000,
            ),
            (
                pb.LEDGER_MOVEMENT_PAYABLE,
                f"payable-{line_1.line_id}-1",
                f"payable:{PROGRAM}",
                150_000,
                0,
                150_000,
            ),
            (
                pb.LEDGER_MOVEMENT_PAYABLE,
                f"payable-{line_1.line_id}-1",
                f"budget:{PROGRAM}:reserved",
                0,
                150_000,
                0,
            ),
            (
                pb.LEDGER_MOVEMENT_PAYMENT,
                f"pay-{line_1.line_id}",
                f"paid:{PROGRAM}",
                150_000,
                0,
                150_000,
            ),
            (
                pb.LEDGER_MOVEMENT_PAYMENT,
                f"pay-{line_1.line_id}",
                f"payable:{PROGRAM}",
                0,
                150_000,
                0,
            ),
        ]
        stamps = [e.posted_at.ToDatetime() for e in statement.entries]
        assert stamps == sorted(stamps)

        # The applicant of the enterprise reads its own; another enterprise's is refused.
        own = h.as_("ent-1", Role.APPLICANT, enterprise=credit_code(1))
        assert await own.GetGrantStatement(request) == statement
        other = h.as_("ent-2", Role.APPLICANT, enterprise=credit_code(2))
        await expect_error(other.GetGrantStatement(request), grpc.StatusCode.PERMISSION_DENIED)
        for caller in (h.system, h.as_("rev-1", Role.REVIEWER, department="industry")):
            await expect_error(caller.GetGrantStatement(request), grpc.StatusCode.PERMISSION_DENIED)

        ops = h.as_("ops-1", Role.OPS)
        unpaid = await ops.GetGrantStatement(pb.GetGrantStatementRequest(application_id="app-2"))
        assert (unpaid.state, unpaid.paid_fen, unpaid.outstanding_fen) == (
            pb.RESERVATION_STATE_IN_PLAN,
            0,
            250_000,
        )
        released = await ops.GetGrantStatement(pb.GetGrantStatementRequest(application_id="app-3"))
        assert [e.movement for e in released.entries] == [
            pb.LEDGER_MOVEMENT_RESERVATION,
            pb.LEDGER_MOVEMENT_RESERVATION,
            pb.LEDGER_MOVEMENT_RELEASE,
            pb.LEDGER_MOVEMENT_RELEASE,
        ]
        assert (released.reserved_fen, released.released_fen, released.outstanding_fen) == (
            70_000,
            70_000,
            0,
        )
        on_line = await ops.GetGrantStatement(pb.GetGrantStatementRequest(application_id="app-12"))
        assert (on_line.budget_key, on_line.outstanding_fen) == (LINE_KEY, 120)

        await expect_error(
            ops.GetGrantStatement(pb.GetGrantStatementRequest(application_id="app-404")),
            grpc.StatusCode.NOT_FOUND,
        )
        for bad in ("", "app 1", "x" * 129):
            error = await expect_error(
                ops.GetGrantStatement(pb.GetGrantStatementRequest(application_id=bad)),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            assert violated_field(error) == "application_id"
