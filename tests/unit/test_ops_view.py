"""The pieces of `grantflow ops find` and `ops show` that need no stack: every term has its
Chinese label, search keys become a visibility query and nothing else, and a workflow history
reads as business events in Chinese."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import WorkflowHistory

from grantflow.ops_find import BadKey, GrantSearch, visibility_query
from grantflow.timeline import PROCESS, Timeline, history_entries
from services.common.labels import LABELS, label, stage_label
from services.common.vocabulary import MAPPED_VOCABULARIES, Department, GrantStage


def test_every_term_has_a_chinese_label() -> None:
    for vocabulary in MAPPED_VOCABULARIES:
        for term in vocabulary:
            assert term in LABELS and LABELS[term] != term.value, term
    assert stage_label("PAYMENT_FAILED") == "拨付失败 (PAYMENT_FAILED)"
    assert label("SOMETHING_NEWER") == "SOMETHING_NEWER"


def test_search_keys_become_one_visibility_query() -> None:
    query = visibility_query(
        GrantSearch(
            application="ab12",
            credit_code="91440300000000Y1BF",
            program="SME-CLOUD",
            stage=GrantStage.IN_REVIEW,
            department=Department.FINANCE,
        )
    )
    assert query == (
        "WorkflowType = 'GrantWorkflow' AND WorkflowId STARTS_WITH 'grant-ab12' AND "
        "ApplicantCreditCode = '91440300000000Y1BF' AND GrantProgram = 'SME-CLOUD' AND "
        "GrantStage = 'IN_REVIEW' AND PendingDepartments = 'finance'"
    )
    full = "0" * 32
    assert f"WorkflowId = 'grant-{full}'" in str(visibility_query(GrantSearch(application=full)))
    # Overdue: only the grants the review service named; none named, no grant.
    assert visibility_query(GrantSearch(overdue=True), overdue_ids=set()) is None
    assert "WorkflowId IN ('grant-a', 'grant-b')" in str(
        visibility_query(GrantSearch(overdue=True), overdue_ids={"b", "a"})
    )
    # Failed payment: the stage, or a failed line the disbursement service named.
    assert "(GrantStage = 'PAYMENT_FAILED' OR WorkflowId IN ('grant-c'))" in str(
        visibility_query(GrantSearch(failed_payment=True), failed_ids={"c"})
    )
    with pytest.raises(BadKey, match="--credit-code"):
        visibility_query(GrantSearch(credit_code="x' OR '1'='1"))


def _event(
    event_id: int, seconds: int, kind: EventType.ValueType, **attributes: object
) -> HistoryEvent:
    event = HistoryEvent(event_id=event_id, event_type=kind, **attributes)  # type: ignore[arg-type]
    event.event_time.FromSeconds(1_800_000_000 + seconds)
    return event


def test_a_workflow_history_reads_as_business_events() -> None:
    from temporalio.api.common.v1 import Payload, SearchAttributes
    from temporalio.api.history.v1 import (
        TimerFiredEventAttributes,
        TimerStartedEventAttributes,
        UpsertWorkflowSearchAttributesEventAttributes,
        WorkflowExecutionStartedEventAttributes,
    )

    stage = SearchAttributes(
        indexed_fields={
            "GrantStage": Payload(data=b'"IN_NOTICE"', metadata={"encoding": b"json/plain"})
        }
    )
    started = TimerStartedEventAttributes(timer_id="1")
    started.start_to_fire_timeout.FromSeconds(7 * 86400)
    events = [
        _event(1, 0, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
               workflow_execution_started_event_attributes=WorkflowExecutionStartedEventAttributes()),
        _event(2, 1, EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
               upsert_workflow_search_attributes_event_attributes=(
                   UpsertWorkflowSearchAttributesEventAttributes(search_attributes=stage))),
        _event(3, 1, EventType.EVENT_TYPE_TIMER_STARTED, timer_started_event_attributes=started),
        _event(4, 9, EventType.EVENT_TYPE_TIMER_FIRED,
               timer_fired_event_attributes=TimerFiredEventAttributes(timer_id="1")),
    ]  # fmt: skip
    timeline = Timeline("a")
    history_entries(WorkflowHistory("grant-a", list(History(events=events).events)), timeline)
    assert [(e.source, e.what) for e in timeline.ordered()] == [
        (PROCESS, "审批流程启动"),
        (PROCESS, "进入阶段：社会公示"),
        (PROCESS, "公示期开始计时"),
        (PROCESS, "公示期届满"),
    ]
    assert "7.0 天" in timeline.ordered()[2].detail


def test_terms_spelt_alike_in_two_vocabularies_keep_their_own_labels() -> None:
    from services.common.vocabulary import Sector

    # Both are "industry"; a StrEnum hashes as its string, so one dict would keep only one.
    assert LABELS[Department.INDUSTRY] == "工信局"
    assert LABELS[Sector.INDUSTRY] == "工业"
