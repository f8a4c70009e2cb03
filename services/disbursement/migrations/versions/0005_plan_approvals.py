"""Funding plans: a second approval level above a configured total (the first approver kept
apart from the last), and cancellation before approval (who, when, why).

Revision ID: 0005_plan_approvals
Revises: 0004_budget_lines
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_plan_approvals"
down_revision = "0004_budget_lines"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("funding_plan") as table:
        # Plans made before this level existed needed one approval.
        table.add_column(
            sa.Column("approvals_required", sa.Integer(), nullable=False, server_default="1")
        )
        table.add_column(
            sa.Column("first_approved_by", sa.String(200), nullable=False, server_default="")
        )
        table.add_column(sa.Column("first_approved_at", TIME, nullable=True))
        table.add_column(
            sa.Column("cancelled_by", sa.String(200), nullable=False, server_default="")
        )
        table.add_column(sa.Column("cancelled_at", TIME, nullable=True))
        table.add_column(
            sa.Column("cancel_reason", sa.String(500), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("funding_plan") as table:
        for column in (
            "cancel_reason",
            "cancelled_at",
            "cancelled_by",
            "first_approved_at",
            "first_approved_by",
            "approvals_required",
        ):
            table.drop_column(column)
