"""Grantflow's one vocabulary: grant stages, departments, roles, review task states and decisions,
the program rules' kinds and policies (amount kinds, over-budget and join policies, score
aggregations, registration kinds), review stages, expert and audit task states, objections,
reservation and batch-allocation states, funding-plan and payment-line states, repairs, the error
types of final answers, and the ways an audit chain can break.

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
    EXPERT_REVIEW = "EXPERT_REVIEW"
    SPECIAL_AUDIT = "SPECIAL_AUDIT"
    AWAITING_NOTICE = "AWAITING_NOTICE"
    WAITLISTED = "WAITLISTED"
    # An award paid in instalments: paid in part, the next instalment waits for its milestone
    # (项目验收 or 专项审计); past the milestone's due date it is MILESTONE_OVERDUE (never failed).
    INSTALMENTS = "INSTALMENTS"
    MILESTONE_OVERDUE = "MILESTONE_OVERDUE"


# A grant in one of these stages has ended.
CLOSED_STAGES = frozenset({GrantStage.PAID, GrantStage.REJECTED, GrantStage.WITHDRAWN})
# The money has gone or is going out, or the grant has ended: nothing is left to withdraw.
NOT_WITHDRAWABLE_STAGES = CLOSED_STAGES | {
    GrantStage.IN_PAYMENT,
    GrantStage.INSTALMENTS,
    GrantStage.MILESTONE_OVERDUE,
}


class Department(Term):
    """Government departments that own or co-review programs."""

    INDUSTRY = "industry"  # bureau of industry and information technology (工信局)
    FINANCE = "finance"  # finance bureau (财政局)
    HR = "hr"  # HR and social security bureau (人社局)


class Sector(Term):
    """The sectors of the enterprise-size standard (工信部联企业〔2011〕300号), each reached from
    the registry's industry code (GB/T 4754) by workflows/enterprise.py. Not mapped to a proto
    enum: records in workflow histories and eligibility evidence carry the text."""

    AGRICULTURE = "agriculture"  # 农、林、牧、渔业
    INDUSTRY = "industry"  # 工业
    CONSTRUCTION = "construction"  # 建筑业
    WHOLESALE = "wholesale"  # 批发业
    RETAIL = "retail"  # 零售业
    TRANSPORT = "transport"  # 交通运输业
    WAREHOUSING = "warehousing"  # 仓储业
    POSTAL = "postal"  # 邮政业
    ACCOMMODATION = "accommodation"  # 住宿业
    CATERING = "catering"  # 餐饮业
    TRANSMISSION = "transmission"  # 信息传输业
    SOFTWARE = "software"  # 软件和信息技术服务业
    REAL_ESTATE = "real_estate"  # 房地产开发经营
    PROPERTY_MANAGEMENT = "property_management"  # 物业管理
    LEASING = "leasing"  # 租赁和商务服务业
    OTHER = "other"  # 其他未列明行业


class RegistrationKind(Term):
    """What kind of body the registry says an applicant is (the credit code's registration
    authority tells them apart: 9 market regulation, 5 civil affairs, 1 establishment office)."""

    ENTERPRISE = "enterprise"
    SOCIAL_ORGANISATION = "social_organisation"  # 社会团体、民办非企业单位、基金会
    PUBLIC_INSTITUTION = "public_institution"  # 事业单位 (and organs of government)
    OTHER = "other"


class EligibilityCheck(Term):
    """The named checks of CheckEligibility, in the order they run; each keeps its outcome and
    evidence with the application."""

    REGISTRY = "registry"  # the registry knows the credit code
    CREDIT = "credit"  # no credit-list entry valid now bars it from fiscal funds
    REGISTRATION = "registration"  # registered in Shenzhen (incl. 深汕特别合作区), by address
    REGISTRATION_KIND = "registration_kind"  # a kind of body the program accepts
    ENTERPRISE_SIZE = "enterprise_size"  # SME by the 2011 standard where the program asks
    DUPLICATE_FUNDING = "duplicate_funding"  # the same project in another program (多头申报)
    EXCLUDED_PROGRAMS = "excluded_programs"  # a filing in a program this one excludes
    ENTERPRISE_YEAR_CAP = "enterprise_year_cap"  # the program's yearly cap per enterprise


class Role(Term):
    """What a caller's token says it is."""

    APPLICANT = "applicant"
    REVIEWER = "reviewer"
    FINANCE = "finance"
    OPS = "ops"
    SYSTEM = "system"  # Grantflow's own processes
    # External experts (评审专家) and auditors (专项审计机构): the token's subject is the person.
    EXPERT = "expert"
    AUDITOR = "auditor"
    # The head of a department (处长): a reviewer of the department who may also reassign its
    # tasks. A role of its own, not a flag on the reviewer's token, so the role tables say it.
    DEPARTMENT_HEAD = "department_head"


