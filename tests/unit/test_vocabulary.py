"""The one vocabulary: every term maps to its proto enum and back, every proto value has a term,
and an unknown spelling or number is a VocabularyError, never a silent default."""

from __future__ import annotations

import pytest

from services.common.vocabulary import (
    MAPPED_VOCABULARIES,
    Decision,
    GrantStage,
    Term,
    VocabularyError,
    _proto_enums,
)

MAPPED = list(MAPPED_VOCABULARIES)


@pytest.mark.parametrize("vocabulary", MAPPED, ids=lambda v: v.__name__)
def test_every_term_round_trips_through_its_proto_enum(vocabulary: type[Term]) -> None:
    for term in vocabulary:
        assert vocabulary.from_proto(term.to_proto()) is term


@pytest.mark.parametrize("vocabulary", MAPPED, ids=lambda v: v.__name__)
def test_every_proto_value_but_unspecified_has_a_term(vocabulary: type[Term]) -> None:
    wrapper, _ = _proto_enums()[vocabulary]
    numbers = {n for n in wrapper.values() if n != 0}
    assert {term.to_proto() for term in vocabulary} == numbers
    with pytest.raises(VocabularyError):
        vocabulary.from_proto(0)


def test_unknown_spellings_and_numbers_are_refused_by_name() -> None:
    with pytest.raises(VocabularyError, match="'IN_REVEIW' is not a GrantStage"):
        GrantStage.parse("IN_REVEIW")
    with pytest.raises(VocabularyError):
        Decision.from_proto(99)
    assert Decision.parse("return") is Decision.RETURN_FOR_SUPPLEMENT


def test_every_mapped_vocabulary_is_listed() -> None:
    assert set(MAPPED_VOCABULARIES) == set(_proto_enums())
