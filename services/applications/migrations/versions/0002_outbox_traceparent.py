"""The outbox keeps the W3C traceparent of the span that wrote each event, so the relay can carry
the trace on to Kafka (services/common/outbox.py). Nullable: untraced writes leave it empty.

Revision ID: 0002_outbox_traceparent
Revises: 0001
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_outbox_traceparent"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_event") as table:
        table.add_column(sa.Column("traceparent", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_event") as table:
        table.drop_column("traceparent")
