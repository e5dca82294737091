"""Work the worker must not drop is retried until done, and shows as failing while it is."""

from __future__ import annotations

from flowforge.core.backoff import Backoff
from streams import metrics
from streams.retrying import Retrying, until_done

FAST = Backoff(initial=0.001, maximum=0.002)


def _gauge(agent: str) -> float:
    value = metrics.REGISTRY.get_sample_value("flowforge_worker_retrying", {"agent": agent})
    return float(value or 0.0)


async def test_failing_work_is_retried_until_it_succeeds_and_shown_while_it_fails() -> None:
    """An error nobody classified (here a KeyError twice) is retried, not raised; while it
    lasts, describe() names the work and the error and the gauge counts it; then both clear."""
    retrying = Retrying("test-a")
    seen: list[str | None] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        seen.append(retrying.describe())
        if calls < 3:
            raise KeyError("lost reply")
        return "sent"

    assert await until_done("sending image x", flaky, backoff=FAST, retrying=retrying) == "sent"
    assert calls == 3
    assert seen[0] is None
    assert seen[2] is not None
    assert "retrying sending image x" in seen[2]
    assert "KeyError" in seen[2]
    assert retrying.describe() is None
    assert _gauge("test-a") == 0


async def test_the_gauge_counts_each_failing_piece_of_work() -> None:
    """Two pieces of work failing at once count 2; the line names the longest-failing one."""
    retrying = Retrying("test-b")
    retrying.fail("first", "OSError: disk full")
    retrying.fail("second", "OSError: disk full")
    assert _gauge("test-b") == 2
    line = retrying.describe()
    assert line is not None
    assert line.startswith("retrying first for ")
    assert line.endswith("(and 1 more)")
    retrying.done("first")
    retrying.done("second")
    assert _gauge("test-b") == 0
