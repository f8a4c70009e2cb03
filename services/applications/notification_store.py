"""Tables of the notifications to applicants (applications database): the delivery log, one row
per (event, channel), and the addresses each enterprise is told at."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, select

from grantflow.v1 import notifications_pb2
from services.common.db import to_timestamp
from services.common.vocabulary import DeliveryStatus


class NotificationRow(SQLModel, table=True):
    """One notification of one event on one channel, and what became of it."""

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("event_id", "channel", name="uq_notification_event_channel"),
    )

    id: int | None = Field(default=None, primary_key=True)
    notification_id: str = Field(max_length=64, unique=True)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=200)
    application_id: str = Field(max_length=32, index=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=254)
    subject: str = Field(max_length=200)
    text: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16, index=True)
    attempts: int = 0
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False))
    # When the next attempt is due; while one runs, the end of its lease.
    next_attempt_at: datetime = Field(index=True)
    created_at: datetime
    sent_at: datetime | None = None

    def to_proto(self) -> notifications_pb2.Notification:
        return notifications_pb2.Notification(
            notification_id=self.notification_id,
            event_id=self.event_id,
            event_type=self.event_type,
            application_id=self.application_id,
            channel=self.channel,
            address=self.address,
            subject=self.subject,
            text=self.text,
            status=DeliveryStatus.parse(self.status).to_proto(),
            attempts=self.attempts,
            last_error=self.last_error,
            created_at=to_timestamp(self.created_at),
            sent_at=to_timestamp(self.sent_at),
        )


class ContactRow(SQLModel, table=True):
    __tablename__ = "notification_contact"

    credit_code: str = Field(primary_key=True, max_length=18)
    email: str = Field(default="", max_length=254)
    mobile: str = Field(default="", max_length=20)
    updated_by: str = Field(max_length=128)
    updated_at: datetime

    def to_proto(self) -> notifications_pb2.NotificationContact:
        return notifications_pb2.NotificationContact(
            credit_code=self.credit_code,
            email=self.email,
            mobile=self.mobile,
            updated_at=to_timestamp(self.updated_at),
        )


def of_application(session: Session, application_id: str) -> list[NotificationRow]:
    return list(
        session.exec(
            select(NotificationRow)
            .where(NotificationRow.application_id == application_id)
            .order_by(col(NotificationRow.id))
        ).all()
    )


def of_event(session: Session, event_id: str) -> list[NotificationRow]:
    return list(
        session.exec(select(NotificationRow).where(NotificationRow.event_id == event_id)).all()
    )


def due(session: Session, at: datetime, limit: int) -> list[str]:
    """Ids of pending notifications whose attempt is due."""
    return list(
        session.exec(
            select(NotificationRow.notification_id)
            .where(NotificationRow.status == DeliveryStatus.PENDING.value)
            .where(col(NotificationRow.next_attempt_at) <= at)
            .order_by(col(NotificationRow.next_attempt_at))
            .limit(limit)
        ).all()
    )


def by_id(
    session: Session, notification_id: str, *, for_update: bool = False
) -> NotificationRow | None:
    query = select(NotificationRow).where(NotificationRow.notification_id == notification_id)
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()
