"""Grantflow's Prometheus metrics: their definitions, the /metrics endpoint each process serves
(METRICS_PORT; 0 = none) and the gauges read from a database when Prometheus scrapes.

Every name starts with grantflow_ (README.md lists them). Counters and histograms are updated
where things happen (gRPC calls, consumers, stage reports); the outbox backlog and relay lag and
the grants per stage are counted from the databases at scrape time, so they are exact and cost
nothing between scrapes. Temporal's own SDK metrics are served by the SDK on
TEMPORAL_METRICS_PORT (services/common/temporal.py), named grantflow_temporal_*.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

import structlog
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

_process = "grantflow"


def set_process(name: str) -> None:
    """Names this process (applications, review, disbursement, worker, intake) in the labels
    of what it counts for itself, such as its outbox."""
    global _process
    _process = name


def process() -> str:
    return _process


GRPC_HANDLED = Counter(
    "grantflow_grpc_server_handled",
    "gRPC calls a Grantflow service answered, by method and status code",
    ["service", "method", "code"],
)
GRPC_SECONDS = Histogram(
    "grantflow_grpc_server_handling_seconds",
    "Time a Grantflow service took to answer a gRPC call, by method and status code",
    ["service", "method", "code"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
OUTBOX_PUBLISHED = Counter(
    "grantflow_outbox_published",
    "Outbox events the relay published to Kafka",
    ["service"],
)
RECORDS_APPLIED = Counter(
    "grantflow_kafka_records_applied",
    "Kafka records a consumer group applied",
    ["group", "topic"],
)
DEAD_LETTERS = Counter(
    "grantflow_kafka_dead_letters",
    "Kafka records a consumer group could not apply and sent to <topic>.dlq, by source topic",
    ["group", "topic"],
)
STAGE_CHANGES = Counter(
    "grantflow_grant_stage_changes",
    "Grants that entered a stage (the application's status changed to it), by stage and program",
    ["stage", "program"],
)
CALENDAR_FALLBACK = Counter(
    "grantflow_calendar_fallback",
    "Deadlines counted Monday-Friday because the working-day calendar has no data for the year",
    ["year"],
)
NOTIFICATIONS = Counter(
    "grantflow_notifications",
    "Attempts to deliver notifications to applicants by mail or SMS, by channel and outcome "
    "(sent, retry, failed); the log channel writes the delivery log without attempts",
    ["channel", "outcome"],
)


# Read at scrape time ------------------------------------------------------------------------

# service -> () -> (unpublished rows, oldest unpublished row's created_at or None)
OutboxProbe = Callable[[], tuple[int, datetime | None]]
# () -> [(stage, program, grants)]
StageProbe = Callable[[], Iterable[tuple[str, str, int]]]
# (group, topic, partition) -> records behind the partition's end
_consumer_lag: dict[tuple[str, str, int], int] = {}
_outboxes: dict[str, OutboxProbe] = {}
_stages: dict[str, StageProbe] = {}
_lock = threading.Lock()


def watch_outbox(service: str, probe: OutboxProbe) -> Callable[[], None]:
    """Reports the service's outbox backlog and relay lag from probe; returns the unwatch."""
    with _lock:
        _outboxes[service] = probe
    return lambda: _forget_outbox(service)


def watch_stages(service: str, probe: StageProbe) -> Callable[[], None]:
    """Reports the grants in each stage and program from probe; returns the unwatch."""
    with _lock:
        _stages[service] = probe
    return lambda: _forget_stages(service)


def set_consumer_lag(group: str, lags: dict[tuple[str, int], int]) -> None:
    """The records each assigned partition holds beyond the group's position (partitions no
    longer assigned to this member are dropped)."""
    with _lock:
        for key in [key for key in _consumer_lag if key[0] == group]:
            del _consumer_lag[key]
        for (topic, partition), lag in lags.items():
            _consumer_lag[(group, topic, partition)] = lag


def _forget_outbox(service: str) -> None:
    with _lock:
        _outboxes.pop(service, None)


def _forget_stages(service: str) -> None:
    with _lock:
        _stages.pop(service, None)


class _ScrapeTime(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering asks for the names; without this it would run a whole collect().
        for name in (
            "grantflow_outbox_backlog",
            "grantflow_outbox_lag_seconds",
            "grantflow_grants",
            "grantflow_kafka_consumer_lag",
        ):
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from services.common.db import as_utc, now_utc

        with _lock:
            outboxes, stages = dict(_outboxes), dict(_stages)
            lags = dict(_consumer_lag)
        backlog = GaugeMetricFamily(
            "grantflow_outbox_backlog", "Outbox events not yet published", labels=["service"]
        )
        age = GaugeMetricFamily(
            "grantflow_outbox_lag_seconds",
            "Relay lag: age of the oldest unpublished outbox event (0 when none waits)",
            labels=["service"],
        )
        for service, probe in outboxes.items():
            try:
                rows, oldest = probe()
            except Exception as exc:  # a database out of reach: no sample rather than a lie
                log.warning("outbox metrics unavailable", service=service, error=repr(exc))
                continue
            backlog.add_metric([service], rows)
            lag = (now_utc() - as_utc(oldest)).total_seconds() if oldest is not None else 0.0
            age.add_metric([service], max(lag, 0.0))
        grants = GaugeMetricFamily(
            "grantflow_grants",
            "Grants (applications) in each stage, by program",
            labels=["stage", "program"],
        )
        for service, stage_probe in stages.items():
            try:
                counted = list(stage_probe())
            except Exception as exc:
                log.warning("stage metrics unavailable", service=service, error=repr(exc))
                continue
            for stage, program, count in counted:
                grants.add_metric([stage, program], count)
        consumer_lag = GaugeMetricFamily(
            "grantflow_kafka_consumer_lag",
            "Records a consumer group has yet to read, per partition",
            labels=["group", "topic", "partition"],
        )
        for (group, topic, partition), lag in sorted(lags.items()):
            consumer_lag.add_metric([group, topic, str(partition)], lag)
        yield backlog
        yield age
        yield grants
        yield consumer_lag


REGISTRY.register(_ScrapeTime())


# The endpoint --------------------------------------------------------------------------------

_served: set[int] = set()


def serve_metrics(host: str, port: int) -> bool:
    """Serves /metrics on host:port in a daemon thread (once per port); False if the port is
    taken, which is logged and tolerated: a process is not stopped by its metrics."""
    if not port or port in _served:
        return bool(port)
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("metrics endpoint not served", host=host, port=port, error=str(exc))
        return False
    _served.add(port)
    log.info("metrics served", address=f"http://{host}:{port}/metrics")
    return True