# Roles whose token must name a department.
DEPARTMENT_ROLES = frozenset({Role.REVIEWER, Role.DEPARTMENT_HEAD})


class TaskState(Term):
    """A review task: open -> claimed -> decided, or cancelled when the grant leaves review."""

    OPEN = "open"
    CLAIMED = "claimed"
    DECIDED = "decided"
    CANCELLED = "cancelled"


ACTIVE_TASK_STATES = frozenset({TaskState.OPEN, TaskState.CLAIMED})


class ReviewStage(Term):
    """The stages of a grant a person decides. One person never decides two stages of the same
    grant (separation of duties); the rounds and departments of one stage are one stage."""

    FORMAL_CHECK = "formal_check"
    DEPARTMENT_REVIEW = "department_review"
    AUDIT = "audit"
    OBJECTION = "objection"
    EXPERT_REVIEW = "expert_review"


class JoinPolicy(Term):
    """How the co-reviewing departments' decisions become the grant's (workflows/review_rules)."""

    ALL_APPROVE = "all_approve"
    ANY_REJECT = "any_reject"
    QUORUM = "quorum"


class ScoreAggregation(Term):
    """How an expert panel's totals become one score (workflows/review_rules)."""

    MEAN = "mean"
    TRIMMED_MEAN = "trimmed_mean"
    MEDIAN = "median"


class ExpertTaskState(Term):
    """An expert's part of a panel: drawn and waiting for his scores, or scored."""

    PENDING = "pending"
    SUBMITTED = "submitted"


class AuditTaskState(Term):
    """A special audit: open until an auditor confirms the figure."""

    OPEN = "open"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class Decision(Term):
    """A reviewer's decision on a task."""

    APPROVE = "approve"
    REJECT = "reject"
    RETURN_FOR_SUPPLEMENT = "return"


class AmountKind(Term):
    """The shape of a program's amount rule (workflows/rules.py award_fen computes each)."""

    RATIO_CAP = "ratio_cap"  # min(basis × rate, cap); nothing below the minimum basis
    SCORE_TIERS = "score_tiers"  # the amount of the highest tier the expert score reaches
    PER_UNIT = "per_unit"  # units × amount per unit, capped where a cap is set


class OverBudgetPolicy(Term):
    """What a program does when a batch's awards exceed what its budget line has left."""

    PRO_RATA = "pro_rata"  # every award of the batch cut by the same ratio (按比例核减)
    WAITING_LIST = "waiting_list"  # what does not fit waits, in order, for a later batch


class ObjectionKind(Term):
    """What an objection to a public notice is (深工信规〔2023〕5号 tells three kinds apart)."""

    DISPUTE = "dispute"  # 异议: the applicant disputes its own notice
    COMPLAINT = "complaint"  # 投诉: a complaint about staff
    REPORT = "report"  # 举报: a report that the project breaks the rules


class ObjectionState(Term):
    """An objection: lodged, then upheld or dismissed by the handling department."""

    LODGED = "lodged"
    UPHELD = "upheld"
    DISMISSED = "dismissed"


