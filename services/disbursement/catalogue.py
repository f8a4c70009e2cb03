"""The program catalogue as the disbursement service sees it: a port, and its adapter.

The catalogue belongs to the applications service (one owner per fact); the disbursement service
asks whether a program was ever published, before it gives the program a budget, and which budget
line its awards are reserved against (ProgramRule.budget_line_code of its latest version; none:
the program keeps a budget of its own). The adapter asks ApplicationService.ListPrograms over gRPC
with the system token.
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

    async def budget_line(self, program_code: str) -> str | None:
        """The budget line of the program's latest published version ("" when it names none);
        None when the program was never published; Unavailable if nobody can say."""
        ...


class ApplicationsCatalogue:
    """The applications service's catalogue, over gRPC."""

    def __init__(self, settings: Settings) -> None:
        self._clients = ServiceClients(settings, system_token(settings))

    async def is_published(self, program_code: str) -> bool:
        return await self.budget_line(program_code) is not None

    async def budget_line(self, program_code: str) -> str | None:
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
        versions = [rule for rule in answer.programs if rule.code == program_code]
        if not versions:
            return None
        return max(versions, key=lambda rule: rule.version).budget_line_code

    async def close(self) -> None:
        await self._clients.close()
