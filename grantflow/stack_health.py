"""`grantflow ops stack status`: the health of a Grantflow deployment, wherever it runs (only
the configured addresses are used, no process table): each service's gRPC health and its outbox
backlog (OperationsService), Temporal and the workers polling the task queue, the Kafka broker,
each consumer group's lag per partition, the records waiting in each dead-letter topic, and the
working-day calendar's open alert: the years deadlines fell into without data (counted
Monday-Friday until an administrator sets the year). A missing year is a warning, not an
unhealthy component: every service works, and the exit status stays for outages."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from grantflow.v1 import calendar_pb2, calendar_pb2_grpc, operations_pb2, operations_pb2_grpc
from services.common import kafka
from services.common.clients import SERVICE_NAMES, ServiceClients
from services.common.config import Settings
from services.common.temporal import connect_temporal

CHECK_TIMEOUT_S = 5.0
CHECK_TIMEOUT = timedelta(seconds=CHECK_TIMEOUT_S)
SERVICE_FULL_NAMES = {
    "applications": "grantflow.v1.ApplicationService",
    "review": "grantflow.v1.ReviewService",
    "disbursement": "grantflow.v1.DisbursementService",
}


@dataclass
class Component:
    name: str
    address: str
    healthy: bool
    detail: str = ""


@dataclass
class Outbox:
    service: str
    unpublished: int
    oldest_age_s: float | None  # how long the oldest waiting event has waited
    published_retained: int


@dataclass
class GroupLag:
    group: str
    partitions: list[kafka.PartitionLag]

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass
class CalendarGap:
    year: int
    deadlines: int  # deadlines counted Monday-Friday into this year
    last_at: str  # when the last of them was counted (ISO 8601, UTC)


@dataclass
class StackStatus:
    components: list[Component] = field(default_factory=list)
    outboxes: list[Outbox] = field(default_factory=list)
    lags: list[GroupLag] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    calendar_years: list[int] = field(default_factory=list)
    calendar_missing: list[CalendarGap] = field(default_factory=list)
    calendar_error: str = ""

    @property
    def healthy(self) -> bool:
        return all(component.healthy for component in self.components)

    def as_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "components": [asdict(c) for c in self.components],
            "outboxes": [asdict(o) for o in self.outboxes],
            "consumer_lag": [
                {
                    "group": lag.group,
                    "total": lag.total,
                    "partitions": [{**asdict(p), "lag": p.lag} for p in lag.partitions],
                }
                for lag in self.lags
            ],
            "dead_letters": self.dead_letters,
            "calendar": {
                "years": self.calendar_years,
                "missing": [asdict(gap) for gap in self.calendar_missing],
                "error": self.calendar_error,
            },
        }

    def calendar_lines(self) -> list[str]:
        """What ops reads about the working-day calendar: one warning per missing year."""
        if self.calendar_error:
            return [f"工作日日历状态无法读取 (calendar status unavailable): {self.calendar_error}"]
        lines = [
            f"警告：工作日日历缺少 {gap.year} 年的节假日数据，已有 {gap.deadlines} 个期限按周一至"
            f"周五计算（最近一次 {gap.last_at}）；请用 `grantflow calendar set-year {gap.year}` "
            f"录入 (calendar year {gap.year} missing: {gap.deadlines} deadlines counted Mon-Fri)"
            for gap in self.calendar_missing
        ]
        if not lines and self.calendar_years:
            first, last = self.calendar_years[0], self.calendar_years[-1]
            lines.append(f"工作日日历：{first}–{last} 年已有数据 (calendar years {first}-{last})")
        return lines


def _failure(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__


async def _service(
    name: str, address: str, channel: grpc.aio.Channel
) -> tuple[Component, Outbox | None]:
    try:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_FULL_NAMES[name]),
            timeout=CHECK_TIMEOUT_S,
        )
    except Exception as error:
        return Component(name, address, False, f"不可达 (unreachable) {_failure(error)}"), None
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    status_name = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if not serving:
        return Component(name, address, False, status_name), None
    try:
        outbox = await operations_pb2_grpc.OperationsServiceStub(channel).GetOutboxStatus(
            operations_pb2.GetOutboxStatusRequest(), timeout=CHECK_TIMEOUT_S
        )
    except Exception as error:
        return Component(name, address, True, f"SERVING；发件箱无法读取 {_failure(error)}"), None
    oldest: float | None = None
    if outbox.HasField("oldest_unpublished_at"):
        waited = outbox.now.ToDatetime() - outbox.oldest_unpublished_at.ToDatetime()
        oldest = max(waited.total_seconds(), 0.0)
    return Component(name, address, True, status_name), Outbox(
        name, outbox.unpublished, oldest, outbox.published_retained
    )


async def calendar_status(channel: grpc.aio.Channel, status: StackStatus) -> None:
    """The applications service's calendar years and the years deadlines needed without data."""
    try:
        answer = await calendar_pb2_grpc.CalendarServiceStub(channel).GetCalendarStatus(
            calendar_pb2.GetCalendarStatusRequest(), timeout=CHECK_TIMEOUT_S
        )
    except Exception as error:
        status.calendar_error = _failure(error)
        return
    status.calendar_years = list(answer.years)
    status.calendar_missing = [
        CalendarGap(
            gap.year,
            gap.deadlines,
            gap.last_at.ToDatetime().isoformat(timespec="seconds") + "Z",
        )
        for gap in answer.missing
    ]


