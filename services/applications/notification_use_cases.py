"""Notifications to applicants: one per (event, channel), recorded in the delivery log and then
sent by a dispatcher, with retries; and the addresses enterprises are told at.

Recording is idempotent by event id: the consumer claims the event (processed_event) in the
same transaction that writes its notifications, so an event delivered twice by Kafka is told
once. Sending happens after that commit, from the log: an attempt first takes a lease on its
row (attempts + 1, next attempt pushed past the lease) so that two dispatchers (two replicas,
or a retry racing the first attempt) never send the same row at once, then sends, then writes
the outcome. A process that dies mid-attempt leaves the row to be tried again when the lease
runs out: a receiver may then get the same message twice, which the notification id carried
along (Message-ID, the gateway's id) lets it recognise.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlmodel import Session

from grantflow.v1 import events_pb2
from services.applications import notification_store as store
from services.applications import store as applications_store
from services.applications.channels import Channel, DeliveryError
from services.applications.notification_store import ContactRow, NotificationRow
from services.applications.notification_texts import Application, Text, text_for
from services.common import metrics
from services.common.auth import Principal
from services.common.db import as_utc, now_utc
from services.common.errors import InvalidArgument, NotFound
from services.common.kafka import sleep_or_stop
from services.common.outbox import claim_event
from services.common.unit_of_work import Transactions, UnitOfWork
from services.common.vocabulary import AuditAction, DeliveryStatus, NotificationChannel, Role

log = structlog.get_logger(__name__)

CONSUMER = "notifications"  # the consumer group, and its name in processed_event
# Derives notification ids from (event, channel); never to change.
NOTIFICATION_NAMESPACE = uuid.UUID("6f0d3a52-1c3e-4b8e-9a51-4f6b2d7c9e13")
LEASE = timedelta(minutes=2)  # longer than any channel's timeout
BATCH = 100
EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MOBILE = re.compile(r"^1[3-9][0-9]{9}$")


def notification_id(event_id: str, channel: str) -> str:
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"{event_id}:{channel}"))


@dataclass(frozen=True)
class Attempt:
    notification_id: str
    channel: str
    address: str
    text: Text
    attempts: int


@dataclass(frozen=True)
class SetContact:
    caller: Principal
    credit_code: str
    email: str
    mobile: str


def _masked_email(email: str) -> str:
    if not email:
        return ""
    name, _, domain = email.partition("@")
    return f"{name[:1]}***@{domain}"


def _masked_mobile(mobile: str) -> str:
    return f"{mobile[:3]}****{mobile[-4:]}" if mobile else ""


def check_contact(email: str, mobile: str) -> tuple[str, str]:
    email, mobile = email.strip(), mobile.strip()
    if email and (len(email) > 254 or not EMAIL.match(email)):
        raise InvalidArgument("email", "is not a mail address")
    if mobile and not MOBILE.match(mobile):
        raise InvalidArgument("mobile", "must be an 11-digit mainland mobile number")
    return email, mobile


class Notifications:
    def __init__(
        self,
        transactions: Transactions,
        channels: list[Channel],
        *,
        max_attempts: int = 5,
        retry_seconds: float = 30.0,
        poll_seconds: float = 5.0,
    ) -> None:
        self.transactions = transactions
        self.channels = {channel.name.value: channel for channel in channels}
        self.max_attempts = max_attempts
        self.retry = timedelta(seconds=retry_seconds)
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    # The consumer ---------------------------------------------------------------------------

    async def handle(self, envelope: events_pb2.EventEnvelope) -> None:
        """Records the notifications an event means (once per event id) and wakes the
        dispatcher."""
        if await self.record(envelope):
            self._wake.set()

    async def record(self, envelope: events_pb2.EventEnvelope) -> list[str]:
        """The ids of the notifications this event added to the log (none for an event seen
        before, or one that concerns no applicant)."""

        def work(unit: UnitOfWork) -> list[str]:
            session = unit.session
            if not claim_event(session, CONSUMER, envelope.event_id):
                return []
            record = applications_store.application_by_id(session, envelope.subject)
            if record is None:
                return []
            application = Application(
                application_id=record.application_id,
                credit_code=record.applicant_credit_code,
                applicant_name=record.applicant_name,
                project_title=record.project_title,
                program_code=record.program_code,
            )
            text = text_for(envelope, application)
            if text is None:
                return []
            contact = session.get(ContactRow, record.applicant_credit_code)
            now = now_utc()
            added = []
            for name, channel in self.channels.items():
                address = channel.address(contact)
                if name == NotificationChannel.LOG:
                    # The log is the delivery: written here, in the event's own transaction.
                    session.add(
                        NotificationRow(
                            notification_id=notification_id(envelope.event_id, name),
                            event_id=envelope.event_id,
                            event_type=envelope.type,
                            application_id=record.application_id,
                            channel=name,
                            address=address,
                            subject=text.subject,
                            text=text.body,
                            status=DeliveryStatus.SENT.value,
                            attempts=1,
                            next_attempt_at=now,
                            created_at=now,
                            sent_at=now,
                        )
                    )
                    continue
                row = NotificationRow(
                    notification_id=notification_id(envelope.event_id, name),
                    event_id=envelope.event_id,
                    event_type=envelope.type,
                    application_id=record.application_id,
                    channel=name,
                    address=address,
                    subject=text.subject,
                    text=text.body,
                    status=(DeliveryStatus.PENDING if address else DeliveryStatus.SKIPPED).value,
                    last_error="" if address else "申请单位未登记该渠道的联系方式 (no address)",
                    next_attempt_at=now,
                    created_at=now,
                )
                session.add(row)
                if address:
                    added.append(row.notification_id)
            return added

        return await self.transactions.write(work)

    # The dispatcher -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sends what is due until stop; woken by new notifications, else looks every
        poll_seconds (retries, rows other replicas recorded)."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database out of reach: look again later
                log.warning("notification dispatch failed", error=repr(error))
            waking = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait(
                    [waking, asyncio.ensure_future(sleep_or_stop(stop, self.poll_seconds))],
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waking.cancel()

    async def deliver_due(self) -> int:
        """Attempts every notification that is due; answers how many were sent."""
        sent = 0
        while True:
            ids = await self.transactions.read(lambda s: store.due(s, now_utc(), BATCH))
            if not ids:
                return sent
            for notification in ids:
                sent += await self.deliver(notification)
            if len(ids) < BATCH:
                return sent

    async def deliver(self, notification: str) -> int:
        """One attempt at one notification, if it is due and no one else holds it; 1 if sent."""
        attempt = await self.transactions.write(lambda unit: self._lease(unit, notification))
        if attempt is None:
            return 0
        channel = self.channels.get(attempt.channel)
        error: DeliveryError | None = None
        if channel is None:
            error = DeliveryError(f"channel {attempt.channel} is not configured", permanent=True)
        else:
            try:
                await channel.send(attempt.notification_id, attempt.address, attempt.text)
            except DeliveryError as failed:
                error = failed
        outcome = await self.transactions.write(lambda unit: self._outcome(unit, attempt, error))
        metrics.NOTIFICATIONS.labels(attempt.channel, outcome).inc()
        if error is not None:
            log.warning(
                "notification not delivered",
                notification_id=attempt.notification_id,
                channel=attempt.channel,
                attempt=attempt.attempts,
                outcome=outcome,
                error=str(error),
            )
        return 1 if outcome == "sent" else 0

    def _lease(self, unit: UnitOfWork, notification: str) -> Attempt | None:
        row = store.by_id(unit.session, notification, for_update=True)
        now = now_utc()
        if row is None or row.status != DeliveryStatus.PENDING or as_utc(row.next_attempt_at) > now:
            return None
        row.attempts += 1
        row.next_attempt_at = now + LEASE
        unit.session.add(row)
        return Attempt(
            row.notification_id,
            row.channel,
            row.address,
            Text(row.subject, row.text),
            row.attempts,
        )

    def _outcome(self, unit: UnitOfWork, attempt: Attempt, error: DeliveryError | None) -> str:
        row = store.by_id(unit.session, attempt.notification_id, for_update=True)
        if row is None:
            return "failed"
        now = now_utc()
        if error is None:
            row.status, row.sent_at, row.last_error = DeliveryStatus.SENT.value, now, ""
            outcome = "sent"
        elif error.permanent or row.attempts >= self.max_attempts:
            row.status, row.last_error = DeliveryStatus.FAILED.value, str(error)[:2000]
            outcome = "failed"
        else:
            row.last_error = str(error)[:2000]
            row.next_attempt_at = now + self.retry * 2 ** (row.attempts - 1)
            outcome = "retry"
        unit.session.add(row)
        return outcome

    # Reads and contacts ---------------------------------------------------------------------

    async def of_application(self, caller: Principal, application_id: str) -> list[NotificationRow]:
        def work(session: Session) -> list[NotificationRow]:
            record = applications_store.application_by_id(session, application_id)
            if record is None or (
                caller.role == Role.APPLICANT
                and record.applicant_credit_code != caller.enterprise.strip().upper()
            ):
                raise NotFound(f"application {application_id} not found")
            return store.of_application(session, application_id)

        return await self.transactions.read(work)

    async def contact(self, caller: Principal, credit_code: str) -> ContactRow:
        _own(caller, credit_code)

        def work(session: Session) -> ContactRow:
            row = session.get(ContactRow, credit_code)
            if row is None:
                raise NotFound(f"no contact for {credit_code}")
            return row

        return await self.transactions.read(work)

    async def set_contact(self, command: SetContact) -> ContactRow:
        _own(command.caller, command.credit_code)

        def work(unit: UnitOfWork) -> ContactRow:
            row = unit.session.get(ContactRow, command.credit_code)
            if row is not None and (row.email, row.mobile) == (command.email, command.mobile):
                return row
            now: datetime = now_utc()
            if row is None:
                row = ContactRow(credit_code=command.credit_code, updated_by="", updated_at=now)
            row.email, row.mobile = command.email, command.mobile
            row.updated_by, row.updated_at = command.caller.subject, now
            unit.session.add(row)
            # Masked: the chain is kept for years and cannot be edited.
            unit.audit(
                AuditAction.NOTIFICATION_CONTACT_SET,
                command.credit_code,
                command.caller,
                details={
                    "email": _masked_email(command.email),
                    "mobile": _masked_mobile(command.mobile),
                },
            )
            return row

        return await self.transactions.write(work)


def _own(caller: Principal, credit_code: str) -> None:
    if caller.role == Role.APPLICANT and credit_code != caller.enterprise.strip().upper():
        # Another enterprise's contact answers as a missing one.
        raise NotFound(f"no contact for {credit_code}")
