"""The audit trail's hash chain, on SQLite and PostgreSQL, through the real units of work: records
append in the transaction of their change, and `verify` finds an edited, deleted, inserted or
reordered record by its sequence; appends from many threads at once never fork the chain."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from services.common import audit
from services.common.auth import Principal
from services.common.db import Database, migrate
from services.common.unit_of_work import Transactions, UnitOfWork
from services.common.vocabulary import AuditAction, AuditBreak, Role
from services.disbursement.commands import ExecuteLine, FailLine, SetBudget
from services.disbursement.use_cases import Disbursement
from services.review.server import MIGRATIONS
from tests.unit.test_money_rules import (  # noqa: F401 - the fixture is used by name
    PROGRAM,
    Gateway,
    awarded_plan,
    fresh_books,
    migrated_template,
)

REVIEWER = Principal(subject="li", role=Role.REVIEWER)


@pytest.fixture
def trail(database_url: str) -> Iterator[Transactions]:
    migrate(database_url, MIGRATIONS)
    database = Database(database_url)
    try:
        yield Transactions(database, service="review")
    finally:
        database.dispose()


@pytest.fixture
def migrated_books(
    migrated_template: Path,  # noqa: F811
    tmp_path: Path,
) -> Iterator[tuple[Disbursement, Database, Gateway]]:
    disbursement, database, gateway = fresh_books(migrated_template, tmp_path)
    yield disbursement, database, gateway
    database.dispose()


def record(trail: Transactions, count: int = 1, **kwargs: Any) -> None:
    def work(unit: UnitOfWork) -> None:
        for number in range(count):
            unit.audit(
                AuditAction.REVIEW_DECIDED,
                kwargs.get("subject", f"app-{number}"),
                REVIEWER,
                "符合申报条件",
                {"decision": "approve", "approved_amount_fen": 200_000 + number},
                key=kwargs.get("key"),
            )

    trail.write_now(work)


def records(trail: Transactions) -> list[audit.AuditRecord]:
    return trail.read_now(lambda session: audit.records_about(session, "", limit=10_000))


def verify(trail: Transactions) -> audit.ChainReport:
    return trail.read_now(lambda session: audit.verify(session, "review"))


def tamper(trail: Transactions, *statements: str) -> None:
    """Changes the database behind the service's back, as someone with its file or password."""

    def work(session: Session) -> None:
        for statement in statements:
            session.execute(text(statement))

    trail.database.transact(work)


def test_records_chain_from_the_genesis_hash_and_verify_intact(trail: Transactions) -> None:
    assert verify(trail).intact and verify(trail).last_sequence == 0
    record(trail, 3)
    record(trail, 2)
    rows = records(trail)
    assert [row.sequence for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0].previous_hash == audit.GENESIS_HASH
    assert all(row.previous_hash == before.hash for before, row in pairwise(rows))
    assert rows[0].actor == "li" and rows[0].actor_role == "reviewer"
    assert rows[0].service == "review" and rows[0].reason == "符合申报条件"
    report = verify(trail)
    assert report.intact and report.records_checked == 5
    assert (report.last_sequence, report.last_hash) == (5, rows[-1].hash)


def test_a_keyed_act_is_recorded_once(trail: Transactions) -> None:
    record(trail, key="task-1")
    record(trail, key="task-1")
    assert len(records(trail)) == 1


def test_a_record_commits_only_with_its_change(trail: Transactions) -> None:
    record(trail)

    def failing(unit: UnitOfWork) -> None:
        unit.audit(AuditAction.PLAN_APPROVED, "plan-1", REVIEWER)
        raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        trail.write_now(failing)
    record(trail)
    assert [row.sequence for row in records(trail)] == [1, 2]
    assert verify(trail).intact


def test_an_edited_record_is_found(trail: Transactions) -> None:
    record(trail, 5)
    tamper(trail, "UPDATE audit_record SET reason = '不符合' WHERE sequence = 3")
    report = verify(trail)
    assert report.first_break is not None and not report.intact
    assert (report.first_break.sequence, report.first_break.kind) == (3, AuditBreak.EDITED)


def test_an_edited_amount_in_the_details_is_found(trail: Transactions) -> None:
    record(trail, 4)
    tamper(
        trail,
        "UPDATE audit_record SET details_json = replace(details_json, '200001', '900001') "
        "WHERE sequence = 2",
    )
    broken = verify(trail).first_break
    assert broken is not None and (broken.sequence, broken.kind) == (2, AuditBreak.EDITED)


def test_a_deleted_record_is_found(trail: Transactions) -> None:
    record(trail, 5)
    tamper(trail, "DELETE FROM audit_record WHERE sequence = 3")
    broken = verify(trail).first_break
    assert broken is not None and (broken.sequence, broken.kind) == (3, AuditBreak.DELETED)


