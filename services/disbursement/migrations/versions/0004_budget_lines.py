"""Funds, support plans and their yearly budget lines; batch allocations; reservations remember
the budget line and year they hold money in, the batch that made them and a pro-rata cut.

Revision ID: 0004_budget_lines
Revises: 0003_audit
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_budget_lines"
down_revision = "0003_audit"
branch_labels = None
depends_on = None

MONEY = sa.BigInteger()
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fund",
        sa.Column("fund_code", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_table(
        "support_plan",
        sa.Column("support_plan_code", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("fund_code", sa.String(64), sa.ForeignKey("fund.fund_code"), nullable=False),
        sa.Column("department", sa.String(32), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_support_plan_fund_code", "support_plan", ["fund_code"])
    op.create_table(
        "budget_line",
        sa.Column("line_code", sa.String(64), primary_key=True),
        sa.Column("fiscal_year", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column(
            "support_plan_code",
            sa.String(64),
            sa.ForeignKey("support_plan.support_plan_code"),
            nullable=False,
        ),
        sa.Column("total_fen", MONEY, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint("total_fen >= 0", name="ck_budget_line_total_not_negative"),
    )
    op.create_index("ix_budget_line_support_plan_code", "budget_line", ["support_plan_code"])
    op.create_table(
        "allocation_batch",
        sa.Column("batch_id", sa.String(128), primary_key=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("program_code", sa.String(128), nullable=False),
        sa.Column("budget_line_code", sa.String(64), nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(20), nullable=False),
        sa.Column("available_before_fen", MONEY, nullable=False),
        sa.Column("cut", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_allocation_batch_program_code", "allocation_batch", ["program_code"])
    op.create_table(
        "batch_allocation",
        sa.Column(
            "batch_id",
            sa.String(128),
            sa.ForeignKey("allocation_batch.batch_id"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("amount_fen", MONEY, nullable=False),
        sa.Column("requested_fen", MONEY, nullable=False),
        sa.CheckConstraint("amount_fen <= requested_fen", name="ck_batch_allocation_not_above"),
    )
    op.create_index("ix_batch_allocation_application_id", "batch_allocation", ["application_id"])
    # Plain ADD COLUMNs (SQLite takes them without recreating the table).
    op.add_column("reservation", sa.Column("budget_line_code", sa.String(64), nullable=True))
    op.add_column("reservation", sa.Column("fiscal_year", sa.Integer(), nullable=True))
    op.add_column("reservation", sa.Column("batch_id", sa.String(128), nullable=True))
    op.add_column(
        "reservation", sa.Column("cut_from_fen", MONEY, nullable=False, server_default="0")
    )
    op.create_index(
        "ix_reservation_budget_line", "reservation", ["budget_line_code", "fiscal_year", "state"]
    )


def downgrade() -> None:
    op.drop_index("ix_reservation_budget_line", table_name="reservation")
    with op.batch_alter_table("reservation") as table:
        table.drop_column("cut_from_fen")
        table.drop_column("batch_id")
        table.drop_column("fiscal_year")
        table.drop_column("budget_line_code")
    op.drop_index("ix_batch_allocation_application_id", table_name="batch_allocation")
    op.drop_table("batch_allocation")
    op.drop_index("ix_allocation_batch_program_code", table_name="allocation_batch")
    op.drop_table("allocation_batch")
    op.drop_index("ix_budget_line_support_plan_code", table_name="budget_line")
    op.drop_table("budget_line")
    op.drop_index("ix_support_plan_fund_code", table_name="support_plan")
    op.drop_table("support_plan")
    op.drop_table("fund")
