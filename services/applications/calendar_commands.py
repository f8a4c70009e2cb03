"""Commands of the working-day calendar (calendar_use_cases.py), checked by calendar_api.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.auth import Principal
from services.common.workdays import YearDays


@dataclass(frozen=True)
class SetCalendarYear:
    caller: Principal
    days: YearDays  # every date in days.year; no day both a holiday and a working day
    source: str


@dataclass(frozen=True)
class WorkingDaysDeadline:
    start: datetime
    working_days: int
