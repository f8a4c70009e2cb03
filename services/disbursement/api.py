"""DisbursementServicer: the gRPC API over budgets, reservations, funding plans and payments.

Every method validates its whole request before touching the database, then does its work in one
transaction that writes the rows, the ledger journal and the outbox event together. Row locks are
always taken in the same order (budget, plan, line, reservation) so concurrent calls on
PostgreSQL cannot deadlock; on SQLite every transaction holds the write lock from its start.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from grantflow.v1 import disbursement_pb2 as pb
from grantflow.v1 import disbursement_pb2_grpc, events_pb2
from services.common import validation
from services.common.auth import current_principal
from services.common.config import Settings
from services.common.db import Database, now_utc, to_timestamp
from services.common.errors import (
    REASON_PAYMENT_GATEWAY,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.grpc_server import roles
from services.common.kafka import DISBURSEMENT, make_envelope, topic
from services.common.outbox import enqueue
from services.disbursement import store
from services.disbursement.gateway import (
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    PaymentGateway,
    award_payment_key,
)
from services.disbursement.store import (
    BudgetFigures,
    FundingPlanRow,
    LedgerEntryRow,
    PaymentLineRow,
    ProgramBudgetRow,
    ReservationRow,
)
from workflows.contracts import plan_workflow_id

log = structlog.get_logger(__name__)

SERVICE_FULL_NAME = pb.DESCRIPTOR.services_by_name["DisbursementService"].full_name
SOURCE = "disbursement"
# Event ids are derived from the business event, so the outbox's unique event id is a second
# guard against announcing the same change twice.
EVENT_NAMESPACE = uuid.UUID("5d0c7a52-3f53-4a43-9a55-6f1b1c1f9d10")
# A gateway that answers after this long is treated as a timeout: outcome unknown.
GATEWAY_CALL_TIMEOUT_S = 30.0
MAX_TITLE = 200
MAX_REASON = 500
MAX_NAME = 200

READERS = roles("finance", "ops", "system")
METHOD_ROLES = {
    "SetProgramBudget": roles("finance"),
    "GetProgramBudget": roles("finance", "ops", "system", "reviewer"),
    "ReserveBudget": roles("system"),
    "ReleaseReservation": roles("system"),
    "ConfirmAward": roles("system"),
    "CreateFundingPlan": roles("finance"),
    "ApproveFundingPlan": roles("finance"),
    "GetFundingPlan": READERS,
    "ListFundingPlans": READERS,
    "ExecutePayment": roles("system"),
    "MarkPaymentFailed": roles("system"),
    "CompleteFundingPlan": roles("system"),
    "ListLedgerEntries": roles("finance", "ops"),
}

RESERVATION_STATES = {
    store.RESERVED: pb.RESERVATION_STATE_RESERVED,
    store.AWARDED: pb.RESERVATION_STATE_AWARDED,
    store.IN_PLAN: pb.RESERVATION_STATE_IN_PLAN,
    store.PAID: pb.RESERVATION_STATE_PAID,
    store.RELEASED: pb.RESERVATION_STATE_RELEASED,
}
PLAN_STATES = {
    store.DRAFT: pb.PLAN_STATE_DRAFT,
    store.APPROVED: pb.PLAN_STATE_APPROVED,
    store.PAYING: pb.PLAN_STATE_PAYING,
    store.COMPLETED: pb.PLAN_STATE_COMPLETED,
    store.COMPLETED_WITH_FAILURES: pb.PLAN_STATE_COMPLETED_WITH_FAILURES,
}
PAYMENT_STATES = {
    store.PENDING: pb.PAYMENT_STATE_PENDING,
    store.PAID: pb.PAYMENT_STATE_PAID,
    store.FAILED: pb.PAYMENT_STATE_FAILED,
}
PAYABLE_PLAN_STATES = (store.APPROVED, store.PAYING)

T = TypeVar("T")


# Validation -------------------------------------------------------------------------------------


def program_code(field: str, value: str) -> str:
    value = validation.identifier(field, value)
    if ":" in value:
        # ':' separates the parts of ledger account names (budget:<program>:available).
        raise InvalidArgument(field, "must not contain ':'")
    return value


def optional_text(field: str, value: str, *, max_len: int) -> str:
    return validation.text(field, value, max_len=max_len, required=False)


def reason_text(field: str, value: str) -> str:
    # Reasons are the workflow's error texts: cut to length rather than refuse, because a
    # failure or release refused over its wording would be worse than a shortened reason.
    return optional_text(field, value.strip()[:MAX_REASON], max_len=MAX_REASON)


# Conversions ------------------------------------------------------------------------------------


def budget_pb(figures: BudgetFigures) -> pb.ProgramBudget:
    return pb.ProgramBudget(
        program_code=figures.program_code,
        total_fen=figures.total_fen,
        reserved_fen=figures.reserved_fen,
        paid_fen=figures.paid_fen,
        available_fen=figures.available_fen,
    )


def reservation_pb(row: ReservationRow) -> pb.Reservation:
    return pb.Reservation(
        application_id=row.application_id,
        program_code=row.program_code,
        amount_fen=row.amount_fen,
        state=RESERVATION_STATES[row.state],
        plan_id=row.plan_id or "",
        applicant_credit_code=row.applicant_credit_code,
        applicant_name=row.applicant_name,
    )


def line_pb(row: PaymentLineRow) -> pb.PaymentLine:
    return pb.PaymentLine(
        line_id=row.line_id,
        plan_id=row.plan_id,
        application_id=row.application_id,
        applicant_credit_code=row.applicant_credit_code,
        applicant_name=row.applicant_name,
        amount_fen=row.amount_fen,
        state=PAYMENT_STATES[row.state],
        gateway_reference=row.gateway_reference,
        failure_reason=row.failure_reason,
        attempts=row.attempts,
        paid_at=to_timestamp(row.paid_at),
    )


def plan_pb(plan: FundingPlanRow, lines: list[PaymentLineRow]) -> pb.FundingPlan:
    return pb.FundingPlan(
        plan_id=plan.plan_id,
        program_code=plan.program_code,
        title=plan.title,
        state=PLAN_STATES[plan.state],
        created_by=plan.created_by,
        approved_by=plan.approved_by,
        total_fen=plan.total_fen,
        lines=[line_pb(line) for line in lines],
        created_at=to_timestamp(plan.created_at),
        approved_at=to_timestamp(plan.approved_at),
        workflow_id=plan_workflow_id(plan.plan_id),
    )


def entry_pb(row: LedgerEntryRow) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        entry_id=row.id or 0,
        journal_id=row.journal_id,
        account=row.account,
        debit_fen=row.debit_fen,
        credit_fen=row.credit_fen,
        memo=row.memo,
        posted_at=to_timestamp(row.posted_at),
    )


class DisbursementServicer(disbursement_pb2_grpc.DisbursementServiceServicer):
    def __init__(self, settings: Settings, db: Database, gateway: PaymentGateway) -> None:
        self.db = db
        self.gateway = gateway
        self.topic = topic(settings, DISBURSEMENT)

    async def _transact(self, work: Callable[[Session], T]) -> T:
        try:
            return await self.db.run(work)
        except IntegrityError:
            # A concurrent call inserted the same key first (same application, request id or
            # journal); run again so this call sees that row and answers idempotently.
            return await self.db.run(work)

    def _emit(self, session: Session, subject: str, payload: Message, key: str) -> None:
        name = payload.DESCRIPTOR.full_name
        envelope: events_pb2.EventEnvelope = make_envelope(
            SOURCE,
            subject,
            payload,
            event_id=str(uuid.uuid5(EVENT_NAMESPACE, f"{name}:{key}")),
        )
        enqueue(session, self.topic, envelope)

    # Budgets ------------------------------------------------------------------------------------

    async def SetProgramBudget(
        self, request: pb.SetProgramBudgetRequest, context: Any
    ) -> pb.ProgramBudget:
        program = program_code("program_code", request.program_code)
        total = validation.fen("total_fen", request.total_fen, required=True)
        caller = current_principal().subject

        def work(session: Session) -> BudgetFigures:
            now = now_utc()
            budget = store.lock_budget(session, program)
            if budget is None:
                budget = ProgramBudgetRow(
                    program_code=program,
                    total_fen=total,
                    revision=1,
                    created_at=now,
                    updated_at=now,
                )
                session.add(budget)
                store.post_journal(
                    session,
                    f"budget-{program}-1",
                    f"budget set to {total} fen by {caller}",
                    store.available(program),
                    store.appropriation(program),
                    total,
                )
                return BudgetFigures(program, total, 0, 0)
            figures = store.budget_figures(session, budget)
            delta = total - budget.total_fen
            if delta == 0:
                return figures
            committed = figures.reserved_fen + figures.paid_fen
            if total < committed:
                raise FailedPrecondition(
                    f"budget of {program} cannot go below {committed} fen already reserved "
                    f"or paid (asked {total} fen)"
                )
            budget.revision += 1
            budget.total_fen = total
            budget.updated_at = now
            session.add(budget)
            memo = f"budget changed by {delta:+d} fen to {total} fen by {caller}"
            journal = f"budget-{program}-{budget.revision}"
            if delta > 0:
                store.post_journal(
                    session,
                    journal,
                    memo,
                    store.available(program),
                    store.appropriation(program),
                    delta,
                )
            else:
                store.post_journal(
                    session,
                    journal,
                    memo,
                    store.appropriation(program),
                    store.available(program),
                    -delta,
                )
            return BudgetFigures(program, total, figures.reserved_fen, figures.paid_fen)

        return budget_pb(await self._transact(work))

    async def GetProgramBudget(
        self, request: pb.GetProgramBudgetRequest, context: Any
    ) -> pb.ProgramBudget:
        program = program_code("program_code", request.program_code)

        def work(session: Session) -> BudgetFigures:
            budget = session.get(ProgramBudgetRow, program)
            if budget is None:
                raise NotFound(f"program {program} has no budget")
            return store.budget_figures(session, budget)

        return budget_pb(await self.db.run(work))

    # Reservations -------------------------------------------------------------------------------

    async def ReserveBudget(self, request: pb.ReserveBudgetRequest, context: Any) -> pb.Reservation:
        application_id = validation.identifier("application_id", request.application_id)
        program = program_code("program_code", request.program_code)
        amount = validation.fen("amount_fen", request.amount_fen, required=True)
        credit_code = validation.credit_code("applicant_credit_code", request.applicant_credit_code)
        name = validation.text("applicant_name", request.applicant_name, max_len=MAX_NAME)

        def work(session: Session) -> ReservationRow:
            budget = store.lock_budget(session, program)
            existing = store.lock_reservation(session, application_id)
            if existing is not None:
                if existing.state == store.RELEASED:
                    raise FailedPrecondition(
                        f"the reservation of application {application_id} was released; "
                        "a released award is not reserved again"
                    )
                if (existing.program_code, existing.amount_fen) != (program, amount):
                    raise AlreadyExists(
                        f"application {application_id} already holds a reservation of "
                        f"{existing.amount_fen} fen in {existing.program_code}"
                    )
                return existing
            if budget is None:
                raise FailedPrecondition(f"program {program} has no budget")
            figures = store.budget_figures(session, budget)
            if figures.available_fen < amount:
                raise FailedPrecondition(
                    f"budget exhausted: program {program} has {figures.available_fen} fen "
                    f"available, {amount} fen requested"
                )
            now = now_utc()
            row = ReservationRow(
                application_id=application_id,
                program_code=program,
                amount_fen=amount,
                state=store.RESERVED,
                applicant_credit_code=credit_code,
                applicant_name=name,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            store.post_journal(
                session,
                f"reserve-{application_id}",
                f"award of application {application_id}",
                store.reserved(program),
                store.available(program),
                amount,
            )
            self._emit(
                session,
                application_id,
                events_pb2.BudgetReserved(
                    application_id=application_id, program_code=program, amount_fen=amount
                ),
                application_id,
            )
            return row

        return reservation_pb(await self._transact(work))

    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: Any
    ) -> pb.Reservation:
        application_id = validation.identifier("application_id", request.application_id)
        reason = reason_text("reason", request.reason)

        def attempted(session: Session) -> bool:
            row = session.get(ReservationRow, application_id)
            return (
                row is not None
                and row.state in (store.RESERVED, store.AWARDED)
                and store.award_attempted(session, application_id)
            )

        if await self.db.run(attempted):
            # An award whose payment line was given up may have been paid late: giving its
            # money back to the budget would spend it twice.
            reference = await self._award_payment(application_id)
            if reference:
                raise FailedPrecondition(
                    f"the payment gateway paid the award of application {application_id} "
                    f"(reference {reference}) after its payment line failed: it cannot be "
                    "released; its line in the next funding plan settles the payment"
                )

        def work(session: Session) -> ReservationRow:
            row = store.lock_reservation(session, application_id)
            if row is None:
                raise NotFound(f"application {application_id} has no reservation")
            if row.state == store.RELEASED:
                return row
            if row.state not in (store.RESERVED, store.AWARDED):
                raise FailedPrecondition(
                    f"the reservation of application {application_id} is {row.state}; "
                    "only a reserved or awarded one can be released"
                )
            program = row.program_code
            store.post_journal(
                session,
                f"release-{application_id}",
                f"release of application {application_id}: {reason or 'award fell away'}"[:500],
                store.available(program),
                store.reserved(program),
                row.amount_fen,
            )
            row.state = store.RELEASED
            row.updated_at = now_utc()
            session.add(row)
            self._emit(
                session,
                application_id,
                events_pb2.ReservationReleased(
                    application_id=application_id,
                    program_code=program,
                    amount_fen=row.amount_fen,
                    reason=reason,
                ),
                application_id,
            )
            return row

        return reservation_pb(await self._transact(work))

    async def ConfirmAward(self, request: pb.ConfirmAwardRequest, context: Any) -> pb.Reservation:
        application_id = validation.identifier("application_id", request.application_id)

        def work(session: Session) -> ReservationRow:
            row = store.lock_reservation(session, application_id)
            if row is None:
                raise NotFound(f"application {application_id} has no reservation")
            if row.state == store.RELEASED:
                raise FailedPrecondition(
                    f"the reservation of application {application_id} was released"
                )
            if row.state != store.RESERVED:
                return row  # awarded already, or further along: nothing to do
            row.state = store.AWARDED
            row.updated_at = now_utc()
            session.add(row)
            self._emit(
                session,
                application_id,
                events_pb2.AwardConfirmed(
                    application_id=application_id,
                    program_code=row.program_code,
                    amount_fen=row.amount_fen,
                ),
                application_id,
            )
            return row

        return reservation_pb(await self._transact(work))

    # Funding plans ------------------------------------------------------------------------------

    async def CreateFundingPlan(
        self, request: pb.CreateFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        request_id = validation.request_id("request_id", request.request_id)
        program = program_code("program_code", request.program_code)
        title = validation.text("title", request.title, max_len=MAX_TITLE)
        fingerprint = hashlib.sha256(f"{program}\x1f{title}".encode()).hexdigest()
        maker = current_principal().subject

        def work(session: Session) -> tuple[FundingPlanRow, list[PaymentLineRow]]:
            # The budget lock serialises plan making per program, so two plans never take the
            # same award; the replay check comes after it so a concurrent retry sees the plan.
            budget = store.lock_budget(session, program)
            existing = session.exec(
                select(FundingPlanRow).where(col(FundingPlanRow.request_id) == request_id)
            ).first()
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise AlreadyExists(
                        f"request_id {request_id} was already used for another funding plan "
                        f"({existing.plan_id})"
                    )
                return existing, store.plan_lines(session, existing.plan_id)
            if budget is None:
                raise FailedPrecondition(f"program {program} has no budget")
            awards = session.exec(
                select(ReservationRow)
                .where(col(ReservationRow.program_code) == program)
                .where(col(ReservationRow.state) == store.AWARDED)
                .where(col(ReservationRow.plan_id).is_(None))
                .order_by(col(ReservationRow.application_id))
                .with_for_update()
            ).all()
            if not awards:
                raise FailedPrecondition(
                    f"program {program} has no noticed awards waiting for a funding plan"
                )
            now = now_utc()
            plan = FundingPlanRow(
                plan_id=uuid.uuid4().hex,
                request_id=request_id,
                request_fingerprint=fingerprint,
                program_code=program,
                title=title,
                state=store.DRAFT,
                created_by=maker,
                total_fen=sum(award.amount_fen for award in awards),
                created_at=now,
                updated_at=now,
            )
            session.add(plan)
            lines = []
            for award in awards:
                line = PaymentLineRow(
                    line_id=uuid.uuid4().hex,
                    plan_id=plan.plan_id,
                    application_id=award.application_id,
                    applicant_credit_code=award.applicant_credit_code,
                    applicant_name=award.applicant_name,
                    amount_fen=award.amount_fen,
                    state=store.PENDING,
                )
                session.add(line)
                lines.append(line)
                award.state = store.IN_PLAN
                award.plan_id = plan.plan_id
                award.updated_at = now
                session.add(award)
            self._emit(
                session,
                plan.plan_id,
                events_pb2.FundingPlanCreated(
                    plan_id=plan.plan_id,
                    program_code=program,
                    total_fen=plan.total_fen,
                    line_count=len(lines),
                    created_by=maker,
                ),
                plan.plan_id,
            )
            return plan, lines

        return plan_pb(*await self._transact(work))

    async def ApproveFundingPlan(
        self, request: pb.ApproveFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        plan_id = validation.identifier("plan_id", request.plan_id)
        checker = current_principal().subject

        def work(session: Session) -> tuple[FundingPlanRow, list[PaymentLineRow]]:
            plan = store.lock_plan(session, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            if plan.created_by == checker:
                raise PermissionDenied(
                    "the maker of a funding plan may not approve it: a second finance officer "
                    "must (maker-checker)"
                )
            lines = store.plan_lines(session, plan_id)
            if plan.state != store.DRAFT:
                if plan.approved_by == checker:
                    return plan, lines
                raise FailedPrecondition(
                    f"funding plan {plan_id} is {plan.state}"
                    + (f", approved by {plan.approved_by}" if plan.approved_by else "")
                )
            now = now_utc()
            plan.state = store.APPROVED
            plan.approved_by = checker
            plan.approved_at = now
            plan.updated_at = now
            session.add(plan)
            # A consumer starts FundingPlanWorkflow plan-<plan_id> from this event.
            self._emit(
                session,
                plan_id,
                events_pb2.FundingPlanApproved(
                    plan_id=plan_id,
                    program_code=plan.program_code,
                    approved_by=checker,
                    line_ids=[line.line_id for line in lines],
                    application_ids=[line.application_id for line in lines],
                ),
                plan_id,
            )
            return plan, lines

        return plan_pb(*await self._transact(work))

    async def GetFundingPlan(
        self, request: pb.GetFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        plan_id = validation.identifier("plan_id", request.plan_id)

        def work(session: Session) -> tuple[FundingPlanRow, list[PaymentLineRow]]:
            plan = session.get(FundingPlanRow, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            return plan, store.plan_lines(session, plan_id)

        return plan_pb(*await self.db.run(work))

    async def ListFundingPlans(
        self, request: pb.ListFundingPlansRequest, context: Any
    ) -> pb.ListFundingPlansResponse:
        program = program_code("program_code", request.program_code) if request.program_code else ""

        def work(session: Session) -> list[tuple[FundingPlanRow, list[PaymentLineRow]]]:
            query = select(FundingPlanRow).order_by(
                col(FundingPlanRow.created_at).desc(), col(FundingPlanRow.plan_id)
            )
            if program:
                query = query.where(col(FundingPlanRow.program_code) == program)
            plans = session.exec(query).all()
            return [(plan, store.plan_lines(session, plan.plan_id)) for plan in plans]

        plans = await self.db.run(work)
        return pb.ListFundingPlansResponse(plans=[plan_pb(p, lines) for p, lines in plans])

    # Payments -----------------------------------------------------------------------------------

    async def ExecutePayment(
        self, request: pb.ExecutePaymentRequest, context: Any
    ) -> pb.PaymentLine:
        plan_id = validation.identifier("plan_id", request.plan_id)
        line_id = validation.identifier("line_id", request.line_id)

        def begin(session: Session) -> tuple[PaymentLineRow, bool]:
            line = store.lock_line(session, line_id)
            if line is None or line.plan_id != plan_id:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if line.state == store.PAID:
                return line, False
            plan = session.get(FundingPlanRow, plan_id)
            if plan is None or plan.state not in PAYABLE_PLAN_STATES:
                state = plan.state if plan else "missing"
                raise FailedPrecondition(f"funding plan {plan_id} is {state}, not approved")
            if line.state == store.FAILED:
                raise FailedPrecondition(f"payment line {line_id} was marked failed")
            line.attempts += 1
            session.add(line)
            return line, True

        line, must_pay = await self.db.run(begin)
        if not must_pay:
            return line_pb(line)

        try:
            # The award's key, not the line's: however often this runs, and from whichever plan's
            # line, the gateway pays the award once. A line given up after a lost answer may have
            # been paid late; the award's line in a later plan then gets that payment back.
            reference = await asyncio.wait_for(
                self.gateway.pay(
                    idempotency_key=award_payment_key(line.application_id),
                    payee_credit_code=line.applicant_credit_code,
                    payee_name=line.applicant_name,
                    amount_fen=line.amount_fen,
                ),
                timeout=GATEWAY_CALL_TIMEOUT_S,
            )
        except GatewayRejected as exc:
            raise FailedPrecondition(f"payment rejected by the gateway: {exc.reason}") from exc
        except (GatewayTimeout, TimeoutError) as exc:
            log.warning("payment outcome unknown", line_id=line_id, attempt=line.attempts)
            raise Unavailable(
                "payment gateway timed out, the outcome is unknown: retry this line (same "
                "idempotency key) to settle it",
                reason=REASON_PAYMENT_GATEWAY,
            ) from exc
        except GatewayUnavailable as exc:
            raise Unavailable(
                f"payment gateway unavailable: {exc}", reason=REASON_PAYMENT_GATEWAY
            ) from exc

        def settle(session: Session) -> PaymentLineRow:
            plan = store.lock_plan(session, plan_id)
            row = store.lock_line(session, line_id)
            if plan is None or row is None:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if row.state == store.PAID:
                return row  # a concurrent call settled it
            reservation = store.lock_reservation(session, row.application_id)
            if row.state == store.FAILED:
                raise self._paid_after_failure(row, reservation, reference)
            now = now_utc()
            row.state = store.PAID
            row.gateway_reference = reference
            row.paid_at = now
            session.add(row)
            if reservation is not None:
                reservation.state = store.PAID
                reservation.updated_at = now
                session.add(reservation)
            program = plan.program_code
            store.post_journal(
                session,
                f"pay-{line_id}",
                f"payment to {row.applicant_credit_code} for application {row.application_id} "
                f"({reference})",
                store.paid(program),
                store.reserved(program),
                row.amount_fen,
            )
            if plan.state == store.APPROVED:
                plan.state = store.PAYING
                plan.updated_at = now
                session.add(plan)
            # Keyed by application so every event of one grant stays in order on its partition.
            self._emit(
                session,
                row.application_id,
                events_pb2.PaymentSettled(
                    plan_id=plan_id,
                    line_id=line_id,
                    application_id=row.application_id,
                    amount_fen=row.amount_fen,
                    gateway_reference=reference,
                ),
                line_id,
            )
            return row

        return line_pb(await self._transact(settle))

    @staticmethod
    def _paid_after_failure(
        line: PaymentLineRow, reservation: ReservationRow | None, reference: str
    ) -> FailedPrecondition:
        """The answer to a gateway payment that completed after its line was marked failed.

        A failed line keeps no journal, so the line is not revived: the payment belongs to the
        award (its key is the award's), and the award's next line settles it with this reference
        without paying again. Only an award that fell away meanwhile leaves money to recover.
        """
        state = reservation.state if reservation is not None else "missing"
        where = f"payment line {line.line_id} was marked failed before the gateway paid it"
        if state == store.PAID:
            log.info(
                "late payment of a failed line; the award is settled already",
                line_id=line.line_id,
                application_id=line.application_id,
                reference=reference,
            )
            return FailedPrecondition(
                f"{where} (reference {reference}); the award of application "
                f"{line.application_id} is settled by a later line with that payment"
            )
        if state in (store.AWARDED, store.IN_PLAN):
            log.warning(
                "late payment of a failed line; the award's next line settles it",
                line_id=line.line_id,
                application_id=line.application_id,
                reference=reference,
            )
            return FailedPrecondition(
                f"{where} (reference {reference}); the award of application "
                f"{line.application_id} stays reserved and its line in the next funding plan "
                "settles this payment without paying again"
            )
        log.error(
            "gateway paid an award that fell away: reconcile with the treasury",
            line_id=line.line_id,
            application_id=line.application_id,
            reservation_state=state,
            reference=reference,
        )
        return FailedPrecondition(
            f"{where} (reference {reference}), and the award of application "
            f"{line.application_id} is {state}: reconcile with the treasury"
        )

    async def _award_payment(self, application_id: str) -> str | None:
        """The gateway reference of the award's payment, if one was made; Unavailable if unsure."""
        try:
            return await asyncio.wait_for(
                self.gateway.find_payment(award_payment_key(application_id)),
                timeout=GATEWAY_CALL_TIMEOUT_S,
            )
        except (GatewayUnavailable, GatewayTimeout, TimeoutError) as exc:
            raise Unavailable(
                "cannot confirm with the payment gateway that the award of application "
                f"{application_id} was not paid; retry"
            ) from exc

    async def MarkPaymentFailed(
        self, request: pb.MarkPaymentFailedRequest, context: Any
    ) -> pb.PaymentLine:
        plan_id = validation.identifier("plan_id", request.plan_id)
        line_id = validation.identifier("line_id", request.line_id)
        reason = reason_text("reason", request.reason) or "payment failed"

        def check(session: Session, *, lock: bool) -> tuple[PaymentLineRow, bool]:
            if lock:
                plan = store.lock_plan(session, plan_id)
                line = store.lock_line(session, line_id)
            else:
                plan = session.get(FundingPlanRow, plan_id)
                line = session.get(PaymentLineRow, line_id)
            if plan is None or line is None or line.plan_id != plan_id:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if line.state == store.PAID:
                raise FailedPrecondition(f"payment line {line_id} is already paid")
            if line.state != store.FAILED and plan.state not in PAYABLE_PLAN_STATES:
                raise FailedPrecondition(f"funding plan {plan_id} is {plan.state}, not approved")
            return line, store.award_attempted(session, line.application_id)

        seen, attempted = await self.db.run(lambda session: check(session, lock=False))
        if seen.state == store.FAILED:
            return line_pb(seen)
        if attempted:
            # An attempt whose answer was lost, on this line or an earlier one of the award, may
            # have paid: the payment is then settled on this line, never given up.
            reference = await self._award_payment(seen.application_id)
            if reference:
                raise FailedPrecondition(
                    f"the payment gateway paid the award of application {seen.application_id} "
                    f"(reference {reference}): execute line {line_id} again to settle it instead "
                    "of marking it failed"
                )

        def work(session: Session) -> PaymentLineRow:
            line, _ = check(session, lock=True)
            if line.state == store.FAILED:
                return line
            if line.attempts != seen.attempts:
                raise Unavailable(f"a payment attempt on line {line_id} started meanwhile; retry")
            now = now_utc()
            line.state = store.FAILED
            line.failure_reason = reason
            session.add(line)
            reservation = store.lock_reservation(session, line.application_id)
            if (
                reservation is not None
                and reservation.state == store.IN_PLAN
                and reservation.plan_id == plan_id
            ):
                # The award still stands and its money stays reserved: a later plan takes it.
                reservation.state = store.AWARDED
                reservation.plan_id = None
                reservation.updated_at = now
                session.add(reservation)
            self._emit(
                session,
                line.application_id,
                events_pb2.PaymentFailed(
                    plan_id=plan_id,
                    line_id=line_id,
                    application_id=line.application_id,
                    amount_fen=line.amount_fen,
                    reason=reason,
                ),
                line_id,
            )
            return line

        return line_pb(await self._transact(work))

    async def CompleteFundingPlan(
        self, request: pb.CompleteFundingPlanRequest, context: Any
    ) -> pb.FundingPlan:
        plan_id = validation.identifier("plan_id", request.plan_id)

        def work(session: Session) -> tuple[FundingPlanRow, list[PaymentLineRow]]:
            plan = store.lock_plan(session, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            lines = store.plan_lines(session, plan_id)
            if plan.state in (store.COMPLETED, store.COMPLETED_WITH_FAILURES):
                return plan, lines
            if plan.state not in PAYABLE_PLAN_STATES:
                raise FailedPrecondition(f"funding plan {plan_id} is {plan.state}, not approved")
            pending = sum(1 for line in lines if line.state == store.PENDING)
            if pending:
                raise FailedPrecondition(
                    f"funding plan {plan_id} still has {pending} pending payment line(s)"
                )
            paid_lines = [line for line in lines if line.state == store.PAID]
            failed = len(lines) - len(paid_lines)
            now = now_utc()
            plan.state = store.COMPLETED_WITH_FAILURES if failed else store.COMPLETED
            plan.completed_at = now
            plan.updated_at = now
            session.add(plan)
            self._emit(
                session,
                plan_id,
                events_pb2.FundingPlanCompleted(
                    plan_id=plan_id,
                    paid_lines=len(paid_lines),
                    failed_lines=failed,
                    paid_fen=sum(line.amount_fen for line in paid_lines),
                ),
                plan_id,
            )
            return plan, lines

        return plan_pb(*await self._transact(work))

    # Ledger -------------------------------------------------------------------------------------

    async def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: Any
    ) -> pb.ListLedgerEntriesResponse:
        prefix = optional_text("account_prefix", request.account_prefix, max_len=200)
        journal_id = optional_text("journal_id", request.journal_id, max_len=200)

        def work(session: Session) -> list[LedgerEntryRow]:
            query = select(LedgerEntryRow).order_by(col(LedgerEntryRow.id))
            if prefix:
                query = query.where(col(LedgerEntryRow.account).startswith(prefix, autoescape=True))
            if journal_id:
                query = query.where(col(LedgerEntryRow.journal_id) == journal_id)
            return list(session.exec(query).all())

        rows = await self.db.run(work)
        return pb.ListLedgerEntriesResponse(entries=[entry_pb(row) for row in rows])
