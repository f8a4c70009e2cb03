"""Awards paid in instalments (TECH-MAJOR): each award's schedule (instalment, amount, the
milestone that releases it, its due date and state), which instalment a payment line pays, and
what a reservation has paid so far of its award.

Revision ID: 0009_instalments
Revises: 0008_plan_scope
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_instalments"
down_revision = "0008_plan_scope"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "instalment",
        sa.Column("application_id", sa.String(128), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("milestone", sa.String(20), nullable=False),
        sa.Column("due_at", TIME, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("plan_id", sa.String(32), nullable=True, index=True),
        sa.Column("released_at", TIME, nullable=True),
        sa.Column("paid_at", TIME, nullable=True),
        sa.Column("confirmed_by", sa.String(200), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    with op.batch_alter_table("payment_line") as table:
        # Lines made before instalments pay a whole award: its only instalment.
        table.add_column(sa.Column("instalment", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("reservation") as table:
        table.add_column(sa.Column("instalments", sa.Integer(), nullable=False, server_default="1"))
        table.add_column(sa.Column("paid_fen", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("reservation") as table:
        table.drop_column("paid_fen")
        table.drop_column("instalments")
    with op.batch_alter_table("payment_line") as table:
        table.drop_column("instalment")
    op.drop_table("instalment")
