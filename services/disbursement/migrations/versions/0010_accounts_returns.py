"""Receiving accounts (收款账户), late settlement and returned payments (退汇): the accounts'
versions, and on payment lines the account paid, the reissue number, whether the line's money
sits in payable:K, and the return; on reservations how many payments came back.

Old rows need no data change: a line approved before payable:K existed keeps payable false and
is paid from reserved:K as before, so every budget still balances.

Revision ID: 0010_accounts_returns
Revises: 0009_instalments
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_accounts_returns"
down_revision = "0009_instalments"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "receiving_account",
        sa.Column("application_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("account_name", sa.String(200), nullable=False),
        sa.Column("account_number", sa.String(40), nullable=False),
        sa.Column("bank_code", sa.String(12), nullable=False),
        sa.Column("bank_name", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("given_by", sa.String(200), nullable=False),
        sa.Column("given_by_role", sa.String(20), nullable=False),
        sa.Column("given_at", TIME, nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=False, server_default=""),
        sa.Column("approved_at", TIME, nullable=True),
        sa.Column("reason", sa.String(500), nullable=False, server_default=""),
    )
    # Plain ADD COLUMN (SQLite and PostgreSQL both have it): nothing to rebuild.
    for name, length in (
        ("account_name", 200),
        ("account_number", 40),
        ("bank_code", 12),
        ("bank_name", 200),
        ("return_reason", 500),
        ("idempotency_key", 128),
    ):
        op.add_column(
            "payment_line",
            sa.Column(name, sa.String(length), nullable=False, server_default=""),
        )
    for name in ("account_version", "reissue", "ledger_moves"):
        op.add_column(
            "payment_line", sa.Column(name, sa.Integer(), nullable=False, server_default="0")
        )
    op.add_column(
        "payment_line",
        sa.Column("payable", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("payment_line", sa.Column("returned_at", TIME, nullable=True))
    op.create_index("ix_payment_line_idempotency_key", "payment_line", ["idempotency_key"])
    op.add_column(
        "reservation", sa.Column("returns", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    with op.batch_alter_table("reservation") as batch:
        batch.drop_column("returns")
    op.drop_index("ix_payment_line_idempotency_key", "payment_line")
    with op.batch_alter_table("payment_line") as batch:
        for name in (
            "idempotency_key",
            "returned_at",
            "payable",
            "ledger_moves",
            "reissue",
            "account_version",
            "return_reason",
            "bank_name",
            "bank_code",
            "account_number",
            "account_name",
        ):
            batch.drop_column(name)
    op.drop_table("receiving_account")
