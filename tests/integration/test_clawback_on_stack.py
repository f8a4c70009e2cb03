"""A clawback (追回) on the real stack (Temporal, Kafka, the three services): an SME-CLOUD grant
is paid; finance claws the award back; ClawbackWorkflow, started by the intake consumer from
ClawbackOpened, puts the enterprise on the credit list for the configured years; the enterprise's
next application is refused by eligibility's credit check and the grant ends rejected."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from grantflow.demo import seed_catalogue
from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2, common_pb2, disbursement_pb2
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.db import from_timestamp, now_utc, to_timestamp
from services.common.vocabulary import EligibilityCheck, Role
from tests.actors import Actors, documents_for
from tests.stack_fixture import running_stack
from workflows.contracts import CLAWBACK_CREDIT_LIST

pytestmark = pytest.mark.integration
S = common_pb2
NUMBER = 71  # the enterprise: Actors.submit_sme_cloud's credit_code(50_000 + NUMBER)


async def credit_entries(ops: ServiceClients, code: str) -> list[applications_pb2.CreditListEntry]:
    answer = await ops.applications.ListCreditListEntries(
        applications_pb2.ListCreditListEntriesRequest(
            credit_code=code, valid_at=to_timestamp(now_utc())
        )
    )
    return list(answer.entries)


async def test_a_clawback_bars_the_enterprise_and_its_next_application_is_refused(
    tmp_path: Path,
) -> None:
    with running_stack(tmp_path, notice_period_seconds=1.0, clawback_bar_years=3) as stack:
        settings = stack.settings
        await seed_catalogue(settings)
        actors = Actors(settings)
        ops = ServiceClients(settings, mint_token(settings.auth_secret, "ops.test", Role.OPS))
        code = credit_code(50_000 + NUMBER)
        try:
            first = await actors.submit_sme_cloud(NUMBER)
            await actors.wait_for([first], {S.GRANT_STAGE_IN_REVIEW})
            await actors.approve(first)
            await actors.wait_for([first], {S.GRANT_STAGE_AWAITING_FUNDING_PLAN})
            await actors.fund()
            await actors.wait_for([first], {S.GRANT_STAGE_PAID})
            assert await credit_entries(ops, code) == []

            funds = await ops.disbursement.GetApplicationFunds(
                disbursement_pb2.GetApplicationFundsRequest(application_id=first)
            )
            paid = funds.reservation.amount_fen
            clawback = await actors.maker.disbursement.OpenClawback(
                disbursement_pb2.OpenClawbackRequest(
                    request_id=f"clawback-{uuid.uuid4().hex}",
                    application_id=first,
                    amount_fen=paid,
                    reason="专项审计发现虚报云服务费用",
                )
            )
            assert clawback.state == disbursement_pb2.CLAWBACK_STATE_OPEN
            assert clawback.applicant_credit_code == code

            # The bar reaches the credit list through the event and the workflow.
            deadline = time.monotonic() + 60
            while not (entries := await credit_entries(ops, code)):
                assert time.monotonic() < deadline, "no credit list entry for the clawback"
                await asyncio.sleep(0.3)
            [entry] = entries
            assert entry.list_name == CLAWBACK_CREDIT_LIST
            assert clawback.clawback_id in entry.source
            assert from_timestamp(entry.valid_until) == from_timestamp(clawback.bar_until)
            assert from_timestamp(entry.valid_from) == from_timestamp(clawback.opened_at)
            years = from_timestamp(entry.valid_until) - from_timestamp(entry.valid_from)
            assert 3 * 365 <= years.days <= 3 * 366

            # The trial balance still balances, the statement shows the receivable.
            trial = await ops.disbursement.GetTrialBalance(
                disbursement_pb2.GetTrialBalanceRequest()
            )
            assert trial.balanced
            statement = await ops.disbursement.GetGrantStatement(
                disbursement_pb2.GetGrantStatementRequest(application_id=first)
            )
            assert statement.clawed_back_fen == paid and statement.receivable_fen == paid

            # The enterprise files again: eligibility's credit check refuses it.
            applicant = ServiceClients(
                settings, mint_token(settings.auth_secret, code, Role.APPLICANT, enterprise=code)
            )
            async with applicant:
                second = await applicant.applications.SubmitApplication(
                    applications_pb2.SubmitApplicationRequest(
                        request_id=f"test-{uuid.uuid4().hex}",
                        program_code="SME-CLOUD",
                        applicant_credit_code=code,
                        applicant_name=f"Test Enterprise {NUMBER}",
                        project_title="Cloud CRM after the clawback",
                        figures={
                            "cloud_fee_paid_fen": 200_000,
                            "staff_count": 40,
                            "annual_revenue_fen": 3_000_000_000,
                        },
                        documents=documents_for("SME-CLOUD", code),
                    )
                )
            await actors.wait_for([second.application_id], {S.GRANT_STAGE_REJECTED})
            refused = await actors.status(second.application_id)
            checks = {check.name: check for check in refused.eligibility.checks}
            assert not refused.eligibility.passed
            assert not checks[EligibilityCheck.CREDIT].passed, checks
        finally:
            await ops.close()
            await actors.close()
