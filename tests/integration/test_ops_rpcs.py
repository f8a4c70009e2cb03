"""The RPCs the ops console reads: ApplicationService.SummarizeApplications (counts per program
and stage with the stuck ones, per Beijing day and program, by GROUP BY and never by listing),
ListApplications' application-id prefix and stuck filters, and OperationsService.GetDeadLetters
(the dead-letter topics counted on a real Kafka-protocol broker, Tansu)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from grantflow.v1 import applications_pb2, operations_pb2
from services.common import kafka
from services.common.config import Settings
from services.common.db import Database, to_timestamp
from services.common.errors import Unavailable
from services.common.operations import OperationsServicer
from services.common.vocabulary import GrantStage, Role
from tests.integration._applications_server import ApplicationsHarness, applications_service
from tests.integration.test_applications_service import rpc_error, submission

BEIJING = timezone(timedelta(hours=8))
ENTERPRISES = ("91440300MA5000000G", "91440300MA6000000N")


@pytest.fixture
async def service(database_url: str, tmp_path: Path) -> AsyncIterator[ApplicationsHarness]:
    async with applications_service(database_url, tmp_path) as harness:
        yield harness


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements any engine of this process runs meanwhile (the service runs here)."""
    seen: list[str] = []

    def record(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def file_three(service: ApplicationsHarness) -> list[str]:
    """Three SME-CLOUD filings: one left SUBMITTED, one IN_REVIEW, one PAID."""
    ids = []
    for n, enterprise in enumerate((*ENTERPRISES, ENTERPRISES[0])):
        answer = await service.stub.SubmitApplication(
            submission(f"req-ops-{n:04d}", enterprise),
            metadata=service.auth(Role.APPLICANT, enterprise=enterprise),
        )
        ids.append(answer.application_id)
    system = service.auth(Role.SYSTEM)
    for application_id, stage in ((ids[1], GrantStage.IN_REVIEW), (ids[2], GrantStage.PAID)):
        await service.stub.ReportGrantStage(
            applications_pb2.ReportGrantStageRequest(
                event_id=f"grant-{application_id}-1",
                change=applications_pb2.GrantStageChanged(
                    application_id=application_id,
                    stage=stage.to_proto(),
                    sequence=1,  # type: ignore[arg-type]
                ),
            ),
            metadata=system,
        )
    return ids


async def test_summary_counts_by_stage_and_day_with_the_stuck_ones(
    service: ApplicationsHarness,
) -> None:
    await file_three(service)
    ops = service.auth(Role.OPS)
    later = to_timestamp(datetime.now(UTC) + timedelta(hours=1))
    with statements() as seen:
        summary = await service.stub.SummarizeApplications(
            applications_pb2.SummarizeApplicationsRequest(stuck_before=later), metadata=ops
        )
    by_stage = {
        (row.program_code, GrantStage.from_proto(row.stage)): (row.count, row.stuck)
        for row in summary.by_stage
    }
    assert by_stage == {
        ("SME-CLOUD", GrantStage.SUBMITTED): (1, 1),
        ("SME-CLOUD", GrantStage.IN_REVIEW): (1, 1),
        ("SME-CLOUD", GrantStage.PAID): (1, 0),  # ended: never stuck
    }
    assert (summary.total, summary.stuck) == (3, 2)
    today = datetime.now(BEIJING).strftime("%Y-%m-%d")
    assert [(row.day, row.program_code, row.count) for row in summary.by_day] == [
        (today, "SME-CLOUD", 3)
    ]
    # Counted by the database: every statement on the application table groups, none lists.
    on_applications = [s for s in seen if "FROM application" in s]
    assert len(on_applications) == 2 and all("GROUP BY" in s for s in on_applications), seen

    # Nothing stuck when the threshold is before the filings; no day before since_day.
    earlier = to_timestamp(datetime.now(UTC) - timedelta(hours=1))
    summary = await service.stub.SummarizeApplications(
        applications_pb2.SummarizeApplicationsRequest(stuck_before=earlier, since_day="2999-01-01"),
        metadata=ops,
    )
    assert summary.stuck == 0 and summary.total == 3 and list(summary.by_day) == []

    refused = await rpc_error(
        service.stub.SummarizeApplications(
            applications_pb2.SummarizeApplicationsRequest(),
            metadata=service.auth(Role.APPLICANT, enterprise=ENTERPRISES[0]),
        )
    )
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    bad = await rpc_error(
        service.stub.SummarizeApplications(
            applications_pb2.SummarizeApplicationsRequest(since_day="yesterday"), metadata=ops
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "since_day" in (bad.details() or "")


async def test_list_finds_by_id_prefix_and_stuck(service: ApplicationsHarness) -> None:
    ids = await file_three(service)
    ops = service.auth(Role.OPS)

    async def listed(**fields: Any) -> list[str]:
        answer = await service.stub.ListApplications(
            applications_pb2.ListApplicationsRequest(**fields), metadata=ops
        )
        return [a.application_id for a in answer.applications]

    assert await listed(application_id_prefix=ids[1][:6].upper()) == [ids[1]]
    later = to_timestamp(datetime.now(UTC) + timedelta(hours=1))
    assert set(await listed(updated_before=later, open_only=True)) == {ids[0], ids[1]}
    earlier = to_timestamp(datetime.now(UTC) - timedelta(hours=1))
    assert await listed(updated_before=earlier) == []
    bad = await rpc_error(
        service.stub.ListApplications(
            applications_pb2.ListApplicationsRequest(application_id_prefix="x%"), metadata=ops
        )
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "application_id_prefix" in (bad.details() or "")


async def test_dead_letters_are_counted_per_stream_on_the_broker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        kafka_embedded_broker_recovery=True,
    )
    await kafka.ensure_topics(settings)
    parked = kafka.dead_letter_topic(kafka.topic(settings, kafka.APPLICATIONS))
    producer = kafka.Producer(settings)
    await producer.start()
    try:
        for n in range(2):
            await producer.send(kafka.Outgoing(parked, b"\x0a\xff", f"junk-{n}".encode()))
    finally:
        await producer.close()
    database = Database(f"sqlite:///{tmp_path / 'unused.db'}")
    try:
        servicer = OperationsServicer("applications", database, settings)
        answer = await servicer.GetDeadLetters(operations_pb2.GetDeadLettersRequest(), None)
        counts = {topic.stream: (topic.topic, topic.count) for topic in answer.topics}
        assert counts[kafka.APPLICATIONS] == (parked, 2)
        assert {stream: n for stream, (_, n) in counts.items()} == {
            kafka.APPLICATIONS: 2,
            kafka.GRANTS: 0,
            kafka.REVIEW: 0,
            kafka.DISBURSEMENT: 0,
        }
        assert answer.total == 2

        async def unreachable(_settings: Settings, _topics: Any) -> dict[str, int]:
            raise OSError("connection refused")

        broken = OperationsServicer("applications", database, settings, unreachable)
        with pytest.raises(Unavailable, match="connection refused"):
            await broken.GetDeadLetters(operations_pb2.GetDeadLettersRequest(), None)
    finally:
        database.dispose()
