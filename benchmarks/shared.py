"""What the benchmarks share: an SME-CLOUD filing as an enterprise makes one, timing a call,
and percentiles. Only public interfaces (the gRPC API, token minting), so the benchmarks also run
against earlier versions of Grantflow for before-and-after figures."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from typing import Any

from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2, common_pb2
from services.common.auth import mint_token

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def sme_cloud_filing(
    secret: str, number: int
) -> tuple[applications_pb2.SubmitApplicationRequest, Metadata]:
    """Enterprise `number`'s filing (a fresh request id each time) and its applicant token."""
    code = credit_code(number)
    token = mint_token(secret, code, "applicant", enterprise=code)
    request = applications_pb2.SubmitApplicationRequest(
        request_id=f"bench-{uuid.uuid4().hex}",
        program_code="SME-CLOUD",
        applicant_credit_code=code,
        applicant_name=f"Benchmark Enterprise {number}",
        project_title=f"Cloud ERP {number}",
        figures={
            "cloud_fee_paid_fen": 300_000,
            "staff_count": 40,
            "annual_revenue_fen": 3_000_000_000,
        },
        # SME-CLOUD's required documents (the formal check asks for any missing).
        documents=[
            common_pb2.DocumentRef(
                name=name, uri=f"s3://grantflow-bench/{code}/{index}.pdf", sha256="0" * 64
            )
            for index, name in enumerate(("申报书", "云服务合同", "付款凭证"))
        ],
    )
    return request, bearer(token)


async def timed(latencies: list[float], call: Awaitable[Any]) -> Any:
    """Awaits call, appending how long it took (seconds) to latencies."""
    started = time.monotonic()
    answer = await call
    latencies.append(time.monotonic() - started)
    return answer


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