class ObjectionConsequence(Term):
    """What an upheld objection does to the award (the values the grant's Update carries)."""

    FALL_AWAY = "fall_away"  # the award falls away, its reservation released
    RE_REVIEW = "re_review"  # the application goes back to review


class ReservationState(Term):
    """An award's money: reserved at approval, awarded after the notice, in a plan, paid."""

    RESERVED = "reserved"
    AWARDED = "awarded"
    IN_PLAN = "in_plan"
    PAID = "paid"
    RELEASED = "released"
    # Paid, then sent back by the recipient's bank (退汇): held for the award again, paid again
    # (a new payment) once its receiving account is corrected.
    RETURNED = "returned"


class Milestone(Term):
    """What releases an instalment of an award paid in instalments (TECH-MAJOR)."""

    AWARD = "award"  # 资助确定: the award final after its notice releases instalment 1
    ACCEPTANCE = "acceptance"  # 项目验收
    AUDIT = "audit"  # 专项审计


class InstalmentState(Term):
    """One instalment of a scheduled award: waiting for its milestone, released (awaiting a
    funding plan), in a plan, paid; or paid and sent back by the recipient's bank (退汇),
    released again once the award's receiving account is corrected."""

    SCHEDULED = "scheduled"
    RELEASED = "released"
    IN_PLAN = "in_plan"
    PAID = "paid"
    RETURNED = "returned"


# Reservation states in which an amount still counts against the budget without being paid.
HOLDING_RESERVATION_STATES = frozenset(
    {
        ReservationState.RESERVED,
        ReservationState.AWARDED,
        ReservationState.IN_PLAN,
        ReservationState.RETURNED,
    }
)


class AccountState(Term):
    """A receiving account (收款账户) of an award: the one in force, a change waiting for a
    second finance approval, or one a later account replaced (or a proposal withdrawn)."""

    CONFIRMED = "confirmed"  # in force: payments go to it
    PROPOSED = "proposed"  # a change, waiting for approval; the confirmed one stays in force
    SUPERSEDED = "superseded"  # replaced by an approved change
    WITHDRAWN = "withdrawn"  # a proposal replaced by a later proposal before approval


class ClawbackState(Term):
    """A clawback (追回) of a paid award: its receivable open, or repaid to zero."""

    OPEN = "open"
    SETTLED = "settled"


class AllocationState(Term):
    """An award's place in a batch allocation (AllocateBatch)."""

    RESERVED = "reserved"  # reserved against the budget line, possibly cut pro rata
    WAITLISTED = "waitlisted"  # not reserved: it waits for a later batch


class PlanState(Term):
    """A funding plan (资助计划): drafted by a maker, approved by a checker (above the
    second-approval level: by two, the first leaving it awaiting the second), then paid; or
    cancelled before approval."""

    DRAFT = "draft"
    APPROVED = "approved"
    PAYING = "paying"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    AWAITING_SECOND_APPROVAL = "awaiting_second_approval"
    CANCELLED = "cancelled"


PAYABLE_PLAN_STATES = frozenset({PlanState.APPROVED, PlanState.PAYING})
CLOSED_PLAN_STATES = frozenset({PlanState.COMPLETED, PlanState.COMPLETED_WITH_FAILURES})
# Not approved yet: may still be approved or cancelled.
UNAPPROVED_PLAN_STATES = frozenset({PlanState.DRAFT, PlanState.AWAITING_SECOND_APPROVAL})


class PaymentState(Term):
    """One line of a funding plan."""

    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its plan was cancelled before approval
    # Accepted by the gateway, not yet settled (the money is not final); settled later.
    SETTLING = "settling"
    # Settled, then sent back by the recipient's bank (退汇); the award is paid again by a later
    # line with a new key once its account is corrected.
    RETURNED = "returned"


