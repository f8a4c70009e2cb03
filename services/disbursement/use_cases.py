"""The disbursement service's use cases: budgets, reservations, funding plans and payments, and
the money rules they keep.

- A budget is never exceeded: a reservation is checked against what is available under the
  budget's lock, and a budget never goes below what is reserved or paid.
- A line is paid once: the gateway is called with the award's idempotency key, outside any
  transaction, and the line is settled (journal `pay-<line id>`) once, whatever is retried.
- Every journal balances (store.post_journal), and its id is derived from the business event
  (`budget-<program>-<revision>`, `reserve-<application>`, `release-<application>`,
  `pay-<line>`), so posting one event twice is impossible.
- Money that may have been paid is never given back to the budget nor given up.

Each use case takes one command (commands.py) and does its work in units of work
(services/common/unit_of_work.py) that commit the rows, the ledger journal, the outbox event and
the audit record (budgets, reservations, plans by maker and checker, each line paid or failed)
together. Row locks are always taken in the same order (budget, plan, line, reservation) so
concurrent calls on PostgreSQL cannot deadlock; on SQLite every writing transaction holds the
write lock from its start.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import structlog
from sqlmodel import Session

from grantflow.v1 import events_pb2
from services.common.auth import Principal
from services.common.db import now_utc
from services.common.errors import (
    REASON_PAYMENT_GATEWAY,
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.unit_of_work import EventSource, Transactions, UnitOfWork
from services.common.validation import cut
from services.common.vocabulary import (
    CLOSED_PLAN_STATES,
    PAYABLE_PLAN_STATES,
    AuditAction,
    PaymentState,
    PlanState,
    ReservationState,
    Role,
)
from services.disbursement import store
from services.disbursement.catalogue import ProgramCatalogue
from services.disbursement.commands import (
    ApprovePlan,
    CompletePlan,
    ConfirmAward,
    CreatePlan,
    ExecuteLine,
    FailLine,
    ListLines,
    Release,
    Reserve,
    RetryLine,
    SetBudget,
)
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

log = structlog.get_logger(__name__)

# Derives the ids of this service's events (EventSource.event_id); never to change, or a retry
# across an upgrade could announce a change twice.
EVENT_NAMESPACE = uuid.UUID("5d0c7a52-3f53-4a43-9a55-6f1b1c1f9d10")
# A gateway that answers after this long is treated as a timeout: outcome unknown.
GATEWAY_CALL_TIMEOUT_S = 30.0
MAX_MEMO = 500  # ledger_entry.memo
# A reservation may be released only while its award has not gone into a plan.
RELEASABLE = frozenset({ReservationState.RESERVED, ReservationState.AWARDED})


def event_source(topic: str) -> EventSource:
    """Where the disbursement service's events go: `topic`, the service's Kafka topic."""
    return EventSource(name="disbursement", topic=topic, namespace=EVENT_NAMESPACE)


def finance_officer(subject: str) -> Principal:
    """Who set a budget or made or checked a plan (only finance may: the role table)."""
    return Principal(subject=subject, role=Role.FINANCE)


@dataclass(frozen=True)
class PlanView:
    plan: FundingPlanRow
    lines: list[PaymentLineRow]


class Disbursement:
    """The use cases, over the service's database, the payment gateway and the catalogue."""

    def __init__(
        self,
        transactions: Transactions,
        gateway: PaymentGateway,
        catalogue: ProgramCatalogue,
        *,
        gateway_timeout_s: float = GATEWAY_CALL_TIMEOUT_S,
    ) -> None:
        self.transactions = transactions
        self.gateway = gateway
        self.catalogue = catalogue
        self.gateway_timeout_s = gateway_timeout_s

    # Budgets ------------------------------------------------------------------------------------

    async def set_budget(self, command: SetBudget) -> BudgetFigures:
        program, total = command.program_code, command.total_fen
        if not await self.catalogue.is_published(program):
            raise FailedPrecondition(
                f"program {program} was never published in the program catalogue; publish it "
                "before giving it a budget"
            )

        def work(unit: UnitOfWork) -> BudgetFigures:
            session = unit.session
            now = now_utc()
            budget = store.lock_budget(session, program)
            if budget is None:
                session.add(
                    ProgramBudgetRow(
                        program_code=program,
                        total_fen=total,
                        revision=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
                store.post_journal(
                    session,
                    f"budget-{program}-1",
                    f"budget set to {total} fen by {command.set_by}",
                    store.available(program),
                    store.appropriation(program),
                    total,
                )
                unit.audit(
                    AuditAction.BUDGET_SET,
                    program,
                    finance_officer(command.set_by),
                    details={"program_code": program, "total_fen": total, "revision": 1},
                    key=f"{program}-1",
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
            memo = f"budget changed by {delta:+d} fen to {total} fen by {command.set_by}"
            journal = f"budget-{program}-{budget.revision}"
            if delta > 0:
                debit, credit = store.available(program), store.appropriation(program)
            else:
                debit, credit = store.appropriation(program), store.available(program)
            store.post_journal(session, journal, memo, debit, credit, abs(delta))
            unit.audit(
                AuditAction.BUDGET_CHANGED,
                program,
                finance_officer(command.set_by),
                details={
                    "program_code": program,
                    "total_fen": total,
                    "previous_total_fen": total - delta,
                    "change_fen": delta,
                    "revision": budget.revision,
                },
                key=f"{program}-{budget.revision}",
            )
            return BudgetFigures(program, total, figures.reserved_fen, figures.paid_fen)

        return await self.transactions.write(work)

    async def budget(self, program_code: str) -> BudgetFigures:
        def work(session: Session) -> BudgetFigures:
            budget = session.get(ProgramBudgetRow, program_code)
            if budget is None:
                raise NotFound(f"program {program_code} has no budget")
            return store.budget_figures(session, budget)

        return await self.transactions.read(work)

    # Reservations -------------------------------------------------------------------------------

    async def reserve(self, command: Reserve) -> ReservationRow:
        application_id, program = command.application_id, command.program_code
        amount = command.amount_fen

        def work(unit: UnitOfWork) -> ReservationRow:
            session = unit.session
            budget = store.lock_budget(session, program)
            existing = store.lock_reservation(session, application_id)
            if existing is not None:
                if existing.state == ReservationState.RELEASED:
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
                state=ReservationState.RESERVED,
                applicant_credit_code=command.applicant_credit_code,
                applicant_name=command.applicant_name,
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
            unit.announce(
                application_id,
                events_pb2.BudgetReserved(
                    application_id=application_id, program_code=program, amount_fen=amount
                ),
                key=application_id,
            )
            unit.audit(
                AuditAction.RESERVATION_MADE,
                application_id,
                details={"program_code": program, "amount_fen": amount},
                key=application_id,
            )
            return row

        return await self.transactions.write(work)

    async def release(self, command: Release) -> ReservationRow:
        application_id, reason = command.application_id, command.reason

        def attempted(session: Session) -> bool:
            row = session.get(ReservationRow, application_id)
            return (
                row is not None
                and row.state in RELEASABLE
                and store.award_attempted(session, application_id)
            )

        if await self.transactions.read(attempted):
            # An award whose payment line was given up may have been paid late: giving its
            # money back to the budget would spend it twice.
            reference = await self._award_payment(application_id)
            if reference:
                raise FailedPrecondition(
                    f"the payment gateway paid the award of application {application_id} "
                    f"(reference {reference}) after its payment line failed: it cannot be "
                    "released; its line in the next funding plan settles the payment"
                )

        def work(unit: UnitOfWork) -> ReservationRow:
            session = unit.session
            row = store.lock_reservation(session, application_id)
            if row is None:
                raise NotFound(f"application {application_id} has no reservation")
            if row.state == ReservationState.RELEASED:
                return row
            if row.state not in RELEASABLE:
                raise FailedPrecondition(
                    f"the reservation of application {application_id} is {row.state}; "
                    "only a reserved or awarded one can be released"
                )
            program = row.program_code
            store.post_journal(
                session,
                f"release-{application_id}",
                cut(
                    f"release of application {application_id}: {reason or 'award fell away'}",
                    MAX_MEMO,
                ),
                store.available(program),
                store.reserved(program),
                row.amount_fen,
            )
            row.state = ReservationState.RELEASED
            row.updated_at = now_utc()
            session.add(row)
            unit.announce(
                application_id,
                events_pb2.ReservationReleased(
                    application_id=application_id,
                    program_code=program,
                    amount_fen=row.amount_fen,
                    reason=reason,
                ),
                key=application_id,
            )
            unit.audit(
                AuditAction.RESERVATION_RELEASED,
                application_id,
                reason=reason,
                details={"program_code": program, "amount_fen": row.amount_fen},
                key=application_id,
            )
            return row

        return await self.transactions.write(work)

    async def confirm_award(self, command: ConfirmAward) -> ReservationRow:
        application_id = command.application_id

        def work(unit: UnitOfWork) -> ReservationRow:
            row = store.lock_reservation(unit.session, application_id)
            if row is None:
                raise NotFound(f"application {application_id} has no reservation")
            if row.state == ReservationState.RELEASED:
                raise FailedPrecondition(
                    f"the reservation of application {application_id} was released"
                )
            if row.state != ReservationState.RESERVED:
                return row  # awarded already, or further along: nothing to do
            row.state = ReservationState.AWARDED
            row.updated_at = now_utc()
            unit.session.add(row)
            unit.announce(
                application_id,
                events_pb2.AwardConfirmed(
                    application_id=application_id,
                    program_code=row.program_code,
                    amount_fen=row.amount_fen,
                ),
                key=application_id,
            )
            unit.audit(
                AuditAction.AWARD_CONFIRMED,
                application_id,
                details={"program_code": row.program_code, "amount_fen": row.amount_fen},
                key=application_id,
            )
            return row

        return await self.transactions.write(work)

    # Funding plans ------------------------------------------------------------------------------

    async def create_plan(self, command: CreatePlan) -> PlanView:
        program, fingerprint = command.program_code, command.fingerprint

        def work(unit: UnitOfWork) -> PlanView:
            session = unit.session
            # The budget lock serialises plan making per program, so two plans never take the
            # same award; the replay check comes after it so a concurrent retry sees the plan.
            budget = store.lock_budget(session, program)
            existing = store.plan_by_request(session, command.request_id)
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise AlreadyExists(
                        f"request_id {command.request_id} was already used for another funding "
                        f"plan ({existing.plan_id})"
                    )
                return PlanView(existing, store.plan_lines(session, existing.plan_id))
            if budget is None:
                raise FailedPrecondition(f"program {program} has no budget")
            awards = store.awards_waiting_for_a_plan(session, program)
            if not awards:
                raise FailedPrecondition(
                    f"program {program} has no noticed awards waiting for a funding plan"
                )
            now = now_utc()
            plan = FundingPlanRow(
                plan_id=uuid.uuid4().hex,
                request_id=command.request_id,
                request_fingerprint=fingerprint,
                program_code=program,
                title=command.title,
                state=PlanState.DRAFT,
                created_by=command.maker,
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
                    state=PaymentState.PENDING,
                )
                session.add(line)
                lines.append(line)
                award.state = ReservationState.IN_PLAN
                award.plan_id = plan.plan_id
                award.updated_at = now
                session.add(award)
            unit.announce(
                plan.plan_id,
                events_pb2.FundingPlanCreated(
                    plan_id=plan.plan_id,
                    program_code=program,
                    total_fen=plan.total_fen,
                    line_count=len(lines),
                    created_by=command.maker,
                ),
                key=plan.plan_id,
            )
            unit.audit(
                AuditAction.PLAN_CREATED,
                plan.plan_id,
                finance_officer(command.maker),
                details={
                    "program_code": program,
                    "title": command.title,
                    "total_fen": plan.total_fen,
                    "line_count": len(lines),
                },
                key=plan.plan_id,
            )
            return PlanView(plan, lines)

        return await self.transactions.write(work)

    async def approve_plan(self, command: ApprovePlan) -> PlanView:
        plan_id, checker = command.plan_id, command.checker

        def work(unit: UnitOfWork) -> PlanView:
            session = unit.session
            plan = store.lock_plan(session, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            if plan.created_by == checker:
                raise PermissionDenied(
                    "the maker of a funding plan may not approve it: a second finance officer "
                    "must (maker-checker)"
                )
            lines = store.plan_lines(session, plan_id)
            if plan.state != PlanState.DRAFT:
                if plan.approved_by == checker:
                    return PlanView(plan, lines)
                raise FailedPrecondition(
                    f"funding plan {plan_id} is {plan.state}"
                    + (f", approved by {plan.approved_by}" if plan.approved_by else "")
                )
            now = now_utc()
            plan.state = PlanState.APPROVED
            plan.approved_by = checker
            plan.approved_at = now
            plan.updated_at = now
            session.add(plan)
            # A consumer starts FundingPlanWorkflow plan-<plan_id> from this event.
            unit.announce(
                plan_id,
                events_pb2.FundingPlanApproved(
                    plan_id=plan_id,
                    program_code=plan.program_code,
                    approved_by=checker,
                    line_ids=[line.line_id for line in lines],
                    application_ids=[line.application_id for line in lines],
                ),
                key=plan_id,
            )
            unit.audit(
                AuditAction.PLAN_APPROVED,
                plan_id,
                finance_officer(checker),
                details={
                    "program_code": plan.program_code,
                    "maker": plan.created_by,
                    "checker": checker,
                    "total_fen": plan.total_fen,
                    "line_count": len(lines),
                },
                key=plan_id,
            )
            return PlanView(plan, lines)

        return await self.transactions.write(work)

    async def plan(self, plan_id: str) -> PlanView:
        def work(session: Session) -> PlanView:
            plan = session.get(FundingPlanRow, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            return PlanView(plan, store.plan_lines(session, plan_id))

        return await self.transactions.read(work)

    async def plans(self, program_code: str = "") -> list[PlanView]:
        def work(session: Session) -> list[PlanView]:
            return [
                PlanView(plan, store.plan_lines(session, plan.plan_id))
                for plan in store.plans(session, program_code)
            ]

        return await self.transactions.read(work)

    async def complete_plan(self, command: CompletePlan) -> PlanView:
        plan_id = command.plan_id

        def work(unit: UnitOfWork) -> PlanView:
            session = unit.session
            plan = store.lock_plan(session, plan_id)
            if plan is None:
                raise NotFound(f"funding plan {plan_id} not found")
            lines = store.plan_lines(session, plan_id)
            if plan.state in CLOSED_PLAN_STATES:
                return PlanView(plan, lines)
            if plan.state not in PAYABLE_PLAN_STATES:
                raise FailedPrecondition(f"funding plan {plan_id} is {plan.state}, not approved")
            pending = sum(1 for line in lines if line.state == PaymentState.PENDING)
            if pending:
                raise FailedPrecondition(
                    f"funding plan {plan_id} still has {pending} pending payment line(s)"
                )
            paid_lines = [line for line in lines if line.state == PaymentState.PAID]
            failed = len(lines) - len(paid_lines)
            now = now_utc()
            plan.state = PlanState.COMPLETED_WITH_FAILURES if failed else PlanState.COMPLETED
            plan.completed_at = now
            plan.updated_at = now
            session.add(plan)
            completed = events_pb2.FundingPlanCompleted(
                plan_id=plan_id,
                paid_lines=len(paid_lines),
                failed_lines=failed,
                paid_fen=sum(line.amount_fen for line in paid_lines),
            )
            key = plan_id
            if unit.announced(event_source("").event_id(completed, key)):
                # Completed before, then a repair retried a failed line: this completion is
                # another event (the attempts only grow, so each completion has its own id).
                key = f"{plan_id}:attempts-{sum(line.attempts for line in lines)}"
            unit.announce(plan_id, completed, key=key)
            unit.audit(
                AuditAction.PLAN_COMPLETED,
                plan_id,
                details={
                    "state": plan.state,
                    "paid_lines": len(paid_lines),
                    "failed_lines": failed,
                    "paid_fen": sum(line.amount_fen for line in paid_lines),
                },
                key=key,
            )
            return PlanView(plan, lines)

        return await self.transactions.write(work)

    # Payments -----------------------------------------------------------------------------------

    async def execute_line(self, command: ExecuteLine) -> PaymentLineRow:
        plan_id, line_id = command.plan_id, command.line_id

        def begin(unit: UnitOfWork) -> tuple[PaymentLineRow, bool]:
            session = unit.session
            line = store.lock_line(session, line_id)
            if line is None or line.plan_id != plan_id:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if line.state == PaymentState.PAID:
                return line, False
            plan = session.get(FundingPlanRow, plan_id)
            if plan is None or plan.state not in PAYABLE_PLAN_STATES:
                state = plan.state if plan else "missing"
                raise FailedPrecondition(f"funding plan {plan_id} is {state}, not approved")
            if line.state == PaymentState.FAILED:
                raise FailedPrecondition(f"payment line {line_id} was marked failed")
            line.attempts += 1
            session.add(line)
            return line, True

        line, must_pay = await self.transactions.write(begin)
        if not must_pay:
            return line

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
                timeout=self.gateway_timeout_s,
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

        def settle(unit: UnitOfWork) -> PaymentLineRow:
            session = unit.session
            plan = store.lock_plan(session, plan_id)
            row = store.lock_line(session, line_id)
            if plan is None or row is None:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if row.state == PaymentState.PAID:
                return row  # a concurrent call settled it
            reservation = store.lock_reservation(session, row.application_id)
            if row.state == PaymentState.FAILED:
                raise _paid_after_failure(row, reservation, reference)
            now = now_utc()
            row.state = PaymentState.PAID
            row.gateway_reference = reference
            row.paid_at = now
            session.add(row)
            if reservation is not None:
                reservation.state = ReservationState.PAID
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
            if plan.state == PlanState.APPROVED:
                plan.state = PlanState.PAYING
                plan.updated_at = now
                session.add(plan)
            # Keyed by application so every event of one grant stays in order on its partition.
            unit.announce(
                row.application_id,
                events_pb2.PaymentSettled(
                    plan_id=plan_id,
                    line_id=line_id,
                    application_id=row.application_id,
                    amount_fen=row.amount_fen,
                    gateway_reference=reference,
                ),
                key=line_id,
            )
            unit.audit(
                AuditAction.PAYMENT_SETTLED,
                row.application_id,
                details={
                    "plan_id": plan_id,
                    "line_id": line_id,
                    "amount_fen": row.amount_fen,
                    "payee_credit_code": row.applicant_credit_code,
                    "gateway_reference": reference,
                    "attempts": row.attempts,
                },
                key=line_id,
            )
            return row

        return await self.transactions.write(settle)

    async def fail_line(self, command: FailLine) -> PaymentLineRow:
        plan_id, line_id, reason = command.plan_id, command.line_id, command.reason

        def check(session: Session, *, lock: bool) -> tuple[PaymentLineRow, bool]:
            if lock:
                plan = store.lock_plan(session, plan_id)
                line = store.lock_line(session, line_id)
            else:
                plan = session.get(FundingPlanRow, plan_id)
                line = session.get(PaymentLineRow, line_id)
            if plan is None or line is None or line.plan_id != plan_id:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if line.state == PaymentState.PAID:
                raise FailedPrecondition(f"payment line {line_id} is already paid")
            if line.state != PaymentState.FAILED and plan.state not in PAYABLE_PLAN_STATES:
                raise FailedPrecondition(f"funding plan {plan_id} is {plan.state}, not approved")
            return line, store.award_attempted(session, line.application_id)

        seen, attempted = await self.transactions.read(lambda session: check(session, lock=False))
        if seen.state == PaymentState.FAILED:
            return seen
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

        def work(unit: UnitOfWork) -> PaymentLineRow:
            session = unit.session
            line, _ = check(session, lock=True)
            if line.state == PaymentState.FAILED:
                return line
            if line.attempts != seen.attempts:
                raise Unavailable(f"a payment attempt on line {line_id} started meanwhile; retry")
            now = now_utc()
            line.state = PaymentState.FAILED
            line.failure_reason = reason
            session.add(line)
            reservation = store.lock_reservation(session, line.application_id)
            if (
                reservation is not None
                and reservation.state == ReservationState.IN_PLAN
                and reservation.plan_id == plan_id
            ):
                # The award still stands and its money stays reserved: a later plan takes it.
                reservation.state = ReservationState.AWARDED
                reservation.plan_id = None
                reservation.updated_at = now
                session.add(reservation)
            failure = events_pb2.PaymentFailed(
                plan_id=plan_id,
                line_id=line_id,
                application_id=line.application_id,
                amount_fen=line.amount_fen,
                reason=reason,
            )
            key = line_id
            if unit.announced(event_source("").event_id(failure, key)):
                # It failed before, a repair retried it, and it failed again: another event.
                key = f"{line_id}:attempts-{line.attempts}"
            unit.announce(line.application_id, failure, key=key)
            unit.audit(
                AuditAction.PAYMENT_FAILED,
                line.application_id,
                reason=reason,
                details={
                    "plan_id": plan_id,
                    "line_id": line_id,
                    "amount_fen": line.amount_fen,
                    "attempts": line.attempts,
                },
                key=key,
            )
            return line

        return await self.transactions.write(work)

    async def retry_line(self, command: RetryLine) -> PaymentLineRow:
        """A failed line made payable again by an approved repair: the line PENDING, the award
        back in this plan (its money is still reserved: a failed line leaves it AWARDED), the
        plan paying. Refused once the award was paid, released or taken by a later plan."""
        plan_id, line_id = command.plan_id, command.line_id

        def work(unit: UnitOfWork) -> PaymentLineRow:
            session = unit.session
            plan = store.lock_plan(session, plan_id)
            line = store.lock_line(session, line_id)
            if plan is None or line is None or line.plan_id != plan_id:
                raise NotFound(f"payment line {line_id} not found in funding plan {plan_id}")
            if line.state == PaymentState.PENDING and plan.state in PAYABLE_PLAN_STATES:
                return line  # retried already
            if line.state != PaymentState.FAILED:
                raise FailedPrecondition(f"payment line {line_id} is {line.state}, not failed")
            reservation = store.lock_reservation(session, line.application_id)
            if reservation is None or reservation.state != ReservationState.AWARDED:
                state = reservation.state if reservation else "missing"
                raise FailedPrecondition(
                    f"the award of application {line.application_id} is {state}: a later plan "
                    "holds it, or it was paid or released"
                )
            now = now_utc()
            line.state = PaymentState.PENDING
            line.failure_reason = ""
            session.add(line)
            reservation.state = ReservationState.IN_PLAN
            reservation.plan_id = plan_id
            reservation.updated_at = now
            session.add(reservation)
            if plan.state in CLOSED_PLAN_STATES:
                plan.state = PlanState.PAYING
                plan.completed_at = None
            plan.updated_at = now
            session.add(plan)
            unit.audit(
                AuditAction.PAYMENT_RETRIED,
                line.application_id,
                reason=command.reason,
                details={
                    "plan_id": plan_id,
                    "line_id": line_id,
                    "amount_fen": line.amount_fen,
                    "attempts": line.attempts,
                },
                key=f"{line_id}:attempts-{line.attempts}",
            )
            return line

        return await self.transactions.write(work)

    async def _award_payment(self, application_id: str) -> str | None:
        """The gateway reference of the award's payment, if one was made; Unavailable if unsure."""
        try:
            return await asyncio.wait_for(
                self.gateway.find_payment(award_payment_key(application_id)),
                timeout=self.gateway_timeout_s,
            )
        except (GatewayUnavailable, GatewayTimeout, TimeoutError) as exc:
            raise Unavailable(
                "cannot confirm with the payment gateway that the award of application "
                f"{application_id} was not paid; retry"
            ) from exc

    # Reading for operators ----------------------------------------------------------------------

    async def application_funds(
        self, application_id: str
    ) -> tuple[ReservationRow | None, list[PlanView]]:
        """An application's reservation and the plans holding it, each with only its lines."""

        def work(session: Session) -> tuple[ReservationRow | None, list[PlanView]]:
            reservation = session.get(ReservationRow, application_id)
            lines = store.lines_of_application(session, application_id)
            plans = store.plans_by_id(session, {line.plan_id for line in lines})
            return reservation, [
                PlanView(plan, [line for line in lines if line.plan_id == plan.plan_id])
                for plan in plans
            ]

        return await self.transactions.read(work)

    async def payment_lines(self, command: ListLines) -> list[PaymentLineRow]:
        return await self.transactions.read(
            lambda session: store.payment_lines(
                session, command.state, command.limit, command.program_code
            )
        )

    # Ledger -------------------------------------------------------------------------------------

    async def ledger(self, account_prefix: str = "", journal_id: str = "") -> list[LedgerEntryRow]:
        return await self.transactions.read(
            lambda session: store.ledger_entries(session, account_prefix, journal_id)
        )


def _paid_after_failure(
    line: PaymentLineRow, reservation: ReservationRow | None, reference: str
) -> FailedPrecondition:
    """The answer to a gateway payment that completed after its line was marked failed.

    A failed line keeps no journal, so the line is not revived: the payment belongs to the award
    (its key is the award's), and the award's next line settles it with this reference without
    paying again. Only an award that fell away meanwhile leaves money to recover.
    """
    state = reservation.state if reservation is not None else "missing"
    where = f"payment line {line.line_id} was marked failed before the gateway paid it"
    if state == ReservationState.PAID:
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
    if state in (ReservationState.AWARDED, ReservationState.IN_PLAN):
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
