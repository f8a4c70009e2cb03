"""Simplified Chinese first, English on request: the language of a request and the helpers the
templates use to write in it.

A template says both at once, `t("待办", "Inbox")`, so no sentence can lose its translation and
the Chinese a person reads sits next to the code that prints it. Terms of the vocabulary (stages,
states, departments) take their Chinese from services/common/labels.py, the one place they are
named; in English they read as the term itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from jinja2 import pass_context

from grantflow.format import yuan
from services.common.labels import LABELS
from services.common.vocabulary import Term

LANG_COOKIE = "lang"
LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
BEIJING = timezone(timedelta(hours=8), "CST")


def language(cookie: str | None) -> str:
    return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE


def pick(lang: str, zh: str, en: str) -> str:
    return en if lang == "en" else zh


@pass_context
def t(context: Any, zh: str, en: str) -> str:
    return pick(context.get("lang", DEFAULT_LANGUAGE), zh, en)


def term_label(lang: str, term: Term | None) -> str:
    if term is None:
        return ""
    if lang == "en":
        return term.value.replace("_", " ").lower()
    return LABELS.get(term, term.value)


@pass_context
def label(context: Any, term: Term | None) -> str:
    return term_label(context.get("lang", DEFAULT_LANGUAGE), term)


def when(value: Any) -> str:
    """A protobuf Timestamp or datetime in Beijing time, to the minute; "" when unset."""
    if value is None:
        return ""
    if hasattr(value, "seconds"):
        if not value.seconds and not value.nanos:
            return ""
        value = datetime.fromtimestamp(value.seconds, UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"))


TEMPLATE_GLOBALS = {"t": t, "label": label, "yuan": yuan, "when": when}
