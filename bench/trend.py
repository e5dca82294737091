"""Whether a sampled series trends upward beyond noise: the soak's pass/fail rule.

The rule, for samples (t, value) of a run of ``duration`` seconds:

1. Only the second half of the run counts (t >= the middle): the first half holds warm-up
   (caches filling, the engine's first merges, a JIT of allocator arenas) that levels off.
2. Fit a least-squares line to those samples; its slope, projected over the whole run
   (slope x duration), is the rise the series would show if the trend went on.
3. The series trends upward if that projected rise exceeds the allowance:
   max(``relative`` x the median level of the second half, ``noise`` x the standard deviation of
   the fit's residuals, ``floor``). The relative part says how much growth is tolerable (5 % by
   default, the issue's RSS target); the noise part keeps a jittery series with no drift from
   failing (a slope fitted to noise is small against 3 sigma); the floor is an absolute amount
   that is no growth for the series at hand (for example a few file descriptors, or the
   messages of a Kafka commit interval for consumer lag, whose level may be 0).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

RELATIVE = 0.05
NOISE = 3.0
MIN_SAMPLES = 4


@dataclass(frozen=True)
class Trend:
    """The verdict on one series, with the numbers behind it."""

    slope_per_s: float
    level: float
    noise: float
    projected_rise: float
    allowed_rise: float

    @property
    def upward(self) -> bool:
        return self.projected_rise > self.allowed_rise

    def describe(self) -> str:
        verdict = "TRENDS UP" if self.upward else "flat"
        return (
            f"{verdict}: projected rise {self.projected_rise:+.3g} over the run "
            f"(allowed {self.allowed_rise:.3g}; level {self.level:.3g}, "
            f"residual sd {self.noise:.3g})"
        )


def trend(
    times: Sequence[float],
    values: Sequence[float],
    *,
    duration: float | None = None,
    relative: float = RELATIVE,
    noise: float = NOISE,
    floor: float = 0.0,
) -> Trend:
    """Apply the rule above to one series; ``duration`` defaults to the span of ``times``."""
    if len(times) != len(values):
        raise ValueError("times and values differ in length")
    if not times:
        raise ValueError("no samples")
    start, end = min(times), max(times)
    span = duration if duration is not None else end - start
    middle = start + (end - start) / 2
    half = [(t, v) for t, v in zip(times, values, strict=True) if t >= middle]
    if len(half) < MIN_SAMPLES:
        raise ValueError(f"{len(half)} samples in the second half; need {MIN_SAMPLES}")
    ts = [t for t, _ in half]
    vs = [v for _, v in half]
    t_mean, v_mean = statistics.fmean(ts), statistics.fmean(vs)
    sxx = sum((t - t_mean) ** 2 for t in ts)
    slope = sum((t - t_mean) * (v - v_mean) for t, v in half) / sxx if sxx else 0.0
    residuals = [v - (v_mean + slope * (t - t_mean)) for t, v in half]
    sd = statistics.pstdev(residuals)
    level = statistics.median(vs)
    allowed = max(relative * abs(level), noise * sd, floor)
    return Trend(slope, level, sd, slope * span, allowed)
