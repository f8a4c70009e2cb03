"""Eligibility with evidence: applications gain a project code; the credit list with validity
periods; each eligibility check's outcome and evidence per application, and the last run's
summary.

Revision ID: 0004_eligibility
Revises: 0003_audit
Create Date: 2026-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_eligibility"
down_revision = "0003_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("application") as table:
        table.add_column(
            sa.Column("project_code", sa.String(64), nullable=False, server_default="")
        )

    op.create_table(
        "credit_list_entry",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(32), nullable=False, unique=True),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("list_name", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_credit_list_entry_credit_code", "credit_list_entry", ["credit_code"])

    op.create_table(
        "eligibility_outcome",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.String(32), nullable=False, unique=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("remaining_year_cap_fen", sa.BigInteger(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "eligibility_check",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("reason_zh", sa.Text(), nullable=False),
        sa.Column("evidence_json", sa.Text(), nullable=False),
        sa.UniqueConstraint("application_id", "name", name="uq_eligibility_check_name"),
    )
    op.create_index("ix_eligibility_check_application_id", "eligibility_check", ["application_id"])


def downgrade() -> None:
    op.drop_table("eligibility_check")
    op.drop_table("eligibility_outcome")
    op.drop_table("credit_list_entry")
    with op.batch_alter_table("application") as table:
        table.drop_column("project_code")
