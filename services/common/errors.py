"""Errors a servicer raises and the gRPC status each becomes.

Servicers raise these; the server interceptor turns them into statuses. INVALID_ARGUMENT carries a
google.rpc.BadRequest naming the offending field, and the message names it too, so both generic
and Grantflow clients can show it. An error with a `reason` carries a google.rpc.ErrorInfo of
Grantflow's domain, so a client can tell, say, a payment gateway's timeout from a service that
could not be reached (both UNAVAILABLE). Anything else becomes INTERNAL with a reference, never
a trace.
"""

from __future__ import annotations

import grpc

ERROR_DOMAIN = "grantflow"
# ErrorInfo reasons. PAYMENT_GATEWAY: the payment gateway answered with a failure that a later
# attempt may overcome (it timed out with the outcome unknown, or was unavailable).
REASON_PAYMENT_GATEWAY = "PAYMENT_GATEWAY"
# PAYMENT_SETTLING: the gateway accepted the payment and it is settling (not final yet): ask
# again later; the line must neither be paid again nor given up.
REASON_PAYMENT_SETTLING = "PAYMENT_SETTLING"


class ServiceError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


def error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason a Grantflow service attached to its answer; "" if none (as when
    the service could not be reached at all)."""
    from google.rpc import error_details_pb2, status_pb2

    for key, value in getattr(error, "trailing_metadata", lambda: None)() or ():
        if key != "grpc-status-details-bin":
            continue
        for detail in status_pb2.Status.FromString(value).details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                return str(info.reason)
    return ""
