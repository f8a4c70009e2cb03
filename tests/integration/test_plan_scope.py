"""Funding plans across the programs of one budget line, over real gRPC on SQLite and PostgreSQL:
chosen by filter (line, programs, at most N, noticed before) or by a list of application ids,
with totals per program; a draft edited (awards added and removed, the approvals it needs
computed again); every refusal naming its field and writing nothing; an award not yet noticed
(in its notice, or with an objection open) never taken."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text

from grantflow.v1 import applications_pb2
from grantflow.v1 import disbursement_pb2 as pb
from services.applications.catalogue import load_catalogue
from services.common.db import make_engine
from services.common.vocabulary import AuditAction, Department, Role
from tests.integration.test_disbursement_service import (
    LINE,
    LINED_PROGRAM,
    SEED_PROGRAM,
    Harness,
    credit_code,
    expect_error,
    service,
    violated_field,
)
from tests.integration.test_plan_approvals import audit_actions

YEAR = 2026
SISTER = "ON-A-LINE-B"  # a second program of LINE
ELSEWHERE, OTHER_LINE = "ELSEWHERE", "OTHER-LINE"
TABLES = ("funding_plan", "payment_line", "funding_plan_edit", "outbox_event", "audit_record")


async def publish(h: Harness, programs: dict[str, str]) -> None:
    assert h.applications is not None
    [seed] = [rule for rule in load_catalogue() if rule.code == SEED_PROGRAM]
    for code, line in programs.items():
        rule = type(seed)()
        rule.CopyFrom(seed)
        rule.code, rule.budget_line_code = code, line
        await h.applications.stub.PublishProgramVersion(
            applications_pb2.PublishProgramVersionRequest(rule=rule),
            metadata=h.applications.auth(Role.OPS),
        )


async def lines_and_programs(h: Harness) -> None:
    """LINE (LINED_PROGRAM and SISTER) and OTHER_LINE (ELSEWHERE), 2026, 10,000,000 fen each."""
    await publish(h, {SISTER: LINE, ELSEWHERE: OTHER_LINE})
    finance = h.as_("fin-budget", Role.FINANCE)
    for line in (LINE, OTHER_LINE):
        await finance.SetBudgetLine(
            pb.SetBudgetLineRequest(
                line_code=line,
                fiscal_year=YEAR,
                total_fen=10_000_000,
                name=f"{line} 预算科目",
                support_plan_code="TEST-PLAN",
                support_plan_name="测试扶持计划",
                department=Department.INDUSTRY.to_proto(),
                fund_code="TEST-FUND",
                fund_name="测试专项资金",
            )
        )


async def award(
    h: Harness, application_id: str, program: str, amount: int, *, noticed: bool = True
) -> None:
    """Reserved against the program's line; noticed (ConfirmAward) unless still in its notice."""
    n = int.from_bytes(application_id.encode()[-2:], "big") % 90_000
    await h.system.ReserveBudget(
        pb.ReserveBudgetRequest(
            application_id=application_id,
            program_code=program,
            amount_fen=amount,
            applicant_credit_code=credit_code(n),
            applicant_name=f"企业 {application_id}",
            fiscal_year=YEAR,
        )
    )
    if noticed:
        await h.system.ConfirmAward(pb.ConfirmAwardRequest(application_id=application_id))


