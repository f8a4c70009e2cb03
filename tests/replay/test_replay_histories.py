"""Recorded histories of complete lifecycles replay against the current workflow code: a change
that would break running grants fails here, before it ships (see tests/replay/record.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from grantflow.ops import replay_history
from workflows.grant import GrantWorkflow
from workflows.models import GrantInput, GrantOutcome

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


KINDS = ["paid", "paid_lower", "rejected", "withdrawn", "returned", "incomplete"]


def test_every_kind_of_life_is_recorded_in_every_generation() -> None:
    """Histories from before the review reminders (no patch marker) and after (-v2): running
    grants of both generations must keep replaying."""
    names = {p.stem for p in HISTORIES}
    for suffix in ("", "-v2"):
        assert {f"grant-{kind}{suffix}" for kind in KINDS} <= names
        assert f"funding-plan-0{suffix}" in names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays_deterministically(path: Path) -> None:
    report = await replay_history(load(path))
    assert report.error == ""
    assert report.events > 10


@workflow.defn(name="GrantWorkflow")
class GrantWorkflowWithAnUnpatchedChange(GrantWorkflow):
    """What a careless edit looks like: a new step before the formal check, without
    workflow.patched."""

    @workflow.run
    async def run(self, grant: GrantInput) -> GrantOutcome:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(grant)


async def test_an_incompatible_change_is_caught_by_replay() -> None:
    # Defined in a test module, the variant runs unsandboxed (the sandbox would re-import pytest).
    replayer = Replayer(
        workflows=[GrantWorkflowWithAnUnpatchedChange],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(
        load(Path(__file__).parent / "histories" / "grant-paid.json"),
        raise_on_replay_failure=False,
    )
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