def test_deleting_the_newest_records_is_found(trail: Transactions) -> None:
    record(trail, 5)
    tamper(trail, "DELETE FROM audit_record WHERE sequence >= 4")
    broken = verify(trail).first_break
    assert broken is not None and (broken.sequence, broken.kind) == (4, AuditBreak.DELETED)


def test_reordered_records_are_found(trail: Transactions) -> None:
    record(trail, 5)
    tamper(
        trail,
        "UPDATE audit_record SET sequence = -2 WHERE sequence = 2",
        "UPDATE audit_record SET sequence = 2 WHERE sequence = 3",
        "UPDATE audit_record SET sequence = 3 WHERE sequence = -2",
    )
    broken = verify(trail).first_break
    assert broken is not None and (broken.sequence, broken.kind) == (2, AuditBreak.INSERTED)


def test_a_forged_record_with_a_correct_hash_is_found(trail: Transactions) -> None:
    record(trail, 5)

    def forge(session: Session) -> None:
        row = session.exec(select(audit.AuditRecord).where(col(audit.AuditRecord.sequence) == 3))
        forged = row.one()
        forged.reason = "伪造"
        forged.hash = forged.computed_hash()  # the forger recomputes its hash
        session.add(forged)

    trail.database.transact(forge)
    broken = verify(trail).first_break
    # Record 3 is consistent in itself; record 4 no longer follows it.
    assert broken is not None and (broken.sequence, broken.kind) == (4, AuditBreak.INSERTED)


def test_a_record_appended_behind_the_chains_back_is_found(trail: Transactions) -> None:
    record(trail, 2)
    tamper(
        trail,
        "INSERT INTO audit_record (sequence, request_id, service, action, subject, actor, "
        "actor_role, reason, details_json, recorded_at, previous_hash, hash) "
        "SELECT 3, 'forged-1', service, action, subject, actor, actor_role, reason, "
        "details_json, recorded_at, hash, hash FROM audit_record WHERE sequence = 2",
    )
    broken = verify(trail).first_break
    assert broken is not None and (broken.sequence, broken.kind) == (3, AuditBreak.INSERTED)


def test_appends_from_many_threads_at_once_never_fork_the_chain(trail: Transactions) -> None:
    # Each thread runs its own transactions, beside the others (not queued by the service's
    # writer thread): the chain head's lock alone keeps the chain one line.
    threads, per_thread = 8, 15
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def appender(number: int) -> None:
        try:
            start.wait()
            for index in range(per_thread):
                record(trail, subject=f"app-{number}-{index}")
        except BaseException as error:
            failures.append(error)

    workers = [threading.Thread(target=appender, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    rows = records(trail)
    assert [row.sequence for row in rows] == list(range(1, threads * per_thread + 1))
    assert len({row.subject for row in rows}) == threads * per_thread
    report = verify(trail)
    assert report.intact and report.records_checked == threads * per_thread


async def test_the_money_acts_are_recorded_with_maker_and_checker(
    migrated_books: tuple[Disbursement, Database, Gateway],
) -> None:
    disbursement, database, _ = migrated_books
    await disbursement.set_budget(SetBudget(PROGRAM, 1_000_000, "fin-a"))
    await disbursement.set_budget(SetBudget(PROGRAM, 1_200_000, "fin-a"))
    plan = await awarded_plan(disbursement, [300_000, 200_000])
    lines = {line.application_id: line for line in plan.lines}
    await disbursement.execute_line(ExecuteLine(plan.plan.plan_id, lines["app-1"].line_id))
    await disbursement.execute_line(ExecuteLine(plan.plan.plan_id, lines["app-1"].line_id))
    await disbursement.fail_line(FailLine(plan.plan.plan_id, lines["app-2"].line_id, "账户冻结"))

    def about(subject: str) -> list[tuple[str, str, str]]:
        rows = database.read(lambda session: audit.records_about(session, subject))
        return [(row.action, row.actor, row.actor_role) for row in rows]

    assert about(PROGRAM) == [
        ("budget.set", "fin-a", "finance"),
        ("budget.changed", "fin-a", "finance"),
    ]
    assert about(plan.plan.plan_id) == [
        ("plan.created", "fin-a", "finance"),
        ("plan.approved", "fin-b", "finance"),
    ]
    # Called outside any RPC, Grantflow's own acts are the system's.
    assert [action for action, _, _ in about("app-1")] == [
        "reservation.made",
        "award.confirmed",
        "payment.settled",  # once, however often the line is executed
    ]
    failed = database.read(lambda session: audit.records_about(session, "app-2"))[-1]
    assert (failed.action, failed.reason) == ("payment.failed", "账户冻结")
    assert json.loads(failed.details_json)["plan_id"] == plan.plan.plan_id
    assert database.read(lambda session: audit.verify(session, "disbursement")).intact
