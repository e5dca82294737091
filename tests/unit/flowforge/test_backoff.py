"""The one backoff helper: jittered exponential delays, and retrying only retriable errors."""

from __future__ import annotations

import asyncio
import random

import pytest

from flowforge.backoff import Backoff, retry
from flowforge.errors import FlowForgeError


class Flaky(FlowForgeError):
    retriable = True


def test_delays_double_within_jitter_up_to_the_cap() -> None:
    """Each delay lies in [d/2, d] where d doubles from initial and stops at maximum."""
    backoff = Backoff(initial=0.5, maximum=4.0, rng=random.Random(7))
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_jitter_spreads_clients_that_failed_together() -> None:
    """Two clients with different random sources do not retry at the same instant."""
    a = Backoff(rng=random.Random(1))
    b = Backoff(rng=random.Random(2))
    assert [a.next_delay() for _ in range(3)] != [b.next_delay() for _ in range(3)]


def test_retry_retries_retriable_errors_until_success() -> None:
    """retry() sleeps and calls again after a retriable error, and returns the result."""
    calls: list[int] = []
    slept: list[float] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Flaky("busy")
        return "done"

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = asyncio.run(retry(call, Backoff(initial=0.1), sleep=sleep))
    assert (result, len(calls), len(slept)) == ("done", 3, 2)


def test_retry_gives_up_at_once_on_a_permanent_error() -> None:
    """An error without the retriable flag propagates on the first attempt."""
    calls: list[int] = []

    async def call() -> None:
        calls.append(1)
        raise FlowForgeError("bad input")

    with pytest.raises(FlowForgeError, match="bad input"):
        asyncio.run(retry(call, Backoff()))
    assert calls == [1]
