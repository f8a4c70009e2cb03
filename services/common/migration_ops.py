"""Schema of the shared messaging tables (outbox, processed events) as Alembic operations.

Every service's first migration calls `create_messaging_tables()`, so the three databases carry
the same definition. Changes to these tables go in new, per-service migrations, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def create_messaging_tables() -> None:
    op.create_table(
        "outbox_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kafka_partition", sa.Integer(), nullable=True),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_outbox_event_created_at", "outbox_event", ["created_at"])
    op.create_index("ix_outbox_event_published_at", "outbox_event", ["published_at"])
    op.create_table(
        "processed_event",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )


def drop_messaging_tables() -> None:
    op.drop_table("processed_event")
    op.drop_index("ix_outbox_event_published_at", "outbox_event")
    op.drop_index("ix_outbox_event_created_at", "outbox_event")
    op.drop_table("outbox_event")