async def _temporal(settings: Settings) -> list[Component]:
    address = settings.temporal_address
    try:
        client = await asyncio.wait_for(connect_temporal(settings), CHECK_TIMEOUT_S)
        await client.service_client.check_health(timeout=CHECK_TIMEOUT)
    except Exception as error:
        return [
            Component("temporal", address, False, f"不可达 (unreachable) {_failure(error)}"),
            Component("worker", settings.temporal_task_queue, False, "Temporal 不可达"),
        ]
    pollers: dict[str, int] = {}
    for kind, queue_type in (
        ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ):
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.temporal_task_queue),
                task_queue_type=queue_type,
            ),
            timeout=CHECK_TIMEOUT,
        )
        pollers[kind] = len(answer.pollers)
    worker = Component(
        "worker",
        f"task queue {settings.temporal_task_queue}",
        pollers["workflow"] > 0,
        f"{pollers['workflow']} 个流程轮询者，{pollers['activity']} 个活动轮询者 "
        "(workflow / activity pollers)",
    )
    return [
        Component("temporal", address, True, f"namespace {settings.temporal_namespace}"),
        worker,
    ]


async def _kafka(settings: Settings, status: StackStatus) -> Component:
    address = settings.kafka_bootstrap_servers
    dead_letter_topics = [
        kafka.dead_letter_topic(kafka.topic(settings, stream)) for stream in kafka.ALL_STREAMS
    ]
    try:
        lags, counts = await asyncio.wait_for(
            asyncio.gather(
                kafka.consumer_lag(settings), kafka.record_counts(settings, dead_letter_topics)
            ),
            timeout=30.0,
        )
    except Exception as error:
        return Component("kafka", address, False, f"不可达 (unreachable) {_failure(error)}")
    status.lags = [GroupLag(group, partitions) for group, partitions in sorted(lags.items())]
    status.dead_letters = counts
    return Component("kafka", address, True, f"{len(lags)} 个消费组 (consumer groups)")


async def stack_status(settings: Settings, token: str) -> StackStatus:
    status = StackStatus()
    async with ServiceClients(settings, token) as clients:
        services, temporal, broker = await asyncio.gather(
            asyncio.gather(
                *(
                    _service(name, getattr(settings, f"{name}_address"), clients.channels[name])
                    for name in SERVICE_NAMES
                )
            ),
            _temporal(settings),
            _kafka(settings, status),
        )
        for component, outbox in services:
            status.components.append(component)
            if outbox is not None:
                status.outboxes.append(outbox)
            if component.name == "applications" and component.healthy:
                await calendar_status(clients.channels["applications"], status)
    status.components.extend(temporal)
    status.components.append(broker)
    return status


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} 秒"
    if seconds < 7200:
        return f"{seconds / 60:.0f} 分钟"
    return f"{seconds / 3600:.1f} 小时"
