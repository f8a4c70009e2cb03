"""Waiting that gives way to a stop request, for the long-running Kafka loops."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def until_stopped(
    stop: asyncio.Event, work: Coroutine[Any, Any, None], grace_s: float = 1.0
) -> None:
    """Runs work until it returns or `stop` is set; once stopped, work has grace_s to finish on
    its own (it sees `stop` too) and is then cancelled."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace_s)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if not task.cancelled():
        task.result()
