"""How bench.e2e turns one run's samples into repeated figures."""

from __future__ import annotations

from bench.e2e import rss_by_minute, split_by_time


def test_split_by_time_puts_values_in_consecutive_equal_spans() -> None:
    """Values go to the part of the run their time falls in; the last time belongs to the last
    part, and every value lands somewhere."""
    items = [(100.0 + t, float(t)) for t in range(0, 31)]  # 100..130 s
    parts = split_by_time(items, 3)
    assert [min(p) for p in parts] == [0.0, 10.0, 20.0]
    assert [max(p) for p in parts] == [9.0, 19.0, 30.0]
    assert sum(len(p) for p in parts) == len(items)
    assert split_by_time([], 2) == [[], []]


def test_rss_by_minute_gives_one_median_per_whole_minute_after_the_first() -> None:
    """A 10-minute run sampled every 5 s gives 9 values (minutes 2 to 10), each the median of
    its minute, so a step in minute 5 shows in exactly the minutes after it."""
    rows = [{"t": 5.0 * k, "x_rss_mb": 100.0 if 5.0 * k < 240 else 120.0} for k in range(121)]
    values = rss_by_minute(rows, "x_rss_mb")
    assert values == [100.0, 100.0, 100.0, 120.0, 120.0, 120.0, 120.0, 120.0, 120.0]
