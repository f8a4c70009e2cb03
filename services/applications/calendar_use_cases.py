"""The working-day calendar's use cases: years set by an administrator (audited), seeded from
the chinese-calendar package for the years it knows, and deadlines counted over them.

A deadline that reaches into a year without data is counted Monday to Friday: refusing it would
stop every grant whose period crosses New Year until someone types in the State Council's
notice. The fallback is loud instead: the answer names the years, the Prometheus counter
grantflow_calendar_fallback_total{year} goes up, a warning is logged and the year is recorded,
so `grantflow ops stack status` lists it until the year is set. Deadlines already counted that
way keep their Monday-Friday end (their timers run in the grants).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import structlog
from sqlmodel import Session

from services.applications import calendar_store as store
from services.applications.calendar_commands import SetCalendarYear, WorkingDaysDeadline
from services.applications.calendar_store import CalendarFallbackRow, CalendarYearRow
from services.common import metrics
from services.common.audit import SYSTEM_ACTOR
from services.common.db import now_utc
from services.common.errors import NotFound
from services.common.unit_of_work import Transactions, UnitOfWork
from services.common.vocabulary import AuditAction
from services.common.workdays import (
    Deadline,
    YearDays,
    add_working_days,
    library_source,
    library_years,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoredYear:
    row: CalendarYearRow
    days: YearDays


@dataclass(frozen=True)
class CalendarStatus:
    years: list[int]
    missing: list[CalendarFallbackRow]


def content_hash(days: YearDays, source: str) -> str:
    content = {
        "holidays": {d.isoformat(): n for d, n in sorted(days.holidays.items())},
        "workdays": {d.isoformat(): n for d, n in sorted(days.workdays.items())},
        "source": source,
    }
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _summary(days: YearDays | None) -> dict[str, list[str]]:
    if days is None:
        return {"holidays": [], "workdays": []}
    return {
        "holidays": [d.isoformat() for d in sorted(days.holidays)],
        "workdays": [d.isoformat() for d in sorted(days.workdays)],
    }


class Calendar:
    def __init__(self, transactions: Transactions) -> None:
        self.transactions = transactions

    async def set_year(self, command: SetCalendarYear) -> StoredYear:
        days = command.days
        digest = content_hash(days, command.source)

        def work(unit: UnitOfWork) -> StoredYear:
            session = unit.session
            row = store.year_row(session, days.year, for_update=True)
            if row is not None and row.content_hash == digest:
                return StoredYear(row, store.year_days(session, days.year) or days)
            before = store.year_days(session, days.year)
            now = now_utc()
            if row is None:
                row = CalendarYearRow(
                    year=days.year, source="", set_by="", set_at=now, content_hash=""
                )
            row.source, row.set_by = command.source, command.caller.subject
            row.set_at, row.content_hash = now, digest
            session.add(row)
            store.replace_days(session, days)
            unit.audit(
                AuditAction.CALENDAR_YEAR_SET,
                f"calendar-{days.year}",
                command.caller,
                command.source,
                {"year": days.year, "before": _summary(before), "after": _summary(days)},
            )
            return StoredYear(row, days)

        return await self.transactions.write(work)

    async def year(self, year: int) -> StoredYear:
        def work(session: Session) -> StoredYear:
            row = store.year_row(session, year)
            days = store.year_days(session, year)
            if row is None or days is None:
                raise NotFound(f"calendar year {year} has no data (日历中没有 {year} 年的数据)")
            return StoredYear(row, days)

        return await self.transactions.read(work)

    async def deadline(self, command: WorkingDaysDeadline) -> Deadline:
        def work(session: Session) -> Deadline:
            return add_working_days(
                command.start, command.working_days, lambda y: store.year_days(session, y)
            )

        answer = await self.transactions.read(work)
        if answer.fallback_years:
            await self._raise_fallback(answer)
        return answer

    async def _raise_fallback(self, answer: Deadline) -> None:
        for year in answer.fallback_years:
            metrics.CALENDAR_FALLBACK.labels(str(year)).inc()
            log.warning(
                "working-day calendar has no data for this year; counted Monday-Friday "
                "(set it with `grantflow calendar set-year`)",
                year=year,
                deadline=answer.end.isoformat(),
            )

        def work(unit: UnitOfWork) -> None:
            at = now_utc()
            for year in answer.fallback_years:
                store.note_fallback(unit.session, year, at)

        await self.transactions.write(work)

    async def status(self) -> CalendarStatus:
        def work(session: Session) -> CalendarStatus:
            return CalendarStatus(store.known_years(session), store.missing_years(session))

        return await self.transactions.read(work)

    async def seed(self) -> list[int]:
        """Stores each year the chinese-calendar package knows and the table lacks (a year an
        administrator set is never overwritten); answers the years added. Idempotent."""
        source = library_source()
        years = library_years()

        def work(unit: UnitOfWork) -> list[int]:
            session = unit.session
            have = set(store.known_years(session))
            added = []
            now = now_utc()
            for year, days in sorted(years.items()):
                if year in have:
                    continue
                session.add(
                    CalendarYearRow(
                        year=year,
                        source=source,
                        set_by=SYSTEM_ACTOR.subject,
                        set_at=now,
                        content_hash=content_hash(days, source),
                    )
                )
                store.replace_days(session, days)
                added.append(year)
            return added

        return await self.transactions.write(work)
