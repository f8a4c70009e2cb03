"""The services are TLS-ready: with TLS_CERT_FILE and TLS_KEY_FILE a service only speaks TLS,
and clients that trust TLS_CA_FILE call it with their bearer tokens as usual."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import grpc
import pytest

from grantflow.v1 import applications_pb2, applications_pb2_grpc
from services.applications.server import run
from services.common.auth import mint_token
from services.common.clients import ServiceClients
from services.common.config import Settings
from services.common.vocabulary import Role
from tests.support import free_port


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_service_speaks_tls_when_configured(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = Settings(
        data_dir=tmp_path,
        applications_address=f"127.0.0.1:{free_port()}",
        applications_database_url=f"sqlite:///{tmp_path / 'applications.db'}",
        tls_cert_file=cert,
        tls_key_file=key,
        tls_ca_file=cert,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(run(settings, stop=stop, ready=ready.set, messaging=False))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        token = mint_token(settings.auth_secret, "ops-1", Role.OPS)
        async with ServiceClients(settings, token) as clients:
            answer = await clients.applications.ListPrograms(applications_pb2.ListProgramsRequest())
            assert answer.programs == []
        async with grpc.aio.insecure_channel(settings.applications_address) as plaintext:
            stub = applications_pb2_grpc.ApplicationServiceStub(plaintext)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListPrograms(
                    applications_pb2.ListProgramsRequest(),
                    metadata=[("authorization", f"Bearer {token}")],
                    timeout=5,
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stop.set()
        await server
