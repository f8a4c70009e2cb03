"""Expert pool and panels, special audits, the inbox's priority and stage, and the ledger of who
decided which stage of a grant (separation of duties).

Revision ID: 0004_expert_review_audit_inbox
Revises: 0003_audit
Create Date: 2026-01-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_expert_review_audit_inbox"
down_revision = "0003_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_task") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("stage", sa.String(32), nullable=False, server_default="department_review")
        )
    op.create_index("ix_review_task_inbox", "review_task", ["department", "state", "priority"])
    op.create_table(
        "expert",
        sa.Column("expert_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("employer_credit_code", sa.String(18), nullable=False),
        sa.Column("declared_conflicts", sa.Text(), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_expert_field", "expert", ["field"])
    op.create_table(
        "expert_panel",
        sa.Column("panel_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("program_code", sa.String(128), nullable=False),
        sa.Column("applicant_credit_code", sa.String(18), nullable=False),
        sa.Column("applicant_name", sa.String(200), nullable=False),
        sa.Column("project_title", sa.String(300), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("panel_size", sa.Integer(), nullable=False),
        sa.Column("rubric", sa.Text(), nullable=False),
        sa.Column("aggregation", sa.String(16), nullable=False),
        sa.Column("pass_score_centi", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("score_centi", sa.Integer(), nullable=True),
        sa.UniqueConstraint("request_id", name="uq_expert_panel_request_id"),
    )
    op.create_index("ix_expert_panel_application_id", "expert_panel", ["application_id"])
    op.create_table(
        "expert_assignment",
        sa.Column("task_id", sa.String(32), primary_key=True),
        sa.Column("panel_id", sa.String(32), nullable=False),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("expert_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("scores", sa.Text(), nullable=False),
        sa.Column("total_centi", sa.Integer(), nullable=False),
        sa.Column("comment", sa.String(2000), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("panel_id", "expert_id", name="uq_expert_assignment_member"),
    )
    op.create_index("ix_expert_assignment_panel_id", "expert_assignment", ["panel_id"])
    op.create_index("ix_expert_assignment_expert_id", "expert_assignment", ["expert_id"])
    op.create_index("ix_expert_assignment_application_id", "expert_assignment", ["application_id"])
    op.create_table(
        "audit_task",
        sa.Column("task_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("program_code", sa.String(128), nullable=False),
        sa.Column("figure", sa.String(128), nullable=False),
        sa.Column("declared_fen", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("audited_fen", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("auditor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applicant_name", sa.String(200), nullable=False),
        sa.Column("project_title", sa.String(300), nullable=False),
        sa.UniqueConstraint("request_id", name="uq_audit_task_request_id"),
    )
    op.create_index("ix_audit_task_application_id", "audit_task", ["application_id"])
    op.create_index("ix_audit_task_state", "audit_task", ["state"])
    op.create_table(
        "stage_decision",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.String(128), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("stage", "ref", "decided_by", name="uq_stage_decision_act"),
    )
    op.create_index("ix_stage_decision_person", "stage_decision", ["application_id", "decided_by"])


def downgrade() -> None:
    op.drop_index("ix_stage_decision_person", "stage_decision")
    op.drop_table("stage_decision")
    op.drop_index("ix_audit_task_state", "audit_task")
    op.drop_index("ix_audit_task_application_id", "audit_task")
    op.drop_table("audit_task")
    op.drop_index("ix_expert_assignment_application_id", "expert_assignment")
    op.drop_index("ix_expert_assignment_expert_id", "expert_assignment")
    op.drop_index("ix_expert_assignment_panel_id", "expert_assignment")
    op.drop_table("expert_assignment")
    op.drop_index("ix_expert_panel_application_id", "expert_panel")
    op.drop_table("expert_panel")
    op.drop_index("ix_expert_field", "expert")
    op.drop_table("expert")
    op.drop_index("ix_review_task_inbox", "review_task")
    with op.batch_alter_table("review_task") as batch:
        batch.drop_column("stage")
        batch.drop_column("priority")
