"""The backoff helper: jittered exponential delays, retrying only retriable errors."""

from __future__ import annotations

import asyncio
import random

import pytest

from bridges.errors import PayloadRejected, PublishFailed
from flowforge.core.backoff import Backoff, is_retriable, retry
from flowforge.core.errors import Stopped


def test_delays_grow_exponentially_within_jitter_and_cap() -> None:
    """Each delay lies in [ceiling/2, ceiling], ceilings double and stop at the cap."""
    backoff = Backoff(initial=0.1, maximum=2.0, multiplier=2.0)
    rng = random.Random(7)
    assert [backoff.ceiling(a) for a in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    for attempt in range(200):
        ceiling = backoff.ceiling(attempt)
        assert ceiling / 2 <= backoff.delay(attempt, rng) <= ceiling
    delays = {round(backoff.delay(3, rng), 6) for _ in range(50)}
    assert len(delays) > 40, "delays are jittered"


def test_retriable_flag_decides() -> None:
    """Errors flagged retriable (ours or aiokafka's) are retried; others are not."""
    from aiokafka.errors import KafkaConnectionError, UnsupportedVersionError

    assert is_retriable(PublishFailed("x"))
    assert is_retriable(KafkaConnectionError())
    assert not is_retriable(PayloadRejected("empty", "x"))
    assert not is_retriable(UnsupportedVersionError())
    assert not is_retriable(ValueError())


async def test_retry_retries_retriable_errors_until_success() -> None:
    """A retriable failure is retried until the action succeeds."""
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise PublishFailed("down")
        return "ok"

    assert await retry(flaky, what="t", backoff=Backoff(initial=0.001, maximum=0.01)) == "ok"
    assert calls == 3


async def test_retry_raises_non_retriable_errors_at_once() -> None:
    """A non-retriable error is raised on the first attempt."""
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise PayloadRejected("empty", "nothing")

    with pytest.raises(PayloadRejected):
        await retry(bad, what="t", backoff=Backoff(initial=0.001))
    assert calls == 1


async def test_retry_stops_when_the_stop_event_is_set() -> None:
    """Setting the stop event ends the waiting between attempts with Stopped."""
    stop = asyncio.Event()

    async def down() -> None:
        raise PublishFailed("down")

    asyncio.get_running_loop().call_later(0.05, stop.set)
    with pytest.raises(Stopped):
        await retry(down, what="t", backoff=Backoff(initial=10, maximum=10), stop=stop)
