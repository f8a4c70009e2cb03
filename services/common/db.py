"""Database access for the services: engines (SQLite or any SQLAlchemy URL), Alembic migrations,
and running blocking ORM work off the event loop.

SQLModel sessions are synchronous; services are grpc.aio servers, so every unit of database work
runs in a worker thread through `Database.run`, one transaction per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Lets operators write plain postgresql:// URLs; Grantflow talks to PostgreSQL via psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the writer; we issue BEGIN ourselves (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        # A deferred SQLite transaction that later writes can fail at once with "database is
        # locked" instead of waiting; taking the write lock up front serialises writers cleanly.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def migrate(url: str, migrations_dir: Path) -> None:
    """Brings the database at url to the newest revision of the service's Alembic migrations."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    command.upgrade(config, "head")


class Database:
    """One service's database: an engine and transactional units of work run in threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def transact(self, work: Callable[[Session], T]) -> T:
        """Runs work in one transaction: everything it writes commits together or not at all."""
        with self.session() as session:
            result = work(session)
            session.commit()
            return result

    async def run(self, work: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self.transact, work)

    def dispose(self) -> None:
        self.engine.dispose()


def now_utc() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def to_timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(as_utc(value))
    return stamp


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
