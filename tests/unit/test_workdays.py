"""Working days on the Chinese public-holiday calendar, adjusted working weekends included, and
Monday-Friday for a year without data (the counting rules of services/common/workdays.py over
the years chinese-calendar knows, the seed of the service's calendar)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.common.workdays import SHANGHAI, YearDays, add_working_days, library_years

YEARS = library_years()


def test_holidays_and_adjusted_weekends_of_2026() -> None:
    year = YEARS[2026]
    assert not year.is_working_day(date(2026, 10, 1))  # National Day
    assert year.holidays[date(2026, 10, 1)] == "国庆节"
    assert not year.is_working_day(date(2026, 10, 7))
    assert year.is_working_day(date(2026, 10, 10))  # a Saturday worked in exchange (调休)
    assert not year.is_working_day(date(2026, 11, 28))  # an ordinary Saturday
    assert year.is_working_day(date(2026, 11, 27))


def test_a_notice_of_seven_working_days_skips_weekends() -> None:
    # Published Friday 2026-11-20 (Shanghai): Mon 23 ... Tue Dec 1 is the 7th working day.
    end = add_working_days(datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI), 7, YEARS.get)
    assert end.end == datetime(2026, 12, 1, 23, 59, 59, tzinfo=SHANGHAI)
    assert end.fallback_years == ()


def test_a_notice_across_national_day_is_longer_in_calendar_days() -> None:
    end = add_working_days(datetime(2026, 9, 28, 9, 0, tzinfo=SHANGHAI), 7, YEARS.get)
    assert end.end.date() == date(2026, 10, 13)  # Golden Week does not count; Oct 10 does


def test_the_start_is_read_in_shanghai_time() -> None:
    # 2026-11-26 17:00 UTC is already Friday 27 in Shanghai.
    end = add_working_days(datetime(2026, 11, 26, 17, 0, tzinfo=UTC), 1, YEARS.get)
    assert end.end.date() == date(2026, 11, 30)


def test_a_year_without_data_counts_weekdays_and_says_so() -> None:
    # Fri 2026-12-25 + 7 working days: Dec 28-31, then 2027 (no data) Jan 1 (a Friday, counted
    # as a working day for want of the holiday), Jan 4, Jan 5.
    end = add_working_days(datetime(2026, 12, 25, 9, 0, tzinfo=SHANGHAI), 7, YEARS.get)
    assert end.end.date() == date(2027, 1, 5)
    assert end.fallback_years == (2027,)


def test_data_for_a_year_is_used_once_given() -> None:
    known = dict(YEARS)
    known[2027] = YearDays(2027, holidays={date(2027, 1, 1): "元旦"})
    end = add_working_days(datetime(2026, 12, 25, 9, 0, tzinfo=SHANGHAI), 7, known.get)
    assert end.end.date() == date(2027, 1, 6)
    assert end.fallback_years == ()
