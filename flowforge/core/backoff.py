"""Exponential backoff with full jitter, retrying only errors whose ``retriable`` flag is set."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from flowforge.core.errors import Stopped

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_retriable(exc: BaseException) -> bool:
    """Whether ``exc`` says trying again can help (FlowForge and aiokafka errors carry a flag)."""
    return bool(getattr(exc, "retriable", False))


@dataclass(frozen=True)
class Backoff:
    """Delays of ``initial * multiplier**attempt`` capped at ``maximum``, fully jittered."""

    initial: float = 0.2
    maximum: float = 10.0
    multiplier: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        return float(min(self.maximum, self.initial * self.multiplier ** min(attempt, 64)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A random delay in [ceiling/2, ceiling]: spread out, but never a busy retry."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + (rng or random).random() * ceiling / 2


async def retry(
    action: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff = Backoff(),
    stop: asyncio.Event | None = None,
) -> T:
    """Run ``action`` until it succeeds; retry retriable errors after a jittered delay.

    A non-retriable error is raised at once. If ``stop`` is set while waiting, raise Stopped.
    The first failure and the recovery are logged (state transitions), not every attempt.
    """
    attempt = 0
    while True:
        try:
            result = await action()
        except Exception as exc:
            if not is_retriable(exc):
                raise
            delay = backoff.delay(attempt)
            if attempt == 0:
                log.warning("%s failed (%s); retrying with backoff", what, exc)
            else:
                log.debug("%s failed again (attempt %d): %s", what, attempt + 1, exc)
            attempt += 1
            if stop is None:
                await asyncio.sleep(delay)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
                else:
                    raise Stopped(what) from exc
            continue
        if attempt:
            log.info("%s succeeded after %d retries", what, attempt)
        return result
