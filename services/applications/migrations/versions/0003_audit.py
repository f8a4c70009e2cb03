"""The audit trail: hash-chained audit records and the chain's head (services/common/audit.py).

Revision ID: 0003_audit
Revises: 0002_outbox_traceparent
Create Date: 2025-06-01
"""

from __future__ import annotations

from services.common.migration_ops import create_audit_tables, drop_audit_tables

revision = "0003_audit"
down_revision = "0002_outbox_traceparent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_tables()


def downgrade() -> None:
    drop_audit_tables()
