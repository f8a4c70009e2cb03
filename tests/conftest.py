"""Fixtures shared by the whole suite: database URLs (SQLite and PostgreSQL) and a Kafka broker;
and how the suite's tests are grouped onto the runner's parallel workers (pytest-xdist)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import postgres_available, postgres_database, tansu_broker

IN_CI = os.environ.get("CI", "").lower() == "true"
# Packages whose tests share one embedded stack (a package-scoped fixture): each runs whole on
# one worker, so the suite starts that stack once, not once per worker.
ONE_STACK_PACKAGES = ("browser", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The runner spreads groups over its workers (`--dist loadgroup`): a test module is a group
    (its module-scoped stacks and servers start once), and so is a package sharing a stack."""
    for item in items:
        parts = item.nodeid.split("::", 1)[0].split("/")
        package = parts[1] if len(parts) > 2 else ""
        group = package if package in ONE_STACK_PACKAGES else parts[-1]
        item.add_marker(pytest.mark.xdist_group(group))


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
