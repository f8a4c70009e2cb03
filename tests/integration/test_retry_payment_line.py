"""RetryPaymentLine on the real disbursement service: a failed line is made payable again for an
approved repair, paid once with the award's idempotency key, and the plan completes again; a
line whose award a later plan took, or one that was paid, is refused."""

from __future__ import annotations

from pathlib import Path

import grpc

from grantflow.v1 import disbursement_pb2 as pb
from services.common.vocabulary import Role
from services.disbursement.treasury import SimulatedTreasury
from tests.integration.test_disbursement_service import (
    PROGRAM,
    assert_books_balance,
    awarded_plan,
    credit_code,
    expect_error,
    next_plan,
    payment_journals,
    service,
)


async def test_a_failed_line_is_paid_again_once_and_the_plan_completes(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    treasury = SimulatedTreasury(
        f"sqlite:///{tmp_path / 'treasury.db'}", rejected_payees={credit_code(2)}
    )
    try:
        async with service(database_url, tmp_path, kafka_bootstrap, gateway=treasury) as h:
            plan = await awarded_plan(h, {"app-1": 150_000, "app-2": 250_000})
            good, bad = plan.lines
            await h.system.ExecutePayment(
                pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=good.line_id)
            )
            await h.system.MarkPaymentFailed(
                pb.MarkPaymentFailedRequest(
                    plan_id=plan.plan_id, line_id=bad.line_id, reason="account closed"
                )
            )
            complete = pb.CompleteFundingPlanRequest(plan_id=plan.plan_id)
            assert (await h.system.CompleteFundingPlan(complete)).state == (
                pb.PLAN_STATE_COMPLETED_WITH_FAILURES
            )
            retry = pb.RetryPaymentLineRequest(
                plan_id=plan.plan_id, line_id=bad.line_id, reason="账户已恢复，重新支付"
            )
            # Only Grantflow's own processes run it (for an approved repair).
            denied = await expect_error(
                h.as_("ops.wang", Role.OPS).RetryPaymentLine(retry),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert "RetryPaymentLine" in (denied.details() or "")
            await expect_error(
                h.system.RetryPaymentLine(
                    pb.RetryPaymentLineRequest(plan_id=plan.plan_id, line_id=bad.line_id)
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            await expect_error(
                h.system.RetryPaymentLine(
                    pb.RetryPaymentLineRequest(
                        plan_id=plan.plan_id, line_id=good.line_id, reason="x"
                    )
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            )

            reopened = await h.system.RetryPaymentLine(retry)
            assert (reopened.state, reopened.failure_reason) == (pb.PAYMENT_STATE_PENDING, "")
            assert await h.system.RetryPaymentLine(retry) == reopened  # idempotent
            treasury.rejected_payees = frozenset()  # the account works again
            paid = await h.system.ExecutePayment(
                pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=bad.line_id)
            )
            assert paid.state == pb.PAYMENT_STATE_PAID
            assert (
                await h.system.ExecutePayment(
                    pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=bad.line_id)
                )
                == paid
            )  # the award's key: paid once
            done = await h.system.CompleteFundingPlan(complete)
            assert done.state == pb.PLAN_STATE_COMPLETED
            completions = h.outbox("FundingPlanCompleted")
            assert [c.funding_plan_completed.failed_lines for c in completions] == [1, 0]
            assert len({c.event_id for c in completions}) == 2
            assert len(await payment_journals(h)) == 2
            budget = await h.system.GetProgramBudget(
                pb.GetProgramBudgetRequest(program_code=PROGRAM)
            )
            assert (budget.paid_fen, budget.reserved_fen) == (400_000, 0)
            await assert_books_balance(h)
    finally:
        await treasury.close()


async def test_a_line_whose_award_a_later_plan_took_is_not_retried(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    treasury = SimulatedTreasury(
        f"sqlite:///{tmp_path / 'treasury.db'}", rejected_payees={credit_code(1)}
    )
    try:
        async with service(database_url, tmp_path, kafka_bootstrap, gateway=treasury) as h:
            plan = await awarded_plan(h, {"app-1": 150_000})
            [line] = plan.lines
            await h.system.MarkPaymentFailed(
                pb.MarkPaymentFailedRequest(plan_id=plan.plan_id, line_id=line.line_id)
            )
            await next_plan(h, "2021 batch 2")  # takes the award
            refused = await expect_error(
                h.system.RetryPaymentLine(
                    pb.RetryPaymentLineRequest(
                        plan_id=plan.plan_id, line_id=line.line_id, reason="重新支付"
                    )
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            assert "later plan" in (refused.details() or "")
    finally:
        await treasury.close()
