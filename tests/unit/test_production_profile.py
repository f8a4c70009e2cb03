"""The production settings profile (GRANTFLOW_PROFILE=production) refuses development-only
settings, every process exits with a readable message instead of a trace, migrations run on
their own (`python -m services.common.migrate`), and the health-only port answers probes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from services.common.config import DEV_AUTH_SECRET, Settings
from services.common.grpc_server import serve
from services.common.migrate import current_and_head, main, migrations_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def production(tmp_path: Path) -> dict[str, Any]:
    """Environment of a process that the production profile accepts."""
    files = {}
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
        files[name] = str(tmp_path / name)
    return {
        "GRANTFLOW_PROFILE": "production",
        "AUTH_SECRET": "k" * 48,
        "SERVICE_TOKEN": "system-token",
        "TLS_CERT_FILE": files["tls.crt"],
        "TLS_KEY_FILE": files["tls.key"],
        "TLS_CA_FILE": files["ca.crt"],
        **{
            f"{service}_DATABASE_URL": f"postgresql://{service.lower()}:pw@db:5432/{service.lower()}"
            for service in ("APPLICATIONS", "REVIEW", "DISBURSEMENT", "TREASURY")
        },
    }


def refusal(values: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate(values)
    return str(caught.value)


def test_production_accepts_settings_fit_for_it(production: dict[str, Any]) -> None:
    settings = Settings.model_validate(production)
    assert settings.profile == "production"
    assert settings.production_problems() == []


def test_development_is_the_default_and_accepts_the_development_secret() -> None:
    settings = Settings()
    assert settings.profile == "development"
    assert settings.auth_secret == DEV_AUTH_SECRET


def test_production_refuses_the_development_secret(production: dict[str, Any]) -> None:
    assert "AUTH_SECRET" in refusal(production | {"AUTH_SECRET": DEV_AUTH_SECRET})
    assert "AUTH_SECRET" in refusal(production | {"AUTH_SECRET": "short"})


@pytest.mark.parametrize("name", ["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"])
def test_production_refuses_to_run_without_tls(production: dict[str, Any], name: str) -> None:
    without = {k: v for k, v in production.items() if k != name}
    assert f"{name}: 未设置" in refusal(without)
    assert f"{name}: 文件不存在" in refusal(production | {name: "/nonexistent/tls.pem"})


def test_production_refuses_the_embedded_broker_recovery(production: dict[str, Any]) -> None:
    message = refusal(production | {"KAFKA_EMBEDDED_BROKER_RECOVERY": "true"})
    assert "KAFKA_EMBEDDED_BROKER_RECOVERY" in message


def test_production_refuses_sqlite_a_missing_service_token_and_timer_overrides(
    production: dict[str, Any],
) -> None:
    assert "REVIEW_DATABASE_URL" in refusal(production | {"REVIEW_DATABASE_URL": ""})
    assert "APPLICATIONS_DATABASE_URL" in refusal(
        production | {"APPLICATIONS_DATABASE_URL": "sqlite:////tmp/a.db"}
    )
    assert "SERVICE_TOKEN" in refusal(production | {"SERVICE_TOKEN": ""})
    for name in ("NOTICE_PERIOD_SECONDS", "SUPPLEMENT_PERIOD_SECONDS", "REVIEW_PERIOD_SECONDS"):
        assert name in refusal(production | {name: "5"})


def test_a_process_refused_by_the_profile_exits_with_the_reason_and_no_trace(
    production: dict[str, Any],
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRANTFLOW", "AUTH_"))}
    env |= production | {"AUTH_SECRET": DEV_AUTH_SECRET, "KAFKA_EMBEDDED_BROKER_RECOVERY": "1"}
    ran = subprocess.run(
        [sys.executable, "-m", "services.applications"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode != 0
    assert "生产配置 (GRANTFLOW_PROFILE=production) 拒绝启动" in ran.stderr
    assert "AUTH_SECRET" in ran.stderr and "KAFKA_EMBEDDED_BROKER_RECOVERY" in ran.stderr
    assert "Traceback" not in ran.stderr + ran.stdout


def test_migrations_run_on_their_own_and_wait_sees_them(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.common import config

    monkeypatch.setenv("REVIEW_DATABASE_URL", database_url)
    config.get_settings.cache_clear()
    try:
        assert main(["review", "--wait", "--timeout", "0"]) == 1  # nothing migrated yet
        assert main(["review"]) == 0
        assert main(["review", "--wait", "--timeout", "0"]) == 0
    finally:
        config.get_settings.cache_clear()
    current, heads = current_and_head(database_url, migrations_dir("review"))
    assert current == heads and heads


async def test_the_health_port_answers_in_plaintext_beside_the_service() -> None:
    import socket

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    address, health_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    stop, ready = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(
        serve(
            name="probe-test",
            address=address,
            secret="k" * 48,
            register=lambda _server: None,
            service_full_names=[],
            method_roles={},
            stop=stop,
            ready=ready.set,
            health_address=health_address,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    try:
        async with grpc.aio.insecure_channel(health_address) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)
    # Stopped with the service.
    async with grpc.aio.insecure_channel(health_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
