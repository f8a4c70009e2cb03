"""The channels applicants are told on, behind one interface: the log adapter (the default: the
delivery log is the record, nothing leaves the service), mail over SMTP (smtplib) and SMS over
an HTTP gateway. Mail relay and gateway are the edge of the system: configured by settings
(SMTP_*, SMS_GATEWAY_*), faked by local servers in the tests.

A channel raises DeliveryError when an attempt fails; `permanent` says that no retry can help
(the relay refused the address, the gateway refused the request), anything else is retried.
The notification id goes along (Message-ID, the gateway's `id`) so a receiver can drop the
duplicate of an attempt whose answer was lost.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Protocol

import structlog

from services.applications.notification_store import ContactRow
from services.applications.notification_texts import Text
from services.common.config import Settings
from services.common.vocabulary import NotificationChannel

log = structlog.get_logger(__name__)
LOG_ADDRESS = "delivery-log"


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    name: NotificationChannel

    def address(self, contact: ContactRow | None) -> str:
        """Where this channel reaches the enterprise; "" if it left no address for it."""
        ...

    async def send(self, notification_id: str, address: str, text: Text) -> None: ...


class LogChannel:
    name = NotificationChannel.LOG

    def address(self, contact: ContactRow | None) -> str:
        return LOG_ADDRESS

    async def send(self, notification_id: str, address: str, text: Text) -> None:
        log.info("notification", notification_id=notification_id, subject=text.subject)


class MailChannel:
    name = NotificationChannel.MAIL

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def address(self, contact: ContactRow | None) -> str:
        return contact.email if contact is not None else ""

    async def send(self, notification_id: str, address: str, text: Text) -> None:
        message = EmailMessage()
        message["From"] = self.settings.smtp_sender
        message["To"] = address
        message["Subject"] = text.subject
        message["Message-ID"] = f"<{notification_id}@grantflow>"
        message.set_content(text.body, charset="utf-8")
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            raise DeliveryError(f"mail refused: {error.recipients}", permanent=True) from None
        except smtplib.SMTPResponseException as error:
            # 5xx: the relay will not take it; 4xx: try again later.
            raise DeliveryError(
                f"SMTP {error.smtp_code}: {error.smtp_error!r}", permanent=error.smtp_code >= 500
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"SMTP relay unreachable: {error}") from None


class SmsChannel:
    name = NotificationChannel.SMS
    MAX_TEXT = 500  # gateways split long messages; more than this is a letter, not an SMS

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def address(self, contact: ContactRow | None) -> str:
        return contact.mobile if contact is not None else ""

    async def send(self, notification_id: str, address: str, text: Text) -> None:
        body = (
            text.body if len(text.body) <= self.MAX_TEXT else text.body[: self.MAX_TEXT - 1] + "…"
        )
        payload = {"id": notification_id, "mobile": address, "text": body}
        await asyncio.to_thread(self._post, payload)

    def _post(self, payload: dict[str, str]) -> None:
        s = self.settings
        request = urllib.request.Request(
            s.sms_gateway_url,
            data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Authorization": f"Bearer {s.sms_gateway_token}",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=s.sms_timeout_seconds) as answer:
                answer.read()
        except urllib.error.HTTPError as error:
            # 4xx: the gateway refuses this message (number, text, token); 5xx: try again.
            permanent = 400 <= error.code < 500 and error.code not in (408, 429)
            raise DeliveryError(f"SMS gateway HTTP {error.code}", permanent=permanent) from None
        except (urllib.error.URLError, OSError) as error:
            raise DeliveryError(f"SMS gateway unreachable: {error}") from None


def channels_from(settings: Settings) -> list[Channel]:
    """The channels NOTIFICATION_CHANNELS names, in its order."""
    made: dict[str, Channel] = {
        NotificationChannel.LOG: LogChannel(),
        NotificationChannel.MAIL: MailChannel(settings),
        NotificationChannel.SMS: SmsChannel(settings),
    }
    return [made[NotificationChannel.parse(name)] for name in settings.channels()]
