"""Clawbacks (追回) of paid awards and their repayments.

Revision ID: 0007_clawbacks
Revises: 0006_reconciliation
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_clawbacks"
down_revision = "0006_reconciliation"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "clawback",
        sa.Column("clawback_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("application_id", sa.String(128), nullable=False, index=True),
        sa.Column("program_code", sa.String(128), nullable=False),
        sa.Column("budget_key", sa.String(200), nullable=False),
        sa.Column("applicant_credit_code", sa.String(32), nullable=False, index=True),
        sa.Column("applicant_name", sa.String(200), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("repaid_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("opened_by", sa.String(200), nullable=False),
        sa.Column("opened_at", TIME, nullable=False),
        sa.Column("settled_at", TIME, nullable=True),
        sa.Column("bar_years", sa.Integer(), nullable=False),
        sa.Column("bar_until", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_table(
        "clawback_repayment",
        sa.Column("repayment_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "clawback_id",
            sa.String(32),
            sa.ForeignKey("clawback.clawback_id"),
            nullable=False,
            index=True,
        ),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("clawback_repayment")
    op.drop_table("clawback")
