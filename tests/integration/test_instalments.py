"""Awards paid in instalments over real gRPC on SQLite and PostgreSQL: the schedule fixed with the
award and shown, each instalment planned and paid by a line of its own (its own idempotency key,
instalment 1 keeping the award's), a later one only after its milestone released it, the whole
award reserved at the start and paid out part by part, the books balanced throughout."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from grantflow.v1 import disbursement_pb2 as pb
from services.common.db import to_timestamp
from services.common.vocabulary import Role
from services.disbursement.gateway import award_payment_key
from services.disbursement.use_cases import current_day
from tests.e2e.support import cli
from tests.integration.test_disbursement_service import (
    PROGRAM,
    Harness,
    account_of,
    assert_books_balance,
    confirm_account,
    credit_code,
    expect_error,
    reserve,
    service,
    set_budget,
    violated_field,
)

AWARD = 300_001  # three instalments: 100,000 + 100,000 + 100,001 fen
AWARDED_AT = datetime(2026, 3, 1, tzinfo=UTC)


def schedule(amounts: list[int]) -> list[pb.InstalmentItem]:
    milestones = [pb.MILESTONE_AWARD, pb.MILESTONE_ACCEPTANCE, pb.MILESTONE_AUDIT]
    return [
        pb.InstalmentItem(
            number=n,
            amount_fen=amount,
            milestone=milestones[n - 1],
            due_at=to_timestamp(AWARDED_AT + timedelta(days=365 * (n - 1))),
        )
        for n, amount in enumerate(amounts, start=1)
    ]


async def plan_and_pay(h: Harness, title: str, *, pay: bool = True) -> pb.FundingPlan:
    plan = await h.as_("fin-a", Role.FINANCE).CreateFundingPlan(
        pb.CreateFundingPlanRequest(
            request_id=f"plan-{uuid.uuid4().hex}", program_code=PROGRAM, title=title
        )
    )
    if not pay:
        return plan
    plan = await h.as_("fin-b", Role.FINANCE).ApproveFundingPlan(
        pb.ApproveFundingPlanRequest(plan_id=plan.plan_id)
    )
    for line in plan.lines:
        paid = await h.system.ExecutePayment(
            pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=line.line_id)
        )
        assert paid.state == pb.PAYMENT_STATE_PAID
    return plan


async def states(h: Harness) -> list[int]:
    found = await h.system.GetInstalmentSchedule(
        pb.GetInstalmentScheduleRequest(application_id="app-1")
    )
    return [part.state for part in found.instalments]


async def test_an_award_is_paid_instalment_by_instalment_each_after_its_milestone(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 10_000_000)
        await reserve(h.system, "app-1", AWARD, 1)
        await reserve(h.system, "app-2", 50_000, 2)
        S, R, PLANNED, PAID = (
            pb.INSTALMENT_STATE_SCHEDULED,
            pb.INSTALMENT_STATE_RELEASED,
            pb.INSTALMENT_STATE_IN_PLAN,
            pb.INSTALMENT_STATE_PAID,
        )

        # A schedule that does not add up to the award is refused, and nothing is written.
        refused = await expect_error(
            h.system.ConfirmAward(
                pb.ConfirmAwardRequest(
                    application_id="app-1", schedule=schedule([100_000, 100_000, 100_000])
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violated_field(refused) == "schedule"
        assert await states(h) == []
        funds = await h.as_("ops-1", Role.OPS).GetApplicationFunds(
            pb.GetApplicationFundsRequest(application_id="app-1")
        )
        assert funds.reservation.state == pb.RESERVATION_STATE_RESERVED

        parts = [100_000, 100_000, 100_001]
        await h.system.ConfirmAward(
            pb.ConfirmAwardRequest(application_id="app-1", schedule=schedule(parts))
        )
        await h.system.ConfirmAward(pb.ConfirmAwardRequest(application_id="app-2"))
        # Payments go only to confirmed receiving accounts.
        await confirm_account(h, "app-1", 1)
        await confirm_account(h, "app-2", 2)
        funds = await h.as_("ops-1", Role.OPS).GetApplicationFunds(
            pb.GetApplicationFundsRequest(application_id="app-1")
        )
        shown = funds.instalments
        assert [(p.number, p.of, p.amount_fen) for p in shown] == [
            (1, 3, 100_000),
            (2, 3, 100_000),
            (3, 3, 100_001),
        ]
        assert [p.milestone for p in shown] == [
            pb.MILESTONE_AWARD,
            pb.MILESTONE_ACCEPTANCE,
            pb.MILESTONE_AUDIT,
        ]
        assert shown[2].due_at.ToDatetime(UTC) == AWARDED_AT + timedelta(days=730)
        assert [p.state for p in shown] == [R, S, S]

        # Instalment 2 waits for instalment 1's payment.
        early = await expect_error(
            h.system.ReleaseInstalment(
                pb.ReleaseInstalmentRequest(
                    application_id="app-1", instalment=2, confirmed_by="rev-1"
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert "instalment 1" in (early.details() or "")

        first = await plan_and_pay(h, "2026 batch 1")
        assert sorted(
            (line.application_id, line.instalment, line.amount_fen) for line in first.lines
        ) == [
            ("app-1", 1, 100_000),
            ("app-2", 1, 50_000),
        ]
        treasury = h.treasury()
        assert await treasury.find_payment(award_payment_key("app-1"))  # today's key
        assert await states(h) == [PAID, S, S]
        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.reserved_fen, budget.paid_fen) == (AWARD - 100_000, 150_000)
        await assert_books_balance(h)

        # Partly paid: never released back to the budget; nothing waits for a plan.
        await expect_error(
            h.system.ReleaseReservation(
                pb.ReleaseReservationRequest(application_id="app-1", reason="withdrawn")
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        await expect_error(plan_and_pay(h, "nothing"), grpc.StatusCode.FAILED_PRECONDITION)

        released = await h.system.ReleaseInstalment(
            pb.ReleaseInstalmentRequest(
                application_id="app-1", instalment=2, confirmed_by="rev-1", note="验收报告 07号"
            )
        )
        again = await h.system.ReleaseInstalment(
            pb.ReleaseInstalmentRequest(application_id="app-1", instalment=2, confirmed_by="x")
        )
        assert (released.state, again.confirmed_by, again.note) == (R, "rev-1", "验收报告 07号")
        await expect_error(
            h.system.ReleaseInstalment(
                pb.ReleaseInstalmentRequest(
                    application_id="app-1", instalment=3, confirmed_by="rev-1"
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

        # A cancelled draft gives the instalment back; the next plan takes it.
        draft = await plan_and_pay(h, "draft", pay=False)
        assert [(line.instalment, line.amount_fen) for line in draft.lines] == [(2, 100_000)]
        assert await states(h) == [PAID, PLANNED, S]
        await h.as_("fin-b", Role.FINANCE).CancelFundingPlan(
            pb.CancelFundingPlanRequest(plan_id=draft.plan_id, reason="重做")
        )
        assert await states(h) == [PAID, R, S]
        second = await plan_and_pay(h, "2027 batch 1")
        assert [line.instalment for line in second.lines] == [2]
        assert await treasury.find_payment(award_payment_key("app-1", instalment=2))
        assert not await treasury.find_payment(award_payment_key("app-1", instalment=3))

        await h.system.ReleaseInstalment(
            pb.ReleaseInstalmentRequest(application_id="app-1", instalment=3, confirmed_by="fin")
        )
        third = await plan_and_pay(h, "2028 batch 1")
        assert [(line.instalment, line.amount_fen) for line in third.lines] == [(3, 100_001)]
        assert await states(h) == [PAID, PAID, PAID]
        statement = await h.as_("fin-a", Role.FINANCE).GetGrantStatement(
            pb.GetGrantStatementRequest(application_id="app-1")
        )
        assert statement.state == pb.RESERVATION_STATE_PAID
        assert (statement.reserved_fen, statement.paid_fen, statement.outstanding_fen) == (
            AWARD,
            AWARD,
            0,
        )
        assert len([e for e in statement.entries if e.movement == pb.LEDGER_MOVEMENT_PAYMENT]) == 6
        assert [p.number for p in statement.instalments] == [1, 2, 3]
        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.reserved_fen, budget.paid_fen) == (0, AWARD + 50_000)
        await assert_books_balance(h)


async def sync_returns(h: Harness) -> list[pb.PaymentLine]:
    synced = await h.as_("fin-r", Role.FINANCE).SyncGatewayReturns(pb.SyncGatewayReturnsRequest())
    return list(synced.returned)


async def funds(h: Harness) -> pb.ApplicationFunds:
    return await h.as_("ops-1", Role.OPS).GetApplicationFunds(
        pb.GetApplicationFundsRequest(application_id="app-1")
    )


async def change_account(h: Harness, number: str, version: int) -> None:
    """The applicant proposes a corrected account, a finance officer approves it."""
    await h.as_("applicant-1", Role.APPLICANT, enterprise=credit_code(1)).ProposeAccountChange(
        pb.ProposeAccountChangeRequest(
            request_id=f"change-{version}",
            application_id="app-1",
            account=account_of(1, number),
            reason="原账户已销户",
        )
    )
    await h.as_("fin-c", Role.FINANCE).ApproveAccountChange(
        pb.ApproveAccountChangeRequest(application_id="app-1", version=version)
    )


async def test_a_returned_instalment_is_paid_again_and_the_later_ones_follow(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 10_000_000)
        await reserve(h.system, "app-1", AWARD, 1)
        S, R, PAID, BACK = (
            pb.INSTALMENT_STATE_SCHEDULED,
            pb.INSTALMENT_STATE_RELEASED,
            pb.INSTALMENT_STATE_PAID,
            pb.INSTALMENT_STATE_RETURNED,
        )
        await h.system.ConfirmAward(
            pb.ConfirmAwardRequest(
                application_id="app-1", schedule=schedule([100_000, 100_000, 100_001])
            )
        )
        await confirm_account(h, "app-1", 1)
        await plan_and_pay(h, "2026 batch 1")
        treasury = h.treasury()

        # Instalment 1 comes back between instalments (the award AWARDED, waiting for 2).
        await treasury.return_payment(award_payment_key("app-1"), "收款账户已销户")
        [returned] = await sync_returns(h)
        assert (returned.instalment, returned.state) == (1, pb.PAYMENT_STATE_RETURNED)
        assert await states(h) == [BACK, S, S]
        found = await funds(h)
        assert (found.reservation.state, found.reservation.returns) == (
            pb.RESERVATION_STATE_AWARDED,
            1,
        )
        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.reserved_fen, budget.paid_fen) == (AWARD, 0)
        await assert_books_balance(h)
        statement = await h.as_("fin-a", Role.FINANCE).GetGrantStatement(
            pb.GetGrantStatementRequest(application_id="app-1")
        )
        assert [p.state for p in statement.instalments] == [BACK, S, S]
        assert (statement.paid_fen, statement.returned_fen) == (100_000, 100_000)
        assert statement.outstanding_fen == AWARD
        # What finance reads: the instalment came back and waits for the corrected account.
        env = {
            **os.environ,
            "DISBURSEMENT_ADDRESS": h.settings.disbursement_address,
            "AUTH_SECRET": h.settings.auth_secret,
            "DATA_DIR": str(tmp_path),
        }
        told = await asyncio.to_thread(cli, env, "finance", "statement", "app-1")
        assert told.status == 0, told.output
        assert "退汇 ¥1,000.00" in told.output
        assert "已退汇，待更正收款账户后重新拨付" in told.output
        # Not paid again to the account the bank sent it back from: no plan takes the award.
        await expect_error(plan_and_pay(h, "too early"), grpc.StatusCode.FAILED_PRECONDITION)
        # Nor is the award released with its money out at the bank's door.
        await expect_error(
            h.system.ReleaseReservation(
                pb.ReleaseReservationRequest(application_id="app-1", reason="withdrawn")
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

        # Instalment 2's milestone is confirmed meanwhile: released (it was paid once), and
        # still no plan takes the award while its account is not corrected.
        await h.system.ReleaseInstalment(
            pb.ReleaseInstalmentRequest(application_id="app-1", instalment=2, confirmed_by="rev")
        )
        assert await states(h) == [BACK, R, S]
        await expect_error(plan_and_pay(h, "still early"), grpc.StatusCode.FAILED_PRECONDITION)

        await change_account(h, "6000000000000009", 2)
        assert await states(h) == [R, R, S]
        again = await plan_and_pay(h, "2026 batch 2 (退汇重拨)")
        [line] = again.lines
        assert (line.instalment, line.amount_fen, line.reissue, line.idempotency_key) == (
            1,
            100_000,
            1,
            award_payment_key("app-1", instalment=1, reissue=1),
        )
        assert line.idempotency_key == "award-app-1-r1"
        assert await states(h) == [PAID, R, S]
        second = await plan_and_pay(h, "2027 batch 1")
        [line] = second.lines
        # Instalment 2 was never returned: its key has no reissue.
        assert (line.instalment, line.idempotency_key) == (2, "award-app-1-i2")
        await assert_books_balance(h)

        # The last instalment comes back after the award was paid whole, and the account was
        # changed in between: it waits for a plan again at once.
        await h.system.ReleaseInstalment(
            pb.ReleaseInstalmentRequest(application_id="app-1", instalment=3, confirmed_by="rev")
        )
        await plan_and_pay(h, "2028 batch 1")
        assert (await funds(h)).reservation.state == pb.RESERVATION_STATE_PAID
        await change_account(h, "7000000000000003", 3)
        await treasury.return_payment(award_payment_key("app-1", instalment=3), "户名不符")
        [returned] = await sync_returns(h)
        assert returned.instalment == 3
        assert await states(h) == [PAID, PAID, R]
        found = await funds(h)
        assert (found.reservation.state, found.reservation.returns) == (
            pb.RESERVATION_STATE_AWARDED,
            2,
        )
        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.reserved_fen, budget.paid_fen) == (100_001, 200_000)
        await assert_books_balance(h)
        last = await plan_and_pay(h, "2028 batch 2 (退汇重拨)")
        [line] = last.lines
        assert (line.instalment, line.idempotency_key) == (3, "award-app-1-i3-r1")
        assert await states(h) == [PAID, PAID, PAID]

        statement = await h.as_("fin-a", Role.FINANCE).GetGrantStatement(
            pb.GetGrantStatementRequest(application_id="app-1")
        )
        assert statement.state == pb.RESERVATION_STATE_PAID
        assert (statement.returned_fen, statement.outstanding_fen) == (200_001, 0)
        assert statement.paid_fen == AWARD + 200_001
        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.reserved_fen, budget.paid_fen) == (0, AWARD)
        trial = await h.as_("ops-1", Role.OPS).GetTrialBalance(pb.GetTrialBalanceRequest())
        books = {a.account: a.balance_fen for b in trial.budgets for a in b.accounts}
        assert trial.balanced and books[f"returned:{PROGRAM}"] == 0
        assert books[f"paid:{PROGRAM}"] == AWARD
        await assert_books_balance(h)
        # Each paid again to the account in force when it was paid again.
        made = {p.idempotency_key: p for p in await treasury.list_payments()}
        assert {key: (p.account_number, p.state) for key, p in made.items()} == {
            "award-app-1": (account_of(1).account_number, "returned"),
            "award-app-1-r1": ("6000000000000009", "settled"),
            "award-app-1-i2": ("6000000000000009", "settled"),
            "award-app-1-i3": ("6000000000000009", "returned"),
            "award-app-1-i3-r1": ("7000000000000003", "settled"),
        }
        reconciled = await h.as_("fin-r", Role.FINANCE).ReconcileDay(
            pb.ReconcileDayRequest(day=current_day().isoformat())
        )
        assert (reconciled.gateway_count, reconciled.matched_count) == (5, 5)
        assert reconciled.exception_count == 0
