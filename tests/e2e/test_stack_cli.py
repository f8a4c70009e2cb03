"""`grantflow stack up | status | down` with real processes: a stack stopped uncleanly (its
processes killed, as by a crash, an OOM kill or a reboot) leaves data/stack.json behind; the next
`stack up` notices that nothing recorded still runs (a reused pid running another command is not
ours), clears the record and starts, and refuses only while a recorded stack really runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from infra.local.stack import LocalStack, is_ours
from services.common.config import Settings
from tests.e2e.support import cli
from tests.support import free_port

pytestmark = pytest.mark.integration


def stack_environment(data_dir: Path) -> dict[str, str]:
    settings = Settings(
        data_dir=data_dir,
        temporal_address=f"127.0.0.1:{free_port()}",
        temporal_ui_port=free_port(),
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        applications_address=f"127.0.0.1:{free_port()}",
        review_address=f"127.0.0.1:{free_port()}",
        disbursement_address=f"127.0.0.1:{free_port()}",
        console_address=f"127.0.0.1:{free_port()}",
        stack_metrics_port=0,  # the default ports are fixed: a stack of another test would collide
    )
    return LocalStack(settings).environment()


def recorded(data_dir: Path) -> dict[str, object]:
    state: dict[str, object] = json.loads((data_dir / "stack.json").read_text())
    return state


def test_stack_up_after_an_unclean_stop_cleans_up_and_starts(tmp_path: Path) -> None:
    env = stack_environment(tmp_path)
    bystander = subprocess.Popen(["sleep", "300"])  # a process that took over a recorded pid
    try:
        first = cli(env, "stack", "up")
        assert first.status == 0, first.output
        state = recorded(tmp_path)
        pids: dict[str, int] = state["pids"]  # type: ignore[assignment]
        argv: dict[str, list[str]] = state["argv"]  # type: ignore[assignment]

        for pid in pids.values():  # the unclean stop: every process killed, nothing cleaned up
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(is_ours(pid, argv[name]) for name, pid in pids.items()):
            assert time.monotonic() < deadline, "killed processes still run"
            time.sleep(0.1)
        state["pids"] = {**pids, "intake": bystander.pid}
        (tmp_path / "stack.json").write_text(json.dumps(state))

        status = cli(env, "stack", "status")
        assert status.status == 1 and status.clean, status.output
        assert "grantflow stack up" in status.output  # says what to do

        second = cli(env, "stack", "up")
        assert second.status == 0, second.output
        assert "applications" in second.output and second.clean
        assert bystander.poll() is None, "a process that was never ours was signalled"
        restarted: dict[str, int] = recorded(tmp_path)["pids"]  # type: ignore[assignment]
        assert restarted != pids and bystander.pid not in restarted.values()

        healthy = cli(env, "stack", "status")
        assert healthy.status == 0, healthy.output

        refused = cli(env, "stack", "up", "--timeout", "5")
        assert refused.status == 1 and "grantflow stack down" in refused.output, refused.output
    finally:
        down = cli(env, "stack", "down")
        bystander.kill()
        bystander.wait()
    assert down.status == 0 and not (tmp_path / "stack.json").exists()
