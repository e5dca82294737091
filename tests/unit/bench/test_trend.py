"""The soak's pass/fail rule (bench/trend.py): upward trends beyond noise, and nothing else."""

from __future__ import annotations

import random

import pytest

from bench.trend import trend

TIMES = [10.0 * i for i in range(180)]  # 30 minutes sampled every 10 s


def noisy(level: float, sd: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0.0, sd) for _ in TIMES]


def test_flat_noisy_series_is_not_a_trend() -> None:
    """A series that only jitters around its level (2 % noise) passes."""
    result = trend(TIMES, noisy(200.0, 4.0))
    assert not result.upward, result.describe()


def test_steady_growth_is_a_trend() -> None:
    """RSS growing 10 % over the run, with small noise, fails."""
    values = [v + 20.0 * t / TIMES[-1] for v, t in zip(noisy(200.0, 1.0), TIMES, strict=True)]
    result = trend(TIMES, values)
    assert result.upward, result.describe()
    assert result.projected_rise == pytest.approx(20.0, rel=0.25)


def test_growth_below_the_relative_allowance_passes() -> None:
    """Growth of 2 % over the run (under the 5 % allowance) passes."""
    values = [200.0 + 4.0 * t / TIMES[-1] for t in TIMES]
    assert not trend(TIMES, values).upward


def test_warm_up_in_the_first_half_is_ignored() -> None:
    """A rise during the first half that then levels off passes: only the second half counts."""
    values = [min(100.0 + t, 400.0) for t in TIMES]  # reaches 400 after 300 s, then flat
    assert not trend(TIMES, values).upward


def test_growth_in_the_second_half_fails_even_after_a_flat_start() -> None:
    """A leak that starts mid-run (RSS rising 30 % in the last half) fails."""
    middle = TIMES[-1] / 2
    values = [200.0 + max(0.0, t - middle) * 60.0 / middle for t in TIMES]
    assert trend(TIMES, values).upward


def test_large_noise_without_drift_passes() -> None:
    """A jittery series (consumer lag swinging with the commit interval) passes on noise."""
    rng = random.Random(3)
    values = [float(rng.choice([0, 0, 40, 120, 10])) for _ in TIMES]
    assert not trend(TIMES, values).upward


def test_floor_lets_a_zero_level_series_wiggle() -> None:
    """A spool depth of 0 that once holds 3 rows passes with a floor of 10 rows, and a spool
    that keeps filling fails despite the floor."""
    values = [0.0] * len(TIMES)
    values[150] = 3.0
    assert not trend(TIMES, values, floor=10.0).upward
    filling = [max(0.0, t - 900.0) for t in TIMES]  # +1 row/s in the second half
    assert trend(TIMES, filling, floor=10.0).upward


def test_falling_series_passes() -> None:
    """A series that goes down (a drained backlog) is not an upward trend."""
    values = [1000.0 - t for t in TIMES]
    result = trend(TIMES, values)
    assert not result.upward
    assert result.slope_per_s == pytest.approx(-1.0)


def test_too_few_samples_is_an_error() -> None:
    """Fewer than 4 samples in the second half cannot show a trend: ValueError, not a pass."""
    with pytest.raises(ValueError, match="second half"):
        trend([0.0, 10.0, 20.0, 30.0], [1.0, 1.0, 1.0, 1.0])
