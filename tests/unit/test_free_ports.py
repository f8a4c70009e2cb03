"""The ports tests give their servers: never ones the kernel hands to outgoing connections (a
port bound to 0 and released could be taken by one before the server bound it), never the same
twice in one process, and never the same in two pytest-xdist workers."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ephemeral_low, free_port, free_ports


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < port < ephemeral_low() for port in ports)


def test_a_run_of_ports_is_never_handed_out_again() -> None:
    start = free_ports(8)  # e.g. a stack's metrics ports, given as one base
    later = {free_port() for _ in range(300)}
    assert not later & set(range(start, start + 8))


def worker_share(worker: str) -> set[int]:
    code = "from tests.support import free_port; print(*(free_port() for _ in range(300)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": "2", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(port) for port in out.split()}


def test_two_workers_never_get_the_same_port() -> None:
    first, second = worker_share("gw0"), worker_share("gw1")
    assert len(first) == len(second) == 300
    assert not first & second
