"""The whole system on the real embedded stack, once on SQLite and once on PostgreSQL: the
scripted demo's applications are filed, reviewed by two departments, noticed, planned and paid;
grants are found by search attributes; events are read from the broker with a plain Kafka client
and decoded with the protos; the ledger balances and agrees with the payment gateway."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rich.console import Console
from sqlalchemy import create_engine, text

from grantflow.demo import run_demo
from grantflow.ops import find_grants, read_events
from grantflow.v1 import disbursement_pb2
from infra.local.stack import LocalStack
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.db import normalise_url
from services.common.vocabulary import Role
from tests.conftest import require_postgres
from tests.stack_fixture import running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    if request.param == "postgres":
        require_postgres()
    with running_stack(tmp_path_factory.mktemp(f"stack-{request.param}"), request.param) as s:
        yield s


async def test_demo_lifecycle_pays_awards_once_and_everything_agrees(stack: LocalStack) -> None:
    settings = stack.settings
    summary = await run_demo(settings, Console(quiet=True), count=12)
    assert summary.ok, [(g.scenario.kind, g.status, g.reason) for g in summary.grants]
    outcomes = Counter(summary.outcomes)
    assert outcomes["PAID"] >= 6 and outcomes["REJECTED"] >= 2 and outcomes["WITHDRAWN"] >= 1
    paid = [g for g in summary.grants if g.scenario.expected == 9]
    assert all(g.award_fen > 0 for g in paid)

    # Operators find grants by business keys (search attributes), not by workflow ids.
    sme = await find_grants(settings, "PAID", "SME-CLOUD", "", 100)
    assert {row[0] for row in sme} >= {
        f"grant-{g.application_id}" for g in paid if g.scenario.program == "SME-CLOUD"
    }
    one = paid[0]
    mine = await find_grants(settings, "", "", one.credit_code, 10)
    assert [row[0] for row in mine] == [f"grant-{one.application_id}"]

    # The events are on the broker, readable with a plain client, decodable with the protos.
    submitted = await read_events(settings, "applications", 500)
    assert {
        e.application_submitted.application.application_id
        for e in submitted
        if e.HasField("application_submitted")
    } >= {g.application_id for g in summary.grants}
    stages = await read_events(settings, "grants", 2000)
    paid_events = [
        e for e in stages if e.HasField("grant_stage_changed") and e.grant_stage_changed.stage == 9
    ]
    assert {e.subject for e in paid_events} == {g.application_id for g in paid}

    # Money: the ledger balances, the gateway paid each line once, and both agree.
    finance = mint_token(settings.auth_secret, "auditor", Role.FINANCE)
    async with ServiceClients(settings, finance) as clients:
        entries = (
            await clients.disbursement.ListLedgerEntries(
                disbursement_pb2.ListLedgerEntriesRequest()
            )
        ).entries
    assert sum(e.debit_fen for e in entries) == sum(e.credit_fen for e in entries)
    journals: dict[str, int] = Counter()
    for e in entries:
        journals[e.journal_id] += e.debit_fen - e.credit_fen
    assert all(balance == 0 for balance in journals.values())
    pay_journals = {
        e.journal_id: e.debit_fen
        for e in entries
        if e.journal_id.startswith("pay-") and e.debit_fen
    }
    assert len(pay_journals) == len(paid)
    treasury = gateway_payments(settings.database_url("treasury"))
    assert len(treasury) == len(paid)
    assert sorted(treasury.values()) == sorted(pay_journals.values())
    assert sorted(treasury.values()) == sorted(g.award_fen for g in paid)


def test_every_service_answers_health_and_reflection(stack: LocalStack) -> None:
    """Generic gRPC tools work: health without a token, reflection lists the service."""
    expected = {
        stack.settings.applications_address: "grantflow.v1.ApplicationService",
        stack.settings.review_address: "grantflow.v1.ReviewService",
        stack.settings.disbursement_address: "grantflow.v1.DisbursementService",
    }
    for address, service in expected.items():
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            answers = reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            names = {s.name for a in answers for s in a.list_services_response.service}
            assert {service, "grpc.health.v1.Health"} <= names


def gateway_payments(url: str) -> dict[str, int]:
    """What the simulated treasury (the external system) says it paid, by idempotency key."""
    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT idempotency_key, amount_fen FROM treasury_payment")).all()
    engine.dispose()
    return {key: int(amount) for key, amount in rows}
