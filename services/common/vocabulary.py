"""Grantflow's one vocabulary: grant stages, departments, roles, review task states and decisions,
reservation, funding-plan and payment-line states, repairs, the error types of final answers,
and the ways an audit chain can break.

Each term set is defined once, here, as a StrEnum whose values are what the databases, the search
attributes and the recorded workflow histories already hold, and each is mapped to its protobuf
enum in one place (`to_proto`, `from_proto`: the proto name is the prefix plus the member name).
An unknown value raises `VocabularyError`: at a service boundary that is bad input, inside an
activity a non-retryable failure (no retry can make a misspelt stage valid).

This module imports nothing of Grantflow's but the generated protos, and those only when a term is
first mapped, so workflow code, services and the CLI can all share it cheaply.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import Any, Self


class VocabularyError(ValueError):
    """A value that is not a term of its vocabulary (a typo, or a newer peer's term)."""

    def __init__(self, vocabulary: str, value: object) -> None:
        super().__init__(f"{value!r} is not a {vocabulary}")
        self.vocabulary = vocabulary
        self.value = value


class Term(StrEnum):
    """A term of one of Grantflow's vocabularies."""

    @classmethod
    def parse(cls, value: str) -> Self:
        """The term spelt `value`; VocabularyError if there is none."""
        try:
            return cls(value)
        except ValueError:
            raise VocabularyError(cls.__name__, value) from None

    def to_proto(self) -> Any:
        """The proto enum number (typed Any: each generated enum has its own ValueType)."""
        wrapper, prefix = _proto_enums()[type(self)]
        return int(wrapper.Value(prefix + self.name))

    @classmethod
    def from_proto(cls, number: int) -> Self:
        """The term of a proto enum number; VocabularyError for UNSPECIFIED or an unknown one."""
        wrapper, prefix = _proto_enums()[cls]
        try:
            name = str(wrapper.Name(number))
        except ValueError:
            raise VocabularyError(cls.__name__, number) from None
        member = cls.__members__.get(name.removeprefix(prefix))
        if member is None:
            raise VocabularyError(cls.__name__, name)
        return member


class GrantStage(Term):
    """Where a grant is in its life (workflow state, search attribute, applicant's status)."""

    SUBMITTED = "SUBMITTED"
    FORMAL_CHECK = "FORMAL_CHECK"
    AWAITING_SUPPLEMENT = "AWAITING_SUPPLEMENT"
    IN_REVIEW = "IN_REVIEW"
    APPROVED = "APPROVED"
    IN_NOTICE = "IN_NOTICE"
    AWAITING_FUNDING_PLAN = "AWAITING_FUNDING_PLAN"
    IN_PAYMENT = "IN_PAYMENT"
    PAID = "PAID"
    REJECTED = "REJECTED"
    WITHDRAWN = "WITHDRAWN"
    PAYMENT_FAILED = "PAYMENT_FAILED"


# A grant in one of these stages has ended.
CLOSED_STAGES = frozenset({GrantStage.PAID, GrantStage.REJECTED, GrantStage.WITHDRAWN})
# The money has gone or is going out, or the grant has ended: nothing is left to withdraw.
NOT_WITHDRAWABLE_STAGES = CLOSED_STAGES | {GrantStage.IN_PAYMENT}


class Department(Term):
    """Government departments that own or co-review programs."""

    INDUSTRY = "industry"  # bureau of industry and information technology (工信局)
    FINANCE = "finance"  # finance bureau (财政局)
    HR = "hr"  # HR and social security bureau (人社局)


class Role(Term):
    """What a caller's token says it is."""

    APPLICANT = "applicant"
    REVIEWER = "reviewer"
    FINANCE = "finance"
    OPS = "ops"
    SYSTEM = "system"  # Grantflow's own processes


class TaskState(Term):
    """A review task: open -> claimed -> decided, or cancelled when the grant leaves review."""

    OPEN = "open"
    CLAIMED = "claimed"
    DECIDED = "decided"
    CANCELLED = "cancelled"


ACTIVE_TASK_STATES = frozenset({TaskState.OPEN, TaskState.CLAIMED})


class Decision(Term):
    """A reviewer's decision on a task."""

    APPROVE = "approve"
    REJECT = "reject"
    RETURN_FOR_SUPPLEMENT = "return"


class ReservationState(Term):
    """An award's money: reserved at approval, awarded after the notice, in a plan, paid."""

    RESERVED = "reserved"
    AWARDED = "awarded"
    IN_PLAN = "in_plan"
    PAID = "paid"
    RELEASED = "released"


# Reservation states in which an amount still counts against the budget without being paid.
HOLDING_RESERVATION_STATES = frozenset(
    {ReservationState.RESERVED, ReservationState.AWARDED, ReservationState.IN_PLAN}
)


class PlanState(Term):
    """A funding plan (资助计划): drafted by a maker, approved by a checker, then paid."""

    DRAFT = "draft"
    APPROVED = "approved"
    PAYING = "paying"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"


PAYABLE_PLAN_STATES = frozenset({PlanState.APPROVED, PlanState.PAYING})
CLOSED_PLAN_STATES = frozenset({PlanState.COMPLETED, PlanState.COMPLETED_WITH_FAILURES})


class PaymentState(Term):
    """One line of a funding plan."""

    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


class RepairAction(Term):
    """The named repairs of a grant (workflows/repair.py)."""

    REOPEN_REVIEW = "reopen_review"
    RETRY_PAYMENT = "retry_payment"
    MOVE_TO_STAGE = "move_to_stage"
    CANCEL = "cancel"
    RESUME = "resume"


class RepairState(Term):
    """Where a repair stands."""

    PREVIEWED = "previewed"  # a dry run: the preview, nothing changed
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    LAPSED = "lapsed"  # nobody approved within the approval window


class GrantRepairState(Term):
    """One grant's part of a repair."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class ErrorType(Term):
    """The type of a final answer (an ApplicationError raised by a workflow's update validator
    or by an activity whose service refused): the gRPC status code's name, one spelling."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    # Not a service's answer: a value outside Grantflow's vocabulary reached an activity.
    UNKNOWN_TERM = "UNKNOWN_TERM"
    # The payment gateway answered with a failure a later attempt may overcome (it timed out
    # with the outcome unknown, or was unavailable): the funding plan counts these per line.
    GATEWAY_FAILED = "GATEWAY_FAILED"


class AuditAction(Term):
    """What the services' own use cases record in their audit trails (services/common/audit.py).

    Not mapped to a proto enum: an audit record's action is text, so that ops tools and repairs
    (`repair.<action>.requested|approved|refused|executed|failed`) name their own acts.
    """

    REVIEW_CLAIMED = "review.claimed"
    REVIEW_DECIDED = "review.decided"
    # Objections (异议/投诉/举报) are not handled yet; their use case records this when they are.
    OBJECTION_HANDLED = "objection.handled"
    PROGRAM_PUBLISHED = "program.published"
    WITHDRAWAL_REQUESTED = "application.withdrawal_requested"
    # The grant's stage reports that decide it or end it.
    GRANT_APPROVED = "grant.approved"  # reported by earlier generations of the grant only
    GRANT_IN_NOTICE = "grant.in_notice"  # decided, money reserved, the public notice begins
    GRANT_REJECTED = "grant.rejected"
    GRANT_WITHDRAWN = "grant.withdrawn"
    GRANT_PAID = "grant.paid"
    GRANT_PAYMENT_FAILED = "grant.payment_failed"
    BUDGET_SET = "budget.set"
    BUDGET_CHANGED = "budget.changed"
    RESERVATION_MADE = "reservation.made"
    RESERVATION_RELEASED = "reservation.released"
    AWARD_CONFIRMED = "award.confirmed"
    PLAN_CREATED = "plan.created"
    PLAN_APPROVED = "plan.approved"
    PLAN_COMPLETED = "plan.completed"
    PAYMENT_SETTLED = "payment.settled"
    PAYMENT_FAILED = "payment.failed"
    # A failed line made payable again by an approved repair (RetryPaymentLine).
    PAYMENT_RETRIED = "payment.retried"
    # The working-day calendar and where applicants are told (applications service).
    CALENDAR_YEAR_SET = "calendar.year_set"
    NOTIFICATION_CONTACT_SET = "notification.contact_set"


class NotificationChannel(Term):
    """Where an applicant is told of a step (services/applications/channels.py); not mapped to
    a proto enum: the delivery log names its channel in text."""

    LOG = "log"  # writes the delivery log only (the default)
    MAIL = "mail"
    SMS = "sms"


class DeliveryStatus(Term):
    """What became of one notification on one channel."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class AuditBreak(Term):
    """How an audit chain is broken (services/common/audit.py finds the first break)."""

    EDITED = "edited"  # a record's content no longer matches its hash
    DELETED = "deleted"  # a sequence number is missing, or the chain ends before its head
    INSERTED = "inserted"  # a record does not follow its predecessor (inserted or reordered)


@cache
def _proto_enums() -> dict[type[Term], tuple[Any, str]]:
    """Each vocabulary's proto enum and the prefix of its value names (imported on first use)."""
    from grantflow.v1 import (
        audit_pb2,
        common_pb2,
        disbursement_pb2,
        notifications_pb2,
        repair_pb2,
        review_pb2,
    )

    return {
        GrantStage: (common_pb2.GrantStage, "GRANT_STAGE_"),
        Department: (common_pb2.Department, "DEPARTMENT_"),
        TaskState: (review_pb2.TaskState, "TASK_STATE_"),
        Decision: (review_pb2.ReviewDecision, "REVIEW_DECISION_"),
        ReservationState: (disbursement_pb2.ReservationState, "RESERVATION_STATE_"),
        PlanState: (disbursement_pb2.PlanState, "PLAN_STATE_"),
        PaymentState: (disbursement_pb2.PaymentState, "PAYMENT_STATE_"),
        RepairAction: (repair_pb2.RepairAction, "REPAIR_ACTION_"),
        RepairState: (repair_pb2.RepairState, "REPAIR_STATE_"),
        GrantRepairState: (repair_pb2.GrantRepairState, "GRANT_REPAIR_STATE_"),
        AuditBreak: (audit_pb2.AuditBreakKind, "AUDIT_BREAK_KIND_"),
        DeliveryStatus: (notifications_pb2.DeliveryStatus, "DELIVERY_STATUS_"),
    }


MAPPED_VOCABULARIES: tuple[type[Term], ...] = (
    GrantStage,
    Department,
    TaskState,
    Decision,
    ReservationState,
    PlanState,
    PaymentState,
    RepairAction,
    RepairState,
    GrantRepairState,
    AuditBreak,
    DeliveryStatus,
)
