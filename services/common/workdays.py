"""Working days in Asia/Shanghai by the Chinese public-holiday calendar, adjusted weekends (调休)
included, from the maintained chinese-calendar package.

Years the package does not know yet (the State Council publishes each year's calendar in the
autumn before) fall back to Monday-Friday, and say so in the log.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import structlog

log = structlog.get_logger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
_warned_years: set[int] = set()


def is_working_day(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        if day.year not in _warned_years:
            _warned_years.add(day.year)
            log.warning(
                "holiday calendar has no data for this year; using Monday-Friday", year=day.year
            )
        return day.weekday() < 5


def add_working_days(start: datetime, days: int) -> datetime:
    """The end of the `days`-th working day after start's local date (23:59:59 Shanghai time).

    A notice published on a Friday for 7 working days runs to the end of the 7th working day
    after it; the day of publication itself does not count.
    """
    if days < 0:
        raise ValueError("days must not be negative")
    day = start.astimezone(SHANGHAI).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(day):
            counted += 1
    return datetime.combine(day, time(23, 59, 59), tzinfo=SHANGHAI)
