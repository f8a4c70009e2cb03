"""The CLI module imports only typer: every command imports what it needs, so `grantflow --help`
and light commands do not pay for gRPC, Temporal, pydantic settings or rich tables
(benchmarks/cli_startup.py measures the time)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["grpc", "temporalio", "pydantic", "rich.table", "google.protobuf", "grantflow.demo"]


def test_importing_the_cli_loads_no_heavy_module() -> None:
    probe = f"import sys, grantflow.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
