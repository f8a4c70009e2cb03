"""Tables of the working-day calendar (applications database): the years with data, their
holidays and adjusted working days, and the years deadlines fell into without data (the
fallback alert operators see)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, Session, SQLModel, col, delete, select

from services.common.workdays import YearDays

HOLIDAY = "holiday"
WORKDAY = "workday"  # an adjusted working day (调休)


class CalendarYearRow(SQLModel, table=True):
    __tablename__ = "calendar_year"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    source: str = Field(max_length=500)
    set_by: str = Field(max_length=128)
    set_at: datetime
    content_hash: str = Field(max_length=64)  # the days and source, to recognise a repeat


class CalendarDayRow(SQLModel, table=True):
    __tablename__ = "calendar_day"

    day: date = Field(primary_key=True)
    year: int = Field(index=True)
    kind: str = Field(max_length=16)  # HOLIDAY or WORKDAY
    name: str = Field(default="", max_length=100)


class CalendarFallbackRow(SQLModel, table=True):
    """A year some deadline was counted in without data (Monday-Friday assumed)."""

    __tablename__ = "calendar_fallback"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    deadlines: int = Field(sa_column=Column(BigInteger, nullable=False))
    first_at: datetime
    last_at: datetime


def year_row(session: Session, year: int, *, for_update: bool = False) -> CalendarYearRow | None:
    query = select(CalendarYearRow).where(CalendarYearRow.year == year)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()


def year_days(session: Session, year: int) -> YearDays | None:
    if year_row(session, year) is None:
        return None
    days = YearDays(year)
    for row in session.exec(select(CalendarDayRow).where(CalendarDayRow.year == year)).all():
        (days.holidays if row.kind == HOLIDAY else days.workdays)[row.day] = row.name
    return days


def replace_days(session: Session, days: YearDays) -> None:
    session.exec(delete(CalendarDayRow).where(col(CalendarDayRow.year) == days.year))  # type: ignore[call-overload]
    for kind, table in ((HOLIDAY, days.holidays), (WORKDAY, days.workdays)):
        for day, name in sorted(table.items()):
            session.add(CalendarDayRow(day=day, year=days.year, kind=kind, name=name))


def known_years(session: Session) -> list[int]:
    return list(session.exec(select(CalendarYearRow.year).order_by(col(CalendarYearRow.year))))


def note_fallback(session: Session, year: int, at: datetime) -> None:
    row = session.get(CalendarFallbackRow, year)
    if row is None:
        session.add(CalendarFallbackRow(year=year, deadlines=1, first_at=at, last_at=at))
    else:
        row.deadlines += 1
        row.last_at = at
        session.add(row)


def missing_years(session: Session) -> list[CalendarFallbackRow]:
    """Fallback years that still have no data."""
    known = select(CalendarYearRow.year)
    return list(
        session.exec(
            select(CalendarFallbackRow)
            .where(col(CalendarFallbackRow.year).not_in(known))
            .order_by(col(CalendarFallbackRow.year))
        ).all()
    )
