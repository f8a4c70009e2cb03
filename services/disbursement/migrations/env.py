"""Alembic environment of the disbursement database."""

from services.common.alembic_env import run_migrations

run_migrations()
