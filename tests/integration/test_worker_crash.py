"""Killing the Temporal worker in the middle of a run of grants loses nothing: every grant
finishes, every stage event is on the broker, and no one is paid twice (the ledger and the
payment gateway agree), even with a gateway that fails and times out."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from grantflow.demo import seed_catalogue
from grantflow.ops import read_events
from grantflow.v1 import common_pb2, disbursement_pb2
from services.disbursement.gateway import award_payment_key
from tests.actors import Actors
from tests.integration.test_lifecycle import gateway_payments
from tests.stack_fixture import running_stack

pytestmark = pytest.mark.integration
GRANTS = 10
S = common_pb2


async def test_killing_the_worker_mid_run_loses_nothing_and_pays_once(tmp_path: Path) -> None:
    with running_stack(
        tmp_path,
        notice_period_seconds=3.0,
        treasury_failure_rate=0.2,
        treasury_timeout_rate=0.3,
    ) as stack:
        settings = stack.settings
        await seed_catalogue(settings)
        actors = Actors(settings)
        try:
            ids = await asyncio.gather(
                *[actors.submit_sme_cloud(i, 200_000 + i * 10_000) for i in range(GRANTS)]
            )
            # Crash 1: while the grants are in their formal check and task creation.
            await asyncio.sleep(0.5)
            stack.kill("worker")
            await asyncio.sleep(2)
            stack.start(["worker"])
            await actors.wait_for(ids, {S.GRANT_STAGE_IN_REVIEW})
            await asyncio.gather(*[actors.approve(a) for a in ids])
            # Crash 2: during the public notice; its timers fire while no worker runs.
            await actors.wait_for(
                ids, {S.GRANT_STAGE_IN_NOTICE, S.GRANT_STAGE_AWAITING_FUNDING_PLAN}
            )
            stack.kill("worker")
            await asyncio.sleep(4)
            stack.start(["worker"])
            await actors.wait_for(ids, {S.GRANT_STAGE_AWAITING_FUNDING_PLAN})
            plan = await actors.fund()
            assert len(plan.lines) == GRANTS
            # Crash 3: in the middle of the payment run.
            await asyncio.sleep(1.0)
            stack.kill("worker")
            await asyncio.sleep(3)
            stack.start(["worker"])
            await actors.wait_for(ids, {S.GRANT_STAGE_PAID}, timeout=180)

            entries = (
                await actors.maker.disbursement.ListLedgerEntries(
                    disbursement_pb2.ListLedgerEntriesRequest(journal_id="")
                )
            ).entries
            plan_now = await actors.maker.disbursement.GetFundingPlan(
                disbursement_pb2.GetFundingPlanRequest(plan_id=plan.plan_id)
            )
        finally:
            await actors.close()

        assert plan_now.state == disbursement_pb2.PLAN_STATE_COMPLETED
        amounts = {line.line_id: line.amount_fen for line in plan_now.lines}
        paid_journals = {
            e.journal_id.removeprefix("pay-"): e.debit_fen
            for e in entries
            if e.journal_id.startswith("pay-") and e.debit_fen
        }
        assert paid_journals == amounts  # one payment journal per line, for the line's amount
        # The bank agrees: one payment per award, under the award's idempotency key.
        assert gateway_payments(settings.database_url("treasury")) == {
            award_payment_key(line.application_id): line.amount_fen for line in plan_now.lines
        }
        assert sum(e.debit_fen for e in entries) == sum(e.credit_fen for e in entries)

        # No event lost: every grant's stage reports are on the broker without a gap.
        stage_events = [
            e
            for e in await read_events(settings, "grants", 5000)
            if e.HasField("grant_stage_changed")
        ]
        sequences: dict[str, set[int]] = defaultdict(set)
        for e in stage_events:
            sequences[e.subject].add(e.grant_stage_changed.sequence)
        for application_id in ids:
            seen = sequences[application_id]
            assert seen == set(range(2, max(seen) + 1)), (application_id, sorted(seen))
        settled = [
            e
            for e in await read_events(settings, "disbursement", 5000)
            if e.HasField("payment_settled")
        ]
        assert sorted(e.payment_settled.line_id for e in settled) == sorted(amounts)
