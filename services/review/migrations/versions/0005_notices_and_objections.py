"""Public notices (notice, notice_entry) and the objections lodged against them (objection):
services/review/notice_store.py.

Revision ID: 0005_notices_and_objections
Revises: 0004_expert_review_audit_inbox
Create Date: 2025-07-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_notices_and_objections"
down_revision = "0004_expert_review_audit_inbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notice",
        sa.Column("batch_id", sa.String(128), primary_key=True),
        sa.Column("program_code", sa.String(128), nullable=False),
        sa.Column("batch_number", sa.Integer(), nullable=False),
        sa.Column("owner_department", sa.String(16), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_notice_program_code", "notice", ["program_code"])
    op.create_index("ix_notice_published_at", "notice", ["published_at"])
    op.create_table(
        "notice_entry",
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("notice.batch_id"), primary_key=True),
        sa.Column("application_id", sa.String(128), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("applicant_name", sa.String(200), nullable=False),
        sa.Column("project_title", sa.String(300), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("applicant_credit_code", sa.String(18), nullable=False),
        sa.Column("struck", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_notice_entry_application_id", "notice_entry", ["application_id"])
    op.create_table(
        "objection",
        sa.Column("objection_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("program_code", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("contact", sa.String(200), nullable=False),
        sa.Column("objector_subject", sa.String(128), nullable=False),
        sa.Column("objector_role", sa.String(16), nullable=False),
        sa.Column("objector_enterprise", sa.String(18), nullable=False),
        sa.Column("objector_department", sa.String(16), nullable=False),
        sa.Column("handling_department", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lodged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handler", sa.String(128), nullable=False),
        sa.Column("consequence", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("handled_by", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("request_id", name="uq_objection_request_id"),
    )
    op.create_index("ix_objection_batch_id", "objection", ["batch_id"])
    op.create_index("ix_objection_application_id", "objection", ["application_id"])
    op.create_index("ix_objection_handling_department", "objection", ["handling_department"])


def downgrade() -> None:
    op.drop_index("ix_objection_handling_department", "objection")
    op.drop_index("ix_objection_application_id", "objection")
    op.drop_index("ix_objection_batch_id", "objection")
    op.drop_table("objection")
    op.drop_index("ix_notice_entry_application_id", "notice_entry")
    op.drop_table("notice_entry")
    op.drop_index("ix_notice_published_at", "notice")
    op.drop_index("ix_notice_program_code", "notice")
    op.drop_table("notice")
