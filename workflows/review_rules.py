"""The review process's pure rules: how co-reviewing departments' decisions join into the grant's
verdict, and how an expert panel's totals become one score.

No I/O and no clock: the grant workflow calls these in workflow code, and the review service
aggregates a panel's scores with the same function, so both always agree.

Choices where DOMAIN.md is silent (also in docs/review.md):
- a return for supplement counts against approval like a rejection, but the verdict it leads to
  is a return (the applicant may still mend the file). Where the verdict falls before every
  department has decided (ANY_REJECT, QUORUM), the first decision against approval, in the order
  `decisions` holds them (the order they were taken), says which, so a verdict once reached never
  changes; under ALL_APPROVE every department has decided and a rejection outweighs a return;
- scores are integer hundredths of a point; a mean's fraction of a hundredth rounds down, the
  median of an even panel is the mean of the middle two, rounded down;
- a trimmed mean drops one highest and one lowest total only for panels of five or more (with
  fewer, dropping two of three or four totals would leave too little); below that it is the mean.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from services.common.vocabulary import Decision, JoinPolicy, ScoreAggregation

# A trimmed mean drops the extremes only from panels at least this large.
TRIM_MIN_PANEL = 5
MAX_SCORE_CENTI = 10_000  # 100 points


def join_verdict(
    policy: JoinPolicy,
    quorum: int,
    departments: Collection[str],
    decisions: Mapping[str, Decision],
) -> Decision | None:
    """The grant's verdict from its departments' decisions so far; None while it is not yet
    decided. `departments` are the co-reviewing departments of the round, `decisions` those of
    them that have decided, in the order they decided. ValueError for a decision from a department not reviewing, or a
    quorum outside 1..len(departments) under QUORUM."""
    expected = set(departments)
    if not expected:
        raise ValueError("a join needs at least one department")
    strangers = set(decisions) - expected
    if strangers:
        raise ValueError(f"decisions from departments not reviewing: {sorted(strangers)}")
    values = list(decisions.values())
    rejects = values.count(Decision.REJECT)
    returns = values.count(Decision.RETURN_FOR_SUPPLEMENT)
    approves = values.count(Decision.APPROVE)
    undecided = len(expected) - len(decisions)

    def first_against() -> Decision:
        return next(value for value in values if value != Decision.APPROVE)

    if policy == JoinPolicy.ANY_REJECT:
        if rejects or returns:
            return first_against()
        return Decision.APPROVE if undecided == 0 else None
    if policy == JoinPolicy.ALL_APPROVE:
        if undecided:
            return None
        if approves == len(expected):
            return Decision.APPROVE
        return Decision.REJECT if rejects else Decision.RETURN_FOR_SUPPLEMENT
    if policy == JoinPolicy.QUORUM:
        if not 1 <= quorum <= len(expected):
            raise ValueError(f"quorum {quorum} is not between 1 and {len(expected)}")
        if approves >= quorum:
            return Decision.APPROVE
        if approves + undecided < quorum:
            return first_against()
        return None
    raise ValueError(f"unknown join policy {policy!r}")


def aggregate_scores(aggregation: ScoreAggregation, totals_centi: list[int]) -> int:
    """One score from the panel's totals (each 0..10000 hundredths of a point)."""
    if not totals_centi:
        raise ValueError("a panel without scores has no aggregate")
    if any(not 0 <= total <= MAX_SCORE_CENTI for total in totals_centi):
        raise ValueError(f"totals must be between 0 and {MAX_SCORE_CENTI}")
    ordered = sorted(totals_centi)
    if aggregation == ScoreAggregation.MEAN:
        return sum(ordered) // len(ordered)
    if aggregation == ScoreAggregation.TRIMMED_MEAN:
        kept = ordered[1:-1] if len(ordered) >= TRIM_MIN_PANEL else ordered
        return sum(kept) // len(kept)
    if aggregation == ScoreAggregation.MEDIAN:
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) // 2
    raise ValueError(f"unknown aggregation {aggregation!r}")
