"""GrantWorkflow: one per application (`grant-<application id>`), from filing to paid or closed.

The process runs in phases (DOMAIN.md): formal check and eligibility, with requests for
supplements (补正) → review rounds by the program's departments in parallel until decided, a
durable due-date timer reminding and then escalating overdue reviews → budget reservation → the
public notice of N working days → waiting for a funding plan and its payment → paid. Rejection
and withdrawal end a grant at any waiting point; a reservation is released whenever an award
falls away.

Reviewers' decisions and applicants' withdrawals are Updates with validators (the caller learns at
once whether the grant took them); supplements and payment results are signals. A stage is
reported to the applications service only when it tells the applicant something new; reasons are
written for a person (reasons.py).

Cost per grant: every service call is a local activity (short, idempotent gRPC calls), so a
phase takes one workflow task, not one per call.

Generations: a grant started before this code (no `lighter-grant-v3` marker in its history) runs
LegacyGrant (grant_legacy.py), command for command as it was. A change here that alters the
commands of a running grant needs workflow.patched and a new generation of recorded histories
(tests/replay). Determinism: only workflow APIs for time and waiting; the holiday calendar is
read in an activity.

Fifth generation (`instalments-v5`, recorded only by grants whose rule pays in instalments, e.g.
TECH-MAJOR): the award's schedule (rules.instalment_schedule: equal parts, instalment 1 with the
award, each later one a year after the one before, released by 项目验收 or, the last, 专项审计)
is fixed when the award is final. Each later instalment waits durably for its milestone (the
`confirm_milestone` Update; one timer, to its due date, after which the grant shows
MILESTONE_OVERDUE and keeps waiting), is released in the disbursement service and paid by a plan
like an award. Between instalments the stage is INSTALMENTS ("分期支付中 n/N"); the grant is PAID
after the last. After each paid instalment but the last the grant continues as new, carrying its
state (GrantInput.carried), so a run's history holds one instalment. A continued run's stage
reports go on from the carried sequence; a Temporal reset of such a run is not told apart from
the run itself (its reports would reuse event ids the applications service already holds).

Repairs (workflows/repair.py) reach a grant through the `reopen_review` Update (additive: old
histories never invoke it; a department's review of the current round starts again with a new
task), the applicant's own `withdraw_application` for a cancellation with compensation, and
Temporal resets that move a grant back to a stage. A reset run (its run id differs from the
first run's) redoes the work after the reset point: its review tasks get request ids of their
own (not the first run's, which the review service would answer with the old tasks), and its
stage reports get event ids of their own and a sequence above any report of an earlier run
(RERUN_SEQUENCE_EPOCH), so the applicant's status follows the grant back. The replayed part of a
reset run is unaffected (local activities' inputs are not part of replay). A payment that failed
and was paid again by a repair (retry_payment) counts as paid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from services.common.validation import cut
    from services.common.vocabulary import (
        ACTIVE_TASK_STATES,
        NOT_WITHDRAWABLE_STAGES,
        Decision,
        ErrorType,
        GrantStage,
        TaskState,
    )
    from workflows import contracts, reasons, review_rules, rules
    from workflows.activities import GrantActivities
    from workflows.contracts import (
        Acknowledged,
        AuditDone,
        ClaimReviewTask,
        ConfirmMilestone,
        DecideReviewTask,
        ExpertReviewDone,
        FundingPlanAssigned,
        MilestoneConfirmed,
        ObjectionDecided,
        ObjectionLodged,
        PaymentFailed,
        PaymentSettled,
        ReopenReview,
        ReviewTaskAck,
        Supplement,
        Withdraw,
        WithdrawalAnswer,
    )
    from workflows.grant_legacy import LegacyGrant
    from workflows.models import (
        AuditRequest,
        AwardRef,
        CreateReviewTaskRequest,
        DeadlineRequest,
        EligibilityCheck,
        EligibilityRequest,
        ExpertReviewRequest,
        GrantInput,
        GrantOutcome,
        GrantStatus,
        InstalmentCarry,
        InstalmentRelease,
        JoinNoticeBatch,
        NoticeBatcherInput,
        NoticeEntry,
        NoticePublished,
        OverdueReminder,
        ReservationRelease,
        ReserveRequest,
        ScheduledAward,
        StageReport,
        TasksToCancel,
    )
    from workflows.rules import ScheduledInstalment

A = TypeVar("A")
R = TypeVar("R")

STAGE_KEY = SearchAttributeKey.for_keyword(contracts.SA_STAGE)
PROGRAM_KEY = SearchAttributeKey.for_keyword(contracts.SA_PROGRAM)
APPLICANT_KEY = SearchAttributeKey.for_keyword(contracts.SA_APPLICANT)
PENDING_KEY = SearchAttributeKey.for_keyword_list(contracts.SA_PENDING_DEPARTMENTS)

# The third generation's marker (see the module docstring).
LIGHTER_GRANT_PATCH = "lighter-grant-v3"
# The fourth's: eligibility with evidence, expert review, special audit, join policies and
# per-department due dates, notices by batch with objections. Without it a grant runs the third
# generation's steps, which the code below keeps behind `state.v4`.
REVIEW_PROCESS_PATCH = "review-process-v4"
# The fifth: an award whose rule pays it in instalments (TECH-MAJOR) is paid as a schedule fixed
# at the award, each later instalment released by its confirmed milestone, the grant continuing
# as new after each paid instalment. Without it such a grant is paid at once, as before.
INSTALMENTS_PATCH = "instalments-v5"
# China keeps one offset all year (no file read in workflow code, unlike zoneinfo).
CHINA = timezone(timedelta(hours=8))
# An overdue review task is escalated this many working days after its due date.
ESCALATION_WORKING_DAYS = 2
# How long a grant waits before drawing its expert panel again when the pool had too few.
PANEL_RETRY = timedelta(hours=1)
# A re-review after an upheld objection.
RE_REVIEW = "re_review"
# Service calls are retried until they succeed (a service being down must not fail a grant);
# final answers (bad input, wrong state) are non-retryable errors raised by the activity.
SERVICE_TIMEOUT = timedelta(seconds=30)
SERVICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
REMINDER, ESCALATION = 1, 2  # review.proto EscalationLevel
# A reset run's stage reports are numbered from the seconds since this instant up (int32 lasts
# until 2093): above any first run's sequence and any earlier reset run's, as long as resets of
# one grant are more than a few seconds apart (each goes through a repair's approval).
RERUN_SEQUENCE_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
# Longest reason a stage report carries (the applications service's limit is 1000).
MAX_REASON = 900


@dataclass
class ReviewTask:
    task_id: str
    department: str
    round: int
    proposed_amount_fen: int
    state: TaskState = TaskState.OPEN
    reviewer: str = ""
    decision: Decision | None = None
    reason: str = ""
    approved_amount_fen: int = 0
    # Replaced by a new task of the same round when ops re-opened this department's review.
    superseded: bool = False
    # Fourth generation: each department's own due date, and how far its alerts have gone.
    due_at: datetime | None = None
    alerts: int = 0  # 1 reminded at the due date, 2 escalated
    decided_order: int = 0  # the grant's how-many-th decision this was


@dataclass
class GrantState:
    """Everything the grant knows; handlers only record into it, the phases act on it."""

    figures: dict[str, int]
    document_names: list[str] | None = None
    stage: GrantStage = GrantStage.SUBMITTED
    reason: str = ""
    amount_fen: int = 0
    sequence: int = 1  # the applications service recorded SUBMITTED itself
    round: int = 0
    tasks: dict[str, ReviewTask] = field(default_factory=dict)
    creating_tasks: bool = False
    supplement: Supplement | None = None
    supplement_count: int = 0
    reserved: bool = False
    # A withdrawal waiting to be honoured or refused; each Update waits for its ticket's answer.
    withdrawal: Withdraw | None = None
    withdrawal_tickets: int = 0
    withdrawal_answers: dict[int, WithdrawalAnswer | str] = field(default_factory=dict)
    # Plans this grant was put in, in order of arrival, and what became of their payment.
    plans: dict[str, FundingPlanAssigned] = field(default_factory=dict)
    failures: dict[str, PaymentFailed] = field(default_factory=dict)
    told: set[tuple[str, GrantStage]] = field(default_factory=set)  # (plan, stage) reported
    settled: PaymentSettled | None = None
    reopened: int = 0  # reviews re-opened by ops, for the new tasks' request ids
    # Fourth generation (REVIEW_PROCESS_PATCH).
    v4: bool = False
    decisions_taken: int = 0
    year_cap_left_fen: int = -1  # what the enterprise's yearly cap leaves; -1: no cap
    expert_panel: str = ""
    expert_score: int | None = None  # aggregated, hundredths of a point
    audit_task: str = ""
    audit: AuditDone | None = None
    notice: NoticePublished | None = None
    objections: dict[str, ObjectionLodged] = field(default_factory=dict)
    objection_decisions: dict[str, ObjectionDecided] = field(default_factory=dict)
    renoticed: bool = False
    # Fifth generation (INSTALMENTS_PATCH): an award paid in instalments.
    scheduled: bool = False  # the grant runs the instalments generation
    instalments: list[ScheduledInstalment] = field(default_factory=list)  # fixed at the award
    paid_instalments: int = 0
    settled_instalment: int = 0  # the last instalment whose payment signal was recorded
    paid_fen: int = 0
    milestones: dict[int, MilestoneConfirmed] = field(default_factory=dict)
    last_reference: str = ""

    def open_objections(self) -> list[str]:
        return [o for o in self.objections if o not in self.objection_decisions]

    def current_tasks(self) -> list[ReviewTask]:
        return [t for t in self.tasks.values() if t.round == self.round and not t.superseded]

    def open_tasks(self) -> list[ReviewTask]:
        return [t for t in self.tasks.values() if t.state in ACTIVE_TASK_STATES]

    def pending_departments(self) -> list[str]:
        return sorted({t.department for t in self.open_tasks()})


# What a failed activity raises in workflow code: ActivityError around the activity's
# ApplicationError for an activity, the ApplicationError itself for a local activity.
ServiceRefusal = (ActivityError, ApplicationError)


def final_error_type(error: BaseException) -> str:
    """The ErrorType of a final answer, "" for anything else."""
    cause = error.cause if isinstance(error, ActivityError) else error
    return cause.type or "" if isinstance(cause, ApplicationError) else ""


@workflow.defn(name=contracts.GRANT_WORKFLOW)
class GrantWorkflow:
    @workflow.init
    def __init__(self, grant: GrantInput) -> None:
        self.grant = grant
        self.state = GrantState(
            figures=dict(grant.figures),
            document_names=None if grant.document_names is None else list(grant.document_names),
        )
        self._legacy: LegacyGrant | None = None
        if grant.carried is not None:
            # Restored here, not in run: an Update reaching the continued run may be judged
            # before run starts.
            self._restore(grant.carried)

    @workflow.run
    async def run(self, grant: GrantInput) -> GrantOutcome:
        if not workflow.patched(LIGHTER_GRANT_PATCH):
            self._legacy = LegacyGrant()
            return await self._legacy.run(grant)
        if grant.carried is not None:
            # A grant paid in instalments, continued as new after one was paid (its state
            # restored by __init__).
            outcome = await self._instalments()
        else:
            # Only a grant started for the fourth process records its marker.
            self.state.v4 = grant.process_generation >= 4 and workflow.patched(REVIEW_PROCESS_PATCH)
            # Only a grant whose rule pays in instalments records the fifth's.
            if grant.rule.amount_rule.instalments > 1:
                self.state.scheduled = workflow.patched(INSTALMENTS_PATCH)
            outcome = await (self._process() if self.state.v4 else self._phases())
        self._answer_withdrawals(reasons.not_withdrawable(self.state.stage))
        # An Update still being handled (a decision that arrived as the grant closed) finishes
        # before the workflow does.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _phases(self) -> GrantOutcome:
        """The third generation's process."""
        for phase in (self._formal_check, self._review_until_decided, self._reserve, self._notice):
            ending = await phase()
            if ending is not None:
                return ending
        return await self._paying()

    async def _process(self) -> GrantOutcome:
        """The fourth generation's: the program decides which of the checks it asks for; an
        upheld objection may send the grant back to review, then to a later notice."""
        for phase in (
            self._formal_check,
            self._eligibility,
            self._expert_review,
            self._special_audit,
        ):
            ending = await phase()
            if ending is not None:
                return ending
        while True:
            ending = await self._review_until_decided()
            if ending is not None:
                return ending
            noticed = await self._public_notice()
            if isinstance(noticed, GrantOutcome):
                return noticed
            if noticed != RE_REVIEW:
                break
        return await self._paying()

    async def _paying(self) -> GrantOutcome:
        """The award paid at once, or by its schedule (fifth generation)."""
        return await (self._instalments() if self.state.instalments else self._payment())

    # ----------------------------------------------------------------------------- phases

    async def _formal_check(self) -> GrantOutcome | None:
        """合规性初审 on the registry's record; incomplete figures are asked for (补正)."""
        record = await self._call(
            GrantActivities.look_up_enterprise,
            EligibilityRequest(
                applicant_credit_code=self.grant.applicant_credit_code,
                applicant_name=self.grant.applicant_name,
            ),
        )
        while True:
            check = rules.formal_check(
                self.grant.rule,
                self.state.figures,
                self.grant.submitted_at,
                record.enterprise,
                # The third process never checked documents: its grants replay as they ran.
                document_names=self.state.document_names if self.state.v4 else None,
            )
            if check.outcome == "pass":
                return None
            if check.outcome == "reject":
                return await self._close(
                    GrantStage.REJECTED, reasons.formal_check_failed(check.reasons)
                )
            if not await self._await_supplement(reasons.supplement_needed(check.reasons)):
                return await self._after_failed_wait()

    async def _review_until_decided(self) -> GrantOutcome | None:
        """Review rounds until the departments approve (the lowest amount counts), one rejects,
        or one returns the application and no supplement comes."""
        while True:
            amount = self._eligible_amount()
            if amount <= 0:
                return await self._close(GrantStage.REJECTED, reasons.NO_ELIGIBLE_AMOUNT)
            self.state.amount_fen = amount
            review = self._review_round_v4 if self.state.v4 else self._review_round
            verdict = await review(amount)
            if verdict is None:
                return await self._withdrawn()
            if verdict == Decision.REJECT:
                return await self._close(GrantStage.REJECTED, self.state.reason)
            if verdict == Decision.RETURN_FOR_SUPPLEMENT:
                if not await self._await_supplement(self.state.reason):
                    return await self._after_failed_wait()
                continue
            approved = [
                t.approved_amount_fen or t.proposed_amount_fen
                for t in self.state.current_tasks()
                if t.decision == Decision.APPROVE
            ]
            self.state.amount_fen = min([amount, *approved])
            return None

    async def _reserve(self) -> GrantOutcome | None:
        """The award is promised money from the program's budget, or the grant is rejected."""
        try:
            await self._call(
                GrantActivities.reserve_budget,
                ReserveRequest(
                    application_id=self.grant.application_id,
                    program_code=self.grant.rule.code,
                    amount_fen=self.state.amount_fen,
                    applicant_credit_code=self.grant.applicant_credit_code,
                    applicant_name=self.grant.applicant_name,
                ),
            )
        except ServiceRefusal as error:
            if final_error_type(error) != ErrorType.FAILED_PRECONDITION:
                raise
            workflow.logger.info("no budget for the award: %s", error)
            return await self._close(GrantStage.REJECTED, reasons.NO_BUDGET)
        self.state.reserved = True
        return None

    async def _notice(self) -> GrantOutcome | None:
        """社会公示: a durable timer of N working days; a withdrawal meanwhile ends the grant."""
        await self._report(GrantStage.IN_NOTICE)
        notice = await self._period(
            self.grant.timing.notice_seconds, self.grant.rule.notice_working_days
        )
        if await self._wait(lambda: self.state.withdrawal is not None, notice):
            return await self._withdrawn()
        await self._confirm_award()
        return None

    # ------------------------------------------------------------- fourth-generation phases

    async def _eligibility(self) -> GrantOutcome | None:
        """资格审查 by the applications service, which keeps each check's evidence with the
        application: credit, registration, size, duplicate funding (多头申报), yearly caps."""
        verdict = await self._call(
            GrantActivities.check_eligibility,
            EligibilityCheck(application_id=self.grant.application_id),
        )
        if not verdict.passed:
            return await self._close(
                GrantStage.REJECTED, reasons.eligibility_failed(verdict.reasons)
            )
        self.state.year_cap_left_fen = verdict.remaining_year_cap_fen
        return None

    async def _expert_review(self) -> GrantOutcome | None:
        """专家评审: a panel drawn from the pool scores alone; the aggregated score is advisory
        unless the program sets a pass score, and sets the amount of a tiered program."""
        experts = self.grant.rule.expert_review
        if experts is None or experts.panel_size <= 0:
            return None
        await self._report(GrantStage.EXPERT_REVIEW, reasons.EXPERT_REVIEW)
        period = await self._period(self.grant.timing.review_seconds, experts.due_working_days)
        while True:
            try:
                self.state.expert_panel = await self._call(
                    GrantActivities.create_expert_review,
                    ExpertReviewRequest(
                        request_id=f"{workflow.info().workflow_id}-experts",
                        application_id=self.grant.application_id,
                        program_code=self.grant.rule.code,
                        applicant_credit_code=self.grant.applicant_credit_code,
                        applicant_name=self.grant.applicant_name,
                        project_title=self.grant.project_title,
                        review=experts,
                        due_at=workflow.now() + period,
                    ),
                )
                break
            except ServiceRefusal as error:
                if final_error_type(error) != ErrorType.FAILED_PRECONDITION:
                    raise
                # Too few experts free of conflicts in the pool: the pool is ops' to fill (an
                # alert in the logs); the grant tries again rather than failing.
                workflow.logger.warning("no expert panel yet: %s", error)
                if await self._wait(lambda: self.state.withdrawal is not None, PANEL_RETRY):
                    return await self._withdrawn()
        await workflow.wait_condition(
            lambda: self.state.expert_score is not None or self.state.withdrawal is not None
        )
        if self.state.withdrawal is not None:
            return await self._withdrawn()
        score = self.state.expert_score
        assert score is not None
        if experts.pass_score_centi and score < experts.pass_score_centi:
            return await self._close(
                GrantStage.REJECTED,
                reasons.expert_score_too_low(score, experts.pass_score_centi),
            )
        return None

    async def _special_audit(self) -> GrantOutcome | None:
        """专项审计: the auditor confirms the eligible figure; the lower of audited and declared
        counts (就低原则), and the amount is computed from it."""
        audit = self.grant.rule.special_audit
        if audit is None or not audit.audited_figure:
            return None
        figure = audit.audited_figure
        declared = self.state.figures.get(figure, 0)
        await self._report(GrantStage.SPECIAL_AUDIT, reasons.SPECIAL_AUDIT)
        period = await self._period(self.grant.timing.review_seconds, audit.due_working_days)
        self.state.audit_task = await self._call(
            GrantActivities.create_audit_task,
            AuditRequest(
                request_id=f"{workflow.info().workflow_id}-audit",
                application_id=self.grant.application_id,
                program_code=self.grant.rule.code,
                figure=figure,
                declared_fen=declared,
                due_at=workflow.now() + period,
                applicant_name=self.grant.applicant_name,
                project_title=self.grant.project_title,
            ),
        )
        await workflow.wait_condition(
            lambda: self.state.audit is not None or self.state.withdrawal is not None
        )
        if self.state.withdrawal is not None:
            return await self._withdrawn()
        assert self.state.audit is not None
        self.state.figures = rules.audited_figures(
            self.state.figures, figure, self.state.audit.audited_fen
        )
        return None

    async def _public_notice(self) -> GrantOutcome | str | None:
        """社会公示 by batch: the grant joins its program's notice batcher, which funds the batch
        from the budget line (cut pro rata, or waitlisted for a later batch) and publishes it for
        N working days. Objections lodged meanwhile are handled before the award stands.
        Answers None (the award stands), RE_REVIEW, or the grant's ending."""
        while True:
            await self._report(GrantStage.AWAITING_NOTICE, reasons.AWAITING_NOTICE)
            self.state.notice = None
            await self._call(GrantActivities.join_notice_batch, self._notice_entry())
            if not await self._wait_for_batch():
                return await self._leave_batch_withdrawn()
            notice = self.state.notice
            assert notice is not None
            self.state.reserved = True
            self.state.amount_fen = notice.amount_fen
            closes = notice.closes_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
            await self._report(
                GrantStage.IN_NOTICE,
                reasons.in_notice(notice.amount_fen, notice.requested_fen, closes),
            )
            period = max(notice.closes_at - workflow.now(), timedelta(seconds=1))
            # An upheld objection ends the notice at once; a dismissed one lets it run its course.
            await self._wait(
                lambda: self.state.withdrawal is not None or self._objection_upheld(), period
            )
            if self.state.withdrawal is not None:
                return await self._withdrawn()
            # Objections lodged in time are handled before the award stands.
            await workflow.wait_condition(
                lambda: self.state.withdrawal is not None or not self.state.open_objections()
            )
            if self.state.withdrawal is not None:
                return await self._withdrawn()
            ending = await self._after_objections()
            if ending is None:
                break
            if ending == "renotice":
                continue
            return ending
        await self._confirm_award()
        return None

    async def _confirm_award(self) -> None:
        """The award is final: ready for a funding plan, or, paid in instalments, with its
        schedule fixed now (instalment 1 ready for a plan, each later one due a year after the
        one before)."""
        if self.state.scheduled:
            self.state.instalments = rules.instalment_schedule(
                self.grant.rule.amount_rule, self.state.amount_fen, workflow.now()
            )
        if not self.state.instalments:
            await self._call(
                GrantActivities.confirm_award_v3,
                AwardRef(application_id=self.grant.application_id),
            )
            return
        await self._call(
            GrantActivities.confirm_award_scheduled,
            ScheduledAward(
                application_id=self.grant.application_id, schedule=self.state.instalments
            ),
        )

    def _objection_upheld(self) -> bool:
        decided = self.state.objection_decisions
        return any(decided[o].upheld for o in self.state.objections if o in decided)

    async def _wait_for_batch(self) -> bool:
        """Until the batch funds the award (True) or the applicant withdraws (False); a
        waitlisted award waits for a later batch."""
        while True:
            await workflow.wait_condition(
                lambda: self.state.notice is not None or self.state.withdrawal is not None
            )
            if self.state.withdrawal is not None:
                return False
            assert self.state.notice is not None
            if self.state.notice.reserved:
                return True
            self.state.notice = None
            if self.state.stage != GrantStage.WAITLISTED:
                await self._report(GrantStage.WAITLISTED, reasons.WAITLISTED)

    async def _leave_batch_withdrawn(self) -> GrantOutcome:
        """Withdrawn before its notice: out of the batch first, then any money it was given
        back (the batcher releases what it allocated after this left; see notice_batch.py)."""
        await self._call(GrantActivities.leave_notice_batch, self._notice_entry())
        try:
            await self._call(
                GrantActivities.release_reservation_v3,
                ReservationRelease(
                    application_id=self.grant.application_id, reason=reasons.GONE_BEFORE_NOTICE
                ),
            )
        except ServiceRefusal as error:
            if final_error_type(error) != ErrorType.NOT_FOUND:  # nothing was reserved
                raise
        return await self._withdrawn()

    async def _after_objections(self) -> GrantOutcome | str | None:
        """What the handled objections of this notice mean: an upheld one ends the award or
        sends it back to review; a dismissed one lets it stand, noticed again where the rule
        says so."""
        decided = [self.state.objection_decisions[o] for o in self.state.objections]
        self.state.objections.clear()
        upheld = [d for d in decided if d.upheld]
        if upheld:
            first = upheld[0]
            if any(d.consequence != RE_REVIEW for d in upheld):
                return await self._close(
                    GrantStage.REJECTED, reasons.objection_upheld(first.reason)
                )
            await self._release(reasons.objection_re_review(first.reason))
            self.state.reason = reasons.objection_re_review(first.reason)
            return RE_REVIEW
        if decided and self.grant.rule.renotice_after_dismissed_objection:
            if not self.state.renoticed:
                self.state.renoticed = True
                self.state.reason = reasons.renotice(decided[0].reason)
                return "renotice"
        return None

    def _notice_entry(self) -> JoinNoticeBatch:
        rule = self.grant.rule
        return JoinNoticeBatch(
            entry=NoticeEntry(
                application_id=self.grant.application_id,
                applicant_credit_code=self.grant.applicant_credit_code,
                applicant_name=self.grant.applicant_name,
                project_title=self.grant.project_title,
                amount_fen=self.state.amount_fen,
                renotice=self.state.reserved,
            ),
            batcher=NoticeBatcherInput(
                program_code=rule.code,
                owner_department=rule.owner_department,
                over_budget_policy=rule.over_budget_policy,
                notice_working_days=rule.notice_working_days,
                notice_seconds=self.grant.timing.notice_seconds,
                batch_window_seconds=self.grant.timing.batch_seconds,
            ),
        )

    def _eligible_amount(self) -> int:
        """What the rule gives for the figures (audited where audited), never more than asked
        for nor than the enterprise's yearly cap leaves."""
        if not self.state.v4:
            return rules.award_fen(
                self.grant.rule.amount_rule, self.state.figures, self.grant.requested_amount_fen
            )
        return rules.award_fen(
            self.grant.rule.amount_rule,
            self.state.figures,
            self.grant.requested_amount_fen,
            score_centi=self.state.expert_score,
            remaining_year_cap_fen=self.state.year_cap_left_fen,
        )

    async def _payment(self) -> GrantOutcome:
        """Waits for funding plans: each plan the grant is put in is worked through in the order
        it came (in payment, failed), until one pays it. A withdrawal is honoured while the award
        is in no plan, and refused (with the reason) once it is."""
        await self._report(GrantStage.AWAITING_FUNDING_PLAN)
        while True:
            await workflow.wait_condition(
                lambda: self.state.withdrawal is not None or self._payment_news() is not None
            )
            if self.state.withdrawal is not None:
                if await self._release(reasons.WITHDRAWN_BY_APPLICANT):
                    return await self._withdrawn()
                self._answer_withdrawals(reasons.IN_A_FUNDING_PLAN)
                continue
            news = self._payment_news()
            assert news is not None
            plan_id, stage = news
            self.state.told.add((plan_id, stage))
            if stage == GrantStage.PAID:
                assert self.state.settled is not None
                await self._report(GrantStage.PAID, plan_id=plan_id)
                return self._outcome(gateway_reference=self.state.settled.gateway_reference)
            reason = ""
            if stage == GrantStage.PAYMENT_FAILED:
                reason = reasons.payment_failed(self.state.failures[plan_id].reason)
            await self._report(stage, reason, plan_id=plan_id)

    # ------------------------------------------------------------- fifth generation: instalments

    async def _instalments(self) -> GrantOutcome:
        """Pays the schedule in order: each later instalment after its milestone is confirmed
        (a durable wait with one timer, to its due date: past it the grant shows
        MILESTONE_OVERDUE and keeps waiting; a late confirmation is accepted), then released and
        paid by a plan like an award. After every instalment but the last the grant continues as
        new, carrying its state, so its history holds one instalment's events at most."""
        state = self.state
        count = len(state.instalments)
        number = state.paid_instalments + 1
        part = state.instalments[number - 1]
        if number > 1:
            await self._await_milestone(part)
            # What the last instalment's plans told is done with; this one's start afresh.
            state.plans, state.failures, state.told, state.settled = {}, {}, set(), None
            confirmed = state.milestones[number]
            await self._call(
                GrantActivities.release_instalment,
                InstalmentRelease(
                    application_id=self.grant.application_id,
                    instalment=number,
                    confirmed_by=confirmed.confirmed_by,
                    note=confirmed.note,
                ),
            )
        ending = await self._pay_instalment(part)
        if ending is not None:
            return ending
        settled = state.settled
        assert settled is not None
        state.paid_instalments = number
        state.paid_fen += part.amount_fen
        state.last_reference = settled.gateway_reference
        if number == count:
            await self._report(GrantStage.PAID, plan_id=settled.plan_id)
            return self._outcome(gateway_reference=settled.gateway_reference)
        following = state.instalments[number]
        await self._report(
            GrantStage.INSTALMENTS,
            reasons.instalment_paid(
                number,
                count,
                following.milestone,
                following.due_at.astimezone(CHINA).strftime("%Y-%m-%d"),
                state.paid_fen,
                state.amount_fen,
            ),
            plan_id=settled.plan_id,
        )
        # Updates still being answered (a milestone confirmed just now) finish in this run.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self.grant.model_copy(update={"carried": self._carry()}))

    async def _await_milestone(self, part: ScheduledInstalment) -> None:
        number = part.number
        if number in self.state.milestones:
            return
        left = part.due_at - workflow.now()
        if left > timedelta(0) and await self._wait(lambda: number in self.state.milestones, left):
            return
        await self._report(
            GrantStage.MILESTONE_OVERDUE,
            reasons.milestone_overdue(
                number,
                len(self.state.instalments),
                part.milestone,
                part.due_at.astimezone(CHINA).strftime("%Y-%m-%d"),
            ),
        )
        await workflow.wait_condition(lambda: number in self.state.milestones)

    async def _pay_instalment(self, part: ScheduledInstalment) -> GrantOutcome | None:
        """As _payment, for one instalment: None once it is paid. Only before the first is
        paid may the applicant still withdraw (the reservation released whole)."""
        count = len(self.state.instalments)
        await self._report(
            GrantStage.AWAITING_FUNDING_PLAN,
            reasons.instalment_awaiting_plan(part.number, count, part.amount_fen),
        )
        while True:
            await workflow.wait_condition(
                lambda: self.state.withdrawal is not None or self._payment_news() is not None
            )
            if self.state.withdrawal is not None:
                if part.number == 1 and await self._release(reasons.WITHDRAWN_BY_APPLICANT):
                    return await self._withdrawn()
                self._answer_withdrawals(
                    reasons.IN_A_FUNDING_PLAN if part.number == 1 else reasons.PARTLY_PAID
                )
                continue
            news = self._payment_news()
            assert news is not None
            plan_id, stage = news
            self.state.told.add((plan_id, stage))
            if stage == GrantStage.PAID:
                return None
            reason = reasons.instalment_of(part.number, count)
            if stage == GrantStage.PAYMENT_FAILED:
                reason += "：" + reasons.payment_failed(self.state.failures[plan_id].reason)
            await self._report(stage, reason, plan_id=plan_id)

    def _carry(self) -> InstalmentCarry:
        state = self.state
        return InstalmentCarry(
            stage=state.stage,
            reason=state.reason,
            amount_fen=state.amount_fen,
            sequence=state.sequence,
            v4=state.v4,
            schedule=state.instalments,
            paid=state.paid_instalments,
            paid_fen=state.paid_fen,
            milestones=state.milestones,
            plan_id=state.settled.plan_id if state.settled else "",
            gateway_reference=state.last_reference,
        )

    def _restore(self, carried: InstalmentCarry) -> None:
        state = self.state
        state.stage = GrantStage(carried.stage)
        state.reason = carried.reason
        state.amount_fen = carried.amount_fen
        state.sequence = carried.sequence
        state.v4 = carried.v4
        state.scheduled = True
        state.reserved = True
        state.instalments = list(carried.schedule)
        state.paid_instalments = carried.paid
        state.paid_fen = carried.paid_fen
        state.milestones = dict(carried.milestones)
        state.last_reference = carried.gateway_reference

    def _payment_news(self) -> tuple[str, GrantStage] | None:
        """The next thing to tell of the plans, in their order: a failure, the payment, or that a
        plan is paying (unless its outcome is known already)."""
        settled = self.state.settled
        for plan_id in self.state.plans:
            # A failed line a repair paid again (retry_payment) is paid after all.
            if settled is not None and settled.plan_id == plan_id:
                return plan_id, GrantStage.PAID
            if plan_id in self.state.failures:
                if (plan_id, GrantStage.PAYMENT_FAILED) not in self.state.told:
                    return plan_id, GrantStage.PAYMENT_FAILED
                continue
            if settled is None and (plan_id, GrantStage.IN_PAYMENT) not in self.state.told:
                return plan_id, GrantStage.IN_PAYMENT
        return None

    # ------------------------------------------------------------------------- review rounds

    async def _review_round(self, amount: int) -> Decision | None:
        """Creates one task per co-reviewing department and waits for their decisions: the
        verdict of the round, or None if the applicant withdrew meanwhile."""
        grant = self.grant
        self.state.round += 1
        current = self.state.round
        review_period = await self._period(
            grant.timing.review_seconds, grant.rule.review_working_days
        )
        due_at = workflow.now() + review_period
        self.state.creating_tasks = True
        departments = list(grant.rule.review_departments)
        # The applicant is told and the tasks are created at the same time (one workflow task).
        reporting = asyncio.create_task(
            self._report(GrantStage.IN_REVIEW, reasons.review_round(current), publish=False)
        )
        task_ids = await asyncio.gather(
            *[
                self._call(
                    GrantActivities.create_review_task,
                    CreateReviewTaskRequest(
                        request_id=self._task_request_id(current, department),
                        application_id=grant.application_id,
                        program_code=grant.rule.code,
                        department=department,
                        round=current,
                        proposed_amount_fen=amount,
                        due_at=due_at,
                        applicant_name=grant.applicant_name,
                        project_title=grant.project_title,
                    ),
                )
                for department in departments
            ]
        )
        await reporting
        for department, task_id in zip(departments, task_ids, strict=True):
            self.state.tasks[task_id] = ReviewTask(task_id, department, current, amount)
        self.state.creating_tasks = False
        self._publish()

        def round_over() -> bool:
            return self.state.withdrawal is not None or self._round_settled(current)

        await self._wait_reminding(round_over, due_at, review_period, current)
        if self.state.withdrawal is not None:
            return None
        decided = [t for t in self.state.current_tasks() if t.decision is not None]
        for verdict, told in (
            (Decision.REJECT, reasons.rejected_by),
            (Decision.RETURN_FOR_SUPPLEMENT, reasons.returned_by),
        ):
            deciding = [t for t in decided if t.decision == verdict]
            if deciding:
                first = deciding[0]
                self.state.reason = told(first.department, first.reason)
                await self._cancel_open_tasks(self.state.reason)
                return verdict
        return Decision.APPROVE

    async def _review_round_v4(self, amount: int) -> Decision | None:
        """A round of department co-review: each department's task with its own due date, the
        decisions joined by the program's policy (all approve, any reject, or a quorum); the
        verdict, or None if the applicant withdrew meanwhile."""
        grant = self.grant
        self.state.round += 1
        current = self.state.round
        departments = list(grant.rule.review_departments)
        due: dict[str, datetime] = {}
        for department in departments:
            due[department] = workflow.now() + await self._period(
                grant.timing.review_seconds, grant.rule.department_due_working_days(department)
            )
        self.state.creating_tasks = True
        reporting = asyncio.create_task(
            self._report(GrantStage.IN_REVIEW, reasons.review_round(current), publish=False)
        )
        task_ids = await asyncio.gather(
            *[
                self._call(
                    GrantActivities.create_review_task,
                    CreateReviewTaskRequest(
                        request_id=self._task_request_id(current, department),
                        application_id=grant.application_id,
                        program_code=grant.rule.code,
                        department=department,
                        round=current,
                        proposed_amount_fen=amount,
                        due_at=due[department],
                        applicant_name=grant.applicant_name,
                        project_title=grant.project_title,
                    ),
                )
                for department in departments
            ]
        )
        await reporting
        for department, task_id in zip(departments, task_ids, strict=True):
            self.state.tasks[task_id] = ReviewTask(
                task_id, department, current, amount, due_at=due[department]
            )
        self.state.creating_tasks = False
        self._publish()

        def verdict() -> Decision | None:
            if self.state.creating_tasks:  # a re-opened review's new task is on its way
                return None
            decisions: dict[str, Decision] = {}
            for task in self._decided_in_order():
                assert task.decision is not None
                decisions[task.department] = task.decision
            return review_rules.join_verdict(
                grant.rule.join_policy, grant.rule.quorum, departments, decisions
            )

        def round_over() -> bool:
            return self.state.withdrawal is not None or verdict() is not None

        await self._alert_overdue(round_over, current)
        if self.state.withdrawal is not None:
            return None
        outcome = verdict()
        assert outcome is not None
        if outcome != Decision.APPROVE:
            told = reasons.rejected_by if outcome == Decision.REJECT else reasons.returned_by
            first = next(t for t in self._decided_in_order() if t.decision == outcome)
            self.state.reason = told(first.department, first.reason)
        # A quorum reached, or a rejection: the departments still reviewing are told.
        await self._cancel_open_tasks(
            self.state.reason if outcome != Decision.APPROVE else reasons.ROUND_DECIDED
        )
        return outcome

    def _decided_in_order(self) -> list[ReviewTask]:
        decided = [t for t in self.state.current_tasks() if t.decision is not None]
        return sorted(decided, key=lambda t: t.decided_order)

    async def _alert_overdue(self, round_over: Callable[[], bool], current: int) -> None:
        """Waits for the round; each task overdue at its own due date is reminded, and escalated
        ESCALATION_WORKING_DAYS working days after it (durable timers)."""
        escalate_at: dict[str, datetime] = {}
        while True:
            waiting = [
                t
                for t in self.state.open_tasks()
                if t.round == current and t.due_at is not None and t.alerts < ESCALATION
            ]
            if not waiting:
                await workflow.wait_condition(round_over)
                return

            def alert_at(task: ReviewTask) -> datetime:
                assert task.due_at is not None
                return task.due_at if task.alerts == 0 else escalate_at[task.task_id]

            when = min(alert_at(t) for t in waiting)
            if await self._wait(round_over, max(when - workflow.now(), timedelta(seconds=1))):
                return
            for level in (REMINDER, ESCALATION):
                overdue = [t for t in waiting if t.alerts == level - 1 and alert_at(t) <= when]
                if not overdue:
                    continue
                await self._call(
                    GrantActivities.remind_overdue_tasks_v3,
                    OverdueReminder(
                        application_id=self.grant.application_id,
                        task_ids=[t.task_id for t in overdue],
                        level=level,
                    ),
                )
                for task in overdue:
                    task.alerts = level
                    if level == REMINDER:
                        assert task.due_at is not None
                        escalate_at[task.task_id] = await self._deadline(
                            task.due_at, self.grant.timing.review_seconds, ESCALATION_WORKING_DAYS
                        )

    async def _wait_reminding(
        self, round_over: Callable[[], bool], due_at: datetime, period: timedelta, current: int
    ) -> None:
        """Waits for the round; reminds the reviewers when the due date passes and escalates
        after another review period (durable timers), then keeps waiting."""
        limit = max(due_at - workflow.now(), timedelta(seconds=1))
        for level in (REMINDER, ESCALATION):
            if await self._wait(round_over, limit):
                return
            overdue = [t.task_id for t in self.state.open_tasks() if t.round == current]
            await self._call(
                GrantActivities.remind_overdue_tasks_v3,
                OverdueReminder(
                    application_id=self.grant.application_id, task_ids=overdue, level=level
                ),
            )
            limit = period
        await workflow.wait_condition(round_over)

    def _round_settled(self, current: int) -> bool:
        if self.state.creating_tasks:  # a re-opened review's new task is on its way
            return False
        tasks = [t for t in self.state.tasks.values() if t.round == current and not t.superseded]
        if any(t.decision in (Decision.REJECT, Decision.RETURN_FOR_SUPPLEMENT) for t in tasks):
            return True
        return all(t.state == TaskState.DECIDED for t in tasks)

    async def _await_supplement(self, reason: str) -> bool:
        """Asks for more information (补正) and waits for it until the deadline."""
        self.state.supplement = None
        await self._report(GrantStage.AWAITING_SUPPLEMENT, reason)
        period = await self._period(
            self.grant.timing.supplement_seconds, self.grant.rule.supplement_working_days
        )
        answered = await self._wait(
            lambda: self.state.supplement is not None or self.state.withdrawal is not None,
            period,
        )
        if self.state.withdrawal is not None:
            return False
        if not answered or self.state.supplement is None:
            self.state.reason = reasons.NO_SUPPLEMENT
            return False
        self.state.figures = dict(self.state.supplement.figures)
        if self.state.supplement.document_names is not None:
            self.state.document_names = list(self.state.supplement.document_names)
        return True

    # ------------------------------------------------------------------------- endings

    async def _after_failed_wait(self) -> GrantOutcome:
        if self.state.withdrawal is not None:
            return await self._withdrawn()
        return await self._close(GrantStage.REJECTED, self.state.reason)

    async def _withdrawn(self) -> GrantOutcome:
        assert self.state.withdrawal is not None
        reason = self.state.withdrawal.reason or reasons.WITHDRAWN_BY_APPLICANT
        await self._cancel_open_tasks(reasons.REVIEWERS_TOLD)
        released = self.state.amount_fen if self.state.reserved else 0
        await self._release(reason)
        outcome = await self._close(GrantStage.WITHDRAWN, reason)
        self._answer_withdrawals(
            WithdrawalAnswer(stage=GrantStage.WITHDRAWN, released_fen=released)
        )
        return outcome

    async def _close(self, stage: GrantStage, reason: str) -> GrantOutcome:
        await self._cancel_open_tasks(reason)
        if stage == GrantStage.REJECTED:
            await self._release(reason)
        self.state.amount_fen = 0  # nothing is awarded to a rejected or withdrawn application
        await self._report(stage, reason)
        return self._outcome()

    async def _release(self, reason: str) -> bool:
        """Compensation: gives the reservation back to the budget. False if it is in a plan."""
        if not self.state.reserved:
            return True
        try:
            await self._call(
                GrantActivities.release_reservation_v3,
                ReservationRelease(application_id=self.grant.application_id, reason=reason),
            )
        except ServiceRefusal as error:
            if final_error_type(error) != ErrorType.FAILED_PRECONDITION:
                raise
            return False
        self.state.reserved = False
        return True

    async def _cancel_open_tasks(self, reason: str) -> None:
        open_tasks = self.state.open_tasks()
        if not open_tasks:
            return
        # Cancelled here first, so a decision arriving while the service cancels them is
        # refused by the validator instead of being accepted and then overwritten.
        for task in open_tasks:
            task.state = TaskState.CANCELLED
        self._publish()
        await self._call(
            GrantActivities.cancel_review_tasks_v3,
            TasksToCancel(
                application_id=self.grant.application_id,
                reason=reason,
                task_ids=[t.task_id for t in open_tasks],
            ),
        )

    def _answer_withdrawals(self, answer: WithdrawalAnswer | str) -> None:
        """Answers every withdrawal Update waiting (a str is a refusal's reason)."""
        for ticket in range(1, self.state.withdrawal_tickets + 1):
            self.state.withdrawal_answers.setdefault(ticket, answer)
        self.state.withdrawal = None

    def _outcome(self, gateway_reference: str = "") -> GrantOutcome:
        settled = self.state.settled
        return GrantOutcome(
            application_id=self.grant.application_id,
            stage=self.state.stage,
            reason=self.state.reason,
            award_amount_fen=self.state.amount_fen,
            plan_id=settled.plan_id if settled else "",
            gateway_reference=gateway_reference,
        )

    # ------------------------------------------------------------------------- helpers

    def _rerun_tag(self) -> str:
        """ "" in the grant's first run; in a run made by a reset, a short id of that run."""
        info = workflow.info()
        if self.grant.carried is not None:
            # A run an instalment grant continued as new with: its reports go on from the
            # carried sequence (a reset of such a run is not told apart: see the docstring).
            return ""
        return "" if info.run_id == info.first_execution_run_id else info.run_id[:8]

    def _task_request_id(self, round_: int, department: str, suffix: str = "") -> str:
        tag = self._rerun_tag()
        rerun = f"-{tag}" if tag else ""
        return f"{workflow.info().workflow_id}-r{round_}-{department}{rerun}{suffix}"

    async def _call(self, activity: Callable[[Any, A], Awaitable[R]], argument: A) -> R:
        """One service call: a local activity (short and idempotent), retried until the service
        answers; a final answer raises ApplicationError (ServiceRefusal)."""
        return await workflow.execute_local_activity_method(
            activity,  # type: ignore[arg-type]
            argument,
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )

    async def _report(
        self, stage: GrantStage, reason: str = "", plan_id: str = "", *, publish: bool = True
    ) -> None:
        """Tells the applications service (and through it the applicant) the new stage."""
        reason = cut(reason, MAX_REASON)  # reviewers' reasons are long; a report has a limit
        self.state.stage = stage
        self.state.reason = reason
        self.state.sequence += 1
        if publish:
            self._publish()
        event_id, sequence = f"{workflow.info().workflow_id}-{self.state.sequence}", 0
        tag = self._rerun_tag()
        if tag:
            event_id = f"{workflow.info().workflow_id}-{tag}-{self.state.sequence}"
            sequence = int((workflow.now() - RERUN_SEQUENCE_EPOCH).total_seconds())
        await self._call(
            GrantActivities.report_stage,
            StageReport(
                event_id=event_id,
                application_id=self.grant.application_id,
                stage=stage,
                reason=reason,
                award_amount_fen=self.state.amount_fen,
                program_code=self.grant.rule.code,
                plan_id=plan_id,
                sequence=sequence + self.state.sequence,
            ),
        )

    async def _period(self, override_seconds: float | None, working_days: int) -> timedelta:
        if override_seconds is not None:
            return timedelta(seconds=override_seconds)
        end = await self._call(
            GrantActivities.working_days_deadline,
            DeadlineRequest(start=workflow.now(), working_days=working_days),
        )
        return max(end.start - workflow.now(), timedelta(seconds=1))

    async def _deadline(
        self, start: datetime, override_seconds: float | None, working_days: int
    ) -> datetime:
        if override_seconds is not None:
            return start + timedelta(seconds=override_seconds)
        end = await self._call(
            GrantActivities.working_days_deadline,
            DeadlineRequest(start=start, working_days=working_days),
        )
        return end.start

    @staticmethod
    async def _wait(condition: Callable[[], bool], limit: timedelta) -> bool:
        """True if the condition came true before the timeout."""
        try:
            await workflow.wait_condition(condition, timeout=limit)
            return True
        except TimeoutError:
            return False

    def _publish(self) -> None:
        """Keeps the search attributes operators find grants by current, in one upsert."""
        updates: list[SearchAttributeUpdate[Any]] = [
            STAGE_KEY.value_set(self.state.stage),
            PENDING_KEY.value_set(self.state.pending_departments()),
        ]
        # Grants are started with their search attributes (the intake consumer sets them all);
        # they are kept current only where the namespace has them registered (Temporal's
        # time-skipping test server cannot register any): a grant started with its stage has
        # them all. The stage is the sign, since the server drops the empty PendingDepartments
        # a grant starts with. Only the upsert's content changes: its place among the commands
        # does not, so running grants replay as before.
        known = workflow.info().typed_search_attributes
        if known.get(STAGE_KEY) is not None:
            workflow.upsert_search_attributes(updates)

    # ------------------------------------------------------------------------- decisions

    def _task_for(self, task_id: str, department: str) -> ReviewTask:
        task = self.state.tasks.get(task_id)
        if task is None:
            raise ApplicationError(
                f"review task {task_id} does not belong to this grant", type=contracts.ERR_NOT_FOUND
            )
        if task.department != department:
            raise ApplicationError(
                f"review task {task_id} belongs to the {task.department} department",
                type=contracts.ERR_PERMISSION_DENIED,
            )
        return task

    def _check_decision(self, request: DecideReviewTask) -> ReviewTask:
        """The review service judges claims; the grant judges whether the task still stands."""
        task = self._task_for(request.task_id, request.department)
        if task.state not in ACTIVE_TASK_STATES:
            raise ApplicationError(
                f"review task {task.task_id} is {task.state}",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        if task.reviewer and task.reviewer != request.reviewer:
            raise ApplicationError(
                f"review task {task.task_id} is claimed by {task.reviewer}",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        if request.approved_amount_fen > task.proposed_amount_fen:
            raise ApplicationError(
                "approved amount exceeds the proposed amount",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        return task

    @workflow.update(name=contracts.DECIDE_REVIEW_TASK)
    async def decide_review_task(self, request: DecideReviewTask) -> ReviewTaskAck:
        if self._legacy is not None:
            return await self._legacy.decide_review_task(request)
        # A decision may come the instant the review service created the task, before the
        # activity's result reached the grant: wait until the round's tasks are known.
        await workflow.wait_condition(lambda: not self.state.creating_tasks)
        task = self._check_decision(request)
        task.state = TaskState.DECIDED
        task.reviewer = request.reviewer
        task.decision = Decision(request.decision)
        task.reason = request.reason
        task.approved_amount_fen = request.approved_amount_fen
        self.state.decisions_taken += 1
        task.decided_order = self.state.decisions_taken
        self._publish()
        return ReviewTaskAck(
            task_id=task.task_id,
            round=task.round,
            stage=self.state.stage,
            decision=task.decision,
            reason=task.reason,
            approved_amount_fen=task.approved_amount_fen,
        )

    @decide_review_task.validator
    def _validate_decision(self, request: DecideReviewTask) -> None:
        if self._legacy is not None:
            self._legacy.validate_decision(request)
        elif not (self.state.creating_tasks and request.task_id not in self.state.tasks):
            self._check_decision(request)

    @workflow.update(name=contracts.CLAIM_REVIEW_TASK)
    async def claim_review_task(self, request: ClaimReviewTask) -> ReviewTaskAck:
        """Kept for grants of the second generation (and a review service of that time): the
        claim binds the task to its reviewer; the review service judges claims now."""
        if self._legacy is not None:
            return await self._legacy.claim_review_task(request)
        await workflow.wait_condition(lambda: not self.state.creating_tasks)
        task = self._task_for(request.task_id, request.department)
        if task.state not in ACTIVE_TASK_STATES or task.reviewer not in ("", request.reviewer):
            raise ApplicationError(
                f"review task {task.task_id} is {task.state}",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        task.state = TaskState.CLAIMED
        task.reviewer = request.reviewer
        return ReviewTaskAck(task_id=task.task_id, round=task.round, stage=self.state.stage)

    @claim_review_task.validator
    def _validate_claim(self, request: ClaimReviewTask) -> None:
        if self._legacy is not None:
            self._legacy.validate_claim(request)

    # ------------------------------------------------------------------------- withdrawal

    @workflow.update(name=contracts.WITHDRAW_APPLICATION)
    async def withdraw_application(self, request: Withdraw) -> WithdrawalAnswer:
        """The applicant withdraws: answered once the grant has honoured it (the reservation
        released, the reviewers told) or refused it (the award is in a funding plan)."""
        if self._legacy is not None:
            # The second generation honours it at its next waiting point, as the signal did.
            self._legacy.withdraw(request)
            return WithdrawalAnswer(stage=self._legacy.status().stage)
        if self.state.withdrawal is None:
            self.state.withdrawal = request
        self.state.withdrawal_tickets += 1
        ticket = self.state.withdrawal_tickets
        await workflow.wait_condition(lambda: ticket in self.state.withdrawal_answers)
        answer = self.state.withdrawal_answers[ticket]
        if isinstance(answer, str):
            raise ApplicationError(answer, type=contracts.ERR_FAILED_PRECONDITION)
        return answer

    @withdraw_application.validator
    def _validate_withdrawal(self, request: Withdraw) -> None:
        stage = GrantStage(self._legacy.status().stage) if self._legacy else self.state.stage
        if stage in NOT_WITHDRAWABLE_STAGES:
            raise ApplicationError(
                reasons.not_withdrawable(stage), type=contracts.ERR_FAILED_PRECONDITION
            )

    @workflow.signal(name=contracts.WITHDRAW)
    def withdraw(self, request: Withdraw) -> None:
        """A withdrawal filed before this workflow started (no Update could reach it)."""
        if self._legacy is not None:
            self._legacy.withdraw(request)
        elif self.state.stage not in NOT_WITHDRAWABLE_STAGES and self.state.withdrawal is None:
            self.state.withdrawal = request

    # ------------------------------------------------ experts, audit, notice and objections

    def _refuse(self, message: str, error: str = contracts.ERR_FAILED_PRECONDITION) -> None:
        raise ApplicationError(message, type=error)

    @workflow.update(name=contracts.EXPERT_REVIEW_DONE)
    async def expert_review_done(self, result: ExpertReviewDone) -> Acknowledged:
        self.state.expert_score = result.score_centi
        await self._report(GrantStage.EXPERT_REVIEW, reasons.expert_score(result.score_centi))
        return Acknowledged(stage=self.state.stage)

    @expert_review_done.validator
    def _validate_expert_review(self, result: ExpertReviewDone) -> None:
        if self._legacy is not None or not self.state.v4:
            self._refuse("this grant has no expert review")
        if result.panel_id != self.state.expert_panel or self.state.expert_score is not None:
            self._refuse(f"expert panel {result.panel_id} is not awaited by this grant")

    @workflow.update(name=contracts.AUDIT_DONE)
    async def audit_done(self, result: AuditDone) -> Acknowledged:
        self.state.audit = result
        return Acknowledged(stage=self.state.stage)

    @audit_done.validator
    def _validate_audit(self, result: AuditDone) -> None:
        if self._legacy is not None or not self.state.v4:
            self._refuse("this grant has no special audit")
        if result.task_id != self.state.audit_task or self.state.audit is not None:
            self._refuse(f"audit task {result.task_id} is not awaited by this grant")
        assert self.grant.rule.special_audit is not None
        if result.figure != self.grant.rule.special_audit.audited_figure:
            self._refuse(f"the audit confirms {self.grant.rule.special_audit.audited_figure}")

    @workflow.update(name=contracts.OBJECTION_LODGED)
    async def objection_lodged(self, objection: ObjectionLodged) -> Acknowledged:
        self.state.objections.setdefault(objection.objection_id, objection)
        return Acknowledged(stage=self.state.stage)

    @objection_lodged.validator
    def _validate_objection(self, objection: ObjectionLodged) -> None:
        if self._legacy is not None or not self.state.v4:
            self._refuse("this grant takes no objections")
        if objection.objection_id in self.state.objections:
            return  # the same objection again: answered as before
        notice = self.state.notice
        if self.state.stage != GrantStage.IN_NOTICE or notice is None:
            self._refuse(f"the grant is {self.state.stage}, not in its public notice")
        elif workflow.now() >= notice.closes_at:
            self._refuse("the public notice has closed")

    @workflow.update(name=contracts.OBJECTION_DECIDED)
    async def objection_decided(self, decision: ObjectionDecided) -> Acknowledged:
        self.state.objection_decisions.setdefault(decision.objection_id, decision)
        return Acknowledged(stage=self.state.stage)

    @objection_decided.validator
    def _validate_objection_decision(self, decision: ObjectionDecided) -> None:
        if decision.objection_id not in self.state.objections:
            self._refuse(
                f"objection {decision.objection_id} is not open on this grant",
                contracts.ERR_NOT_FOUND,
            )
        if decision.upheld and decision.consequence not in ("fall_away", RE_REVIEW):
            self._refuse("an upheld objection needs a consequence: fall_away or re_review")

    @workflow.update(name=contracts.CONFIRM_MILESTONE)
    async def confirm_milestone(self, request: ConfirmMilestone) -> MilestoneConfirmed:
        """A milestone confirmed (项目验收, 专项审计): its instalment is released. Late is
        accepted; a repeat answers the first confirmation."""
        known = self.state.milestones.get(request.instalment)
        if known is not None:
            return known.model_copy(update={"repeated": True, "stage": self.state.stage})
        part = self.state.instalments[request.instalment - 1]
        now = workflow.now()
        confirmed = MilestoneConfirmed(
            instalment=part.number,
            of=part.count,
            milestone=part.milestone,
            confirmed_by=request.confirmed_by,
            note=request.note,
            confirmed_at=now,
            due_at=part.due_at,
            late=now > part.due_at,
            stage=self.state.stage,
        )
        self.state.milestones[part.number] = confirmed
        return confirmed

    @confirm_milestone.validator
    def _validate_milestone(self, request: ConfirmMilestone) -> None:
        number, count = request.instalment, len(self.state.instalments)
        if self._legacy is not None or not self.state.instalments:
            self._refuse(
                "该项目不分期拨付，或分期计划尚未确定（资助确定后才有分期计划）"
                " (the grant has no instalment schedule)"
            )
        if number in self.state.milestones:
            return  # confirmed before: answered as then
        if number == 1:
            self._refuse("第1期随资助确定拨付，无需确认里程碑 (instalment 1 needs no milestone)")
        if number > count:
            self._refuse(
                f"分期计划只有 {count} 期 (the schedule has {count} instalments)",
                contracts.ERR_NOT_FOUND,
            )
        # The payment counts as soon as its signal is recorded (the grant may not have moved
        # on yet: an Update can be judged in the same activation as the signal).
        if number > max(self.state.paid_instalments, self.state.settled_instalment) + 1:
            self._refuse(
                f"第{number - 1}期尚未拨付，不能确认第{number}期的里程碑"
                f" (instalment {number - 1} is not paid yet)"
            )

    @workflow.signal(name=contracts.NOTICE_PUBLISHED)
    def notice_published(self, news: NoticePublished) -> None:
        if self.state.v4 and self.state.stage in (
            GrantStage.AWAITING_NOTICE,
            GrantStage.WAITLISTED,
        ):
            self.state.notice = news

    # ------------------------------------------------------------------------- signals, query

    @workflow.signal(name=contracts.SUPPLEMENT)
    def supplement(self, request: Supplement) -> None:
        if self._legacy is not None:
            self._legacy.supplement(request)
        # Redelivered events repeat a supplement; only a newer one counts.
        elif request.supplement_count > self.state.supplement_count:
            self.state.supplement_count = request.supplement_count
            self.state.supplement = request

    # Payment signals may arrive together in one activation (a worker catching up), so each
    # handler only records; the payment phase works through the plans in order.

    @workflow.signal(name=contracts.FUNDING_PLAN_ASSIGNED)
    def funding_plan_assigned(self, request: FundingPlanAssigned) -> None:
        if self._legacy is not None:
            self._legacy.funding_plan_assigned(request)
        else:
            self.state.plans.setdefault(request.plan_id, request)

    @workflow.signal(name=contracts.PAYMENT_SETTLED)
    def payment_settled(self, request: PaymentSettled) -> None:
        if self._legacy is not None:
            self._legacy.payment_settled(request)
            return
        if self.state.instalments and request.instalment not in (
            0,
            self.state.paid_instalments + 1,
        ):
            return  # an earlier instalment's payment told again
        self.state.plans.setdefault(
            request.plan_id, FundingPlanAssigned(plan_id=request.plan_id, line_id=request.line_id)
        )
        if self.state.settled is None:
            self.state.settled = request
            if self.state.instalments:
                self.state.settled_instalment = self.state.paid_instalments + 1

    @workflow.signal(name=contracts.PAYMENT_FAILED)
    def payment_failed(self, request: PaymentFailed) -> None:
        if self._legacy is not None:
            self._legacy.payment_failed(request)
            return
        self.state.plans.setdefault(
            request.plan_id, FundingPlanAssigned(plan_id=request.plan_id, line_id=request.line_id)
        )
        self.state.failures.setdefault(request.plan_id, request)

    @workflow.query(name=contracts.GRANT_STATUS)
    def status(self) -> GrantStatus:
        if self._legacy is not None:
            return self._legacy.status()
        state = self.state
        current_plan = state.settled.plan_id if state.settled else ""
        if not current_plan:
            current_plan = next((p for p in state.plans if p not in state.failures), "")
        return GrantStatus(
            application_id=self.grant.application_id,
            stage=state.stage,
            reason=state.reason,
            award_amount_fen=state.amount_fen,
            review_round=state.round,
            pending_departments=state.pending_departments(),
            open_tasks={t.task_id: t.department for t in state.open_tasks()},
            plan_id=current_plan,
            supplement_count=state.supplement_count,
            failed_lines={
                plan_id: failure.line_id
                for plan_id, failure in state.failures.items()
                if plan_id != current_plan
            },
            instalments=(
                f"{state.paid_instalments}/{len(state.instalments)}" if state.instalments else ""
            ),
        )

    # ------------------------------------------------------------------------- repairs

    def _check_reopen(self, request: ReopenReview) -> ReviewTask:
        if self._legacy is not None:
            raise ApplicationError(
                "this grant runs an earlier generation's code; move it back to a stage instead",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        if self.state.stage != GrantStage.IN_REVIEW or self.state.creating_tasks:
            raise ApplicationError(
                f"the grant is {self.state.stage}, not in a review round",
                type=contracts.ERR_FAILED_PRECONDITION,
            )
        task = next(
            (t for t in self.state.current_tasks() if t.department == request.department), None
        )
        if task is None:
            raise ApplicationError(
                f"the {request.department} department does not review this round",
                type=contracts.ERR_NOT_FOUND,
            )
        return task

    @workflow.update(name=contracts.REOPEN_REVIEW)
    async def reopen_review(self, request: ReopenReview) -> ReviewTaskAck:
        """Ops re-opens one department's review of the current round: its task (decided or not)
        is superseded by a new one, and the round waits for that department again."""
        old = self._check_reopen(request)
        self.state.creating_tasks = True
        old.superseded = True
        self.state.reopened += 1
        if old.state in ACTIVE_TASK_STATES:
            old.state = TaskState.CANCELLED
            await self._call(
                GrantActivities.cancel_review_tasks_v3,
                TasksToCancel(
                    application_id=self.grant.application_id,
                    reason=request.reason,
                    task_ids=[old.task_id],
                ),
            )
        period = await self._period(
            self.grant.timing.review_seconds, self.grant.rule.review_working_days
        )
        task_id = await self._call(
            GrantActivities.create_review_task,
            CreateReviewTaskRequest(
                request_id=self._task_request_id(
                    old.round, old.department, f"-reopen{self.state.reopened}"
                ),
                application_id=self.grant.application_id,
                program_code=self.grant.rule.code,
                department=old.department,
                round=old.round,
                proposed_amount_fen=old.proposed_amount_fen,
                due_at=workflow.now() + period,
                applicant_name=self.grant.applicant_name,
                project_title=self.grant.project_title,
            ),
        )
        self.state.tasks[task_id] = ReviewTask(
            task_id, old.department, old.round, old.proposed_amount_fen
        )
        self.state.creating_tasks = False
        self._publish()
        return ReviewTaskAck(task_id=task_id, round=old.round, stage=self.state.stage)

    @reopen_review.validator
    def _validate_reopen(self, request: ReopenReview) -> None:
        self._check_reopen(request)
