"""The audit trail over real gRPC, on SQLite and PostgreSQL: the review service (with the stand-in
grant workflow of test_review_service on a real Temporal dev server) records a reviewer's claim
and decision with the reviewer as actor; ops list and verify the chain over AuditService and with
`grantflow ops audit`; a record edited directly in the database is found, by its sequence."""

from __future__ import annotations

import asyncio
import json
import os

import grpc
import pytest
from sqlalchemy import text

from grantflow.v1 import audit_pb2, audit_pb2_grpc, review_pb2
from services.common.vocabulary import AuditBreak, Department, Role
from tests.e2e.support import cli
from tests.integration.test_review_service import (  # noqa: F401 - fixtures used by name
    Review,
    review,
    stand_in,
    temporal,
)

pytestmark = pytest.mark.integration


async def audit_call(service: Review, method: str, request: object, token: str) -> object:
    async with grpc.aio.insecure_channel(service.settings.review_address) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        return await getattr(stub, method)(request, metadata=metadata, timeout=30)


async def grantflow(service: Review, *args: str) -> tuple[int, str]:
    """Runs the command in its own process (in a thread: this loop serves the service)."""
    env = {
        **os.environ,
        "REVIEW_ADDRESS": service.settings.review_address,
        "AUTH_SECRET": service.settings.auth_secret,
    }
    env.pop("GRANTFLOW_TOKEN", None)
    outcome = await asyncio.to_thread(cli, env, *args)
    assert outcome.clean, outcome.output
    return outcome.status, outcome.output


async def test_a_decision_is_recorded_and_an_edited_record_is_found(review: Review) -> None:  # noqa: F811
    task = await review.create(proposed_amount_fen=200_000)
    application_id = task.application_id
    await review.start_grant(application_id, [stand_in(task)])
    li = review.token("li", Role.REVIEWER, Department.INDUSTRY)
    ops = review.token("zhou", Role.OPS)
    await review.call("ClaimTask", review_pb2.ClaimTaskRequest(task_id=task.task_id), li)
    decide = review_pb2.DecideTaskRequest(
        task_id=task.task_id,
        decision=review_pb2.REVIEW_DECISION_APPROVE,
        reason="材料齐全，按规则核定",
        approved_amount_fen=150_000,
    )
    await review.call("DecideTask", decide, li)
    await review.call("DecideTask", decide, li)  # a retry records nothing more

    listed = await audit_call(
        review, "ListAuditEntries", audit_pb2.ListAuditEntriesRequest(subject=application_id), ops
    )
    entries = list(listed.entries)  # type: ignore[attr-defined]
    assert [entry.action for entry in entries] == ["review.claimed", "review.decided"]
    decided = entries[1]
    assert (decided.actor, decided.actor_role, decided.service) == ("li", "reviewer", "review")
    assert decided.reason == "材料齐全，按规则核定"
    details = json.loads(decided.details_json)
    assert details["decision"] == "approve" and details["approved_amount_fen"] == 150_000
    assert details["task_id"] == task.task_id and details["department"] == "industry"
    assert decided.previous_hash == entries[0].hash

    # Only ops read the trail; a reviewer may not.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await audit_call(review, "VerifyAuditChain", audit_pb2.VerifyAuditChainRequest(), li)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # Ops record an act of their own (a repair): actor from the token, idempotent by request id.
    repair = audit_pb2.RecordAuditEntryRequest(
        request_id="repair-0001-requested",
        action="repair.retry_payment.requested",
        subject=application_id,
        reason="银行回执丢失，重试支付",
        details_json='{"line_id": "l-1"}',
    )
    first = await audit_call(review, "RecordAuditEntry", repair, ops)
    again = await audit_call(review, "RecordAuditEntry", repair, ops)
    assert first == again
    assert (first.actor, first.actor_role, first.sequence) == ("zhou", "ops", 3)  # type: ignore[attr-defined]
    repair.reason = "另一个原因"
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await audit_call(review, "RecordAuditEntry", repair, ops)
    assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS

    intact = await audit_call(review, "VerifyAuditChain", audit_pb2.VerifyAuditChainRequest(), ops)
    assert intact.intact and intact.records_checked == 3  # type: ignore[attr-defined]
    status, output = await grantflow(review, "ops", "audit", "verify", "--service", "review")
    assert status == 0 and "审计链完好" in output, output
    status, output = await grantflow(
        review, "ops", "audit", "show", application_id, "--service", "review"
    )
    assert status == 0, output
    assert "评审决定" in output and "li" in output and "¥1,500.00" in output

    # Someone with the database's password raises the approved amount behind the service's back.
    def edit(session: object) -> None:
        session.execute(  # type: ignore[attr-defined]
            text(
                "UPDATE audit_record SET details_json = "
                "replace(details_json, '150000', '190000') WHERE action = 'review.decided'"
            )
        )

    await review.db.run(edit)
    broken = await audit_call(review, "VerifyAuditChain", audit_pb2.VerifyAuditChainRequest(), ops)
    assert not broken.intact  # type: ignore[attr-defined]
    first_break = broken.first_break  # type: ignore[attr-defined]
    assert first_break.sequence == decided.sequence
    assert AuditBreak.from_proto(first_break.kind) == AuditBreak.EDITED
    status, output = await grantflow(review, "ops", "audit", "verify", "--service", "review")
    assert status == 1, output
    assert "审计记录被篡改 (edited)" in output and f"序号 {decided.sequence}" in output
    assert "review" in output
