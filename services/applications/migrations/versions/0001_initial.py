"""Applications database: program rule versions, applications, supplements, messaging tables.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.common.migration_ops import create_messaging_tables, drop_messaging_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "program_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rule", sa.LargeBinary(), nullable=False),
        sa.Column("window_opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("code", "version", name="uq_program_version_code_version"),
    )
    op.create_index("ix_program_version_code", "program_version", ["code"])

    op.create_table(
        "application",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.String(32), nullable=False, unique=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("program_code", sa.String(32), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("applicant_credit_code", sa.String(18), nullable=False),
        sa.Column("applicant_name", sa.String(200), nullable=False),
        sa.Column("project_title", sa.String(200), nullable=False),
        sa.Column("project_description", sa.Text(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("requested_amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("status_sequence", sa.Integer(), nullable=False),
        sa.Column("award_amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("supplement_count", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(64), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawal_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawal_reason", sa.Text(), nullable=False),
        sa.Column("withdrawn_by", sa.String(200), nullable=False),
        sa.UniqueConstraint(
            "applicant_credit_code", "request_id", name="uq_application_applicant_request"
        ),
    )
    op.create_index("ix_application_program_code", "application", ["program_code"])
    op.create_index(
        "ix_application_applicant_credit_code", "application", ["applicant_credit_code"]
    )
    op.create_index("ix_application_status", "application", ["status"])

    op.create_table(
        "application_supplement",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "application_id", "request_id", name="uq_application_supplement_request"
        ),
    )
    op.create_index(
        "ix_application_supplement_application_id", "application_supplement", ["application_id"]
    )

    create_messaging_tables()


def downgrade() -> None:
    drop_messaging_tables()
    op.drop_index("ix_application_supplement_application_id", "application_supplement")
    op.drop_table("application_supplement")
    op.drop_index("ix_application_status", "application")
    op.drop_index("ix_application_applicant_credit_code", "application")
    op.drop_index("ix_application_program_code", "application")
    op.drop_table("application")
    op.drop_index("ix_program_version_code", "program_version")
    op.drop_table("program_version")
