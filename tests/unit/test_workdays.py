"""Working days on the Chinese public-holiday calendar, adjusted working weekends included."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.common.workdays import SHANGHAI, add_working_days, is_working_day


def test_holidays_and_adjusted_weekends_of_2026() -> None:
    assert not is_working_day(date(2026, 10, 1))  # National Day
    assert not is_working_day(date(2026, 10, 7))
    assert is_working_day(date(2026, 10, 10))  # a Saturday worked in exchange (调休)
    assert not is_working_day(date(2026, 11, 28))  # an ordinary Saturday
    assert is_working_day(date(2026, 11, 27))


def test_a_notice_of_seven_working_days_skips_weekends() -> None:
    # Published Friday 2026-11-20 (Shanghai): Mon 23 ... Tue Dec 1 is the 7th working day.
    end = add_working_days(datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI), 7)
    assert end == datetime(2026, 12, 1, 23, 59, 59, tzinfo=SHANGHAI)


def test_a_notice_across_national_day_is_longer_in_calendar_days() -> None:
    end = add_working_days(datetime(2026, 9, 28, 9, 0, tzinfo=SHANGHAI), 7)
    assert end.date() == date(2026, 10, 13)  # Golden Week does not count; Oct 10 does


def test_the_start_is_read_in_shanghai_time() -> None:
    # 2026-11-26 17:00 UTC is already Friday 27 in Shanghai.
    end = add_working_days(datetime(2026, 11, 26, 17, 0, tzinfo=UTC), 1)
    assert end.date() == date(2026, 11, 30)


def test_years_without_published_calendar_fall_back_to_weekdays() -> None:
    assert is_working_day(date(2031, 3, 3))  # a Monday
    assert not is_working_day(date(2031, 3, 2))  # a Sunday
