"""Tansu keeps messages in memory: restarting it loses everything it held. The outboxes are the
durable record, so after a restart the relays publish again what the broker lost, consumers skip
what they already applied, and the grants carry on to paid."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from grantflow.demo import seed_catalogue
from grantflow.ops import read_events
from grantflow.v1 import common_pb2
from services.common.temporal import connect_temporal
from tests.actors import Actors
from tests.stack_fixture import running_stack

pytestmark = pytest.mark.integration
S = common_pb2


async def test_broker_restart_loses_no_event(tmp_path: Path) -> None:
    with running_stack(tmp_path, notice_period_seconds=1.0) as stack:
        settings = stack.settings
        await seed_catalogue(settings)
        actors = Actors(settings)
        try:
            ids = list(await asyncio.gather(*[actors.submit_sme_cloud(100 + i) for i in range(4)]))
            await actors.wait_for(ids, {S.GRANT_STAGE_IN_REVIEW})
            before = await read_events(settings, "applications", 1000)
            assert {e.subject for e in before} >= set(ids)

            stack.kill("tansu")
            stack.start(["tansu"])
            stack.wait_ready(30, ["tansu"])

            # Everything published before the restart is back on the new broker.
            for _ in range(120):
                after = await read_events(settings, "applications", 1000)
                if {e.subject for e in after if e.HasField("application_submitted")} >= set(ids):
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("the applications outbox was not republished")

            # And the system carries on: reviews, notice, plan, payment.
            await asyncio.gather(*[actors.approve(a) for a in ids])
            await actors.wait_for(ids, {S.GRANT_STAGE_AWAITING_FUNDING_PLAN})
            await actors.fund()
            await actors.wait_for(ids, {S.GRANT_STAGE_PAID})
            stages = await read_events(settings, "grants", 5000)

            # Restart again once every grant is closed: the intake consumer sees each
            # ApplicationSubmitted again, and still no grant is started a second time.
            intake_log = stack.data_dir / "logs" / "intake.log"
            redeliveries = intake_log.read_text().count("event was a redelivery")
            stack.kill("tansu")
            stack.start(["tansu"])
            stack.wait_ready(30, ["tansu"])
            for _ in range(120):
                if intake_log.read_text().count("event was a redelivery") >= redeliveries + len(
                    ids
                ):
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("the intake consumer did not see the republished events")
            client = await connect_temporal(settings)
            for application_id in ids:
                runs = [
                    w async for w in client.list_workflows(f"WorkflowId = 'grant-{application_id}'")
                ]
                assert len(runs) == 1, application_id
        finally:
            await actors.close()
        # The stage history on the broker is whole again, not only what came after the restart.
        for application_id in ids:
            seqs = {
                e.grant_stage_changed.sequence
                for e in stages
                if e.subject == application_id and e.HasField("grant_stage_changed")
            }
            assert seqs == set(range(2, max(seqs) + 1)), (application_id, sorted(seqs))
