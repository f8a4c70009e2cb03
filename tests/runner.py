"""`make test` runs this: the whole pytest suite, then exits with pytest's status.

The exit goes through services.common.process.exit_now (temporalio/sdk-python#300: a process that
used a Temporal client can crash in interpreter teardown). pytest's "no tests collected" (5) is a
failure here, never a quiet pass.
"""

from __future__ import annotations

import sys

import pytest

from services.common.process import run_and_exit


def main() -> int:
    args = sys.argv[1:] or ["-q", "-ra", "--durations=15"]
    return int(pytest.main(args))


if __name__ == "__main__":
    run_and_exit(main)
