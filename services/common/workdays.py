"""Working days in Asia/Shanghai: the counting rules over a calendar given as data.

A year's calendar is its public holidays and its adjusted working days (调休, weekend days worked
in exchange). The applications service keeps the years in its database (services/applications/
calendar_*.py) and answers deadlines over gRPC; this module only counts, so the same rules serve
the service and the tests. A year without data counts Monday to Friday, and the answer names it
(`Deadline.fallback_years`) so that the caller can raise the alarm.

`library_years` reads what the maintained chinese-calendar package knows, the seed of the
calendar tables; nothing else reads the package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class YearDays:
    """One year's exceptions to Monday-Friday, with the names they were published under."""

    year: int
    holidays: dict[date, str] = field(default_factory=dict)
    workdays: dict[date, str] = field(default_factory=dict)  # adjusted working days

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5


# year -> its calendar, or None when there is no data for it
YearLookup = Callable[[int], YearDays | None]


@dataclass(frozen=True)
class Deadline:
    end: datetime  # 23:59:59 Shanghai time of the last working day
    fallback_years: tuple[int, ...]  # years counted Monday-Friday for want of data


def add_working_days(start: datetime, days: int, years: YearLookup) -> Deadline:
    """The end of the `days`-th working day after start's local date (23:59:59 Shanghai time).

    A notice published on a Friday for 7 working days runs to the end of the 7th working day
    after it; the day of publication itself does not count.
    """
    if days < 0:
        raise ValueError("days must not be negative")
    day = start.astimezone(SHANGHAI).date()
    known: dict[int, YearDays | None] = {}
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if day.year not in known:
            known[day.year] = years(day.year)
        calendar = known[day.year]
        working = calendar.is_working_day(day) if calendar else day.weekday() < 5
        if working:
            counted += 1
    missing = tuple(sorted(year for year, calendar in known.items() if calendar is None))
    return Deadline(datetime.combine(day, time(23, 59, 59), tzinfo=SHANGHAI), missing)


LIBRARY_SOURCE = "chinese-calendar"


def library_source() -> str:
    from importlib.metadata import version

    return f"{LIBRARY_SOURCE} {version('chinese-calendar')}"


def library_years() -> dict[int, YearDays]:
    """Every year the chinese-calendar package knows, holidays named in Chinese."""
    from chinese_calendar import constants

    chinese = {holiday.value: holiday.chinese for holiday in constants.Holiday}
    years: dict[int, YearDays] = {}
    for table, attribute in ((constants.holidays, "holidays"), (constants.workdays, "workdays")):
        for day, name in table.items():
            year = years.setdefault(day.year, YearDays(day.year))
            getattr(year, attribute)[day] = chinese.get(name, name)
    return years
