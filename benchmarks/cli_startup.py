"""How long the `grantflow` command takes to start, against the interpreter's own floor.

`python -m benchmarks.cli_startup [--runs 5] [--no-stack]` times, as separate processes with the
same interpreter and the median of N runs each:
- `python -c pass` (the floor: no command can start faster),
- `grantflow --help`,
- `grantflow status <id>` (a full GetApplication round trip; NOT_FOUND is a fine answer),
- `grantflow ops find --limit 1` (a Temporal visibility query),
under three bytecode conditions:
- "as installed": the environment as it is (this machine sets PYTHONDONTWRITEBYTECODE=1, so
  bytecode is used only where the install compiled it),
- "no bytecode": PYTHONPYCACHEPREFIX points at an empty folder, so nothing, not even the
  standard library, loads from bytecode,
- "all bytecode": PYTHONPYCACHEPREFIX points at a folder warmed by one run first.

By default it starts a throw-away embedded stack (SQLite) on free ports for `status` and
`ops find`; with --no-stack, `status` runs against a closed port (start-up up to the failing
gRPC call) and `ops find` is skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

PYTHON = sys.executable
GRANTFLOW = str(Path(sys.executable).parent / "grantflow")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, timeout=120)
    return time.perf_counter() - started, result.returncode


def median_of(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, set[int]]:
    samples, codes = [], set()
    for _ in range(runs):
        seconds, code = timed(argv, env)
        samples.append(seconds)
        codes.add(code)
    return statistics.median(samples), codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-stack", action="store_true", help="no embedded stack")
    args = parser.parse_args()

    with ExitStack() as cleanup:
        scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        base = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
        if args.no_stack:
            from tests.support import free_port

            base["APPLICATIONS_ADDRESS"] = f"127.0.0.1:{free_port()}"  # nothing listens
            target = "against a closed port (up to the failing gRPC call)"
        else:
            from tests.stack_fixture import running_stack

            print("starting a throw-away embedded stack…", file=sys.stderr)
            stack = cleanup.enter_context(running_stack(scratch / "stack"))
            base.update(stack.environment())
            target = "against a running embedded stack"

        commands: dict[str, list[str]] = {
            "python -c pass (floor)": [PYTHON, "-c", "pass"],
            "grantflow --help": [GRANTFLOW, "--help"],
            "grantflow status <id>": [GRANTFLOW, "status", "0" * 32],
        }
        if not args.no_stack:
            commands["grantflow ops find"] = [GRANTFLOW, "ops", "find", "--limit", "1"]

        empty, warm = scratch / "pyc-empty", scratch / "pyc-warm"
        empty.mkdir()
        conditions = {
            "as installed": base,
            "no bytecode": {
                **base,
                "PYTHONPYCACHEPREFIX": str(empty),
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            "all bytecode": {**base, "PYTHONPYCACHEPREFIX": str(warm)},
        }
        warming = dict(conditions["all bytecode"])
        warming.pop("PYTHONDONTWRITEBYTECODE", None)
        for argv in commands.values():
            timed(argv, warming)  # compiles everything each command imports into `warm`
        conditions["all bytecode"]["PYTHONDONTWRITEBYTECODE"] = "1"

        print(f"CLI start-up, median of {args.runs} runs, seconds; {target}")
        print(f"interpreter {PYTHON} (Python {sys.version.split()[0]})")
        header = f"{'command':<26}" + "".join(f"{name:>15}" for name in conditions)
        print(header)
        print("-" * len(header))
        for label, argv in commands.items():
            cells = []
            for env in conditions.values():
                seconds, codes = median_of(argv, env, args.runs)
                mark = "" if codes == {0} else f" !{max(codes)}"
                cells.append(f"{seconds:.3f}{mark}".rjust(15))
            print(f"{label:<26}" + "".join(cells))
        print("(! n: the command exited with status n; status of an unknown id is NOT_FOUND)")


if __name__ == "__main__":
    main()
