"""How the CLI and the demo print money and stages."""

from __future__ import annotations

from grantflow.v1 import common_pb2


def yuan(fen: int) -> str:
    """Integer fen as yuan, e.g. 150000 -> ¥1,500.00 (no floats)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def stage_name(stage: int) -> str:
    return common_pb2.GrantStage.Name(stage).removeprefix("GRANT_STAGE_")  # type: ignore[arg-type]
