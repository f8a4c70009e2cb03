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


async def connect_temporal_patiently(settings: Settings, attempts: int = 120) -> Client:
    """Connects, waiting for Temporal to come up (the stack starts its processes in parallel)."""
    for attempt in range(1, attempts + 1):
        try:
            return await connect_temporal(settings)
        except RuntimeError as error:
            if attempt == attempts:
                raise
            if attempt % 10 == 1:
                log.info(
                    "waiting for temporal", address=settings.temporal_address, error=str(error)
                )
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


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
