"""OpenTelemetry traces of every Grantflow process, exported over OTLP/gRPC when configured.

Tracing is on when the standard OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set and
OTEL_SDK_DISABLED is not true; the exporter reads the other standard OTEL_* variables itself
(OTEL_BSP_SCHEDULE_DELAY, headers, certificates). Off, nothing here makes a span: callers ask
`enabled()` first, so an untraced process pays one boolean test per call and event.

One trace follows a request across the asynchronous hops: a gRPC server span (the metadata's
W3C traceparent is its parent), the outbox row keeps the traceparent of the span that wrote it,
the relay's producer span puts it in the Kafka record's `traceparent` header, a consumer span
continues from there, and Temporal's TracingInterceptor carries it from the intake's workflow
start into the workflow and its (local) activities, whose gRPC calls carry it on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # OpenTelemetry is imported once tracing is configured, not by every CLI call
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind

TRACEPARENT = "traceparent"
_propagator: Any = None
_enabled = False
_provider: Any = None


def wanted() -> bool:
    """Whether the environment asks for traces (an OTLP endpoint, the SDK not disabled)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure_tracing(process: str) -> bool:
    """Installs a tracer provider exporting over OTLP/gRPC in batches, when wanted(); the
    resource's service.name is grantflow-<process> unless OTEL_SERVICE_NAME says otherwise."""
    global _enabled, _provider
    if _enabled or not wanted():
        return _enabled
    global _propagator
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _propagator = TraceContextTextMapPropagator()

    name = os.environ.get("OTEL_SERVICE_NAME") or f"grantflow-{process}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider, _enabled = provider, True
    return True


def shutdown_tracing() -> None:
    """Exports the spans still waiting in the batch (processes leave through os._exit)."""
    global _enabled, _provider
    if _provider is not None:
        _provider.shutdown()
    _provider, _enabled = None, False


def enabled() -> bool:
    return _enabled


def tracer() -> trace.Tracer:
    from opentelemetry import trace

    return trace.get_tracer("grantflow")


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span; None when untraced."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def inject(carrier: dict[str, str]) -> None:
    _propagator.inject(carrier)


def inject_span(span: Span, carrier: dict[str, str]) -> None:
    """The traceparent of span (not the current one) into carrier."""
    from opentelemetry import trace

    _propagator.inject(carrier, context=trace.set_span_in_context(span))


def context_from(carrier: Mapping[str, str]) -> otel_context.Context:
    return _propagator.extract(carrier)


def context_from_headers(headers: Iterable[tuple[str, Any]]) -> otel_context.Context | None:
    """The context a traceparent among headers (Kafka's bytes, gRPC metadata's str) names."""
    carrier = {
        key: value.decode() if isinstance(value, bytes) else value
        for key, value in headers
        if key == TRACEPARENT and isinstance(value, bytes | str)
    }
    return _propagator.extract(carrier) if carrier else None


def span(
    name: str,
    *,
    kind: SpanKind | None = None,
    parent: otel_context.Context | None = None,
    attributes: Mapping[str, str | int] | None = None,
) -> Any:
    """A current span (a no-op context when untraced)."""
    if not _enabled:
        return nullcontext(None)
    return _current_span(name, kind, parent, attributes)


@contextmanager
def _current_span(
    name: str,
    kind: SpanKind | None,
    parent: otel_context.Context | None,
    attributes: Mapping[str, str | int] | None,
) -> Iterator[Span]:
    from opentelemetry.trace import SpanKind

    with tracer().start_as_current_span(
        name, context=parent, kind=kind or SpanKind.INTERNAL, attributes=dict(attributes or {})
    ) as current:
        yield current


def log_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace_id and span_id on every log line."""
    if _enabled:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event.setdefault("trace_id", format(context.trace_id, "032x"))
            event.setdefault("span_id", format(context.span_id, "016x"))
    return event
