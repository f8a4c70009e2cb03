"""The working-day calendar as data, over real gRPC on SQLite and PostgreSQL: seeded from
chinese-calendar, a year added by an administrator through the RPC and used, the Monday-Friday
fallback for a year without data and its alert (metric, ops stack status), and the worker's
deadline activity asking the service."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY
from temporalio.testing import ActivityEnvironment

from grantflow.stack_health import StackStatus, calendar_status
from grantflow.v1 import calendar_pb2, calendar_pb2_grpc
from services.common.clients import ServiceClients, system_token
from services.common.db import to_timestamp
from services.common.vocabulary import Role
from services.common.workdays import SHANGHAI
from tests.integration._applications_server import ApplicationsHarness, applications_service
from workflows.activities import GrantActivities
from workflows.models import DeadlineRequest
from workflows.registry import LocalEnterpriseRegistry


@pytest.fixture
async def service(database_url: str, tmp_path: Path) -> AsyncIterator[ApplicationsHarness]:
    async with applications_service(database_url, tmp_path, seed=False) as harness:
        yield harness


def calendar(harness: ApplicationsHarness) -> calendar_pb2_grpc.CalendarServiceStub:
    channel = grpc.aio.insecure_channel(harness.settings.applications_address)
    return calendar_pb2_grpc.CalendarServiceStub(channel)


async def deadline(
    harness: ApplicationsHarness, start: datetime, days: int
) -> calendar_pb2.WorkingDaysDeadlineResponse:
    answer: calendar_pb2.WorkingDaysDeadlineResponse = await calendar(harness).WorkingDaysDeadline(
        calendar_pb2.WorkingDaysDeadlineRequest(start=to_timestamp(start), working_days=days),
        metadata=harness.auth(Role.SYSTEM),
    )
    return answer


def local_day(stamp: object) -> date:
    return stamp.ToDatetime(tzinfo=UTC).astimezone(SHANGHAI).date()  # type: ignore[attr-defined]


def fallbacks(year: int) -> float:
    return REGISTRY.get_sample_value("grantflow_calendar_fallback_total", {"year": str(year)}) or 0


async def test_the_seeded_calendar_knows_national_day_and_the_adjusted_weekends(
    service: ApplicationsHarness,
) -> None:
    year = await calendar(service).GetCalendarYear(
        calendar_pb2.GetCalendarYearRequest(year=2026),
        metadata=service.auth(Role.APPLICANT, enterprise="91440300MA5000000G"),
    )
    holidays = {d.date: d.name for d in year.holidays}
    assert {f"2026-10-0{n}" for n in range(1, 8)} <= set(holidays)
    assert holidays["2026-10-01"] == "国庆节"
    assert {"2026-09-20", "2026-10-10"} <= {d.date for d in year.adjusted_working_days}
    assert year.source.startswith("chinese-calendar")

    # A 7-working-day notice published Monday 2026-09-28 runs over Golden Week: Sep 29, 30,
    # Oct 8, 9, Sat 10 (worked in exchange), 12, 13.
    notice = await deadline(service, datetime(2026, 9, 28, 10, 0, tzinfo=SHANGHAI), 7)
    assert local_day(notice.deadline) == date(2026, 10, 13)
    assert list(notice.fallback_years) == []
    # The adjusted working Sunday 2026-09-20 counts: one working day after Friday Sep 18.
    sunday = await deadline(service, datetime(2026, 9, 18, 16, 0, tzinfo=SHANGHAI), 1)
    assert local_day(sunday.deadline) == date(2026, 9, 20)


async def test_a_year_without_data_falls_back_and_alerts_until_an_administrator_adds_it(
    service: ApplicationsHarness,
) -> None:
    stub = calendar(service)
    ops = service.auth(Role.OPS, subject="ops-li")
    before = fallbacks(2027)

    # Fri 2026-12-25 + 7: Dec 28-31, then 2027 without data: Fri Jan 1 counts, Jan 4, Jan 5.
    counted = await deadline(service, datetime(2026, 12, 25, 9, 0, tzinfo=SHANGHAI), 7)
    assert local_day(counted.deadline) == date(2027, 1, 5)
    assert list(counted.fallback_years) == [2027]
    assert fallbacks(2027) == before + 1

    status = StackStatus()
    async with ServiceClients(service.settings, system_token(service.settings)) as clients:
        await calendar_status(clients.channels["applications"], status)
    assert [gap.year for gap in status.calendar_missing] == [2027]
    [line] = status.calendar_lines()
    assert "缺少 2027 年" in line and "grantflow calendar set-year 2027" in line

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetCalendarYear(calendar_pb2.GetCalendarYearRequest(year=2027), metadata=ops)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    # The State Council's notice for 2027 arrives; an administrator adds it.
    request = calendar_pb2.SetCalendarYearRequest(
        year=2027,
        holidays=[calendar_pb2.CalendarDay(date="2027-01-01", name="元旦")],
        adjusted_working_days=[calendar_pb2.CalendarDay(date="2027-02-06", name="春节")],
        source="国务院办公厅关于2027年部分节假日安排的通知",
    )
    stored = await stub.SetCalendarYear(request, metadata=ops)
    assert stored.set_by == "ops-li" and len(stored.holidays) == 1
    again = await stub.SetCalendarYear(request, metadata=ops)  # the same content: no change
    assert again.set_at == stored.set_at
    assert service.count("audit_record", "action = 'calendar.year_set'") == 1

    counted = await deadline(service, datetime(2026, 12, 25, 9, 0, tzinfo=SHANGHAI), 7)
    assert local_day(counted.deadline) == date(2027, 1, 6)  # New Year's Day is off now
    assert list(counted.fallback_years) == []
    assert fallbacks(2027) == before + 1
    saturday = await deadline(service, datetime(2027, 2, 5, 9, 0, tzinfo=SHANGHAI), 1)
    assert local_day(saturday.deadline) == date(2027, 2, 6)  # the adjusted working Saturday

    status = StackStatus()
    async with ServiceClients(service.settings, system_token(service.settings)) as clients:
        await calendar_status(clients.channels["applications"], status)
    assert status.calendar_missing == []
    assert 2027 in status.calendar_years


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"holidays": [("2028-01-01", "元旦"), ("2027-12-31", "")]}, "holidays[1].date"),
        ({"holidays": [("2028-01-01", ""), ("2028-01-01", "")]}, "holidays[1].date"),
        ({"holidays": [("2028-13-01", "")]}, "holidays[0].date"),
        ({"adjusted_working_days": [("2028-01-03", "")]}, "adjusted_working_days[0].date"),
        (
            {"holidays": [("2028-01-29", "")], "adjusted_working_days": [("2028-01-29", "")]},
            "adjusted_working_days[0].date",
        ),
        ({"source": " "}, "source"),
        ({"year": 1999}, "year"),
    ],
)
async def test_a_malformed_year_is_refused_by_field_and_nothing_is_written(
    service: ApplicationsHarness, change: dict[str, object], field: str
) -> None:
    content: dict[str, object] = {
        "year": 2028,
        "holidays": [("2028-01-01", "元旦")],
        "adjusted_working_days": [],
        "source": "通知",
    }
    content.update(change)
    request = calendar_pb2.SetCalendarYearRequest(
        year=content["year"],  # type: ignore[arg-type]
        holidays=[calendar_pb2.CalendarDay(date=d, name=n) for d, n in content["holidays"]],  # type: ignore[attr-defined]
        adjusted_working_days=[
            calendar_pb2.CalendarDay(date=d, name=n)
            for d, n in content["adjusted_working_days"]  # type: ignore[attr-defined]
        ],
        source=content["source"],  # type: ignore[arg-type]
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await calendar(service).SetCalendarYear(request, metadata=service.auth(Role.OPS))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(f"{field}:")
    assert service.count("calendar_year", "year = 2028") == 0
    assert service.count("calendar_day", "year = 2028") == 0


async def test_only_ops_set_a_year(service: ApplicationsHarness) -> None:
    request = calendar_pb2.SetCalendarYearRequest(year=2028, source="通知")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await calendar(service).SetCalendarYear(
            request, metadata=service.auth(Role.REVIEWER, department="industry")
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_workers_deadline_activity_asks_the_calendar(
    service: ApplicationsHarness,
) -> None:
    async with ServiceClients(service.settings, system_token(service.settings)) as clients:
        activities = GrantActivities(clients, LocalEnterpriseRegistry())
        end = await ActivityEnvironment().run(
            activities.working_days_deadline,
            DeadlineRequest(start=datetime(2026, 9, 28, 10, 0, tzinfo=SHANGHAI), working_days=7),
        )
    assert end.working_days == 7
    assert end.start == datetime(2026, 10, 13, 23, 59, 59, tzinfo=SHANGHAI)


async def grantflow(harness: ApplicationsHarness, *args: str) -> tuple[int, str]:
    """The CLI as an operator runs it, against this service (a subprocess, so the service
    keeps answering in this event loop)."""
    environment = {
        **os.environ,
        "APPLICATIONS_ADDRESS": harness.settings.applications_address,
        "AUTH_SECRET": harness.settings.auth_secret,
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "grantflow"),
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_an_operator_sets_and_shows_a_year_with_the_cli(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'service.db'}"  # the CLI's path is the same on any
    year_file = tmp_path / "2029.json"
    year_file.write_text(
        json.dumps(
            {
                "holidays": [{"date": "2029-01-01", "name": "元旦"}],
                "source": "国务院办公厅通知",
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    async with applications_service(database_url, tmp_path, seed=False) as service:
        status, output = await grantflow(
            service,
            "calendar",
            "set-year",
            "2029",
            "--from-file",
            str(year_file),
            "--holiday",
            "2029-02-13=春节",
            "--workday",
            "2029-02-10=春节",
        )
        assert status == 0, output
        assert "已录入 2029 年：放假 2 天，调休上班 1 天" in output
        status, output = await grantflow(service, "calendar", "show", "2029")
        assert status == 0, output
        assert "2029-02-10" in output and "调休上班" in output and "元旦" in output
        status, output = await grantflow(
            service, "calendar", "set-year", "2030", "--workday", "2030-01-02", "--source", "x"
        )
        assert status == 1
        assert "参数无效" in output and "adjusted_working_days[0].date" in output


async def test_seeding_at_start_is_idempotent_and_never_overwrites_a_year_set_by_ops(
    database_url: str, tmp_path: Path
) -> None:
    corrected = calendar_pb2.SetCalendarYearRequest(
        year=2026,
        holidays=[calendar_pb2.CalendarDay(date="2026-10-01", name="国庆节")],
        source="更正",
    )
    async with applications_service(database_url, tmp_path, seed=False) as service:
        seeded = service.count("calendar_year")
        days = service.count("calendar_day")
        assert seeded >= 23 and days > 600  # 2004-2026
        await calendar(service).SetCalendarYear(corrected, metadata=service.auth(Role.OPS))
    async with applications_service(database_url, tmp_path, seed=False) as service:
        assert service.count("calendar_year") == seeded
        year = await calendar(service).GetCalendarYear(
            calendar_pb2.GetCalendarYearRequest(year=2026), metadata=service.auth(Role.OPS)
        )
        assert (year.source, len(year.holidays)) == ("更正", 1)
