"""Notifications to applicants on the real applications service, its relay and its consumer over
a real Kafka-protocol broker (Tansu), mail to a local SMTP server (aiosmtpd) at the edge: one
notification per event and channel, in Chinese, told once even when Kafka delivers the event
twice; retried while the relay is down; visible to the applicant itself and to ops only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from grantflow.v1 import (
    applications_pb2,
    common_pb2,
    events_pb2,
    notifications_pb2,
    notifications_pb2_grpc,
)
from services.common import kafka
from services.common.vocabulary import DeliveryStatus, Role
from tests.integration._applications_server import ApplicationsHarness, applications_service
from tests.integration._notification_edges import smtp_relay
from tests.support import free_port

ENTERPRISE = "91440300MA5000000G"
OTHER = "91440300MA6000000N"
MAIL = "zhang@yunfan.example"
STAGE_CHANGED = "grantflow.v1.GrantStageChanged"


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 60.0) -> None:
    for _ in range(int(seconds * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


def notifications(harness: ApplicationsHarness) -> notifications_pb2_grpc.NotificationServiceStub:
    channel = grpc.aio.insecure_channel(harness.settings.applications_address)
    return notifications_pb2_grpc.NotificationServiceStub(channel)


async def file_application(harness: ApplicationsHarness, mobile: str = "13800138000") -> str:
    applicant = harness.auth(Role.APPLICANT, enterprise=ENTERPRISE)
    await notifications(harness).SetNotificationContact(
        notifications_pb2.SetNotificationContactRequest(email=MAIL, mobile=mobile),
        metadata=applicant,
    )
    filed = await harness.stub.SubmitApplication(
        applications_pb2.SubmitApplicationRequest(
            request_id="req-notify-1",
            program_code="SME-CLOUD",
            applicant_credit_code=ENTERPRISE,
            applicant_name="深圳市云帆科技有限公司",
            project_title="云上企业资源计划",
            figures={
                "cloud_fee_paid_fen": 300_000,
                "staff_count": 40,
                "annual_revenue_fen": 2_000_000_000,
            },
        ),
        metadata=applicant,
    )
    return str(filed.application_id)


async def report(
    harness: ApplicationsHarness, application_id: str, sequence: int, stage: int, **more: Any
) -> None:
    await harness.stub.ReportGrantStage(
        applications_pb2.ReportGrantStageRequest(
            event_id=f"grant-{application_id}-{sequence}",
            change=applications_pb2.GrantStageChanged(
                application_id=application_id,
                stage=stage,  # type: ignore[arg-type]
                sequence=sequence,
                **more,
            ),
        ),
        metadata=harness.auth(Role.SYSTEM),
    )


async def told(harness: ApplicationsHarness, application_id: str) -> list[Any]:
    answer = await notifications(harness).ListNotifications(
        notifications_pb2.ListNotificationsRequest(application_id=application_id),
        metadata=harness.auth(Role.OPS),
    )
    return list(answer.notifications)


async def redeliver(harness: ApplicationsHarness, payload: bytes, key: str) -> None:
    """The same event once more on the grants topic, as Kafka does after a lost commit."""
    producer = kafka.Producer(harness.settings)
    await producer.start()
    try:
        await producer.send(
            kafka.Outgoing(kafka.topic(harness.settings, kafka.GRANTS), payload, key.encode())
        )
    finally:
        await producer.close()


async def test_each_stage_is_told_once_per_channel_even_when_delivered_twice(
    database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    with smtp_relay() as (port, inbox):
        async with applications_service(
            database_url,
            tmp_path,
            kafka_bootstrap=kafka_bootstrap,
            notification_channels="log,mail",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_sender="noreply@gxj.example",
        ) as service:
            application = await file_application(service)
            await report(service, application, 2, common_pb2.GRANT_STAGE_IN_REVIEW, reason="第1轮")
            await report(
                service,
                application,
                3,
                common_pb2.GRANT_STAGE_AWAITING_SUPPLEMENT,
                reason="请补充云服务发票。",
            )

            async def sent(count: int) -> bool:
                rows = await told(service, application)
                return len(rows) == count and all(
                    r.status == DeliveryStatus.SENT.to_proto() for r in rows
                )

            await eventually(lambda: sent(4))  # in review, supplement: log and mail
            # Kafka hands the consumer the review report again; then the notice begins.
            first_report = events_pb2.EventEnvelope.FromString(
                service.outbox_payloads(STAGE_CHANGED)[0]
            )
            await redeliver(service, first_report.SerializeToString(), application)
            await report(
                service,
                application,
                4,
                common_pb2.GRANT_STAGE_IN_NOTICE,
                award_amount_fen=150_000,
                program_code="SME-CLOUD",
            )
            await eventually(lambda: sent(6))
            rows = await told(service, application)
            grants_topic = kafka.topic(service.settings, kafka.GRANTS)
            applied = REGISTRY.get_sample_value(
                "grantflow_kafka_records_applied_total",
                {"group": "notifications", "topic": grants_topic},
            )
    # The consumer took four records from the grants topic: three reports and the duplicate.
    assert applied == 4

    # One per (event, channel): the redelivered report was not told again, the notice was
    # (events of one application are consumed in order, so the duplicate came first).
    assert sorted((r.event_id, r.channel) for r in rows) == sorted(
        {(r.event_id, r.channel) for r in rows}
    )
    assert len({r.event_id for r in rows}) == 3
    assert {r.channel: r.address for r in rows} == {"log": "delivery-log", "mail": MAIL}
    subjects = inbox.subjects()
    assert [s.split("】")[1].split("：")[0] for s in subjects] == [
        "已进入部门审查",
        "需要补正材料",
        "拟资助项目公示",
    ]
    notice = next(r for r in rows if r.channel == "mail" and "公示" in r.subject)
    assert "0.15 万元（1,500.00 元）" in notice.text and "7 个工作日" in notice.text
    supplement = next(r for r in rows if r.channel == "mail" and "补正" in r.subject)
    assert "请补充云服务发票。请在补正期限内" in supplement.text


async def test_mail_is_retried_while_the_relay_is_down_and_sms_skipped_without_a_number(
    database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = free_port()
    async with applications_service(
        database_url,
        tmp_path,
        kafka_bootstrap=kafka_bootstrap,
        notification_channels="mail,sms",
        notification_retry_seconds=0.2,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_sender="noreply@gxj.example",
        sms_gateway_url=f"http://127.0.0.1:{free_port()}/sms",
    ) as service:
        applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE)
        application = await file_application(service, mobile="")
        await report(service, application, 2, common_pb2.GRANT_STAGE_IN_REVIEW)

        async def mail_failed_once() -> bool:
            rows = [r for r in await told(service, application) if r.channel == "mail"]
            return len(rows) == 1 and all(r.attempts >= 1 and r.last_error for r in rows)

        await eventually(mail_failed_once)
        rows = await told(service, application)
        assert all(
            r.status == DeliveryStatus.PENDING.to_proto() for r in rows if r.channel == "mail"
        )
        # The enterprise left no mobile number: its SMS are skipped, never attempted.
        sms = [r for r in rows if r.channel == "sms"]
        assert [(r.status, r.attempts) for r in sms] == [(DeliveryStatus.SKIPPED.to_proto(), 0)]

        with smtp_relay(port) as (_, inbox):

            async def mail_sent() -> bool:
                rows = [r for r in await told(service, application) if r.channel == "mail"]
                return all(r.status == DeliveryStatus.SENT.to_proto() for r in rows)

            await eventually(mail_sent)
        assert len(inbox.messages) == 1

        # The applicant reads its own log; another enterprise learns nothing.
        mine = await notifications(service).ListNotifications(
            notifications_pb2.ListNotificationsRequest(application_id=application),
            metadata=applicant,
        )
        assert len(mine.notifications) == 2
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await notifications(service).ListNotifications(
                notifications_pb2.ListNotificationsRequest(application_id=application),
                metadata=service.auth(Role.APPLICANT, enterprise=OTHER),
            )
        assert other.value.code() == grpc.StatusCode.NOT_FOUND
        assert service.count("audit_record", "action = 'notification.contact_set'") == 1


async def test_two_deployments_sharing_a_broker_each_tell_their_own_applicants(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Deployments told apart by their topic prefix keep their consumer groups apart too: a
    shared group would rebalance across both and leave one deployment's events unread."""
    async with (
        applications_service(
            f"sqlite:///{tmp_path / 'one.db'}", tmp_path / "one", kafka_bootstrap=kafka_bootstrap
        ) as one,
        applications_service(
            f"sqlite:///{tmp_path / 'two.db'}", tmp_path / "two", kafka_bootstrap=kafka_bootstrap
        ) as two,
    ):
        filed = [(service, await file_application(service)) for service in (one, two)]
        for service, application in filed:
            await report(service, application, 2, common_pb2.GRANT_STAGE_IN_REVIEW)
        for service, application in filed:

            async def logged(
                service: ApplicationsHarness = service, app: str = application
            ) -> bool:
                return len(await told(service, app)) == 1

            await eventually(logged)


async def test_a_contact_is_checked_by_field(database_url: str, tmp_path: Path) -> None:
    async with applications_service(database_url, tmp_path, seed=False) as service:
        stub = notifications(service)
        applicant = service.auth(Role.APPLICANT, enterprise=ENTERPRISE)
        for request, field in (
            (notifications_pb2.SetNotificationContactRequest(email="not-mail"), "email"),
            (notifications_pb2.SetNotificationContactRequest(mobile="12345"), "mobile"),
            (notifications_pb2.SetNotificationContactRequest(credit_code="123"), "credit_code"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SetNotificationContact(request, metadata=applicant)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (refused.value.details() or "").startswith(f"{field}:")
        assert service.count("notification_contact") == 0
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await stub.SetNotificationContact(
                notifications_pb2.SetNotificationContactRequest(credit_code=OTHER, email=MAIL),
                metadata=applicant,
            )
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
