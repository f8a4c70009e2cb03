"""Funding plans over real gRPC on SQLite and PostgreSQL: a plan cancelled before approval (its
awards taken by the next plan, nothing paid) and the second approval level above the configured
total (two officers besides the maker; FundingPlanApproved only after the second)."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
from sqlalchemy import text

from grantflow.v1 import disbursement_pb2 as pb
from services.common.db import make_engine
from services.common.vocabulary import AuditAction, Role
from tests.integration.test_disbursement_service import (
    PROGRAM,
    Harness,
    assert_books_balance,
    confirm_account,
    expect_error,
    reserve,
    service,
    set_budget,
    violated_field,
)


async def noticed(h: Harness, amounts: dict[str, int], first: int = 1) -> None:
    for n, (application_id, amount) in enumerate(sorted(amounts.items()), start=first):
        await reserve(h.system, application_id, amount, n)
        await h.system.ConfirmAward(pb.ConfirmAwardRequest(application_id=application_id))
        await confirm_account(h, application_id, n)


async def make_plan(h: Harness, title: str, maker: str = "fin-a") -> pb.FundingPlan:
    return await h.as_(maker, Role.FINANCE).CreateFundingPlan(
        pb.CreateFundingPlanRequest(
            request_id=f"plan-{uuid.uuid4().hex}", program_code=PROGRAM, title=title
        )
    )


def audit_actions(h: Harness, subject: str) -> list[tuple[str, str, str]]:
    """(action, actor, reason) of the audit records about `subject`, in the order written."""
    engine = make_engine(h.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT action, actor, reason FROM audit_record WHERE subject = :s ORDER BY sequence"
                ),
                {"s": subject},
            ).all()
    finally:
        engine.dispose()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


async def test_a_cancelled_draft_returns_its_awards_to_the_next_plan_and_pays_nothing(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await set_budget(h, 1_000_000)
        await noticed(h, {"app-1": 100_000, "app-2": 200_000})
        ledger_before = len(
            (
                await h.as_("ops-1", Role.OPS).ListLedgerEntries(pb.ListLedgerEntriesRequest())
            ).entries
        )
        draft = await make_plan(h, "2021 batch 1")
        assert draft.state == pb.PLAN_STATE_DRAFT
        finance = h.as_("fin-c", Role.FINANCE)

        # Bad input names its field and writes nothing; only finance may cancel.
        rows = h.count_rows()
        for request, field in [
            (pb.CancelFundingPlanRequest(plan_id=draft.plan_id), "reason"),
            (pb.CancelFundingPlanRequest(plan_id=draft.plan_id, reason="   "), "reason"),
            (pb.CancelFundingPlanRequest(plan_id=draft.plan_id, reason="x" * 501), "reason"),
            (pb.CancelFundingPlanRequest(plan_id=draft.plan_id, reason="a\x00b"), "reason"),
            (pb.CancelFundingPlanRequest(reason="wrong awards"), "plan_id"),
            (pb.CancelFundingPlanRequest(plan_id="no such id", reason="wrong awards"), "plan_id"),
        ]:
            error = await expect_error(
                finance.CancelFundingPlan(request), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert violated_field(error) == field
        cancel = pb.CancelFundingPlanRequest(plan_id=draft.plan_id, reason="名单有误，重新编制")
        for role in (Role.SYSTEM, Role.OPS):
            await expect_error(
                h.as_(f"someone-{role}", role).CancelFundingPlan(cancel),
                grpc.StatusCode.PERMISSION_DENIED,
            )
        await expect_error(
            finance.CancelFundingPlan(
                pb.CancelFundingPlanRequest(plan_id=uuid.uuid4().hex, reason="gone")
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        assert h.count_rows() == rows
        assert (
            await finance.GetFundingPlan(pb.GetFundingPlanRequest(plan_id=draft.plan_id))
        ).state == pb.PLAN_STATE_DRAFT

        cancelled = await finance.CancelFundingPlan(cancel)
        assert cancelled.state == pb.PLAN_STATE_CANCELLED
        assert (cancelled.cancelled_by, cancelled.cancel_reason) == ("fin-c", "名单有误，重新编制")
        assert cancelled.cancelled_at.seconds > 0
        assert {line.state for line in cancelled.lines} == {pb.PAYMENT_STATE_CANCELLED}
        assert await finance.CancelFundingPlan(cancel) == cancelled  # a retry changes nothing

        # Nothing of it can be approved or paid.
        await expect_error(
            h.as_("fin-b", Role.FINANCE).ApproveFundingPlan(
                pb.ApproveFundingPlanRequest(plan_id=draft.plan_id)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        await expect_error(
            h.system.ExecutePayment(
                pb.ExecutePaymentRequest(plan_id=draft.plan_id, line_id=draft.lines[0].line_id)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        # Its awards wait for a plan again, their money still reserved; no journal was posted.
        for application_id in ("app-1", "app-2"):
            funds = await h.as_("ops-1", Role.OPS).GetApplicationFunds(
                pb.GetApplicationFundsRequest(application_id=application_id)
            )
            assert funds.reservation.state == pb.RESERVATION_STATE_AWARDED
            assert funds.reservation.plan_id == ""
        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.reserved_fen, budget.paid_fen) == (300_000, 0)
        ledger = (
            await h.as_("ops-1", Role.OPS).ListLedgerEntries(pb.ListLedgerEntriesRequest())
        ).entries
        assert len(ledger) == ledger_before

        [event] = h.outbox("FundingPlanCancelled")
        assert event.subject == draft.plan_id
        assert event.funding_plan_cancelled.cancelled_by == "fin-c"
        assert event.funding_plan_cancelled.reason == "名单有误，重新编制"
        assert list(event.funding_plan_cancelled.application_ids) == ["app-1", "app-2"]
        assert event.funding_plan_cancelled.total_fen == 300_000
        assert h.outbox("FundingPlanApproved") == []
        assert (AuditAction.PLAN_CANCELLED, "fin-c", "名单有误，重新编制") in audit_actions(
            h, draft.plan_id
        )

        # The next plan takes both awards (with one noticed since), is approved and paid.
        await noticed(h, {"app-3": 50_000}, first=3)
        again = await make_plan(h, "2021 batch 1 (again)")
        assert [line.application_id for line in again.lines] == ["app-1", "app-2", "app-3"]
        assert again.total_fen == 350_000
        approved = await h.as_("fin-b", Role.FINANCE).ApproveFundingPlan(
            pb.ApproveFundingPlanRequest(plan_id=again.plan_id)
        )
        assert approved.state == pb.PLAN_STATE_APPROVED
        [announced] = h.outbox("FundingPlanApproved")
        assert announced.subject == again.plan_id
        for line in again.lines:
            paid = await h.system.ExecutePayment(
                pb.ExecutePaymentRequest(plan_id=again.plan_id, line_id=line.line_id)
            )
            assert paid.state == pb.PAYMENT_STATE_PAID
        budget = await h.system.GetProgramBudget(pb.GetProgramBudgetRequest(program_code=PROGRAM))
        assert (budget.reserved_fen, budget.paid_fen) == (0, 350_000)
        # The cancelled plan stays as it was; an approved plan can no longer be cancelled.
        kept = await finance.GetFundingPlan(pb.GetFundingPlanRequest(plan_id=draft.plan_id))
        assert kept.state == pb.PLAN_STATE_CANCELLED
        assert {line.state for line in kept.lines} == {pb.PAYMENT_STATE_CANCELLED}
        error = await expect_error(
            finance.CancelFundingPlan(
                pb.CancelFundingPlanRequest(plan_id=again.plan_id, reason="too late")
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert "not yet approved" in (error.details() or "")
        cancelled_lines = await h.as_("ops-1", Role.OPS).ListPaymentLines(
            pb.ListPaymentLinesRequest(state=pb.PAYMENT_STATE_PENDING)
        )
        assert cancelled_lines.lines == []
        await assert_books_balance(h)


async def test_a_plan_above_the_second_approval_level_needs_two_officers_besides_its_maker(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(
        database_url, tmp_path, kafka_bootstrap, plan_second_approval_fen=250_000
    ) as h:
        await set_budget(h, 1_000_000)
        await noticed(h, {"app-1": 100_000, "app-2": 200_000})
        plan = await make_plan(h, "above the level")
        assert (plan.total_fen, plan.second_approval_required) == (300_000, True)
        approve = pb.ApproveFundingPlanRequest(plan_id=plan.plan_id)
        maker, first, second = (h.as_(who, Role.FINANCE) for who in ("fin-a", "fin-b", "fin-c"))

        await expect_error(maker.ApproveFundingPlan(approve), grpc.StatusCode.PERMISSION_DENIED)
        once = await first.ApproveFundingPlan(approve)
        assert once.state == pb.PLAN_STATE_AWAITING_SECOND_APPROVAL
        assert (once.first_approved_by, once.approved_by) == ("fin-b", "")
        assert once.first_approved_at.seconds > 0
        assert h.outbox("FundingPlanApproved") == []  # not announced: no payment run yet
        await expect_error(
            h.system.ExecutePayment(
                pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=plan.lines[0].line_id)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        # The first approver cannot give the second approval too, nor can the maker.
        error = await expect_error(
            first.ApproveFundingPlan(approve), grpc.StatusCode.PERMISSION_DENIED
        )
        assert "another finance officer" in (error.details() or "")
        await expect_error(maker.ApproveFundingPlan(approve), grpc.StatusCode.PERMISSION_DENIED)
        assert (
            await first.GetFundingPlan(pb.GetFundingPlanRequest(plan_id=plan.plan_id))
        ).state == pb.PLAN_STATE_AWAITING_SECOND_APPROVAL

        twice = await second.ApproveFundingPlan(approve)
        assert twice.state == pb.PLAN_STATE_APPROVED
        assert (twice.first_approved_by, twice.approved_by) == ("fin-b", "fin-c")
        assert await second.ApproveFundingPlan(approve) == twice  # a retry
        await expect_error(first.ApproveFundingPlan(approve), grpc.StatusCode.FAILED_PRECONDITION)
        [announced] = h.outbox("FundingPlanApproved")
        assert announced.subject == plan.plan_id
        assert announced.funding_plan_approved.approved_by == "fin-c"
        assert [a for a, _, _ in audit_actions(h, plan.plan_id)] == [
            AuditAction.PLAN_CREATED,
            AuditAction.PLAN_FIRST_APPROVED,
            AuditAction.PLAN_APPROVED,
        ]

        # At the level exactly, one approval is enough.
        await noticed(h, {"app-3": 250_000}, first=3)
        small = await make_plan(h, "at the level")
        assert (small.total_fen, small.second_approval_required) == (250_000, False)
        small = await first.ApproveFundingPlan(pb.ApproveFundingPlanRequest(plan_id=small.plan_id))
        assert (small.state, small.approved_by, small.first_approved_by) == (
            pb.PLAN_STATE_APPROVED,
            "fin-b",
            "",
        )

        # A plan awaiting its second approval can still be cancelled; its awards wait again.
        await noticed(h, {"app-4": 150_000, "app-5": 150_000}, first=4)
        big = await make_plan(h, "cancelled after its first approval")
        await second.ApproveFundingPlan(pb.ApproveFundingPlanRequest(plan_id=big.plan_id))
        cancelled = await maker.CancelFundingPlan(
            pb.CancelFundingPlanRequest(plan_id=big.plan_id, reason="超出本批次安排")
        )
        assert (cancelled.state, cancelled.first_approved_by) == (
            pb.PLAN_STATE_CANCELLED,
            "fin-c",
        )
        await expect_error(
            first.ApproveFundingPlan(pb.ApproveFundingPlanRequest(plan_id=big.plan_id)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert len(h.outbox("FundingPlanApproved")) == 2
        retaken = await make_plan(h, "again")
        assert [line.application_id for line in retaken.lines] == ["app-4", "app-5"]
        assert retaken.second_approval_required
        await assert_books_balance(h)
