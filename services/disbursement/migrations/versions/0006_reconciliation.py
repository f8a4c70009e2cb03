"""Reconciliation of the payment gateway's daily statement against the ledger: the last report
of each day, and the exceptions found (one per day, idempotency key and kind) with how finance
resolved them.

Revision ID: 0006_reconciliation
Revises: 0005_plan_approvals
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_reconciliation"
down_revision = "0005_plan_approvals"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
MONEY = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "reconciliation_run",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("gateway_count", sa.Integer(), nullable=False),
        sa.Column("gateway_total_fen", MONEY, nullable=False),
        sa.Column("ledger_count", sa.Integer(), nullable=False),
        sa.Column("ledger_total_fen", MONEY, nullable=False),
        sa.Column("matched_count", sa.Integer(), nullable=False),
        sa.Column("matched_total_fen", MONEY, nullable=False),
        sa.Column("exception_count", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("reconciled_by", sa.String(200), nullable=False),
        sa.Column("reconciled_at", TIME, nullable=False),
    )
    op.create_table(
        "reconciliation_exception",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(32), nullable=False),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("gateway_reference", sa.String(128), nullable=False),
        sa.Column("gateway_amount_fen", MONEY, nullable=False),
        sa.Column("ledger_amount_fen", MONEY, nullable=False),
        sa.Column("gateway_payee", sa.String(240), nullable=False),
        sa.Column("ledger_payee", sa.String(240), nullable=False),
        sa.Column("found_at", TIME, nullable=False),
        sa.Column("resolution", sa.String(20), nullable=False),
        sa.Column("resolution_note", sa.String(500), nullable=False),
        sa.Column("resolved_by", sa.String(200), nullable=False),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.UniqueConstraint("day", "idempotency_key", "kind", name="uq_reconciliation_exception"),
    )
    op.create_index("ix_reconciliation_exception_day", "reconciliation_exception", ["day"])
    op.create_index("ix_reconciliation_exception_state", "reconciliation_exception", ["state"])


def downgrade() -> None:
    op.drop_index("ix_reconciliation_exception_state", "reconciliation_exception")
    op.drop_index("ix_reconciliation_exception_day", "reconciliation_exception")
    op.drop_table("reconciliation_exception")
    op.drop_table("reconciliation_run")
