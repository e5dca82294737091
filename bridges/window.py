"""Window: the messages and payload bytes a library thread may hold before they are acknowledged."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Window:
    """At most ``max_items`` messages and ``max_bytes`` payload bytes between a library thread,
    which takes room for a message before it holds on to the payload, and the message's
    acknowledgement, which gives the room back (from any thread).

    A single message larger than ``max_bytes`` is let in alone (when nothing else is held), so
    it waits instead of deadlocking. ``on_change(items, bytes)`` is called under the lock after
    every change (for gauges that must not go stale).
    """

    def __init__(
        self,
        max_items: int,
        max_bytes: int,
        on_change: Callable[[int, int], None] = lambda _items, _bytes: None,
    ) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("a window needs room for at least one message and one byte")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.items = 0
        self.bytes = 0
        self._on_change = on_change
        self._changed = threading.Condition()

    def fits(self, size: int) -> bool:
        """Whether a message of ``size`` bytes may be taken now."""
        if self.items == 0:
            return True
        return self.items < self.max_items and self.bytes + size <= self.max_bytes

    def take(self, size: int, timeout: float | None = 0.0) -> bool:
        """Take room for one message of ``size`` bytes, waiting up to ``timeout`` seconds for it
        (0: not at all, None: as long as it takes); False if there was none in time."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.fits(size), timeout):
                return False
            self.items += 1
            self.bytes += size
            self._on_change(self.items, self.bytes)
            return True

    def give(self, size: int) -> None:
        """Give back the room of one message of ``size`` bytes and wake the waiters."""
        with self._changed:
            if self.items < 1 or self.bytes < size:
                raise RuntimeError(f"gave back {size} bytes the window does not hold")
            self.items -= 1
            self.bytes -= size
            self._on_change(self.items, self.bytes)
            self._changed.notify_all()
