"""Backoff: exponential retry delays with full jitter, and retrying only retriable errors."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from flowforge.errors import FlowForgeError

T = TypeVar("T")


@dataclass
class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each drawn from [d/2, d].

    Half of the delay is fixed so a retry never comes at once; the other half is random so many
    clients that failed together do not retry together. ``reset()`` after a success.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        """The delay before the next attempt (and count this failure)."""
        ceiling = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self.attempts = 0


async def retry(
    call: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    on_retry: Callable[[FlowForgeError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Await ``call()`` until it succeeds; retry only errors whose ``retriable`` flag is set."""
    while True:
        try:
            result = await call()
        except FlowForgeError as exc:
            if not exc.retriable:
                raise
            delay = backoff.next_delay()
            if on_retry is not None:
                on_retry(exc, delay)
            await sleep(delay)
        else:
            backoff.reset()
            return result