class ReconciliationKind(Term):
    """What a reconciliation of the gateway's daily statement against the ledger found wrong
    about one payment (services/disbursement/reconciliation.py)."""

    NOT_IN_LEDGER = "not_in_ledger"  # the gateway paid it; no settled line for its key
    NOT_AT_GATEWAY = "not_at_gateway"  # a settled line the gateway has no payment for
    AMOUNT_DIFFERS = "amount_differs"
    PAYEE_DIFFERS = "payee_differs"
    DAY_DIFFERS = "day_differs"  # alike on both sides, on different Beijing days
    # The gateway says it returned the payment (退汇), the ledger has it paid, or the other way.
    STATUS_DIFFERS = "status_differs"


class ReconciliationExceptionState(Term):
    """Where a reconciliation exception stands."""

    OPEN = "open"
    RESOLVED = "resolved"  # by a finance officer, with a resolution and a note
    CLEARED = "cleared"  # not found again when its day was reconciled again


class ReconciliationResolution(Term):
    """How a finance officer resolved a reconciliation exception."""

    TIMING_DIFFERENCE = "timing_difference"
    LEDGER_CORRECTED = "ledger_corrected"
    TREASURY_CORRECTED = "treasury_corrected"
    ACCEPTED = "accepted"


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
    # An objection (异议/投诉/举报) decided by its handling department (services/review/notices.py).
    OBJECTION_HANDLED = "objection.handled"
    PROGRAM_PUBLISHED = "program.published"
    # The credit list (信用名单) and the eligibility checks run against it and the registry.
    CREDIT_LISTED = "credit.listed"
    ELIGIBILITY_CHECKED = "eligibility.checked"
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
    BUDGET_LINE_SET = "budget_line.set"
    BUDGET_LINE_CHANGED = "budget_line.changed"
    BATCH_ALLOCATED = "batch.allocated"
    RESERVATION_MADE = "reservation.made"
    RESERVATION_RELEASED = "reservation.released"
    AWARD_CONFIRMED = "award.confirmed"
    # An award paid in instalments: the milestone confirmed (applications service, by the
    # reviewer or finance) and the instalment released for a plan (disbursement service).
    MILESTONE_CONFIRMED = "milestone.confirmed"
    INSTALMENT_RELEASED = "instalment.released"
    PLAN_CREATED = "plan.created"
    PLAN_APPROVED = "plan.approved"
    PLAN_FIRST_APPROVED = "plan.first_approved"
    PLAN_CANCELLED = "plan.cancelled"
    PLAN_EDITED = "plan.edited"
    PLAN_COMPLETED = "plan.completed"
    PAYMENT_SETTLED = "payment.settled"
    PAYMENT_FAILED = "payment.failed"
    # A failed line made payable again by an approved repair (RetryPaymentLine).
    PAYMENT_RETRIED = "payment.retried"
    # Reconciliation of the gateway's daily statement (issue 7).
    RECONCILIATION_RUN = "reconciliation.run"
    RECONCILIATION_RESOLVED = "reconciliation.resolved"
    # Clawback (追回) of a paid award: opened with a receivable, repaid in part or in full.
    CLAWBACK_OPENED = "clawback.opened"
    CLAWBACK_REPAID = "clawback.repaid"
    # Receiving accounts (收款账户) and payments returned after settlement (退汇).
    ACCOUNT_CONFIRMED = "account.confirmed"
    ACCOUNT_CHANGE_PROPOSED = "account.change_proposed"
    ACCOUNT_CHANGE_APPROVED = "account.change_approved"
    PAYMENT_SETTLING = "payment.settling"
    PAYMENT_RETURNED = "payment.returned"
    # The review process (issue 6): the inbox, the expert pool and panels, special audits.
    REVIEW_RELEASED = "review.released"
    REVIEW_REASSIGNED = "review.reassigned"
    EXPERT_ADDED = "expert.added"
    EXPERT_PANEL_DRAWN = "expert.panel_drawn"
    EXPERT_SCORED = "expert.scored"
    EXPERT_REVIEW_DONE = "expert.review_done"
    AUDIT_REQUESTED = "audit.requested"
    AUDIT_CONFIRMED = "audit.confirmed"
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
        notice_pb2,
        notifications_pb2,
        repair_pb2,
        review_pb2,
    )

    return {
        GrantStage: (common_pb2.GrantStage, "GRANT_STAGE_"),
        Department: (common_pb2.Department, "DEPARTMENT_"),
        TaskState: (review_pb2.TaskState, "TASK_STATE_"),
        Decision: (review_pb2.ReviewDecision, "REVIEW_DECISION_"),
        AmountKind: (common_pb2.AmountKind, "AMOUNT_KIND_"),
        OverBudgetPolicy: (common_pb2.OverBudgetPolicy, "OVER_BUDGET_POLICY_"),
        JoinPolicy: (common_pb2.JoinPolicy, "JOIN_POLICY_"),
        ScoreAggregation: (common_pb2.ScoreAggregation, "SCORE_AGGREGATION_"),
        ReservationState: (disbursement_pb2.ReservationState, "RESERVATION_STATE_"),
        AllocationState: (disbursement_pb2.AllocationState, "ALLOCATION_STATE_"),
        PlanState: (disbursement_pb2.PlanState, "PLAN_STATE_"),
        PaymentState: (disbursement_pb2.PaymentState, "PAYMENT_STATE_"),
        ReconciliationKind: (disbursement_pb2.ReconciliationKind, "RECONCILIATION_KIND_"),
        ReconciliationExceptionState: (
            disbursement_pb2.ReconciliationExceptionState,
            "RECONCILIATION_EXCEPTION_STATE_",
        ),
        ReconciliationResolution: (
            disbursement_pb2.ReconciliationResolution,
            "RECONCILIATION_RESOLUTION_",
        ),
        ClawbackState: (disbursement_pb2.ClawbackState, "CLAWBACK_STATE_"),
        Milestone: (disbursement_pb2.Milestone, "MILESTONE_"),
        InstalmentState: (disbursement_pb2.InstalmentState, "INSTALMENT_STATE_"),
        AccountState: (disbursement_pb2.AccountState, "ACCOUNT_STATE_"),
        RepairAction: (repair_pb2.RepairAction, "REPAIR_ACTION_"),
        RepairState: (repair_pb2.RepairState, "REPAIR_STATE_"),
        GrantRepairState: (repair_pb2.GrantRepairState, "GRANT_REPAIR_STATE_"),
        AuditBreak: (audit_pb2.AuditBreakKind, "AUDIT_BREAK_KIND_"),
        ObjectionKind: (notice_pb2.ObjectionKind, "OBJECTION_KIND_"),
        ObjectionState: (notice_pb2.ObjectionState, "OBJECTION_STATE_"),
        ObjectionConsequence: (notice_pb2.ObjectionConsequence, "OBJECTION_CONSEQUENCE_"),
        ReviewStage: (review_pb2.ReviewStage, "REVIEW_STAGE_"),
        ExpertTaskState: (review_pb2.ExpertTaskState, "EXPERT_TASK_STATE_"),
        AuditTaskState: (review_pb2.AuditTaskState, "AUDIT_TASK_STATE_"),
        DeliveryStatus: (notifications_pb2.DeliveryStatus, "DELIVERY_STATUS_"),
    }


MAPPED_VOCABULARIES: tuple[type[Term], ...] = (
    GrantStage,
    Department,
    TaskState,
    Decision,
    AmountKind,
    OverBudgetPolicy,
    JoinPolicy,
    ScoreAggregation,
    ReservationState,
    AllocationState,
    PlanState,
    PaymentState,
    ReconciliationKind,
    ReconciliationExceptionState,
    ReconciliationResolution,
    ClawbackState,
    Milestone,
    InstalmentState,
    AccountState,
    RepairAction,
    RepairState,
    GrantRepairState,
    AuditBreak,
    ObjectionKind,
    ObjectionState,
    ObjectionConsequence,
    ReviewStage,
    ExpertTaskState,
    AuditTaskState,
    DeliveryStatus,
)
