"""Review tasks and the messaging tables (outbox, processed events).

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.migration_ops import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_task",
        sa.Column("task_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("program_code", sa.String(128), nullable=False),
        sa.Column("department", sa.String(16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(128), nullable=False),
        sa.Column("proposed_amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("decided_amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applicant_name", sa.String(200), nullable=False),
        sa.Column("project_title", sa.String(300), nullable=False),
        sa.UniqueConstraint("request_id", name="uq_review_task_request_id"),
    )
    op.create_index("ix_review_task_application_id", "review_task", ["application_id"])
    op.create_index("ix_review_task_queue", "review_task", ["department", "state", "created_at"])
    op.create_index("ix_review_task_assignee", "review_task", ["assignee"])
    create_messaging_tables()


def downgrade() -> None:
    drop_messaging_tables()
    op.drop_index("ix_review_task_assignee", "review_task")
    op.drop_index("ix_review_task_queue", "review_task")
    op.drop_index("ix_review_task_application_id", "review_task")
    op.drop_table("review_task")
