"""Connecting to Temporal with Grantflow's data conversion (pydantic models as payloads), and the
start-up that the processes driving workflows (the worker, the intake consumer) share.

A client also carries the process's observability: Temporal's tracing interceptor when traces
are exported (it carries the trace into workflows and their activities, local ones included;
workers made with the client take it too), and a runtime whose SDK metrics are served on
TEMPORAL_METRICS_PORT as grantflow_temporal_*."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from services.common.config import Settings

if TYPE_CHECKING:
    from services.common.clients import ServiceClients

log = structlog.get_logger(__name__)


async def connect_temporal(settings: Settings) -> Client:
    from services.common import tracing

    options: dict[str, Any] = {}
    if tracing.enabled():
        from temporalio.contrib.opentelemetry import TracingInterceptor

        options["interceptors"] = [TracingInterceptor(tracing.tracer())]
    if settings.temporal_metrics_port:
        address = f"{settings.metrics_host}:{settings.temporal_metrics_port}"
        try:
            options["runtime"] = _metrics_runtime(address)
        except Exception as exc:  # the port is taken: Temporal still works, unmeasured
            log.error("temporal metrics not served", address=address, error=str(exc))
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        **options,
    )


@lru_cache
def _metrics_runtime(bind_address: str) -> Any:
    """One runtime per process and address: the SDK serves its Prometheus endpoint from it."""
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                counters_total_suffix=True,
                durations_as_seconds=True,
            ),
            metric_prefix="grantflow_temporal_",
        )
    )


async def connect_until_reachable(settings: Settings, stop: asyncio.Event) -> Client | None:
    """Connects to Temporal, waiting with backoff while it is down (the stack starts its
    processes in any order); None if asked to stop first."""
    delay = 0.5
    while not stop.is_set():
        try:
            return await connect_temporal(settings)
        except Exception as exc:
            log.warning(
                "temporal unreachable; retrying",
                address=settings.temporal_address,
                error=str(exc),
                retry_in=delay,
            )
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, 10.0)
    return None


@dataclass
class TemporalProcess:
    """What a process that drives workflows holds: the Temporal client, the services' clients
    with the system token, and the event that tells it to stop."""

    client: Client
    services: ServiceClients
    stop: asyncio.Event


@asynccontextmanager
async def temporal_process(
    settings: Settings, stop: asyncio.Event | None = None
) -> AsyncIterator[TemporalProcess | None]:
    """The start-up and shut-down of the worker and the intake consumer: stop on SIGTERM/SIGINT,
    wait for Temporal, the services' clients; None if asked to stop before Temporal answered."""
    from services.common.clients import ServiceClients, system_token
    from services.common.process import stop_on_signals

    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    client = await connect_until_reachable(settings, stop)
    if client is None:
        yield None
        return
    services = ServiceClients(settings, system_token(settings))
    try:
        yield TemporalProcess(client, services, stop)
    finally:
        await services.close()
