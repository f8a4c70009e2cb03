"""The program catalogue as the disbursement service sees it: a port, and its adapter.

The catalogue belongs to the applications service (one owner per fact); the disbursement service
only asks whether a program was ever published, before it gives the program a budget. The adapter
asks ApplicationService.ListPrograms over gRPC with the system token.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from grantflow.v1 import applications_pb2
from services.common.clients import ServiceClients, system_token
from services.common.config import Settings
from services.common.errors import Unavailable

# A catalogue that has not answered by then is treated as unreachable; the caller may retry.
CALL_TIMEOUT_S = 10.0
_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class ProgramCatalogue(Protocol):
    async def is_published(self, program_code: str) -> bool:
        """Whether any version of the program was published; Unavailable if nobody can say."""
        ...


class ApplicationsCatalogue:
    """The applications service's catalogue, over gRPC."""

    def __init__(self, settings: Settings) -> None:
        self._clients = ServiceClients(settings, system_token(settings))

    async def is_published(self, program_code: str) -> bool:
        try:
            answer = await self._clients.applications.ListPrograms(
                applications_pb2.ListProgramsRequest(code=program_code), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNREACHABLE:
                raise Unavailable(
                    "the program catalogue (applications service) cannot be reached; retry"
                ) from error
            raise
        return any(rule.code == program_code for rule in answer.programs)

    async def close(self) -> None:
        await self._clients.close()
