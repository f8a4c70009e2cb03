"""The review rules' properties: joining departments' decisions and aggregating expert scores."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.vocabulary import Decision, JoinPolicy, ScoreAggregation
from workflows.review_rules import aggregate_scores, join_verdict

DEPARTMENTS = ["industry", "finance", "hr", "science", "commerce"]
totals = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=9)
decision = st.sampled_from(list(Decision))


@st.composite
def rounds(draw: st.DrawFn) -> tuple[list[str], dict[str, Decision], int]:
    size = draw(st.integers(min_value=1, max_value=len(DEPARTMENTS)))
    departments = DEPARTMENTS[:size]
    decided = draw(st.lists(st.sampled_from(departments), unique=True))
    decisions = {department: draw(decision) for department in decided}
    quorum = draw(st.integers(min_value=1, max_value=size))
    return departments, decisions, quorum


# Aggregation -----------------------------------------------------------------------------------


def test_aggregations_by_example() -> None:
    assert aggregate_scores(ScoreAggregation.MEAN, [8000, 7000, 9001]) == 8000  # 24001 // 3
    assert aggregate_scores(ScoreAggregation.MEDIAN, [8000, 7000, 9001]) == 8000
    assert aggregate_scores(ScoreAggregation.MEDIAN, [8000, 7001]) == 7500  # rounds down
    # Five or more: the highest and the lowest are dropped.
    assert aggregate_scores(ScoreAggregation.TRIMMED_MEAN, [0, 8000, 8100, 8200, 10_000]) == 8100
    # Fewer than five: a plain mean.
    assert aggregate_scores(ScoreAggregation.TRIMMED_MEAN, [0, 9000, 9000]) == 6000


@given(st.sampled_from(list(ScoreAggregation)), totals)
def test_an_aggregate_lies_between_the_lowest_and_highest_total(
    aggregation: ScoreAggregation, values: list[int]
) -> None:
    score = aggregate_scores(aggregation, values)
    assert min(values) <= score <= max(values)


@given(st.sampled_from(list(ScoreAggregation)), totals, st.randoms())
def test_the_order_of_the_scores_does_not_matter(
    aggregation: ScoreAggregation, values: list[int], rnd: object
) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert aggregate_scores(aggregation, shuffled) == aggregate_scores(aggregation, values)


@given(totals)
def test_mean_and_median_round_down_the_exact_values(values: list[int]) -> None:
    assert aggregate_scores(ScoreAggregation.MEAN, values) == int(statistics.mean(values) // 1)
    median = statistics.median(values)
    assert aggregate_scores(ScoreAggregation.MEDIAN, values) == int(median // 1)


@given(totals.filter(lambda values: len(values) >= 5), st.integers(0, 10_000))
def test_a_trimmed_mean_ignores_one_outlier(values: list[int], outlier: int) -> None:
    # Replacing the highest total by anything at least as high changes nothing.
    ordered = sorted(values)
    raised = [*ordered[:-1], max(ordered[-1], outlier)]
    assert aggregate_scores(ScoreAggregation.TRIMMED_MEAN, raised) == aggregate_scores(
        ScoreAggregation.TRIMMED_MEAN, ordered
    )


@given(st.sampled_from(list(ScoreAggregation)), st.integers(0, 10_000), st.integers(1, 9))
def test_a_unanimous_panel_scores_its_score(
    aggregation: ScoreAggregation, value: int, size: int
) -> None:
    assert aggregate_scores(aggregation, [value] * size) == value


def test_no_scores_or_scores_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        aggregate_scores(ScoreAggregation.MEAN, [])
    with pytest.raises(ValueError):
        aggregate_scores(ScoreAggregation.MEDIAN, [10_001])


# Joining ---------------------------------------------------------------------------------------


@given(st.sampled_from(list(JoinPolicy)), rounds())
def test_when_everyone_approved_the_grant_is_approved(
    policy: JoinPolicy, round_: tuple[list[str], dict[str, Decision], int]
) -> None:
    departments, _, quorum = round_
    everyone = dict.fromkeys(departments, Decision.APPROVE)
    assert join_verdict(policy, quorum, departments, everyone) == Decision.APPROVE


@given(st.sampled_from(list(JoinPolicy)), rounds())
def test_once_everyone_decided_there_is_a_verdict(
    policy: JoinPolicy, round_: tuple[list[str], dict[str, Decision], int]
) -> None:
    departments, decisions, quorum = round_
    complete = {d: decisions.get(d, Decision.APPROVE) for d in departments}
    assert join_verdict(policy, quorum, departments, complete) is not None


@given(st.sampled_from(list(JoinPolicy)), rounds(), decision)
def test_a_verdict_once_reached_stands_whatever_follows(
    policy: JoinPolicy, round_: tuple[list[str], dict[str, Decision], int], later: Decision
) -> None:
    departments, decisions, quorum = round_
    verdict = join_verdict(policy, quorum, departments, decisions)
    undecided = [d for d in departments if d not in decisions]
    if verdict is None or not undecided:
        return
    more = {**decisions, undecided[0]: later}
    assert join_verdict(policy, quorum, departments, more) == verdict


@given(rounds())
def test_any_reject_decides_at_the_first_no(
    round_: tuple[list[str], dict[str, Decision], int],
) -> None:
    departments, decisions, quorum = round_
    verdict = join_verdict(JoinPolicy.ANY_REJECT, quorum, departments, decisions)
    against = [d for d in decisions.values() if d != Decision.APPROVE]
    if against:
        assert verdict == against[0]  # the first decision against approval decides


@given(rounds())
def test_all_approve_waits_for_every_department(
    round_: tuple[list[str], dict[str, Decision], int],
) -> None:
    departments, decisions, quorum = round_
    verdict = join_verdict(JoinPolicy.ALL_APPROVE, quorum, departments, decisions)
    assert (verdict is None) == (len(decisions) < len(departments))


@given(rounds())
def test_quorum_approves_exactly_when_enough_approve(
    round_: tuple[list[str], dict[str, Decision], int],
) -> None:
    departments, decisions, quorum = round_
    approves = list(decisions.values()).count(Decision.APPROVE)
    verdict = join_verdict(JoinPolicy.QUORUM, quorum, departments, decisions)
    assert (verdict == Decision.APPROVE) == (approves >= quorum)
    still_possible = approves + len(departments) - len(decisions) >= quorum
    assert (verdict is None) == (approves < quorum and still_possible)


def test_quorum_by_example() -> None:
    three = ["industry", "finance", "hr"]
    approve, reject = Decision.APPROVE, Decision.REJECT
    assert join_verdict(JoinPolicy.QUORUM, 2, three, {"industry": approve}) is None
    assert join_verdict(JoinPolicy.QUORUM, 2, three, {"industry": approve, "hr": approve}) == (
        approve
    )
    assert join_verdict(JoinPolicy.QUORUM, 2, three, {"industry": reject}) is None
    assert join_verdict(JoinPolicy.QUORUM, 2, three, {"industry": reject, "hr": reject}) == reject


def test_strangers_and_impossible_quorums_are_refused() -> None:
    with pytest.raises(ValueError, match="not reviewing"):
        join_verdict(JoinPolicy.ALL_APPROVE, 0, ["industry"], {"hr": Decision.APPROVE})
    with pytest.raises(ValueError, match="quorum"):
        join_verdict(JoinPolicy.QUORUM, 3, ["industry", "hr"], {})
