"""A clawback (追回) through the `grantflow` command on the real embedded stack: finance opens one
against a paid grant, records a partial and then the final repayment, and shows it in Chinese;
an unpaid amount too large is refused naming the field."""

from __future__ import annotations

import json

import pytest

from infra.local.stack import LocalStack
from tests.actors import Actors
from tests.e2e.support import cli

pytestmark = pytest.mark.integration

NUMBER = 61_002  # Actors.submit_sme_cloud: credit_code(50_000 + NUMBER)


def grantflow(stack: LocalStack, *args: str) -> str:
    outcome = cli(stack.environment(), *args)
    assert outcome.status == 0 and outcome.clean, f"grantflow {' '.join(args)}: {outcome.output}"
    return outcome.output


async def test_a_clawback_opened_repaid_and_shown_through_the_cli(stack: LocalStack) -> None:
    from grantflow.demo import seed_catalogue

    await seed_catalogue(stack.settings)
    actors = Actors(stack.settings)
    try:
        application_id = await actors.submit_sme_cloud(NUMBER)
        await actors.wait_for([application_id], {4})  # IN_REVIEW
        await actors.approve(application_id)
        await actors.wait_for([application_id], {7})  # AWAITING_FUNDING_PLAN
        plan = await actors.fund()
        await actors.wait_for([application_id], {9})  # PAID
    finally:
        await actors.close()
    [line] = [line for line in plan.lines if line.application_id == application_id]
    award = line.amount_fen

    too_much = cli(
        stack.environment(),
        *("finance", "clawback", "open", application_id),
        *("--amount-fen", str(award + 1), "--reason", "虚报"),
    )
    assert too_much.status == 1 and "amount_fen" in too_much.output, too_much.output

    opened = json.loads(
        grantflow(
            stack,
            *("finance", "clawback", "open", application_id),
            *("--amount-fen", str(award), "--reason", "专项审计发现虚报", "--json"),
        )
    )
    assert (opened["state"], opened["outstanding_fen"]) == ("open", award)
    clawback_id = opened["clawback_id"]

    half = award // 2
    partial = grantflow(
        stack, "finance", "clawback", "repay", clawback_id, "--amount-fen", str(half)
    )
    assert "已登记退还" in partial and "追回中" in partial
    shown = grantflow(stack, "finance", "clawback", "show", clawback_id)
    for words in ("追回编号", "追回中", "应收未还", "专项审计发现虚报", "不得申报"):
        assert words in shown, shown

    settled = json.loads(
        grantflow(
            stack,
            *("finance", "clawback", "repay", clawback_id),
            *("--amount-fen", str(award - half), "--json"),
        )
    )
    assert (settled["state"], settled["outstanding_fen"]) == ("settled", 0)
    assert "已追回" in grantflow(stack, "finance", "clawback", "show", clawback_id)

    statement = json.loads(grantflow(stack, "finance", "statement", application_id, "--json"))
    assert (statement["clawed_back_fen"], statement["receivable_fen"]) == (award, 0)
    assert {"clawback", "repayment"} <= {entry["movement"] for entry in statement["entries"]}
    trial = json.loads(grantflow(stack, "finance", "trial-balance", "--json"))
    assert trial["balanced"]
