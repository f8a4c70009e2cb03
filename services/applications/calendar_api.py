"""CalendarServicer: the gRPC face of the working-day calendar (calendar.proto), served by the
applications service beside ApplicationService. Ops set years; the worker (system) asks for
deadlines; anyone with a token may read a year."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import grpc

from grantflow.v1 import calendar_pb2, calendar_pb2_grpc
from services.applications.calendar_commands import SetCalendarYear, WorkingDaysDeadline
from services.applications.calendar_use_cases import Calendar, StoredYear
from services.common import validation
from services.common.auth import current_principal
from services.common.db import from_timestamp, to_timestamp
from services.common.errors import InvalidArgument
from services.common.service_main import Companion, ServiceSpec
from services.common.vocabulary import Role
from services.common.workdays import YearDays

CALENDAR_SERVICE = ServiceSpec(
    name="applications",
    descriptor=calendar_pb2.DESCRIPTOR.services_by_name["CalendarService"],
    roles={
        "SetCalendarYear": (Role.OPS,),
        "GetCalendarYear": tuple(Role),
        "WorkingDaysDeadline": (Role.SYSTEM, Role.OPS),
        "GetCalendarStatus": (Role.OPS, Role.SYSTEM),
    },
)
MIN_YEAR, MAX_YEAR = 2000, 2100
MAX_WORKING_DAYS = 1000
MAX_DAYS_PER_KIND = 120  # a year has about 30 holidays and a handful of adjusted days
MAX_SOURCE = 500
MAX_DAY_NAME = 100


def _year(field: str, value: int) -> int:
    if not MIN_YEAR <= value <= MAX_YEAR:
        raise InvalidArgument(field, f"must be a year from {MIN_YEAR} to {MAX_YEAR}")
    return value


def _days(
    field: str, days: Sequence[calendar_pb2.CalendarDay], year: int, *, weekend_only: bool
) -> dict[date, str]:
    if len(days) > MAX_DAYS_PER_KIND:
        raise InvalidArgument(field, f"has more than {MAX_DAYS_PER_KIND} days")
    parsed: dict[date, str] = {}
    for index, day in enumerate(days):
        where = f"{field}[{index}]"
        try:
            value = date.fromisoformat(day.date.strip())
        except ValueError:
            raise InvalidArgument(f"{where}.date", "must be a date YYYY-MM-DD") from None
        if len(day.date.strip()) != 10:
            raise InvalidArgument(f"{where}.date", "must be a date YYYY-MM-DD")
        if value.year != year:
            raise InvalidArgument(f"{where}.date", f"{value} is not in {year}")
        if value in parsed:
            raise InvalidArgument(f"{where}.date", f"{value} is listed twice")
        if weekend_only and value.weekday() < 5:
            raise InvalidArgument(
                f"{where}.date", f"{value} is a weekday: an adjusted working day is a weekend day"
            )
        parsed[value] = validation.text(
            f"{where}.name", day.name, max_len=MAX_DAY_NAME, required=False
        )
    return parsed


def year_days(request: calendar_pb2.SetCalendarYearRequest) -> YearDays:
    """The request's year, checked field by field before anything is written."""
    year = _year("year", request.year)
    holidays = _days("holidays", request.holidays, year, weekend_only=False)
    workdays = _days(
        "adjusted_working_days", request.adjusted_working_days, year, weekend_only=True
    )
    for index, day in enumerate(request.adjusted_working_days):
        if date.fromisoformat(day.date.strip()) in holidays:
            raise InvalidArgument(
                f"adjusted_working_days[{index}].date", f"{day.date.strip()} is also a holiday"
            )
    return YearDays(year, holidays, workdays)


def year_proto(stored: StoredYear) -> calendar_pb2.CalendarYear:
    def days(table: dict[date, str]) -> list[calendar_pb2.CalendarDay]:
        return [
            calendar_pb2.CalendarDay(date=d.isoformat(), name=name)
            for d, name in sorted(table.items())
        ]

    return calendar_pb2.CalendarYear(
        year=stored.row.year,
        holidays=days(stored.days.holidays),
        adjusted_working_days=days(stored.days.workdays),
        source=stored.row.source,
        set_by=stored.row.set_by,
        set_at=to_timestamp(stored.row.set_at),
    )


class CalendarServicer(calendar_pb2_grpc.CalendarServiceServicer):
    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar

    async def SetCalendarYear(
        self, request: calendar_pb2.SetCalendarYearRequest, context: grpc.aio.ServicerContext
    ) -> calendar_pb2.CalendarYear:
        command = SetCalendarYear(
            caller=current_principal(),
            days=year_days(request),
            source=validation.text("source", request.source, max_len=MAX_SOURCE),
        )
        return year_proto(await self.calendar.set_year(command))

    async def GetCalendarYear(
        self, request: calendar_pb2.GetCalendarYearRequest, context: grpc.aio.ServicerContext
    ) -> calendar_pb2.CalendarYear:
        return year_proto(await self.calendar.year(_year("year", request.year)))

    async def WorkingDaysDeadline(
        self, request: calendar_pb2.WorkingDaysDeadlineRequest, context: grpc.aio.ServicerContext
    ) -> calendar_pb2.WorkingDaysDeadlineResponse:
        if not request.HasField("start"):
            raise InvalidArgument("start", "is required")
        start = from_timestamp(request.start)
        _year("start", start.year)
        if not 0 <= request.working_days <= MAX_WORKING_DAYS:
            raise InvalidArgument("working_days", f"must be from 0 to {MAX_WORKING_DAYS}")
        answer = await self.calendar.deadline(WorkingDaysDeadline(start, request.working_days))
        return calendar_pb2.WorkingDaysDeadlineResponse(
            deadline=to_timestamp(answer.end), fallback_years=list(answer.fallback_years)
        )

    async def GetCalendarStatus(
        self, request: calendar_pb2.GetCalendarStatusRequest, context: grpc.aio.ServicerContext
    ) -> calendar_pb2.CalendarStatus:
        status = await self.calendar.status()
        return calendar_pb2.CalendarStatus(
            years=status.years,
            missing=[
                calendar_pb2.CalendarFallback(
                    year=row.year,
                    deadlines=row.deadlines,
                    first_at=to_timestamp(row.first_at),
                    last_at=to_timestamp(row.last_at),
                )
                for row in status.missing
            ],
        )


def calendar_companion(calendar: Calendar) -> Companion:
    servicer = CalendarServicer(calendar)

    def register(server: grpc.aio.Server) -> None:
        calendar_pb2_grpc.add_CalendarServiceServicer_to_server(servicer, server)

    return Companion(CALENDAR_SERVICE, register)
