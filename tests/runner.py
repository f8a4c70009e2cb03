"""`make test` runs this: the whole pytest suite, then exits with pytest's status.

The exit goes through services.common.process.exit_now (temporalio/sdk-python#300: a process that
used a Temporal client can crash in interpreter teardown). pytest's "no tests collected" (5) is a
failure here, never a quiet pass.
"""

from __future__ import annotations

import sys

import pytest

from services.common.process import run_and_exit

# Two workers (pytest-xdist): much of the suite waits on the embedded stack's processes, so two
# keep this 2-core machine busy; a test module, or a package sharing a stack, stays on one worker.
PARALLEL = ["-n", "2", "--dist", "loadgroup"]


def main() -> int:
    args = sys.argv[1:] or [*PARALLEL, "-q", "-ra", "--durations=15"]
    return int(pytest.main(args))


if __name__ == "__main__":
    run_and_exit(main)
