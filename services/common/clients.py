"""gRPC clients of the three services, authenticated with a bearer token.

Used by the worker's activities (system token), the consumers, the CLI and the tests.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import grpc

from grantflow.v1 import (
    applications_pb2_grpc,
    audit_pb2_grpc,
    disbursement_pb2_grpc,
    review_pb2_grpc,
)
from services.common import tracing
from services.common.auth import mint_token
from services.common.config import Settings
from services.common.vocabulary import Role


class _BearerAuth(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = tuple(details.metadata or ()) + self._metadata
        details = details._replace(metadata=metadata)
        return await continuation(details, request)


def system_token(settings: Settings) -> str:
    """The token Grantflow's own processes use to call each other."""
    return settings.service_token or mint_token(
        settings.auth_secret, "grantflow-system", Role.SYSTEM, ttl_seconds=365 * 24 * 3600
    )


SERVICE_NAMES = ("applications", "review", "disbursement")


class ServiceClients:
    """Async stubs for applications, review and disbursement (and each one's AuditService, by
    service name) with one caller's token."""

    def __init__(self, settings: Settings, token: str | None) -> None:
        # token None: no token of its own; each call passes its caller's (the console's users).
        interceptors: list[grpc.aio.ClientInterceptor] = [_BearerAuth(token)] if token else []
        if tracing.enabled():
            from services.common.observability import TracingClientInterceptor

            interceptors.append(TracingClientInterceptor())
        credentials = (
            grpc.ssl_channel_credentials(settings.tls_ca_file.read_bytes())
            if settings.tls_ca_file is not None
            else None
        )
        self._channels = [
            grpc.aio.secure_channel(address, credentials, interceptors=interceptors)
            if credentials is not None
            else grpc.aio.insecure_channel(address, interceptors=interceptors)
            for address in (
                settings.applications_address,
                settings.review_address,
                settings.disbursement_address,
            )
        ]
        self.applications = applications_pb2_grpc.ApplicationServiceStub(self._channels[0])
        self.review = review_pb2_grpc.ReviewServiceStub(self._channels[1])
        self.disbursement = disbursement_pb2_grpc.DisbursementServiceStub(self._channels[2])
        # Every service serves its own audit trail.
        self.audit = {
            name: audit_pb2_grpc.AuditServiceStub(channel)
            for name, channel in zip(
                ("applications", "review", "disbursement"), self._channels, strict=True
            )
        }
        # Each service's channel by name, for the services every server also serves (health,
        # operations) beside its own.
        self.channels = dict(zip(SERVICE_NAMES, self._channels, strict=True))

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> ServiceClients:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def notices(self) -> Any:
        """The NoticeService stub (notice_pb2_grpc.NoticeServiceStub), served by the review
        service beside ReviewService."""
        from grantflow.v1 import notice_pb2_grpc

        return notice_pb2_grpc.NoticeServiceStub(self._channels[1])

    @property
    def repairs(self) -> Any:
        """The RepairService stub (repair_pb2_grpc.RepairServiceStub), served by the applications
        service beside ApplicationService."""
        from grantflow.v1 import repair_pb2_grpc

        return repair_pb2_grpc.RepairServiceStub(self._channels[0])

    @property
    def calendar(self) -> Any:
        """The CalendarService stub (calendar_pb2_grpc.CalendarServiceStub), served by the
        applications service beside ApplicationService."""
        from grantflow.v1 import calendar_pb2_grpc

        return calendar_pb2_grpc.CalendarServiceStub(self._channels[0])

    @property
    def notifications(self) -> Any:
        """The NotificationService stub (notifications_pb2_grpc.NotificationServiceStub),
        served by the applications service."""
        from grantflow.v1 import notifications_pb2_grpc

        return notifications_pb2_grpc.NotificationServiceStub(self._channels[0])
