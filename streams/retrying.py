"""Work the worker must not drop (an image's outputs, a sink batch): retried until it is done.

An event is acknowledged once the agent is done with it (the sink's batches whether its work
succeeded or raised), so an output that failed is not redelivered: it is retried here instead,
with backoff, and the failure is visible while it lasts (``/readyz`` not ready, naming the work and
the error; ``flowforge_worker_retrying`` on ``/metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from flowforge.core.backoff import Backoff
from streams import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class Retrying:
    """What one agent is retrying right now: work -> (first failure, monotonic; last error)."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.failing: dict[str, tuple[float, str]] = {}

    def fail(self, what: str, error: str) -> None:
        since = self.failing.get(what, (time.monotonic(), ""))[0]
        self.failing[what] = (since, error)
        metrics.RETRYING.labels(agent=self.agent).set(len(self.failing))

    def done(self, what: str) -> None:
        if self.failing.pop(what, None) is not None:
            metrics.RETRYING.labels(agent=self.agent).set(len(self.failing))

    def describe(self) -> str | None:
        """One line on the longest-failing work, or None when nothing is being retried."""
        if not self.failing:
            return None
        what, (since, error) = min(self.failing.items(), key=lambda item: item[1][0])
        more = f" (and {len(self.failing) - 1} more)" if len(self.failing) > 1 else ""
        return f"retrying {what} for {time.monotonic() - since:.0f}s: {error[:160]}{more}"


async def until_done(
    what: str, call: Callable[[], Awaitable[T]], *, backoff: Backoff, retrying: Retrying
) -> T:
    """Await ``call()`` until it succeeds, backing off between attempts (Kafka away, a full
    disk, an error nobody foresaw); ``retrying`` shows the failure while it lasts."""
    attempt = 0
    while True:
        try:
            result = await call()
        except Exception as exc:
            delay = backoff.delay(attempt)
            error = f"{type(exc).__name__}: {exc}"
            if attempt == 0:
                log.exception("%s failed; retrying in %.1fs", what, delay)
            else:
                log.warning("%s failed again (%s); retrying in %.1fs", what, error, delay)
            retrying.fail(what, error)
            attempt += 1
            await asyncio.sleep(delay)
            continue
        if attempt:
            log.info("%s succeeded after %d retries", what, attempt)
            retrying.done(what)
        return result
