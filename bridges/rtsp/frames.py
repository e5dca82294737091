"""The drop policy between a capture thread and asyncio: fps sampling and a latest-frame slot."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")

# Drop reasons (the ``reason`` label): a newer frame replaced one not yet published; a frame
# waited longer than the age bound; a frame beyond the target fps.
QUEUE_FULL = "queue_full"
TOO_OLD = "too_old"
FPS_CAP = "fps_cap"
DROP_REASONS = (QUEUE_FULL, TOO_OLD, FPS_CAP)

# A frame up to this share of the interval early still counts as due (camera clocks jitter).
EARLY_SHARE = 0.25


class FpsSampler:
    """Takes frames at ``fps`` at most, from a stream of any rate (every frame is offered).

    A frame is due once ``1/fps`` passed since the last due time (a quarter interval early is
    accepted, so a 10 fps stream sampled to 5 fps gives every other frame despite jitter). After
    a gap the schedule restarts from the current frame instead of letting a burst through.
    """

    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise ValueError("fps must be > 0")
        self.interval = 1.0 / fps
        self._due: float | None = None

    def take(self, now: float) -> bool:
        """Whether the frame seen at ``now`` (monotonic seconds) is sampled."""
        if self._due is not None and now < self._due - self.interval * EARLY_SHARE:
            return False
        # The next due time counts from this one, or from now if the frame came late: an early
        # frame keeps the schedule, a late one (jitter, a gap) moves it, so two taken frames are
        # never closer than 3/4 of an interval.
        due = now if self._due is None else max(self._due, now)
        self._due = due + self.interval
        return True


class LatestSlot(Generic[T]):
    """A bounded hand-off of one item: ``put`` never blocks and replaces an item not yet taken.

    The capture thread puts, the event loop takes: the newest frame wins, memory stays one
    frame per stream, and the replaced frame is returned so the caller counts it (queue_full).
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._lock = threading.Lock()
        self.closed = False

    def put(self, item: T) -> T | None:
        """Store ``item``; return the item it replaced (None if the slot was empty). A closed
        slot refuses ``item`` and returns it."""
        with self._lock:
            if self.closed:
                return item
            replaced, self._item = self._item, item
            return replaced

    def take(self) -> T | None:
        """Remove and return the item (None if empty)."""
        with self._lock:
            item, self._item = self._item, None
            return item

    def close(self) -> T | None:
        """Refuse further items; return the one left (None if empty)."""
        with self._lock:
            self.closed = True
            item, self._item = self._item, None
            return item


def too_old(captured_at: float, now: float, max_age_s: float) -> bool:
    """Whether a frame captured at ``captured_at`` is past its age bound at ``now``."""
    return now - captured_at > max_age_s
