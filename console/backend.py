"""The console's only way to the business: the three gRPC services, with the user's token.

One set of channels for the whole process; each call carries the signed-in user's bearer token,
so every answer is exactly what the services let that user see. A refused call becomes a
`ServiceRefusal` with the gRPC code, the offending field of an INVALID_ARGUMENT (the
google.rpc.BadRequest the services attach) and the service's message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from console.identity import SignedInUser
from services.common.clients import ServiceClients
from services.common.config import Settings

CALL_TIMEOUT_SECONDS = 15.0
Reply = TypeVar("Reply")


@dataclass
class ServiceRefusal(Exception):
    code: grpc.StatusCode
    message: str
    field: str = ""

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_rpc(cls, error: grpc.aio.AioRpcError) -> ServiceRefusal:
        from google.rpc import error_details_pb2, status_pb2

        field = ""
        message = error.details() or error.code().name
        for key, value in error.trailing_metadata() or ():
            if key != "grpc-status-details-bin":
                continue
            for detail in status_pb2.Status.FromString(value).details:
                bad_request = error_details_pb2.BadRequest()
                if detail.Unpack(bad_request) and bad_request.field_violations:
                    violation = bad_request.field_violations[0]
                    field, message = violation.field, violation.description
        return cls(code=error.code(), message=message, field=field)


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: ServiceClients | None = None

    @property
    def clients(self) -> ServiceClients:
        # Made on first use, inside the server's event loop: grpc.aio channels belong to the loop
        # they are made in, and create_app runs before uvicorn starts its own.
        if self._clients is None:
            self._clients = ServiceClients(self.settings, token=None)
        return self._clients

    async def call(
        self,
        user: SignedInUser | None,
        method: Callable[..., Awaitable[Reply]],
        request: Any,
        *,
        timeout: float = CALL_TIMEOUT_SECONDS,
    ) -> Reply:
        """`method(request)` as `user` (None: anonymously, for the public notices)."""
        metadata = (("authorization", f"Bearer {user.token}"),) if user is not None else ()
        try:
            return await method(request, metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise ServiceRefusal.from_rpc(error) from None

    async def close(self) -> None:
        if self._clients is not None:
            await self._clients.close()