def counts(h: Harness) -> dict[str, int]:
    engine = make_engine(h.url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
    finally:
        engine.dispose()


def request(**fields: object) -> pb.CreateFundingPlanRequest:
    values: dict[str, object] = {"request_id": f"plan-{uuid.uuid4().hex}", "title": "2026 第一批"}
    values.update(fields)
    return pb.CreateFundingPlanRequest(**values)  # type: ignore[arg-type]


def at(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def totals(plan: pb.FundingPlan) -> list[tuple[str, int, int]]:
    return [(p.program_code, p.line_count, p.amount_fen) for p in plan.programs]


async def state_of(h: Harness, application_id: str) -> tuple[int, str]:
    funds = await h.as_("ops-1", Role.OPS).GetApplicationFunds(
        pb.GetApplicationFundsRequest(application_id=application_id)
    )
    return funds.reservation.state, funds.reservation.plan_id


async def test_a_plan_by_filter_spans_the_programs_of_a_line_with_totals_per_program(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(database_url, tmp_path, kafka_bootstrap) as h:
        await lines_and_programs(h)
        # Noticed in this order: the oldest first when a plan takes at most N.
        await award(h, "a-1", LINED_PROGRAM, 100_000)
        await award(h, "b-1", SISTER, 50_000)
        await award(h, "a-2", LINED_PROGRAM, 200_000)
        await award(h, "e-1", ELSEWHERE, 70_000)
        # Still in its notice, or with an objection open: the grant has not confirmed it.
        await award(h, "a-3", LINED_PROGRAM, 30_000, noticed=False)
        maker = h.as_("fin-a", Role.FINANCE)

        before = counts(h)
        for bad, field, says in [
            (request(budget_line_code=LINE, program_codes=[ELSEWHERE]), "program_codes", ELSEWHERE),
            (request(program_codes=[LINED_PROGRAM, ELSEWHERE]), "program_codes", "different"),
            (request(program_codes=[LINED_PROGRAM, LINED_PROGRAM]), "program_codes", "once"),
            (request(program_codes=["NEVER-PUBLISHED"]), "program_codes", "never published"),
            (request(budget_line_code="NO-SUCH-LINE"), "budget_line_code", "no budget"),
            (request(program_code=LINED_PROGRAM, fiscal_year=YEAR), "fiscal_year", "budget_line"),
            (
                request(budget_line_code=LINE, awarded_before=at(datetime(2001, 1, 1, tzinfo=UTC))),
                "awarded_before",
                "no noticed award",
            ),
            (request(budget_line_code=LINE, max_lines=-1), "max_lines", "between"),
            (request(application_ids=["a-1"], max_lines=1), "max_lines", "application_ids"),
            (request(application_ids=["a-3"]), "application_ids", "a-3 is not yet a noticed"),
            (request(application_ids=["a-1", "a-1"]), "application_ids", "once"),
            (request(application_ids=["nobody"]), "application_ids", "no reservation"),
            (request(application_ids=["a-1", "e-1"]), "application_ids", "different budgets"),
            (
                request(budget_line_code=LINE, application_ids=["a-1", "e-1"]),
                "application_ids",
                "e-1 is of budget line OTHER-LINE",
            ),
            (
                request(program_codes=[SISTER], application_ids=["a-1"]),
                "application_ids",
                f"a-1 is of program {LINED_PROGRAM}",
            ),
            (request(), "program_code", ""),
        ]:
            error = await expect_error(
                maker.CreateFundingPlan(bad), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert violated_field(error) == field, (bad, error.details())
            assert says in (error.details() or ""), error.details()
        assert counts(h) == before  # nothing written
        assert await state_of(h, "a-1") == (pb.RESERVATION_STATE_AWARDED, "")

        # Both programs of the line, at most two awards: the two noticed first.
        first = await maker.CreateFundingPlan(
            request(budget_line_code=LINE, program_codes=[LINED_PROGRAM, SISTER], max_lines=2)
        )
        assert [line.application_id for line in first.lines] == ["a-1", "b-1"]
        assert [line.program_code for line in first.lines] == [LINED_PROGRAM, SISTER]
        assert (first.budget_line_code, first.program_code, first.total_fen) == (LINE, "", 150_000)
        assert totals(first) == [(LINED_PROGRAM, 1, 100_000), (SISTER, 1, 50_000)]
        [created] = h.outbox("FundingPlanCreated")
        assert list(created.funding_plan_created.program_codes) == [LINED_PROGRAM, SISTER]
        assert created.funding_plan_created.budget_line_code == LINE

        # The line alone: what is left of it (not a-3, not ELSEWHERE's award of another line).
        second = await maker.CreateFundingPlan(request(budget_line_code=LINE, fiscal_year=YEAR))
        assert [line.application_id for line in second.lines] == ["a-2"]
        assert (second.program_code, totals(second)) == (
            LINED_PROGRAM,
            [(LINED_PROGRAM, 1, 200_000)],
        )
        error = await expect_error(
            maker.CreateFundingPlan(request(budget_line_code=LINE)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violated_field(error) == "budget_line_code"
        # The first form (one program, nothing else) refuses as it always did.
        await expect_error(
            maker.CreateFundingPlan(request(program_code=LINED_PROGRAM)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert await state_of(h, "a-3") == (pb.RESERVATION_STATE_RESERVED, "")

        # Listing by program finds a plan of several programs; a page without lines keeps the
        # totals per program.
        finance = h.as_("fin-x", Role.FINANCE)
        listed = await finance.ListFundingPlans(
            pb.ListFundingPlansRequest(program_code=SISTER, page_size=10, without_lines=True)
        )
        assert [(p.plan_id, p.line_count, totals(p)) for p in listed.plans] == [
            (first.plan_id, 2, totals(first))
        ]
        # A replayed request answers the same plan; the same id with another filter is refused.
        replay = request(request_id="plan-elsewhere-0001", program_codes=[ELSEWHERE])
        made = await maker.CreateFundingPlan(replay)
        assert (made.budget_line_code, totals(made)) == (OTHER_LINE, [(ELSEWHERE, 1, 70_000)])
        assert await maker.CreateFundingPlan(replay) == made
        replay.max_lines = 5
        await expect_error(maker.CreateFundingPlan(replay), grpc.StatusCode.ALREADY_EXISTS)


async def test_a_plan_by_list_is_edited_while_draft_and_its_approvals_follow_its_total(
    database_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with service(
        database_url, tmp_path, kafka_bootstrap, plan_second_approval_fen=250_000
    ) as h:
        await lines_and_programs(h)
        await award(h, "a-1", LINED_PROGRAM, 100_000)
        await award(h, "a-2", LINED_PROGRAM, 200_000)
        await award(h, "b-1", SISTER, 50_000)
        await award(h, "e-1", ELSEWHERE, 70_000)
        await award(h, "a-3", LINED_PROGRAM, 30_000, noticed=False)
        maker, checker = h.as_("fin-a", Role.FINANCE), h.as_("fin-b", Role.FINANCE)

        plan = await maker.CreateFundingPlan(request(application_ids=["b-1", "a-1"]))
        assert [line.application_id for line in plan.lines] == ["a-1", "b-1"]
        assert (plan.total_fen, plan.second_approval_required) == (150_000, False)

        def edit(request_id: str = "", **fields: object) -> pb.EditFundingPlanRequest:
            values: dict[str, object] = {"request_id": request_id or f"edit-{uuid.uuid4().hex}"}
            values.update(plan_id=plan.plan_id, **fields)
            return pb.EditFundingPlanRequest(**values)  # type: ignore[arg-type]

        adding = edit("edit-add-a-2-0001", add_application_ids=["a-2"], reason="补充第二批")
        grown = await maker.EditFundingPlan(adding)
        assert [line.application_id for line in grown.lines] == ["a-1", "a-2", "b-1"]
        assert (grown.total_fen, grown.second_approval_required) == (350_000, True)
        assert totals(grown) == [(LINED_PROGRAM, 2, 300_000), (SISTER, 1, 50_000)]
        assert await state_of(h, "a-2") == (pb.RESERVATION_STATE_IN_PLAN, plan.plan_id)
        assert await maker.EditFundingPlan(adding) == grown  # a retry edits nothing more
        await expect_error(
            maker.EditFundingPlan(edit("edit-add-a-2-0001", add_application_ids=["e-1"])),
            grpc.StatusCode.ALREADY_EXISTS,
        )

        before = counts(h)
        for bad, field, says in [
            (edit(add_application_ids=["a-3"]), "add_application_ids", "a-3 is not yet a noticed"),
            (edit(add_application_ids=["a-1"]), "add_application_ids", "in this plan already"),
            (edit(add_application_ids=["e-1"]), "add_application_ids", "budget line OTHER-LINE"),
            (edit(add_application_ids=["nobody"]), "add_application_ids", "no reservation"),
            (edit(remove_application_ids=["e-1"]), "remove_application_ids", "not in this plan"),
            (
                edit(add_application_ids=["e-1"], remove_application_ids=["e-1"]),
                "remove_application_ids",
                "both",
            ),
            (
                edit(remove_application_ids=["a-1", "a-2", "b-1"]),
                "remove_application_ids",
                "cancel it instead",
            ),
            (edit(), "add_application_ids", "name an award"),
            (edit(request_id="x"), "request_id", ""),
        ]:
            error = await expect_error(maker.EditFundingPlan(bad), grpc.StatusCode.INVALID_ARGUMENT)
            assert violated_field(error) == field, (bad, error.details())
            assert says in (error.details() or ""), error.details()
        # Another plan cannot take an award this draft holds.
        error = await expect_error(
            maker.CreateFundingPlan(request(application_ids=["a-2"])),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert f"a-2 is in funding plan {plan.plan_id}" in (error.details() or "")
        await expect_error(
            h.as_("ops-1", Role.OPS).EditFundingPlan(edit(add_application_ids=["e-1"])),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert counts(h) == before

        # Removed awards wait for a plan again, and the plan is back under the level.
        shrunk = await maker.EditFundingPlan(edit(remove_application_ids=["a-2", "a-1"]))
        assert [line.application_id for line in shrunk.lines] == ["b-1"]
        assert (shrunk.total_fen, shrunk.second_approval_required, shrunk.program_code) == (
            50_000,
            False,
            SISTER,
        )
        for application_id in ("a-1", "a-2"):
            assert await state_of(h, application_id) == (pb.RESERVATION_STATE_AWARDED, "")
        later = await maker.CreateFundingPlan(request(program_codes=[LINED_PROGRAM]))
        assert [line.application_id for line in later.lines] == ["a-1", "a-2"]
        assert [a for a, _, _ in audit_actions(h, plan.plan_id)] == [
            AuditAction.PLAN_CREATED,
            AuditAction.PLAN_EDITED,
            AuditAction.PLAN_EDITED,
        ]
        assert (AuditAction.PLAN_EDITED, "fin-a", "补充第二批") in audit_actions(h, plan.plan_id)

        # Once approved (even once of two) or cancelled, a plan is no longer edited.
        approved = await checker.ApproveFundingPlan(
            pb.ApproveFundingPlanRequest(plan_id=plan.plan_id)
        )
        assert approved.state == pb.PLAN_STATE_APPROVED
        await expect_error(
            maker.EditFundingPlan(edit(add_application_ids=["e-1"])),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        first_of_two = await checker.ApproveFundingPlan(
            pb.ApproveFundingPlanRequest(plan_id=later.plan_id)
        )
        assert first_of_two.state == pb.PLAN_STATE_AWAITING_SECOND_APPROVAL

        def edit_later() -> pb.EditFundingPlanRequest:
            return pb.EditFundingPlanRequest(
                request_id=f"edit-{uuid.uuid4().hex}",
                plan_id=later.plan_id,
                remove_application_ids=["a-2"],
            )

        error = await expect_error(
            maker.EditFundingPlan(edit_later()), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert "only a draft" in (error.details() or "")
        await maker.CancelFundingPlan(
            pb.CancelFundingPlanRequest(plan_id=later.plan_id, reason="重新编制")
        )
        await expect_error(maker.EditFundingPlan(edit_later()), grpc.StatusCode.FAILED_PRECONDITION)
        await expect_error(
            maker.EditFundingPlan(
                pb.EditFundingPlanRequest(
                    request_id=f"edit-{uuid.uuid4().hex}",
                    plan_id=uuid.uuid4().hex,
                    add_application_ids=["a-2"],
                )
            ),
            grpc.StatusCode.NOT_FOUND,
        )
