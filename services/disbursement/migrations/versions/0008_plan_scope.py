"""Funding plans across the programs of one budget line, chosen by filter or list, and edited
while in draft: the plan's budget line, each payment line's program (totals per program), when
each award was noticed (the awarded-before filter, oldest first), and the plan's edits.

Existing rows are filled in from what they already say: a plan's line from its awards'
reservations, a payment line's program from its plan (a plan held one program until now), an
award's noticed time from its last change (as good as is known).

Revision ID: 0008_plan_scope
Revises: 0007_clawbacks
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_plan_scope"
down_revision = "0007_clawbacks"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("funding_plan") as table:
        table.add_column(
            sa.Column("budget_line_code", sa.String(64), nullable=False, server_default="")
        )
    with op.batch_alter_table("payment_line") as table:
        table.add_column(
            sa.Column("program_code", sa.String(128), nullable=False, server_default="")
        )
        table.create_index("ix_payment_line_program_code", ["program_code"])
    with op.batch_alter_table("reservation") as table:
        table.add_column(sa.Column("awarded_at", TIME, nullable=True))
    op.execute(
        "UPDATE payment_line SET program_code = (SELECT f.program_code FROM funding_plan f "
        "WHERE f.plan_id = payment_line.plan_id)"
    )
    op.execute(
        "UPDATE funding_plan SET budget_line_code = COALESCE((SELECT MIN(r.budget_line_code) "
        "FROM payment_line l JOIN reservation r ON r.application_id = l.application_id "
        "WHERE l.plan_id = funding_plan.plan_id), '')"
    )
    op.execute(
        "UPDATE reservation SET awarded_at = updated_at "
        "WHERE state IN ('awarded', 'in_plan', 'paid')"
    )
    op.create_table(
        "funding_plan_edit",
        sa.Column("edit_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column(
            "plan_id",
            sa.String(32),
            sa.ForeignKey("funding_plan.plan_id"),
            nullable=False,
            index=True,
        ),
        sa.Column("added", sa.Text(), nullable=False),
        sa.Column("removed", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("edited_by", sa.String(200), nullable=False),
        sa.Column("edited_at", TIME, nullable=False),
        sa.Column("total_before_fen", sa.BigInteger(), nullable=False),
        sa.Column("total_after_fen", sa.BigInteger(), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("funding_plan_edit")
    with op.batch_alter_table("reservation") as table:
        table.drop_column("awarded_at")
    with op.batch_alter_table("payment_line") as table:
        table.drop_index("ix_payment_line_program_code")
        table.drop_column("program_code")
    with op.batch_alter_table("funding_plan") as table:
        table.drop_column("budget_line_code")
