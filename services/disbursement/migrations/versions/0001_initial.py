"""Disbursement tables: budgets, reservations, funding plans, payment lines, ledger, messaging.

Revision ID: 0001
Revises:
Create Date: 2025-11-27

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migration_ops import create_messaging_tables, drop_messaging_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.BigInteger()
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "program_budget",
        sa.Column("program_code", sa.String(128), primary_key=True),
        sa.Column("total_fen", MONEY, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_table(
        "reservation",
        sa.Column("application_id", sa.String(128), primary_key=True),
        sa.Column("program_code", sa.String(128), nullable=False),
        sa.Column("amount_fen", MONEY, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("plan_id", sa.String(32), nullable=True),
        sa.Column("applicant_credit_code", sa.String(32), nullable=False),
        sa.Column("applicant_name", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint("amount_fen > 0", name="ck_reservation_amount_positive"),
    )
    op.create_index("ix_reservation_program_code", "reservation", ["program_code"])
    op.create_index("ix_reservation_plan_id", "reservation", ["plan_id"])
    op.create_table(
        "funding_plan",
        sa.Column("plan_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("program_code", sa.String(128), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=False),
        sa.Column("total_fen", MONEY, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("approved_at", TIME, nullable=True),
        sa.Column("completed_at", TIME, nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_funding_plan_program_code", "funding_plan", ["program_code"])
    op.create_table(
        "payment_line",
        sa.Column("line_id", sa.String(32), primary_key=True),
        sa.Column("plan_id", sa.String(32), sa.ForeignKey("funding_plan.plan_id"), nullable=False),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("applicant_credit_code", sa.String(32), nullable=False),
        sa.Column("applicant_name", sa.String(200), nullable=False),
        sa.Column("amount_fen", MONEY, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("gateway_reference", sa.String(128), nullable=False),
        sa.Column("failure_reason", sa.String(500), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("paid_at", TIME, nullable=True),
        sa.CheckConstraint("amount_fen > 0", name="ck_payment_line_amount_positive"),
    )
    op.create_index("ix_payment_line_plan_id", "payment_line", ["plan_id"])
    op.create_index("ix_payment_line_application_id", "payment_line", ["application_id"])
    op.create_table(
        "ledger_entry",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("journal_id", sa.String(200), nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("debit_fen", MONEY, nullable=False),
        sa.Column("credit_fen", MONEY, nullable=False),
        sa.Column("memo", sa.String(500), nullable=False),
        sa.Column("posted_at", TIME, nullable=False),
        sa.UniqueConstraint("journal_id", "account", name="uq_ledger_journal_account"),
        sa.CheckConstraint(
            "debit_fen >= 0 AND credit_fen >= 0 AND (debit_fen = 0 OR credit_fen = 0)",
            name="ck_ledger_one_sided",
        ),
    )
    op.create_index("ix_ledger_entry_journal_id", "ledger_entry", ["journal_id"])
    op.create_index("ix_ledger_entry_account", "ledger_entry", ["account"])
    create_messaging_tables()


def downgrade() -> None:
    drop_messaging_tables()
    op.drop_table("ledger_entry")
    op.drop_table("payment_line")
    op.drop_table("funding_plan")
    op.drop_table("reservation")
    op.drop_table("program_budget")
