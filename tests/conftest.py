"""Fixtures shared by the whole suite: database URLs (SQLite and PostgreSQL) and a Kafka broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import postgres_available, postgres_database, tansu_broker

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_postgres() -> None:
    """PostgreSQL is part of CI's machine: there its absence is a failure, not a skip."""
    if postgres_available():
        return
    if IN_CI:
        pytest.fail("PostgreSQL at 127.0.0.1:5432 is not reachable in CI")
    pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One fresh, empty database per test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
        return
    require_postgres()
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker (Tansu) for the session."""
    with tansu_broker(tmp_path_factory.mktemp("tansu")) as address:
        yield address
