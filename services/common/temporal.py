"""Connecting to Temporal with Grantflow's data conversion (pydantic models as payloads)."""

from __future__ import annotations

import asyncio

import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from services.common.config import Settings

log = structlog.get_logger(__name__)


async def connect_temporal(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


async def connect_until_reachable(settings: Settings, stop: asyncio.Event) -> Client | None:
    """Connects to Temporal, waiting with backoff while it is down (the stack starts its
    processes in any order); None if asked to stop first."""
    delay = 0.5
    while not stop.is_set():
        try:
            return await connect_temporal(settings)
        except Exception as exc:
            log.warning(
                "temporal unreachable; retrying",
                address=settings.temporal_address,
                error=str(exc),
                retry_in=delay,
            )
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, 10.0)
    return None


async def register_search_attributes(client: Client, attributes: dict[str, str]) -> None:
    """Registers custom search attributes (name -> Keyword, KeywordList, ...) on the namespace;
    names that already exist are left alone."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    namespace = client.namespace
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{_snake(kind)}")
        for name, kind in attributes.items()
        if name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
        )


def _snake(kind: str) -> str:
    """KeywordList -> KEYWORD_LIST."""
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(kind)).upper()
