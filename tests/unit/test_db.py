"""The services' SQLite transactions: writers take the write lock up front, readers take none."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from services.common.db import Database
from tests.support import holding_the_write_lock


@pytest.fixture
def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'unit.db'}")
    db.transact(lambda session: session.execute(text("CREATE TABLE t (x INTEGER)")))
    db.transact(lambda session: session.execute(text("INSERT INTO t VALUES (1)")))
    return db


def count(session: Session) -> int:
    return int(session.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_a_read_answers_while_another_connection_holds_the_write_lock(database: Database) -> None:
    with holding_the_write_lock(database.url):
        assert database.read(count) == 1


def test_a_read_never_commits_what_it_writes(database: Database) -> None:
    database.read(lambda session: session.execute(text("INSERT INTO t VALUES (2)")))
    assert database.read(count) == 1


def test_synchronous_is_a_setting(tmp_path: Path) -> None:
    def synchronous(session: Session) -> int:
        return int(session.execute(text("PRAGMA synchronous")).scalar_one())

    assert Database(f"sqlite:///{tmp_path / 'a.db'}").read(synchronous) == 2  # FULL
    normal = Database(f"sqlite:///{tmp_path / 'b.db'}", sqlite_synchronous="NORMAL")
    assert normal.read(synchronous) == 1
    with pytest.raises(ValueError):
        Database(f"sqlite:///{tmp_path / 'c.db'}", sqlite_synchronous="OFF")


async def test_reads_do_not_queue_behind_writers_waiting_for_the_lock(database: Database) -> None:
    def write(session: Session) -> None:
        session.execute(text("INSERT INTO t VALUES (3)"))

    with holding_the_write_lock(database.url):
        # More writers than a default thread pool has threads, all waiting for the lock.
        writers = [asyncio.ensure_future(database.run(write)) for _ in range(12)]
        await asyncio.sleep(0.2)
        # The guard only keeps a queued read from hanging the test.
        assert await asyncio.wait_for(database.run_read(count), timeout=10) == 1
    await asyncio.gather(*writers)
    assert await database.run_read(count) == 13
