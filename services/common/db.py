"""Database access for the services: engines (SQLite or any SQLAlchemy URL), Alembic migrations,
and running blocking ORM work off the event loop.

SQLModel sessions are synchronous; services are grpc.aio servers, so every unit of database work
runs in a worker thread, one transaction per call: `Database.run` for work that writes,
`Database.run_read` for work that only reads.

On SQLite (WAL mode) a writing transaction takes the write lock at its start (BEGIN IMMEDIATE), so
writers queue cleanly instead of failing half-way; a reading transaction begins deferred and reads
a snapshot beside whatever writer holds the lock, so status reads never wait for writes. Readers
and writers also have threads of their own, so a queue of writers never holds a read back, and
SQLite's writers queue for one writer thread, in order, instead of in SQLite's busy handler,
which polls the lock with sleeps of up to 100 ms.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
W = TypeVar("W")


def normalise_url(url: str) -> str:
    """Lets operators write plain postgresql:// URLs; Grantflow talks to PostgreSQL via psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


# Execution option marking a connection whose transactions only read.
READ_ONLY = "grantflow_read_only"
# Threads per database for units of work (within the PostgreSQL connection pool of 20).
READER_THREADS = 4
WRITER_THREADS = 8  # PostgreSQL; SQLite writes one at a time


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """An engine for url; on SQLite with WAL, and transactions begun as described above
    (`sqlite_synchronous` is Settings.sqlite_synchronous, which says what it trades)."""
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    if sqlite_synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"sqlite_synchronous must be FULL or NORMAL, not {sqlite_synchronous!r}")
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the writer; we issue BEGIN ourselves (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A reader takes no lock up front: in WAL mode it reads a snapshot beside the writer.
            conn.exec_driver_sql("BEGIN")
        else:
            # A deferred SQLite transaction that later writes can fail at once with "database is
            # locked" instead of waiting; taking the write lock up front serialises writers.
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

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = url
        self.engine = make_engine(url, sqlite_synchronous=sqlite_synchronous)
        # The same pool; its transactions begin as reads (and PostgreSQL refuses writes in them).
        options: dict[str, Any] = {READ_ONLY: True}
        if self.engine.dialect.name == "postgresql":
            options["postgresql_readonly"] = True
        self._read_engine = self.engine.execution_options(**options)
        one_writer = self.engine.dialect.name == "sqlite"
        self._writers = ThreadPoolExecutor(
            max_workers=1 if one_writer else WRITER_THREADS, thread_name_prefix="db-write"
        )
        self._readers = ThreadPoolExecutor(max_workers=READER_THREADS, thread_name_prefix="db-read")

    def session(self, *, read_only: bool = False) -> Session:
        return Session(self._read_engine if read_only else self.engine, expire_on_commit=False)

    def transact(self, work: Callable[[Session], T]) -> T:
        """Runs work in one transaction: everything it writes commits together or not at all."""
        with self.session() as session:
            result = work(session)
            session.commit()
            return result

    def read(self, work: Callable[[Session], T]) -> T:
        """Runs work in one reading transaction, which never waits for a writer; whatever it
        might write is rolled back, never committed."""
        with self.session(read_only=True) as session:
            result = work(session)
            # Detach what was read (it stays readable) and end the transaction unwritten.
            session.expunge_all()
            session.rollback()
            return result

    async def run(self, work: Callable[[Session], T]) -> T:
        return await self.writing(self.transact, work)

    async def run_read(self, work: Callable[[Session], T]) -> T:
        return await self.reading(self.read, work)

    async def writing(self, function: Callable[[W], T], work: W) -> T:
        """function(work) in a writer thread (for callers that open their own transaction)."""
        return await _in_thread(self._writers, function, work)

    async def reading(self, function: Callable[[W], T], work: W) -> T:
        """function(work) in a reader thread."""
        return await _in_thread(self._readers, function, work)

    def dispose(self) -> None:
        self._writers.shutdown(wait=False)
        self._readers.shutdown(wait=False)
        self.engine.dispose()


async def _in_thread(pool: ThreadPoolExecutor, function: Callable[[W], T], argument: W) -> T:
    # As asyncio.to_thread does, the work sees the caller's context variables.
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, context.run, function, argument)


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
