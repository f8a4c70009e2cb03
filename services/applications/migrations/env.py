"""Alembic environment of the applications database."""

from services.common.alembic_env import run_migrations

run_migrations()
