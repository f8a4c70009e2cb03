"""The working-day calendar (years, their holidays and adjusted working days, the years
deadlines fell into without data) and the notifications to applicants (delivery log, contact
addresses). The calendar is seeded from chinese-calendar when the service starts.

Revision ID: 0005_calendar_notifications
Revises: 0004_eligibility
Create Date: 2026-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_calendar_notifications"
down_revision = "0004_eligibility"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calendar_year",
        sa.Column("year", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "calendar_day",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
    )
    op.create_index("ix_calendar_day_year", "calendar_day", ["year"])
    op.create_table(
        "calendar_fallback",
        sa.Column("year", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("deadlines", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.String(64), nullable=False, unique=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("application_id", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("event_id", "channel", name="uq_notification_event_channel"),
    )
    op.create_index("ix_notification_application_id", "notification", ["application_id"])
    op.create_index("ix_notification_status", "notification", ["status"])
    op.create_index("ix_notification_next_attempt_at", "notification", ["next_attempt_at"])
    op.create_table(
        "notification_contact",
        sa.Column("credit_code", sa.String(18), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("mobile", sa.String(20), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notification_contact")
    op.drop_index("ix_notification_next_attempt_at", table_name="notification")
    op.drop_index("ix_notification_status", table_name="notification")
    op.drop_index("ix_notification_application_id", table_name="notification")
    op.drop_table("notification")
    op.drop_table("calendar_fallback")
    op.drop_index("ix_calendar_day_year", table_name="calendar_day")
    op.drop_table("calendar_day")
    op.drop_table("calendar_year")
