"""The mail and SMS adapters against local servers at the edge: a real SMTP server (aiosmtpd)
and an HTTP gateway; what they send, and which failures are worth another attempt."""

from __future__ import annotations

import pytest

from services.applications.channels import DeliveryError, MailChannel, SmsChannel
from services.applications.notification_texts import Text
from services.common.config import Settings
from tests.integration._notification_edges import REFUSED_DOMAIN, sms_gateway, smtp_relay
from tests.support import free_port

TEXT = Text(
    "【深圳市工业和信息化专项资金】拟资助项目公示：云平台",
    "深圳某某科技有限公司：\n已列入拟资助名单。",
)


async def test_mail_goes_through_the_relay_in_chinese_with_the_notification_id() -> None:
    with smtp_relay() as (port, inbox):
        channel = MailChannel(
            Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_sender="noreply@gxj.example")
        )
        await channel.send("n-1", "zhang@enterprise.example", TEXT)
    [message] = inbox.messages
    assert message["Subject"] == TEXT.subject
    assert message["To"] == "zhang@enterprise.example"
    assert message["From"] == "noreply@gxj.example"
    assert message["Message-ID"] == "<n-1@grantflow>"
    content = message.get_content().replace("\r\n", "\n")  # type: ignore[attr-defined]
    assert content.strip() == TEXT.body


async def test_a_refused_mailbox_is_final_and_an_absent_relay_is_retried() -> None:
    with smtp_relay() as (port, inbox):
        channel = MailChannel(Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_sender="a@b.cn"))
        with pytest.raises(DeliveryError) as refused:
            await channel.send("n-2", f"nobody@{REFUSED_DOMAIN}", TEXT)
    assert refused.value.permanent and inbox.messages == []

    nowhere = MailChannel(
        Settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_sender="a@b.cn")
    )
    with pytest.raises(DeliveryError) as unreachable:
        await nowhere.send("n-3", "zhang@enterprise.example", TEXT)
    assert not unreachable.value.permanent


async def test_an_sms_is_posted_to_the_gateway_with_its_token() -> None:
    with sms_gateway() as gateway:
        channel = SmsChannel(Settings(sms_gateway_url=gateway.url, sms_gateway_token="t0ken"))
        await channel.send("n-4", "13800138000", TEXT)
    [(body, auth)] = gateway.received
    assert body == {"id": "n-4", "mobile": "13800138000", "text": TEXT.body}
    assert auth == "Bearer t0ken"


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (429, False), (503, False)])
async def test_the_gateways_refusals_and_outages(status: int, permanent: bool) -> None:
    with sms_gateway() as gateway:
        gateway.status = status
        channel = SmsChannel(Settings(sms_gateway_url=gateway.url))
        with pytest.raises(DeliveryError) as failed:
            await channel.send("n-5", "13800138000", TEXT)
    assert failed.value.permanent is permanent
