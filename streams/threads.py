"""Blocking calls from the event loop on a thread of their own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


async def in_thread(executor: Executor, call: Callable[..., T], *args: Any) -> T:
    """Run ``call(*args)`` on ``executor``; a cancelled caller still waits for it to finish, so
    whatever the call holds (a ClickHouse client, say) is not used again while it runs."""
    future = asyncio.get_running_loop().run_in_executor(executor, call, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
