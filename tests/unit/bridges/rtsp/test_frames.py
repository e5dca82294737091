"""The RTSP drop policy: fps sampling, the latest-frame slot and the age bound."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bridges.rtsp.frames import FpsSampler, LatestSlot, too_old


def sample(fps: float, source_fps: float, seconds: float, jitter: float = 0.0) -> int:
    sampler = FpsSampler(fps)
    n = int(source_fps * seconds)
    times = [i / source_fps + (jitter if i % 2 else -jitter) for i in range(n)]
    return sum(sampler.take(t) for t in times)


@pytest.mark.parametrize(
    ("fps", "source_fps", "expected"),
    [(5, 10, 50), (5, 15, 50), (2, 25, 20), (10, 10, 100), (20, 10, 100)],
)
def test_sampler_takes_the_target_rate_from_faster_streams(
    fps: float, source_fps: float, expected: int
) -> None:
    """Over 10 s the sampler keeps about fps frames a second (all of a slower stream)."""
    assert sample(fps, source_fps, 10.0) == pytest.approx(expected, abs=2)


def test_sampler_tolerates_jittered_frame_times() -> None:
    """A 10 fps stream with +-10 ms jitter sampled to 5 fps still gives 5 fps."""
    assert sample(5, 10, 10.0, jitter=0.01) == pytest.approx(50, abs=2)


def test_sampler_restarts_after_a_gap_instead_of_bursting() -> None:
    """After a 5 s gap the frames that follow are sampled at the rate, not all let through."""
    sampler = FpsSampler(2)
    assert sampler.take(0.0)
    after_gap = [sampler.take(5.0 + i / 30) for i in range(30)]
    assert 2 <= sum(after_gap) <= 3  # 1 s at 2 fps (a quarter interval early is accepted)


@given(st.lists(st.floats(0, 1000, allow_nan=False), max_size=200), st.floats(0.1, 50))
@example(times=[0.0, 9.0, 14.0], fps=0.125)  # a late frame must move the schedule (found once)
def test_sampler_never_exceeds_its_rate(times: list[float], fps: float) -> None:
    """For any increasing frame times, taken frames are at least 3/4 of an interval apart."""
    sampler = FpsSampler(fps)
    taken = [t for t in sorted(times) if sampler.take(t)]
    gaps = [b - a for a, b in itertools.pairwise(taken)]
    assert all(gap >= 0.75 / fps - 1e-9 for gap in gaps)


def test_slot_keeps_the_newest_and_returns_the_replaced() -> None:
    """put replaces an untaken item and returns it (to be counted as queue_full)."""
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1
    assert slot.put(3) == 2
    assert slot.take() == 3
    assert slot.take() is None


def test_closed_slot_refuses_items() -> None:
    """After close, put hands the item back and nothing is kept (memory stays bounded)."""
    slot: LatestSlot[str] = LatestSlot()
    slot.put("a")
    assert slot.close() == "a"
    assert slot.put("b") == "b"
    assert slot.take() is None


def test_too_old_is_strictly_past_the_bound() -> None:
    """A frame is too old only when its age exceeds max_age_s."""
    assert not too_old(10.0, 15.0, 5.0)
    assert too_old(10.0, 15.01, 5.0)
