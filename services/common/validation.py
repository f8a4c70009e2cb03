"""Field checks for request messages. Each raises InvalidArgument naming the field."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar

from stdnum.cn import uscc

from services.common.errors import InvalidArgument
from services.common.vocabulary import Term, VocabularyError

TermT = TypeVar("TermT", bound=Term)


class AwardEntry(Protocol):
    @property
    def application_id(self) -> str: ...


EntryT = TypeVar("EntryT", bound=AwardEntry)

# 10 billion yuan: nothing a municipal program pays comes near it; larger figures are typos.
MAX_FEN = 10**12
MAX_COUNT = 10**9
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{8,128}$")
IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
FIGURE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
ELLIPSIS = "…"


def text(field: str, value: str, *, max_len: int, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument(field, "is required")
    if len(value) > max_len:
        raise InvalidArgument(field, f"is longer than {max_len} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise InvalidArgument(field, "contains control characters")
    return value


def cut(value: str, max_len: int) -> str:
    """value, or its first characters ending in an ellipsis so that it is max_len long."""
    if len(value) <= max_len:
        return value
    return value[: max_len - len(ELLIPSIS)].rstrip() + ELLIPSIS


def reason(field: str, value: str, *, max_len: int) -> str:
    """A reason that states what already happened (a workflow's error, a reviewer's words behind
    a prefix): malformed text is refused, but an over-long one is cut to max_len, ending in an
    ellipsis, because refusing a release, a failure or a stage report over its wording would be
    worse than shortening it."""
    return cut(text(field, value, max_len=len(value), required=False), max_len)


def request_id(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(
            field, "is required (a client-chosen id that makes the call idempotent)"
        )
    if not REQUEST_ID.match(value):
        raise InvalidArgument(field, "must be 8-128 characters of letters, digits and _.:-")
    return value


def identifier(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not IDENTIFIER.match(value):
        raise InvalidArgument(field, "is not a valid identifier")
    return value


def credit_code(field: str, value: str) -> str:
    """A unified social credit code (统一社会信用代码): 18 characters with a check character."""
    value = value.strip().upper()
    if not value:
        raise InvalidArgument(field, "is required")
    if not uscc.is_valid(value):
        raise InvalidArgument(field, "is not a valid unified social credit code")
    return uscc.compact(value)


def fen(field: str, value: int, *, required: bool = False, allow_zero: bool = True) -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    if value == 0 and (required or not allow_zero):
        raise InvalidArgument(field, "must be greater than zero")
    if value > MAX_FEN:
        raise InvalidArgument(field, f"exceeds the maximum of {MAX_FEN} fen")
    return value


def figures(field: str, values: dict[str, int]) -> dict[str, int]:
    """Figures are money in fen (names ending in _fen) or counts; none negative or absurd."""
    if len(values) > 50:
        raise InvalidArgument(field, "has more than 50 entries")
    checked: dict[str, int] = {}
    for name, value in values.items():
        if not FIGURE_NAME.match(name):
            raise InvalidArgument(f"{field}[{name[:64]}]", "is not a valid figure name")
        limit = MAX_FEN if name.endswith("_fen") else MAX_COUNT
        if value < 0:
            raise InvalidArgument(f"{field}[{name}]", "must not be negative")
        if value > limit:
            raise InvalidArgument(f"{field}[{name}]", f"exceeds the maximum of {limit}")
        checked[name] = value
    return checked


def document(field: str, name: str, uri: str, sha256: str) -> None:
    text(f"{field}.name", name, max_len=200)
    text(f"{field}.uri", uri, max_len=1000)
    if not SHA256.match(sha256):
        raise InvalidArgument(f"{field}.sha256", "must be 64 lowercase hexadecimal characters")


def term(field: str, vocabulary: type[TermT], number: int) -> TermT:
    """The term a proto enum field holds; UNSPECIFIED or an unknown number is bad input."""
    try:
        return vocabulary.from_proto(number)
    except VocabularyError:
        raise InvalidArgument(field, f"must be one of {', '.join(vocabulary)}") from None


def optional_term(field: str, vocabulary: type[TermT], number: int) -> TermT | None:
    """Like term, but UNSPECIFIED (0) means "not given"."""
    return None if number == 0 else term(field, vocabulary, number)


def award_entries(
    entries: Sequence[EntryT], *, limit: int, within: str
) -> Iterator[tuple[str, str, EntryT]]:
    """A request's list of awards (a budget batch, a notice): at least one, at most `limit`,
    each application once. Yields each entry with its field path and checked application id."""
    if not entries:
        raise InvalidArgument("entries", "must name at least one award")
    if len(entries) > limit:
        raise InvalidArgument("entries", f"has more than {limit} awards")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        field = f"entries[{index}]"
        application_id = identifier(f"{field}.application_id", entry.application_id)
        if application_id in seen:
            raise InvalidArgument(f"{field}.application_id", f"appears twice in the {within}")
        seen.add(application_id)
        yield field, application_id, entry
