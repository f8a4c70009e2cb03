"""Alembic migrations of the review database."""
