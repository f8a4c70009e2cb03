"""NotificationServicer: the gRPC face of the notifications to applicants (notifications.proto),
served by the applications service beside ApplicationService: the delivery log of an
application, and the addresses an enterprise is told at. An applicant sees only its own."""

from __future__ import annotations

import grpc

from grantflow.v1 import notifications_pb2, notifications_pb2_grpc
from services.applications.notification_use_cases import (
    Notifications,
    SetContact,
    check_contact,
)
from services.common import validation
from services.common.auth import current_principal
from services.common.service_main import Companion, ServiceSpec
from services.common.vocabulary import Role

NOTIFICATION_SERVICE = ServiceSpec(
    name="applications",
    descriptor=notifications_pb2.DESCRIPTOR.services_by_name["NotificationService"],
    roles={
        "ListNotifications": (Role.APPLICANT, Role.OPS),
        "SetNotificationContact": (Role.APPLICANT, Role.OPS),
        "GetNotificationContact": (Role.APPLICANT, Role.OPS),
    },
)


def _credit_code(value: str) -> str:
    """The enterprise asked about: the caller's own when not given (applicants)."""
    caller = current_principal()
    value = value.strip() or (caller.enterprise if caller.role == Role.APPLICANT else "")
    return validation.credit_code("credit_code", value)


class NotificationServicer(notifications_pb2_grpc.NotificationServiceServicer):
    def __init__(self, notifications: Notifications) -> None:
        self.notifications = notifications

    async def ListNotifications(
        self, request: notifications_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> notifications_pb2.ListNotificationsResponse:
        application_id = validation.identifier("application_id", request.application_id.strip())
        rows = await self.notifications.of_application(current_principal(), application_id)
        return notifications_pb2.ListNotificationsResponse(
            notifications=[row.to_proto() for row in rows]
        )

    async def SetNotificationContact(
        self,
        request: notifications_pb2.SetNotificationContactRequest,
        context: grpc.aio.ServicerContext,
    ) -> notifications_pb2.NotificationContact:
        credit_code = _credit_code(request.credit_code)
        email, mobile = check_contact(request.email, request.mobile)
        command = SetContact(current_principal(), credit_code, email, mobile)
        return (await self.notifications.set_contact(command)).to_proto()

    async def GetNotificationContact(
        self,
        request: notifications_pb2.GetNotificationContactRequest,
        context: grpc.aio.ServicerContext,
    ) -> notifications_pb2.NotificationContact:
        credit_code = _credit_code(request.credit_code)
        return (await self.notifications.contact(current_principal(), credit_code)).to_proto()


def notification_companion(notifications: Notifications) -> Companion:
    servicer = NotificationServicer(notifications)

    def register(server: grpc.aio.Server) -> None:
        notifications_pb2_grpc.add_NotificationServiceServicer_to_server(servicer, server)

    return Companion(NOTIFICATION_SERVICE, register)
