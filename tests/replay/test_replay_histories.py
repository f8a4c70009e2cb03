"""Recorded histories of complete lifecycles replay against the current workflow code: a change
that would break running grants fails here, before it ships (see tests/replay/record.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from grantflow.demo_script import KINDS as DEMO_KINDS
from grantflow.ops import replay_history
from workflows.funding_plan import CHUNKED_PLAN_PATCH, FUNDING_PLAN_PATCH
from workflows.grant import (
    INSTALMENTS_PATCH,
    LIGHTER_GRANT_PATCH,
    REVIEW_PROCESS_PATCH,
    GrantWorkflow,
)
from workflows.models import GrantInput, GrantOutcome

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


KINDS = ["paid", "paid_lower", "rejected", "withdrawn", "returned", "incomplete"]
# The fourth process's demo adds the review process's own lives (grantflow/demo_script.py).
KINDS_V4 = sorted(DEMO_KINDS)


GENERATIONS = {
    "": "before the review reminders (no patch marker)",
    "-v2": "with the review reminders (patch review-deadline-reminders)",
    "-v3": "the lighter grant in phases (patches lighter-grant-v3 and funding-plan-v3)",
    "-v4": "the whole review process (patch review-process-v4), notice batches",
}
# Generations of the funding plan alone (`record --plans-only`): the grants paid by them are
# those of the latest generation above. Each has the plan's history and its chunks'.
PLAN_GENERATIONS = {
    "-chunked": "the plan paid by chunk workflows (patch funding-plan-v4)",
}
# Awards paid in instalments (patch instalments-v5): one grant's three runs, recorded by
# tests/workflows/test_instalments.py on the time-skipping server (RECORD_INSTALMENT_HISTORIES=1);
# runs 2 and 3 are the ones it continued as new with, carrying its state.
INSTALMENT_RUNS = [f"grant-instalments_run{n}-v5" for n in (1, 2, 3)]


def test_every_kind_of_life_is_recorded_in_every_generation() -> None:
    """Running grants of every generation must keep replaying; each generation's histories are
    the ones that took its path."""
    names = {p.stem for p in HISTORIES}
    for suffix in GENERATIONS:
        kinds = KINDS_V4 if suffix == "-v4" else KINDS
        assert {f"grant-{kind}{suffix}" for kind in kinds} <= names
        assert f"funding-plan-0{suffix}" in names
    for suffix in PLAN_GENERATIONS:
        assert {f"funding-plan-0{suffix}", f"funding-plan-0-chunk-0{suffix}"} <= names
    assert "notice-batch-0-v4" in names
    assert set(INSTALMENT_RUNS) <= names
    for path in HISTORIES:
        if path.stem.startswith("notice-batch"):
            continue  # a workflow the fourth process brought: no earlier generation to tell from
        found = patches(load(path))
        assert (CHUNKED_PLAN_PATCH in found) == (
            path.stem.startswith("funding-plan-0")
            and path.stem.endswith("-chunked")
            and "-chunk-" not in path.stem
        ), path.name
        if path.stem.endswith(tuple(PLAN_GENERATIONS)):
            continue  # a chunk has no generation of its own yet; its plan has the marker
        lighter = bool(found & {LIGHTER_GRANT_PATCH, FUNDING_PLAN_PATCH})
        assert lighter == path.stem.endswith(("-v3", "-v4", "-v5")), path.name
        if path.stem.startswith("grant-"):
            assert (REVIEW_PROCESS_PATCH in found) == path.stem.endswith("-v4"), path.name
            # Only the first run of an instalment grant decides its generation.
            first_run = path.stem == INSTALMENT_RUNS[0]
            assert (INSTALMENTS_PATCH in found) == first_run, path.name


def patches(history: WorkflowHistory) -> set[str]:
    """The workflow.patched ids a history's markers record."""
    found = set()
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        details = event.marker_recorded_event_attributes.details
        if "patch-data" in details:
            found.add(json.loads(details["patch-data"].payloads[0].data)["id"])
    return found


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


@pytest.mark.parametrize(
    "generation", ["grant-paid.json", "grant-paid-v3.json", "grant-audit_lower-v4.json"]
)
async def test_an_incompatible_change_is_caught_by_replay(generation: str) -> None:
    # Defined in a test module, the variant runs unsandboxed (the sandbox would re-import pytest).
    replayer = Replayer(
        workflows=[GrantWorkflowWithAnUnpatchedChange],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(
        load(Path(__file__).parent / "histories" / generation),
        raise_on_replay_failure=False,
    )
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
