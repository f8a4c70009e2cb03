"""Receiving accounts (收款账户), late settlement and returned payments (退汇) over real gRPC on
SQLite and PostgreSQL: bad accounts refused with nothing written, no payment without a confirmed
account, a change approved only by a second finance officer, a settling payment resolved by the
gateway's status query and paid once, and a returned payment paid again to the corrected account
with a new key, the books balanced and reconciliation clean."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc

from grantflow.v1 import disbursement_pb2 as pb
from services.common.errors import REASON_PAYMENT_SETTLING, error_reason
from services.common.vocabulary import Role
from services.disbursement.use_cases import current_day
from tests.e2e.support import cli
from tests.integration.test_disbursement_service import (
    PROGRAM,
    Harness,
    account_of,
    assert_books_balance,
    awarded_plan,
    confirm_account,
    credit_code,
    expect_error,
    next_plan,
    reserve,
    service,
    set_budget,
    violated_field,
)


def balances(trial: pb.TrialBalance) -> dict[str, int]:
    return {a.account: a.balance_fen for b in trial.budgets for a in b.accounts}


def applicant(h: Harness, n: int) -> object:
    return h.as_(f"applicant-{n}", Role.APPLICANT, enterprise=credit_code(n))


async def test_bad_accounts_are_refused_field_by_field_and_nothing_is_written(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 1_000_000)
        await reserve(h.system, "app-1", 150_000, 1)
        own = h.as_("applicant-1", Role.APPLICANT, enterprise=credit_code(1))

        def confirm(request_id: str, **changes: str) -> pb.ConfirmReceivingAccountRequest:
            account = account_of(1)
            for name, value in changes.items():
                setattr(account, name, value)
            return pb.ConfirmReceivingAccountRequest(
                request_id=request_id, application_id="app-1", account=account
            )

        for changes, field in (
            ({"account_number": "6222-0200"}, "account.account_number"),
            ({"account_number": "1234567"}, "account.account_number"),
            ({"account_number": "0" * 19}, "account.account_number"),
            ({"bank_code": "10258400001"}, "account.bank_code"),
            ({"bank_code": "000584000016"}, "account.bank_code"),
            ({"bank_name": " "}, "account.bank_name"),
            ({"account_name": ""}, "account.account_name"),
            # Not the enterprise's registered name (the award carries "Enterprise 1 Ltd").
            ({"account_name": "Enterprise One Ltd"}, "account.account_name"),
        ):
            error = await expect_error(
                own.ConfirmReceivingAccount(confirm("bad-request-1", **changes)),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            assert violated_field(error) == field, changes
        # Another enterprise's applicant, and finance, cannot confirm it.
        other = h.as_("applicant-2", Role.APPLICANT, enterprise=credit_code(2))
        await expect_error(
            other.ConfirmReceivingAccount(confirm("bad-request-2")),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await expect_error(
            h.as_("fin-a", Role.FINANCE).ConfirmReceivingAccount(confirm("bad-request-3")),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert h.count_rows()["receiving_account"] == 0
        assert h.outbox("ReceivingAccountConfirmed") == []

        # Full-width brackets and spaces in the number are the same name and number.
        confirmed = await own.ConfirmReceivingAccount(
            confirm("ok-request-1", account_number="4000 0000 0000 0000 01")
        )
        assert confirmed.current.version == 1
        assert confirmed.current.state == pb.ACCOUNT_STATE_CONFIRMED
        assert confirmed.current.account_number == "400000000000000001"
        assert confirmed.current.given_by == "applicant-1"
        assert (
            await own.ConfirmReceivingAccount(
                confirm("ok-request-1", account_number="4000 0000 0000 0000 01")
            )
            == confirmed
        )
        # A second, different account is a change, not a confirmation.
        await expect_error(
            own.ConfirmReceivingAccount(confirm("ok-request-2", account_number="5000000000000001")),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        [event] = h.outbox("ReceivingAccountConfirmed")
        assert event.receiving_account_confirmed.account_number_tail == "0001"
        shown = await own.GetReceivingAccount(pb.GetReceivingAccountRequest(application_id="app-1"))
        assert shown.applicant_name == "Enterprise 1 Ltd" and len(shown.history) == 1
        await expect_error(
            other.GetReceivingAccount(pb.GetReceivingAccountRequest(application_id="app-1")),
            grpc.StatusCode.PERMISSION_DENIED,
        )


async def test_no_payment_without_a_confirmed_account_and_the_award_waits_for_a_later_plan(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 1_000_000)
        await reserve(h.system, "app-1", 150_000, 1)
        await h.system.ConfirmAward(pb.ConfirmAwardRequest(application_id="app-1"))
        plan = await next_plan(h, "2021 batch 1")
        [line] = plan.lines
        request = pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=line.line_id)
        error = await expect_error(
            h.system.ExecutePayment(request), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert "收款账户未确认" in (error.details() or "")
        assert await h.treasury().list_payments() == []
        # The payment run fails the line with that reason: the award waits for a later plan.
        failed = await h.system.MarkPaymentFailed(
            pb.MarkPaymentFailedRequest(
                plan_id=plan.plan_id, line_id=line.line_id, reason=error.details()
            )
        )
        assert failed.state == pb.PAYMENT_STATE_FAILED and "收款账户未确认" in failed.failure_reason
        funds = await h.as_("ops-1", Role.OPS).GetApplicationFunds(
            pb.GetApplicationFundsRequest(application_id="app-1")
        )
        assert funds.reservation.state == pb.RESERVATION_STATE_AWARDED
        await assert_books_balance(h)  # the line's payable went back to reserved

        await confirm_account(h, "app-1", 1)
        again = await next_plan(h, "2021 batch 2")
        [line] = again.lines
        paid = await h.system.ExecutePayment(
            pb.ExecutePaymentRequest(plan_id=again.plan_id, line_id=line.line_id)
        )
        assert paid.state == pb.PAYMENT_STATE_PAID
        assert (paid.account_number, paid.account_version) == (account_of(1).account_number, 1)
        [made] = await h.treasury().list_payments()
        assert made.account_number == account_of(1).account_number
        await assert_books_balance(h)


async def test_a_change_of_account_needs_a_second_finance_officer(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 1_000_000)
        await reserve(h.system, "app-1", 150_000, 1)
        await confirm_account(h, "app-1", 1)
        fin_a, fin_b = h.as_("fin-a", Role.FINANCE), h.as_("fin-b", Role.FINANCE)
        proposed = await fin_a.ProposeAccountChange(
            pb.ProposeAccountChangeRequest(
                request_id="change-0001",
                application_id="app-1",
                account=account_of(1, "6000000000000002"),
                reason="开户行来函：原账户已销户",
            )
        )
        assert proposed.proposed.version == 2
        assert proposed.current.version == 1  # the old account stays in force
        await expect_error(
            fin_a.ApproveAccountChange(
                pb.ApproveAccountChangeRequest(application_id="app-1", version=2)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        # The applicant cannot approve, whoever proposed.
        await expect_error(
            applicant(h, 1).ApproveAccountChange(  # type: ignore[attr-defined]
                pb.ApproveAccountChangeRequest(application_id="app-1", version=2)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        approved = await fin_b.ApproveAccountChange(
            pb.ApproveAccountChangeRequest(application_id="app-1", version=2)
        )
        assert approved.current.version == 2 and approved.current.approved_by == "fin-b"
        assert not approved.HasField("proposed")
        assert [a.state for a in approved.history] == [
            pb.ACCOUNT_STATE_SUPERSEDED,
            pb.ACCOUNT_STATE_CONFIRMED,
        ]
        # An applicant's proposal is approved by any finance officer.
        await applicant(h, 1).ProposeAccountChange(  # type: ignore[attr-defined]
            pb.ProposeAccountChangeRequest(
                request_id="change-0002",
                application_id="app-1",
                account=account_of(1, "7000000000000003"),
                reason="更换基本户",
            )
        )
        third = await fin_a.ApproveAccountChange(
            pb.ApproveAccountChangeRequest(application_id="app-1", version=3)
        )
        assert third.current.account_number == "7000000000000003"
        assert len(h.outbox("ReceivingAccountChangeApproved")) == 2


async def test_finance_lists_the_changes_waiting_for_approval_beside_the_account_in_force(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 1_000_000)
        for n in (1, 2, 3):
            await reserve(h.system, f"app-{n}", 100_000 * n, n)
            await confirm_account(h, f"app-{n}", n)
        fin_a, fin_b = h.as_("fin-a", Role.FINANCE), h.as_("fin-b", Role.FINANCE)
        for n, who in ((2, applicant(h, 2)), (1, fin_a)):  # app-2 proposed first
            await who.ProposeAccountChange(  # type: ignore[attr-defined]
                pb.ProposeAccountChangeRequest(
                    request_id=f"change-list-{n}",
                    application_id=f"app-{n}",
                    account=account_of(n, f"6000000000000{n:03d}"),
                    reason="原账户已销户",
                )
            )
        listed = await fin_b.ListAccountChanges(pb.ListAccountChangesRequest())
        assert [c.application_id for c in listed.changes] == ["app-2", "app-1"]
        first = listed.changes[0]
        assert (first.applicant_name, first.award_fen) == ("Enterprise 2 Ltd", 200_000)
        assert first.applicant_credit_code == credit_code(2) and first.program_code == PROGRAM
        assert first.award_state == pb.RESERVATION_STATE_RESERVED
        assert (first.current.version, first.current.account_number) == (
            1,
            account_of(2).account_number,
        )
        assert (first.proposed.version, first.proposed.account_number) == (2, "6000000000000002")
        assert first.proposed.given_by == "applicant-2" and first.proposed.reason == "原账户已销户"
        # Ops reads it; a program filter and a limit narrow it; an applicant may not list.
        ops = h.as_("ops-1", Role.OPS)
        assert len((await ops.ListAccountChanges(pb.ListAccountChangesRequest())).changes) == 2
        only_one = await fin_b.ListAccountChanges(pb.ListAccountChangesRequest(limit=1))
        assert [c.application_id for c in only_one.changes] == ["app-2"]
        other = await fin_b.ListAccountChanges(
            pb.ListAccountChangesRequest(program_code="ON-A-LINE")
        )
        assert list(other.changes) == []
        await expect_error(
            applicant(h, 2).ListAccountChanges(  # type: ignore[attr-defined]
                pb.ListAccountChangesRequest()
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        error = await expect_error(
            fin_b.ListAccountChanges(pb.ListAccountChangesRequest(limit=1001)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violated_field(error) == "limit"
        # An approved change leaves the list.
        await fin_b.ApproveAccountChange(
            pb.ApproveAccountChangeRequest(application_id="app-1", version=2)
        )
        left = await fin_a.ListAccountChanges(pb.ListAccountChangesRequest())
        assert [c.application_id for c in left.changes] == ["app-2"]


async def test_a_settling_payment_is_resolved_by_the_status_query_and_paid_once(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(
        database_url,
        tmp_path,
        kafka_bootstrap,
        treasury_settle_delay_rate=1.0,
        treasury_settle_delay_s=3600.0,
    ) as h:
        plan = await awarded_plan(h, {"app-1": 150_000})
        [line] = plan.lines
        request = pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=line.line_id)
        for _ in range(2):  # accepted, then asked again: still settling, nothing paid again
            error = await expect_error(
                h.system.ExecutePayment(request), grpc.StatusCode.UNAVAILABLE
            )
            assert error_reason(error) == REASON_PAYMENT_SETTLING
        treasury = h.treasury()
        assert await treasury.list_payments() == []  # settling: on no statement yet
        status = await treasury.payment_status("award-app-1")
        assert status is not None and status.state == "pending"
        current = await h.system.GetFundingPlan(pb.GetFundingPlanRequest(plan_id=plan.plan_id))
        assert current.lines[0].state == pb.PAYMENT_STATE_SETTLING
        await expect_error(
            h.system.CompleteFundingPlan(pb.CompleteFundingPlanRequest(plan_id=plan.plan_id)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        # Nor can it be given up: the gateway has the money.
        await expect_error(
            h.system.MarkPaymentFailed(
                pb.MarkPaymentFailedRequest(plan_id=plan.plan_id, line_id=line.line_id)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

        await treasury.settle_now("award-app-1")
        paid = await h.system.ExecutePayment(request)
        assert paid.state == pb.PAYMENT_STATE_PAID and paid.attempts == 3
        [made] = await treasury.list_payments()
        assert paid.gateway_reference == made.reference
        assert paid.paid_at.ToDatetime().replace(microsecond=0) == made.paid_at.replace(
            microsecond=0, tzinfo=None
        )
        reconciled = await h.as_("fin-r", Role.FINANCE).ReconcileDay(
            pb.ReconcileDayRequest(day=current_day().isoformat())
        )
        assert (reconciled.matched_count, reconciled.exception_count) == (1, 0)
        await assert_books_balance(h)


async def test_a_returned_payment_is_paid_again_to_the_corrected_account(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        plan = await awarded_plan(h, {"app-1": 150_000, "app-2": 250_000})
        for line in plan.lines:
            await h.system.ExecutePayment(
                pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=line.line_id)
            )
        treasury = h.treasury()
        await treasury.return_payment("award-app-1", "收款账户已销户")
        finance = h.as_("fin-r", Role.FINANCE)

        synced = await finance.SyncGatewayReturns(pb.SyncGatewayReturnsRequest())
        [returned] = synced.returned
        assert (returned.application_id, returned.state) == ("app-1", pb.PAYMENT_STATE_RETURNED)
        assert returned.return_reason == "收款账户已销户"
        assert (await finance.SyncGatewayReturns(pb.SyncGatewayReturnsRequest())).known == 1
        [event] = h.outbox("PaymentReturned")
        assert event.payment_returned.application_id == "app-1"
        ops = h.as_("ops-1", Role.OPS)
        funds = await ops.GetApplicationFunds(pb.GetApplicationFundsRequest(application_id="app-1"))
        assert (funds.reservation.state, funds.reservation.returns) == (
            pb.RESERVATION_STATE_RETURNED,
            1,
        )
        books = balances(await ops.GetTrialBalance(pb.GetTrialBalanceRequest()))
        assert books[f"returned:{PROGRAM}"] == 150_000
        assert books[f"paid:{PROGRAM}"] == 250_000
        await assert_books_balance(h)
        # Not payable again until the account is corrected: no plan takes it.
        await expect_error(
            h.as_("fin-a", Role.FINANCE).CreateFundingPlan(
                pb.CreateFundingPlanRequest(
                    request_id="plan-too-early", program_code=PROGRAM, title="too early"
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

        corrected = account_of(1, "6000000000000009")
        await applicant(h, 1).ProposeAccountChange(  # type: ignore[attr-defined]
            pb.ProposeAccountChangeRequest(
                request_id="change-after-return",
                application_id="app-1",
                account=corrected,
                reason="原账户已销户",
            )
        )
        await h.as_("fin-c", Role.FINANCE).ApproveAccountChange(
            pb.ApproveAccountChangeRequest(application_id="app-1", version=2)
        )
        funds = await ops.GetApplicationFunds(pb.GetApplicationFundsRequest(application_id="app-1"))
        assert funds.reservation.state == pb.RESERVATION_STATE_AWARDED

        again = await next_plan(h, "2021 batch 1 (退汇重拨)")
        [line] = again.lines
        assert (line.application_id, line.reissue, line.idempotency_key) == (
            "app-1",
            1,
            "award-app-1-r1",
        )
        paid = await h.system.ExecutePayment(
            pb.ExecutePaymentRequest(plan_id=again.plan_id, line_id=line.line_id)
        )
        assert paid.state == pb.PAYMENT_STATE_PAID
        assert paid.account_number == corrected.account_number
        payments = {p.idempotency_key: p for p in await treasury.list_payments()}
        assert sorted(payments) == ["award-app-1", "award-app-1-r1", "award-app-2"]
        assert payments["award-app-1"].state == "returned"
        assert payments["award-app-1-r1"].account_number == corrected.account_number
        # Executing again, or syncing again, pays nothing more.
        await h.system.ExecutePayment(
            pb.ExecutePaymentRequest(plan_id=again.plan_id, line_id=line.line_id)
        )
        await finance.SyncGatewayReturns(pb.SyncGatewayReturnsRequest())
        assert len(await treasury.list_payments()) == 3

        trial = await ops.GetTrialBalance(pb.GetTrialBalanceRequest())
        assert trial.balanced
        books = balances(trial)
        assert books[f"returned:{PROGRAM}"] == 0
        assert books[f"paid:{PROGRAM}"] == 400_000
        assert books[f"payable:{PROGRAM}"] == 0
        await assert_books_balance(h)
        statement = await applicant(h, 1).GetGrantStatement(  # type: ignore[attr-defined]
            pb.GetGrantStatementRequest(application_id="app-1")
        )
        assert (statement.paid_fen, statement.returned_fen, statement.outstanding_fen) == (
            300_000,
            150_000,
            0,
        )
        assert statement.state == pb.RESERVATION_STATE_PAID

        reconciled = await finance.ReconcileDay(
            pb.ReconcileDayRequest(day=current_day().isoformat())
        )
        assert (reconciled.gateway_count, reconciled.matched_count) == (3, 3)
        assert reconciled.exception_count == 0

        # What a finance officer and the applicant read: the return and the accounts, in Chinese.
        env = {
            **os.environ,
            "DISBURSEMENT_ADDRESS": h.settings.disbursement_address,
            "AUTH_SECRET": h.settings.auth_secret,
            "DATA_DIR": str(tmp_path),
        }
        # In a thread: the service answers from this test's event loop.
        told = await asyncio.to_thread(
            cli, env, "finance", "statement", "app-1", "--enterprise", credit_code(1)
        )
        assert told.status == 0, told.output
        assert "退汇 ¥1,500.00" in told.output and "更正收款账户" in told.output
        shown = await asyncio.to_thread(cli, env, "finance", "account", "show", "app-1")
        assert shown.status == 0, shown.output
        assert "生效账户" in shown.output and "6000000000000009" in shown.output
        assert "已被变更替代" in shown.output
