"""What operators see of a grant, on the real stack: one trace follows SubmitApplication through
the outbox and Kafka into the intake, the grant's workflow and the activity that creates the
review tasks (and on into the review service); each process's Prometheus endpoint reports a
grant's stage change, a dead-lettered event, the outbox and the Temporal SDK.

The processes export their spans over OTLP to a trace collector run by the test (the
TraceService of opentelemetry-proto on a gRPC server of the test's own)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from grantflow.demo import seed_catalogue
from grantflow.v1 import common_pb2
from services.common import kafka
from tests.actors import Actors
from tests.stack_fixture import running_stack
from tests.support import free_ports

pytestmark = pytest.mark.integration
SERVER, CLIENT, PRODUCER, CONSUMER = (
    trace_pb2.Span.SPAN_KIND_SERVER,
    trace_pb2.Span.SPAN_KIND_CLIENT,
    trace_pb2.Span.SPAN_KIND_PRODUCER,
    trace_pb2.Span.SPAN_KIND_CONSUMER,
)


@dataclass(frozen=True)
class Received:
    service: str  # the exporting process's service.name
    span: trace_pb2.Span

    @property
    def name(self) -> str:
        return str(self.span.name)

    def attribute(self, key: str) -> str:
        for attribute in self.span.attributes:
            if attribute.key == key:
                return str(attribute.value.string_value)
        return ""


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope in resource_spans.scope_spans:
                    self.spans.extend(Received(service, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.spans)


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver, f"http://127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def scrape(address: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page, by name and labels."""
    with urllib.request.urlopen(address, timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def eventually(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert callable(check)
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.3)


async def test_one_trace_and_the_metrics_of_a_grant(
    tmp_path: Path, collector: tuple[Collector, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, endpoint = collector
    # The stack's processes inherit these: traces to the test's collector, in short batches.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    with running_stack(tmp_path, stack_metrics_port=free_ports(8)) as stack:
        settings = stack.settings
        metrics = stack.metrics_addresses()
        assert set(metrics) == {
            "applications metrics",
            "review metrics",
            "disbursement metrics",
            "worker metrics",
            "intake metrics",
            "worker temporal metrics",
            "intake temporal metrics",
            "console metrics",
        }
        # The console serves its process's metrics like every process.
        assert any(
            name == "process_cpu_seconds_total" for name, _ in scrape(metrics["console metrics"])
        )
        await seed_catalogue(settings)
        actors = Actors(settings)
        try:
            before = scrape(metrics["applications metrics"])
            application_id = await actors.submit_sme_cloud(1)
            await actors.wait_for([application_id], {common_pb2.GRANT_STAGE_IN_REVIEW})
            after = scrape(metrics["applications metrics"])
        finally:
            await actors.close()

        # The stage change is counted, and the grant is counted in its stage.
        in_review = {"stage": "IN_REVIEW", "program": "SME-CLOUD"}
        changes = "grantflow_grant_stage_changes_total"
        assert value(after, changes, **in_review) == value(before, changes, **in_review) + 1
        assert value(after, "grantflow_grants", **in_review) == 1
        assert value(before, "grantflow_grants", **in_review) == 0
        submit = {"service": "applications", "method": "SubmitApplication", "code": "OK"}
        assert value(after, "grantflow_grpc_server_handled_total", **submit) == 1
        assert value(after, "grantflow_grpc_server_handling_seconds_count", **submit) == 1
        assert ("grantflow_outbox_backlog", frozenset({("service", "applications")})) in after

        # One trace: SubmitApplication -> outbox -> Kafka -> intake -> workflow -> activity.
        def activity_span() -> Received:
            spans = [
                s
                for s in receiver.received()
                if s.name == "RunActivity:create_review_task"
                and s.attribute("temporalWorkflowID") == f"grant-{application_id}"
            ]
            assert spans, "no span of the create_review_task activity yet"
            return spans[0]

        def chain_to_root() -> list[Received]:
            """The activity's span and its ancestors, once all of them have arrived."""
            activity = activity_span()
            spans = {s.span.span_id: s for s in receiver.received()}
            chain = [activity]
            while chain[-1].span.parent_span_id:
                parent = spans.get(chain[-1].span.parent_span_id)
                assert parent is not None, f"missing parent of {chain[-1].name}"
                chain.append(parent)
            return chain

        await eventually(chain_to_root)
        chain = chain_to_root()
        activity = chain[0]
        root = chain[-1]
        assert root.name == "grantflow.v1.ApplicationService/SubmitApplication"
        assert (root.service, root.span.kind) == ("grantflow-applications", SERVER)
        assert {s.span.trace_id for s in chain} == {root.span.trace_id}
        hops = [(s.service, s.span.kind, s.name.split(" ")[0]) for s in reversed(chain)]
        topic = kafka.topic(settings, kafka.APPLICATIONS)
        assert ("grantflow-applications", PRODUCER, "publish") in hops
        assert ("grantflow-intake", CONSUMER, "process") in hops
        names = [s.name for s in reversed(chain)]
        assert f"publish {topic}" in names and f"process {topic}" in names
        assert "StartWorkflow:GrantWorkflow" in names
        assert names.index(f"publish {topic}") < names.index(f"process {topic}")
        assert names.index(f"process {topic}") < names.index("StartWorkflow:GrantWorkflow")

        # ... and on into the review service, whose CreateTask answered the activity.
        def review_answered() -> None:
            received = receiver.received()
            calls = [
                s.span.span_id
                for s in received
                if s.span.parent_span_id == activity.span.span_id
                and s.span.kind == CLIENT
                and s.name.endswith("ReviewService/CreateTask")
            ]
            assert calls, "\n".join(
                f"{s.service} {s.span.kind} {s.name} {s.span.span_id.hex()} {s.span.parent_span_id.hex()}"
                for s in received
                if s.span.trace_id == root.span.trace_id
            )
            assert any(
                s.span.parent_span_id in calls
                and (s.service, s.span.kind) == ("grantflow-review", SERVER)
                for s in received
            )

        await eventually(review_answered, 10.0)

        # A dead-lettered event is counted by the consumer that parked it.
        intake = metrics["intake metrics"]
        parked = {"group": "grant-intake", "topic": topic}
        dead_before = value(scrape(intake), "grantflow_kafka_dead_letters_total", **parked)
        producer = kafka.Producer(settings)
        await producer.start()
        try:
            await producer.send(kafka.Outgoing(topic, b"\xff\xff\xff\xff", b"not-an-envelope"))
        finally:
            await producer.close()

        def dead_lettered() -> None:
            samples = scrape(intake)
            assert value(samples, "grantflow_kafka_dead_letters_total", **parked) == dead_before + 1

        await eventually(dead_lettered, 30.0)
        samples = scrape(intake)
        assert value(samples, "grantflow_kafka_records_applied_total", **parked) >= 1
        assert any(name == "grantflow_kafka_consumer_lag" for name, _ in samples)

        # The Temporal SDK's own metrics, on the worker's second port.
        temporal = scrape(metrics["worker temporal metrics"])
        assert any(name.startswith("grantflow_temporal_") for name, _ in temporal)
