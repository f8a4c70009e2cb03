"""Serving a Grantflow service: grpc.aio server with auth, error mapping, the standard health
service and server reflection, background tasks (outbox relay, consumers) and clean shutdown.

Each servicer declares which roles may call each method (METHOD_ROLES); the interceptor refuses
everything else before the servicer runs, so no method can forget its check. A method whose
roles are exactly {PUBLIC} (services/common/auth.py) answers anyone: without a token the call is
anonymous (no principal), with one the token must still be valid. The interceptor also
decodes the request itself, after authentication: malformed bytes (a string field that is not
UTF-8, a truncated message) are INVALID_ARGUMENT naming the field, for authenticated callers
only, with one log line.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from services.common.auth import PUBLIC, set_current_principal, verify_token
from services.common.config import DEV_AUTH_SECRET, Settings
from services.common.errors import (
    ERROR_DOMAIN,
    InvalidArgument,
    PermissionDenied,
    ServiceError,
    Unauthenticated,
)
from services.common.observability import ObservingInterceptor, bind_request_ids
from services.common.process import stop_on_signals

log = structlog.get_logger(__name__)

# Open to every caller: generic tools (grpcurl, grpc_health_probe) must work without a token.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _status_for(error: ServiceError) -> status_pb2.Status:
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    if isinstance(error, InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=error.field, description=error.problem
                    )
                ]
            )
        )
        status.details.append(detail)
    if error.reason:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))
        status.details.append(info)
    return status


class AuthAndErrorsInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates the bearer token, checks the role table and maps errors to statuses."""

    def __init__(self, secret: str, method_roles: Mapping[str, frozenset[str]]) -> None:
        self._secret = secret
        self._method_roles = method_roles

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        if not handler.unary_unary:
            # Only unary methods are guarded; a streaming method would bypass authentication,
            # so it is not served at all until this interceptor learns to guard it.
            log.error("streaming method refused: not guarded by auth", method=method)
            return None  # type: ignore[return-value]
        short_name = method.rsplit("/", 1)[-1]
        roles = self._method_roles.get(short_name)
        public = roles == frozenset({PUBLIC})
        behaviour = handler.unary_unary
        decode = handler.request_deserializer
        secret = self._secret

        async def guarded(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                token = ""
                for key, value in context.invocation_metadata() or ():
                    if key == "authorization" and isinstance(value, str):
                        token = value.removeprefix("Bearer ").removeprefix("bearer ").strip()
                if not token and not public:
                    raise Unauthenticated("missing bearer token (authorization metadata)")
                # A public method still refuses a bad token: its holder should learn it.
                caller = verify_token(secret, token) if token else None
                if not public and (roles is None or caller is None or caller.role not in roles):
                    role = caller.role if caller is not None else ""
                    raise PermissionDenied(f"role {role!r} may not call {short_name}")
                request = _decode(method, decode, raw)
                set_current_principal(caller)
                bind_request_ids(request)
                return await behaviour(request, context)
            except ServiceError as error:
                await context.abort_with_status(rpc_status.to_status(_status_for(error)))
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception:
                reference = uuid.uuid4().hex[:12]
                log.exception("rpc failed", method=method, reference=reference)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"internal error (reference {reference})"
                )

        # No request_deserializer: gRPC hands `guarded` the raw bytes, so that decoding happens
        # after authentication and a decoding failure is answered here, not as UNKNOWN with a
        # traceback from inside gRPC.
        return grpc.unary_unary_rpc_method_handler(
            guarded, response_serializer=handler.response_serializer
        )


def _decode(method: str, decode: Callable[[bytes], Any] | None, raw: bytes) -> Any:
    if decode is None:
        return raw
    try:
        return decode(raw)
    except DecodeError as error:
        message_type: Descriptor | None = getattr(
            getattr(decode, "__self__", None), "DESCRIPTOR", None
        )
        field = _bad_field(message_type, raw) if message_type is not None else None
        log.warning("malformed request refused", method=method, field=field, error=str(error))
        if field is not None:
            raise InvalidArgument(field, "is not valid UTF-8 text") from None
        type_name = message_type.full_name if message_type is not None else "request"
        raise InvalidArgument("request", f"is not a well-formed {type_name} message") from None


def _bad_field(message_type: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The dotted name of the first string field whose bytes are not UTF-8 (the usual way a
    request fails to decode), found by walking the protobuf wire format; None if there is none
    or the bytes are not wire format at all."""
    position = 0
    try:
        while position < len(data):
            key, position = _varint(data, position)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, position = _varint(data, position)
            elif wire_type == 1:
                position += 8
            elif wire_type == 5:
                position += 4
            elif wire_type == 2:
                length, position = _varint(data, position)
                chunk, position = data[position : position + length], position + length
                field = message_type.fields_by_number.get(number)
                if field is None:
                    continue
                name = f"{prefix}{field.name}"
                if field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return name
                elif field.message_type is not None:
                    nested = field.message_type
                    inner_prefix = "" if nested.GetOptions().map_entry else f"{name}."
                    found = _bad_field(nested, chunk, inner_prefix)
                    if found is not None:
                        return f"{name}.{found}" if not inner_prefix else found
            else:
                return None
    except IndexError:
        return None
    return None


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def serve(
    *,
    name: str,
    address: str,
    secret: str,
    register: Callable[[grpc.aio.Server], None],
    service_full_names: list[str],
    method_roles: Mapping[str, frozenset[str]],
    background: list[BackgroundTask] = [],  # noqa: B006 - never mutated
    tls: grpc.ServerCredentials | None = None,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
    health_address: str | None = None,
) -> None:
    """Runs the server until SIGTERM/SIGINT (or `stop` is set), then drains and stops.
    health_address: a plaintext port answering only the health service (for probes that cannot
    speak TLS), reporting the same status as the server."""
    if secret == DEV_AUTH_SECRET:
        log.warning(
            "AUTH_SECRET is the public development secret: anyone can mint tokens; "
            "set AUTH_SECRET outside the embedded stack",
            service=name,
        )
    server = grpc.aio.server(
        interceptors=[
            ObservingInterceptor(name),  # outermost: counts, times and traces every answer
            AuthAndErrorsInterceptor(secret, method_roles),
        ]
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *service_full_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    if tls is not None:
        server.add_secure_port(address, tls)
    else:
        server.add_insecure_port(address)
    await server.start()
    health_server: grpc.aio.Server | None = None
    if health_address is not None:
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_server.add_insecure_port(health_address)
        await health_server.start()

    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    tasks = [asyncio.create_task(task(stop), name=f"{name}-bg") for task in background]
    for full_name in [*service_full_names, ""]:
        await health_servicer.set(full_name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", service=name, address=address)
    if ready:
        ready()

    stop_wait = asyncio.create_task(stop.wait())
    watched = {stop_wait, *tasks}
    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stop_wait and task.exception():
            log.error("background task failed", service=name, error=repr(task.exception()))
    stop.set()
    for full_name in [*service_full_names, ""]:
        await health_servicer.set(full_name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace=3)
    if health_server is not None:
        await health_server.stop(grace=None)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    log.info("stopped", service=name)


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from TLS_CERT_FILE and TLS_KEY_FILE, or None for plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
    )
