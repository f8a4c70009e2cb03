"""Clawbacks (追回) over real gRPC on SQLite and PostgreSQL: opened against a paid award only, a
receivable in the ledger, partial and full repayments (each idempotent, over-repayment refused),
the trial balance still balanced and the award's statement showing the clawback."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc

from grantflow.v1 import disbursement_pb2 as pb
from services.common.db import from_timestamp
from services.common.vocabulary import Role
from tests.integration.test_disbursement_service import (
    PROGRAM,
    Harness,
    awarded_plan,
    credit_code,
    expect_error,
    service,
    violated_field,
)

RECEIVABLE, PAID, RECOVERED = (
    f"clawback_receivable:{PROGRAM}",
    f"paid:{PROGRAM}",
    f"recovered:{PROGRAM}",
)


async def paid_award(h: Harness) -> pb.FundingPlan:
    """app-1 paid 150,000 fen; app-2 in a plan, not paid."""
    plan = await awarded_plan(h, {"app-1": 150_000, "app-2": 250_000})
    [line] = [line for line in plan.lines if line.application_id == "app-1"]
    paid = await h.system.ExecutePayment(
        pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=line.line_id)
    )
    assert paid.state == pb.PAYMENT_STATE_PAID
    return plan


def balances(trial: pb.TrialBalance) -> dict[str, int]:
    return {
        account.account: account.balance_fen
        for budget in trial.budgets
        for account in budget.accounts
    }


async def test_a_clawback_is_repaid_in_part_then_in_full_and_the_books_balance(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap, clawback_bar_years=2) as h:
        await paid_award(h)
        finance = h.as_("fin-c", Role.FINANCE)
        ops = h.as_("ops-1", Role.OPS)
        before = balances(await ops.GetTrialBalance(pb.GetTrialBalanceRequest()))

        opened = await finance.OpenClawback(
            pb.OpenClawbackRequest(
                request_id="clawback-0001",
                application_id="app-1",
                amount_fen=100_000,
                reason="虚报营收",
            )
        )
        assert opened.state == pb.CLAWBACK_STATE_OPEN
        assert (opened.amount_fen, opened.outstanding_fen) == (100_000, 100_000)
        assert opened.applicant_credit_code == credit_code(1)
        assert opened.opened_by == "fin-c"
        assert opened.workflow_id == f"clawback-{opened.clawback_id}"
        bar = from_timestamp(opened.bar_until) - from_timestamp(opened.opened_at)
        assert opened.bar_years == 2 and timedelta(days=730) <= bar <= timedelta(days=731)
        again = await finance.OpenClawback(
            pb.OpenClawbackRequest(
                request_id="clawback-0001",
                application_id="app-1",
                amount_fen=100_000,
                reason="虚报营收",
            )
        )
        assert again.clawback_id == opened.clawback_id
        [event] = h.outbox("ClawbackOpened")
        assert event.clawback_opened.clawback_id == opened.clawback_id
        assert event.clawback_opened.applicant_credit_code == credit_code(1)
        assert event.subject == "app-1"

        # More than what is left of the award to claw back (150,000 - 100,000).
        error = await expect_error(
            finance.OpenClawback(
                pb.OpenClawbackRequest(
                    request_id="clawback-0002",
                    application_id="app-1",
                    amount_fen=50_001,
                    reason="再追回",
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violated_field(error) == "amount_fen"

        def repay(request_id: str, amount: int) -> pb.RecordRepaymentRequest:
            return pb.RecordRepaymentRequest(
                request_id=request_id, clawback_id=opened.clawback_id, amount_fen=amount
            )

        partial = await finance.RecordRepayment(repay("repayment-1", 30_000))
        assert (partial.repaid_fen, partial.outstanding_fen) == (30_000, 70_000)
        assert partial.state == pb.CLAWBACK_STATE_OPEN
        replayed = await finance.RecordRepayment(repay("repayment-1", 30_000))
        assert replayed.repaid_fen == 30_000 and len(replayed.repayments) == 1
        await expect_error(
            finance.RecordRepayment(repay("repayment-1", 40_000)), grpc.StatusCode.ALREADY_EXISTS
        )
        error = await expect_error(
            finance.RecordRepayment(repay("repayment-2", 70_001)), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert violated_field(error) == "amount_fen"

        trial = await ops.GetTrialBalance(pb.GetTrialBalanceRequest())
        assert trial.balanced
        middle = balances(trial)
        assert middle[RECEIVABLE] == 70_000
        assert middle[RECOVERED] == 30_000
        assert middle[PAID] == before[PAID] - 100_000

        settled = await finance.RecordRepayment(repay("repayment-2", 70_000))
        assert settled.state == pb.CLAWBACK_STATE_SETTLED
        assert (settled.repaid_fen, settled.outstanding_fen) == (100_000, 0)
        assert [r.amount_fen for r in settled.repayments] == [30_000, 70_000]
        assert settled.HasField("settled_at")
        await expect_error(
            finance.RecordRepayment(repay("repayment-3", 1)), grpc.StatusCode.FAILED_PRECONDITION
        )

        trial = await ops.GetTrialBalance(pb.GetTrialBalanceRequest(program_code=PROGRAM))
        assert trial.balanced
        after = balances(trial)
        assert after[RECEIVABLE] == 0 and after[RECOVERED] == 100_000
        kinds = {
            account.account: account.kind for budget in trial.budgets for account in budget.accounts
        }
        assert kinds[RECEIVABLE] == pb.LEDGER_ACCOUNT_KIND_CLAWBACK_RECEIVABLE
        assert kinds[RECOVERED] == pb.LEDGER_ACCOUNT_KIND_RECOVERED

        statement = await ops.GetGrantStatement(pb.GetGrantStatementRequest(application_id="app-1"))
        assert statement.paid_fen == 150_000
        assert (statement.clawed_back_fen, statement.repaid_fen) == (100_000, 100_000)
        assert statement.receivable_fen == 0
        movements = [entry.movement for entry in statement.entries]
        assert movements.count(pb.LEDGER_MOVEMENT_CLAWBACK) == 2
        assert movements.count(pb.LEDGER_MOVEMENT_REPAYMENT) == 4
        journals = {entry.journal_id for entry in statement.entries}
        assert f"clawback-{opened.clawback_id}" in journals
        assert {f"repay-{r.repayment_id}" for r in settled.repayments} <= journals

        listed = await ops.ListClawbacks(pb.ListClawbacksRequest(application_id="app-1"))
        assert [c.clawback_id for c in listed.clawbacks] == [opened.clawback_id]
        shown = await ops.GetClawback(pb.GetClawbackRequest(clawback_id=opened.clawback_id))
        assert shown.state == pb.CLAWBACK_STATE_SETTLED


async def test_only_a_paid_award_is_clawed_back_and_bad_input_writes_nothing(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await paid_award(h)
        finance = h.as_("fin-c", Role.FINANCE)
        rows = h.count_rows()

        await expect_error(
            finance.OpenClawback(
                pb.OpenClawbackRequest(
                    request_id="clawback-000x",
                    application_id="app-2",
                    amount_fen=1,
                    reason="未拨付",
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        await expect_error(
            finance.OpenClawback(
                pb.OpenClawbackRequest(
                    request_id="clawback-000y",
                    application_id="app-9",
                    amount_fen=1,
                    reason="无此项目",
                )
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        for request, field in (
            (
                pb.OpenClawbackRequest(application_id="app-1", amount_fen=1, reason="r"),
                "request_id",
            ),
            (
                pb.OpenClawbackRequest(request_id="request-q1", amount_fen=1, reason="r"),
                "application_id",
            ),
            (
                pb.OpenClawbackRequest(request_id="request-q1", application_id="app-1", reason="r"),
                "amount_fen",
            ),
            (
                pb.OpenClawbackRequest(
                    request_id="request-q1", application_id="app-1", amount_fen=-5, reason="r"
                ),
                "amount_fen",
            ),
            (
                pb.OpenClawbackRequest(
                    request_id="request-q1", application_id="app-1", amount_fen=1, reason="  "
                ),
                "reason",
            ),
            (
                pb.OpenClawbackRequest(
                    request_id="request-q1", application_id="app-1", amount_fen=150_001, reason="r"
                ),
                "amount_fen",
            ),
        ):
            error = await expect_error(
                finance.OpenClawback(request), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert violated_field(error) == field
        error = await expect_error(
            finance.RecordRepayment(
                pb.RecordRepaymentRequest(request_id="request-q1", amount_fen=1)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violated_field(error) == "clawback_id"
        await expect_error(
            finance.RecordRepayment(
                pb.RecordRepaymentRequest(request_id="request-q1", clawback_id="nope", amount_fen=1)
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        assert h.count_rows() == rows
        assert h.outbox("ClawbackOpened") == []
        listed = await finance.ListClawbacks(pb.ListClawbacksRequest())
        assert list(listed.clawbacks) == []

        # Who may: finance opens and repays; ops reads; the system role does neither.
        await expect_error(
            h.as_("ops-1", Role.OPS).OpenClawback(
                pb.OpenClawbackRequest(
                    request_id="request-q1", application_id="app-1", amount_fen=1, reason="r"
                )
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await expect_error(
            h.system.ListClawbacks(pb.ListClawbacksRequest()), grpc.StatusCode.PERMISSION_DENIED
        )
