"""What every call and event leaves behind for operators: the gRPC server interceptor that counts
and times each call and opens its trace span, the client interceptor that carries the trace to
the service called, and the ids (application, task, plan) found in a request or event for the log context.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.common import metrics, tracing

# Fields whose values name what a request or event is about, in the log context's words.
ID_FIELDS = ("application_id", "task_id", "plan_id", "line_id", "workflow_id")


def ids_of(message: Message, depth: int = 3) -> dict[str, str]:
    """The ids a message names, at its top level or in message fields down to depth (an
    envelope's ApplicationSubmitted.application, ReviewTaskCreated.task); the nearest wins."""
    found: dict[str, str] = {}
    nested: list[Message] = []
    for field, value in message.ListFields():
        if field.name in ID_FIELDS and isinstance(value, str) and value:
            found[field.name] = value
        elif isinstance(value, Message):
            nested.append(value)
    if depth > 1:
        for inner in nested:
            for key, value in ids_of(inner, depth - 1).items():
                found.setdefault(key, value)
    return found


def bind_request_ids(request: Any) -> None:
    """Puts the ids a decoded request names in this call's log context (each call runs in its
    own task, so they end with it) and on its span."""
    if not isinstance(request, Message):
        return
    ids = ids_of(request)
    if ids:
        structlog.contextvars.bind_contextvars(**ids)
        if tracing.enabled():
            from opentelemetry import trace

            current = trace.get_current_span()
            for key, value in ids.items():
                current.set_attribute(f"grantflow.{key}", value)


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    """Outermost on every service: counts and times each call by method and status code
    (grantflow_grpc_server_*) and, when tracing, runs it in a server span whose parent is the
    caller's traceparent. Health and reflection are left alone."""

    def __init__(self, service: str) -> None:
        self._service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method  # type: ignore[attr-defined]
        if handler is None or not handler.unary_unary or method.startswith("/grpc."):
            return handler
        behaviour = handler.unary_unary
        service, short_name = self._service, method.rsplit("/", 1)[-1]

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            parent = (
                tracing.context_from_headers(context.invocation_metadata() or ())
                if tracing.enabled()
                else None
            )
            with tracing.span(method.lstrip("/"), kind=SpanKind.SERVER, parent=parent) as span:
                try:
                    return await behaviour(request, context)
                except asyncio.CancelledError:
                    code = grpc.StatusCode.CANCELLED
                    raise
                except BaseException:
                    code = context.code() or grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
                    raise
                finally:
                    if span is not None:
                        span.set_attribute("rpc.grpc.status_code", code.value[0])
                        if code not in (grpc.StatusCode.OK,):
                            span.set_status(Status(StatusCode.ERROR, code.name))
                    name = code.name
                    metrics.GRPC_HANDLED.labels(service, short_name, name).inc()
                    metrics.GRPC_SECONDS.labels(service, short_name, name).observe(
                        time.perf_counter() - started
                    )

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class TracingClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """A client span per call, its traceparent sent in the call's metadata."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        with tracing.span(method.lstrip("/"), kind=SpanKind.CLIENT) as span:
            carrier: dict[str, str] = {}
            tracing.inject(carrier)
            metadata = tuple(details.metadata or ()) + tuple(carrier.items())
            call = await continuation(details._replace(metadata=metadata), request)
            code = await call.code()
            if span is not None and code != grpc.StatusCode.OK:
                span.set_status(Status(StatusCode.ERROR, code.name))
            return call


@contextmanager
def event_context(topic: str, headers: Any, ids: dict[str, str]) -> Iterator[None]:
    """One consumed event's log context and, when tracing, its consumer span continuing the
    producer's trace (the record's traceparent header)."""
    with structlog.contextvars.bound_contextvars(**ids):
        if not tracing.enabled():
            yield
            return
        parent = tracing.context_from_headers(headers)
        with tracing.span(f"process {topic}", kind=SpanKind.CONSUMER, parent=parent) as span:
            for key, value in ids.items():
                span.set_attribute(f"grantflow.{key}", value)
            yield
