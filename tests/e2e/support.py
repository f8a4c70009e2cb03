"""Running the `grantflow` command as its users do: a separate process, its exit status and what
it printed."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CLI = str(Path(sys.executable).parent / "grantflow")


@dataclass
class Outcome:
    status: int
    output: str  # stdout and stderr together

    @property
    def clean(self) -> bool:
        """Said what went wrong without a Python traceback."""
        return "Traceback" not in self.output


def cli(env: dict[str, str], *args: str, timeout: float = 180) -> Outcome:
    result = subprocess.run(
        [CLI, *args],
        env={**env, "COLUMNS": "250", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Outcome(result.returncode, result.stdout + result.stderr)
