"""Reconciliation (对账) over real gRPC on SQLite and PostgreSQL: the simulated treasury's daily
statement against the ledger; payments whose answer was lost become exceptions that finance
resolves (who, when, how recorded and audited); a day reconciled again keeps its exceptions
once; bad input is refused naming the field."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import grpc

from grantflow.v1 import disbursement_pb2 as pb
from services.common.vocabulary import AuditAction, Role
from services.disbursement.daily_reconciliation import DAILY_ACTOR
from services.disbursement.gateway import BEIJING
from tests.integration.test_disbursement_service import (
    Harness,
    awarded_plan,
    credit_code,
    expect_error,
    service,
    violated_field,
)
from tests.integration.test_plan_approvals import audit_actions


def today() -> str:
    return datetime.now(BEIJING).date().isoformat()


async def pay(h: Harness, plan: pb.FundingPlan, application_id: str) -> pb.PaymentLine:
    [line] = [line for line in plan.lines if line.application_id == application_id]
    return await h.system.ExecutePayment(
        pb.ExecutePaymentRequest(plan_id=plan.plan_id, line_id=line.line_id)
    )


def line_of(plan: pb.FundingPlan, application_id: str) -> str:
    [line] = [line for line in plan.lines if line.application_id == application_id]
    return str(line.line_id)


async def test_a_day_where_everything_matches(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        plan = await awarded_plan(h, {"app-1": 150_000, "app-2": 250_000})
        for application_id in ("app-1", "app-2"):
            assert (await pay(h, plan, application_id)).state == pb.PAYMENT_STATE_PAID
        finance = h.as_("fin-r", Role.FINANCE)
        report = await finance.ReconcileDay(pb.ReconcileDayRequest(day=today()))
        assert (report.day, report.runs, report.reconciled_by) == (today(), 1, "fin-r")
        assert (report.gateway_count, report.gateway_total_fen) == (2, 400_000)
        assert (report.ledger_count, report.ledger_total_fen) == (2, 400_000)
        assert (report.matched_count, report.matched_total_fen) == (2, 400_000)
        assert (report.exception_count, report.open_count, list(report.exceptions)) == (0, 0, [])

        # The system's daily run of the same day answers the same report, once more.
        again = await h.system.ReconcileDay(pb.ReconcileDayRequest(day=today()))
        assert (again.runs, again.matched_count, again.exception_count) == (2, 2, 0)
        assert again.reconciled_by == "grantflow-system"
        shown = await h.as_("ops-1", Role.OPS).GetReconciliation(
            pb.GetReconciliationRequest(day=today())
        )
        assert shown == again
        # A day nothing was paid on matches trivially.
        yesterday = (datetime.now(BEIJING).date() - timedelta(days=1)).isoformat()
        empty = await finance.ReconcileDay(pb.ReconcileDayRequest(day=yesterday))
        assert (empty.gateway_count, empty.ledger_count, empty.exception_count) == (0, 0, 0)
        assert [a for a, _, _ in audit_actions(h, f"reconciliation-{today()}")] == [
            AuditAction.RECONCILIATION_RUN,
            AuditAction.RECONCILIATION_RUN,
        ]


async def test_lost_answers_become_exceptions_resolved_once_and_kept_once_per_day(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    # Every first answer of the treasury is lost: each payment is made, its caller hears a timeout.
    async with service(database_url, tmp_path, kafka_bootstrap, treasury_timeout_rate=1.0) as h:
        plan = await awarded_plan(h, {"app-1": 150_000, "app-2": 250_000, "app-3": 70_000})
        for application_id in ("app-1", "app-2", "app-3"):
            await expect_error(pay(h, plan, application_id), grpc.StatusCode.UNAVAILABLE)
        assert (await pay(h, plan, "app-2")).state == pb.PAYMENT_STATE_PAID  # retried: settled
        # A payment nobody in Grantflow asked for, straight through the treasury.
        treasury = h.treasury()
        try:
            stray = await treasury.pay("award-stray", credit_code(9), "Stray Ltd", 9_900)
        finally:
            await treasury.close()

        finance = h.as_("fin-r", Role.FINANCE)
        report = await finance.ReconcileDay(pb.ReconcileDayRequest(day=today()))
        assert (report.gateway_count, report.gateway_total_fen) == (4, 479_900)
        assert (report.ledger_count, report.ledger_total_fen) == (1, 250_000)
        assert (report.matched_count, report.matched_total_fen) == (1, 250_000)
        assert (report.exception_count, report.open_count) == (3, 3)
        found = {e.application_id: e for e in report.exceptions}
        assert set(found) == {"app-1", "app-3", "stray"}
        for exception in report.exceptions:
            assert exception.kind == pb.RECONCILIATION_KIND_NOT_IN_LEDGER
            assert exception.state == pb.RECONCILIATION_EXCEPTION_STATE_OPEN
            assert exception.ledger_amount_fen == 0
        lost = found["app-1"]
        assert (lost.idempotency_key, lost.gateway_amount_fen) == ("award-app-1", 150_000)
        assert lost.line_id == line_of(plan, "app-1")  # the line waiting to be settled
        assert lost.gateway_payee.startswith(credit_code(1))
        assert (found["stray"].gateway_reference, found["stray"].line_id) == (stray, "")

        # Reconciled again: the same exceptions, not new ones.
        again = await h.system.ReconcileDay(pb.ReconcileDayRequest(day=today()))
        assert again.runs == 2
        assert sorted(e.exception_id for e in again.exceptions) == sorted(
            e.exception_id for e in report.exceptions
        )
        listed = await finance.ListReconciliationExceptions(
            pb.ListReconciliationExceptionsRequest(state=pb.RECONCILIATION_EXCEPTION_STATE_OPEN)
        )
        assert len(listed.exceptions) == 3 and listed.next_page_token == ""

        # Finance resolves the lost answer; the resolution is recorded with who and when.
        resolve = pb.ResolveReconciliationExceptionRequest(
            exception_id=lost.exception_id,
            resolution=pb.RECONCILIATION_RESOLUTION_TIMING_DIFFERENCE,
            note="国库已付款，应答丢失，次日补记账",
        )
        resolved = await finance.ResolveReconciliationException(resolve)
        assert resolved.state == pb.RECONCILIATION_EXCEPTION_STATE_RESOLVED
        assert resolved.resolution == pb.RECONCILIATION_RESOLUTION_TIMING_DIFFERENCE
        assert (resolved.resolved_by, resolved.resolution_note) == ("fin-r", resolve.note)
        assert resolved.HasField("resolved_at")
        error = await expect_error(
            h.as_("fin-s", Role.FINANCE).ResolveReconciliationException(resolve),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert "fin-r" in (error.details() or "")
        assert audit_actions(h, "app-1")[-1] == (
            AuditAction.RECONCILIATION_RESOLVED,
            "fin-r",
            resolve.note,
        )

        # The lost answers are settled by their retries; the day reconciled a third time.
        for application_id in ("app-1", "app-3"):
            assert (await pay(h, plan, application_id)).state == pb.PAYMENT_STATE_PAID
        third = await finance.ReconcileDay(pb.ReconcileDayRequest(day=today()))
        assert (third.runs, third.matched_count, third.matched_total_fen) == (3, 3, 470_000)
        assert (third.ledger_count, third.ledger_total_fen) == (3, 470_000)
        assert (third.exception_count, third.open_count) == (1, 1)
        states = {e.application_id: e.state for e in third.exceptions}
        assert states == {
            "app-1": pb.RECONCILIATION_EXCEPTION_STATE_RESOLVED,  # stays resolved
            "app-3": pb.RECONCILIATION_EXCEPTION_STATE_CLEARED,  # settled since: nothing to do
            "stray": pb.RECONCILIATION_EXCEPTION_STATE_OPEN,
        }
        [still_open] = (
            await finance.ListReconciliationExceptions(
                pb.ListReconciliationExceptionsRequest(
                    state=pb.RECONCILIATION_EXCEPTION_STATE_OPEN, day=today()
                )
            )
        ).exceptions
        assert still_open.application_id == "stray"
        await expect_error(
            finance.ResolveReconciliationException(
                pb.ResolveReconciliationExceptionRequest(
                    exception_id=found["app-3"].exception_id,
                    resolution=pb.RECONCILIATION_RESOLUTION_ACCEPTED,
                    note="已自动对平",
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

        # Every state, a page at a time.
        seen: list[int] = []
        token = ""
        while True:
            page = await finance.ListReconciliationExceptions(
                pb.ListReconciliationExceptionsRequest(page_size=1, page_token=token)
            )
            seen += [e.exception_id for e in page.exceptions]
            token = page.next_page_token
            if not token:
                break
        assert sorted(seen) == sorted(e.exception_id for e in report.exceptions)


async def test_bad_input_and_roles_are_refused(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        finance = h.as_("fin-r", Role.FINANCE)
        tomorrow = (datetime.now(BEIJING).date() + timedelta(days=1)).isoformat()
        for day in (
            "",
            "2026-13-01",
            "2026-1-5",
            "yesterday",
            "2026-W01-1",
            tomorrow,
            "1999-12-31",
        ):
            error = await expect_error(
                finance.ReconcileDay(pb.ReconcileDayRequest(day=day)),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            assert violated_field(error) == "day", day
        error = await expect_error(
            finance.GetReconciliation(pb.GetReconciliationRequest(day="2026-02-30")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violated_field(error) == "day"
        await expect_error(
            finance.GetReconciliation(pb.GetReconciliationRequest(day="2026-01-05")),
            grpc.StatusCode.NOT_FOUND,
        )
        for listing, field in (
            (pb.ListReconciliationExceptionsRequest(page_token="not-a-token"), "page_token"),
            (pb.ListReconciliationExceptionsRequest(page_size=5000), "page_size"),
            (pb.ListReconciliationExceptionsRequest(state=99), "state"),  # type: ignore[arg-type]
            (pb.ListReconciliationExceptionsRequest(day="26-1-5"), "day"),
        ):
            error = await expect_error(
                finance.ListReconciliationExceptions(listing), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert violated_field(error) == field
        good = pb.ResolveReconciliationExceptionRequest(
            exception_id=1, resolution=pb.RECONCILIATION_RESOLUTION_ACCEPTED, note="核实无误"
        )
        bad_id, bad_resolution, bad_note = (
            pb.ResolveReconciliationExceptionRequest() for _ in "123"
        )
        for request in (bad_id, bad_resolution, bad_note):
            request.CopyFrom(good)
        bad_id.exception_id = 0
        bad_resolution.resolution = pb.RECONCILIATION_RESOLUTION_UNSPECIFIED
        bad_note.note = "   "
        for request, field in (
            (bad_id, "exception_id"),
            (bad_resolution, "resolution"),
            (bad_note, "note"),
        ):
            error = await expect_error(
                finance.ResolveReconciliationException(request), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert violated_field(error) == field
        await expect_error(finance.ResolveReconciliationException(good), grpc.StatusCode.NOT_FOUND)
        # Who may: finance and the system reconcile, only finance resolves.
        run = pb.ReconcileDayRequest(day=today())
        applicant = h.as_("applicant-1", Role.APPLICANT, enterprise=credit_code(1))
        for stub in (h.as_("ops-1", Role.OPS), applicant):
            await expect_error(stub.ReconcileDay(run), grpc.StatusCode.PERMISSION_DENIED)
        for role in (Role.OPS, Role.SYSTEM):
            await expect_error(
                h.as_(f"{role}-1", role).ResolveReconciliationException(good),
                grpc.StatusCode.PERMISSION_DENIED,
            )
        assert h.count_rows()["ledger_entry"] == 0  # nothing was written by bad input


async def test_the_service_reconciles_yesterday_by_itself_once(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(
        database_url,
        tmp_path,
        kafka_bootstrap,
        reconciliation_daily=True,
        reconciliation_daily_hour=0,
        reconciliation_check_s=0.2,
    ) as h:
        yesterday = (datetime.now(BEIJING).date() - timedelta(days=1)).isoformat()
        request = pb.GetReconciliationRequest(day=yesterday)
        ops = h.as_("ops-1", Role.OPS)
        for _ in range(100):
            try:
                report = await ops.GetReconciliation(request)
                break
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
                await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{yesterday} was not reconciled by the service")
        assert (report.reconciled_by, report.runs) == (DAILY_ACTOR, 1)
        await asyncio.sleep(1.0)  # several checks later: not reconciled again
        assert (await ops.GetReconciliation(request)).runs == 1
