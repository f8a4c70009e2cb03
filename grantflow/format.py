"""How the CLI and the demo print money and stages."""

from __future__ import annotations

from services.common.vocabulary import GrantStage, VocabularyError


def yuan(fen: int) -> str:
    """Integer fen as yuan, e.g. 150000 -> ¥1,500.00 (no floats)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def stage_name(stage: int) -> str:
    try:
        return GrantStage.from_proto(stage).value
    except VocabularyError:
        return f"UNKNOWN ({stage})"
