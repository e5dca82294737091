"""StreamMachine: one stream's state machine, data-age watchdog and reconnect backoff."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass

from bridges.errors import IllegalTransition
from flowforge.core.backoff import Backoff

# A read that failed after this share of the stall time is the read timeout: the stream stalled.
READ_TIMEOUT_SHARE = 0.8


class StreamState(enum.StrEnum):
    """Where a stream is: the values are the ``state`` label of the metrics and the API."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    BACKOFF = "backoff"
    STOPPED = "stopped"


ALLOWED: dict[StreamState, frozenset[StreamState]] = {
    StreamState.CONNECTING: frozenset(
        {StreamState.STREAMING, StreamState.BACKOFF, StreamState.STOPPED}
    ),
    StreamState.STREAMING: frozenset(
        {StreamState.STALLED, StreamState.BACKOFF, StreamState.CONNECTING, StreamState.STOPPED}
    ),
    StreamState.STALLED: frozenset(
        {StreamState.CONNECTING, StreamState.BACKOFF, StreamState.STOPPED}
    ),
    StreamState.BACKOFF: frozenset({StreamState.CONNECTING, StreamState.STOPPED}),
    StreamState.STOPPED: frozenset(),
}


@dataclass(frozen=True)
class Transition:
    """One change of state, with why."""

    old: StreamState
    new: StreamState
    reason: str


Listener = Callable[[Transition], None]


class StreamMachine:
    """The state of one stream, shared by its capture thread and the event loop's watchdog.

    connecting -> streaming (first frame) -> stalled (no frame for ``stall_s``) -> connecting;
    a failed open or a closed stream -> backoff (exponential, jittered, capped) -> connecting;
    any -> stopped. Every entry into connecting after the first counts as a reconnect. Times are
    ``time.monotonic()`` seconds passed in, so the logic is testable without clocks.
    """

    def __init__(self, stall_s: float, backoff: Backoff, listener: Listener | None = None) -> None:
        self.stall_s = stall_s
        self.backoff = backoff
        self.listener = listener
        self.state = StreamState.CONNECTING
        self.connects = 0
        self.reconnects = 0
        self.attempt = 0  # failures since the last frame: the backoff exponent
        self.last_frame: float | None = None
        self.frames = 0
        self.last_error = ""
        self._lock = threading.Lock()

    def _to(self, new: StreamState, reason: str) -> None:
        old = self.state
        if new not in ALLOWED[old]:
            raise IllegalTransition(f"{old} -> {new} ({reason})")
        self.state = new
        if self.listener is not None:
            self.listener(Transition(old, new, reason))

    def connect(self, reason: str = "reconnecting") -> bool:
        """Enter connecting (a reconnect unless it is the first connection); False if stopped."""
        with self._lock:
            if self.state is StreamState.STOPPED:
                return False
            first = self.connects == 0
            self.connects += 1
            if not first:
                self.reconnects += 1
            if self.state is not StreamState.CONNECTING:
                self._to(StreamState.CONNECTING, reason)
            return True

    def frame(self, now: float) -> bool:
        """Record a new frame at ``now``; False if the stream was declared stalled meanwhile
        (the capture thread must then reconnect instead of using it)."""
        with self._lock:
            if self.state is StreamState.STALLED or self.state is StreamState.STOPPED:
                return False
            self.last_frame = now
            self.frames += 1
            if self.state is StreamState.CONNECTING:
                self.attempt = 0
                self.last_error = ""
                self._to(StreamState.STREAMING, "first frame")
            return True

    def check(self, now: float) -> bool:
        """The watchdog: a streaming stream with no frame for ``stall_s`` becomes stalled.
        True if the stream is stalled (now or already)."""
        with self._lock:
            if self.state is StreamState.STREAMING and self._age(now) >= self.stall_s:
                self._to(StreamState.STALLED, f"no frame for {self._age(now):.1f}s")
            return self.state is StreamState.STALLED

    def lost(self, now: float, reason: str) -> float:
        """The stream stopped delivering (a read failed). Stalled if the read waited for the
        stall time (reconnect at once: returns 0), else backoff (returns the delay)."""
        with self._lock:
            stalled = self.state is StreamState.STALLED or (
                self.state is StreamState.STREAMING
                and self._age(now) >= self.stall_s * READ_TIMEOUT_SHARE
            )
            if stalled:
                if self.state is StreamState.STREAMING:
                    self._to(StreamState.STALLED, f"no frame for {self._age(now):.1f}s")
                return 0.0
        return self.fail(reason)

    def fail(self, reason: str) -> float:
        """Opening or reading failed: enter backoff; return the jittered delay to wait."""
        with self._lock:
            if self.state is StreamState.STOPPED:
                return 0.0
            delay = self.backoff.delay(self.attempt)
            self.attempt += 1
            self.last_error = reason
            self._to(StreamState.BACKOFF, reason)
            return delay

    def stop(self, reason: str = "stopped") -> None:
        """Enter stopped (idempotent)."""
        with self._lock:
            if self.state is not StreamState.STOPPED:
                self._to(StreamState.STOPPED, reason)

    def age(self, now: float) -> float | None:
        """Seconds since the last frame (None before the first)."""
        with self._lock:
            return None if self.last_frame is None else now - self.last_frame

    def delivering(self, now: float) -> bool:
        """Streaming with a frame younger than ``stall_s`` (the readiness condition)."""
        with self._lock:
            return self.state is StreamState.STREAMING and self._age(now) < self.stall_s

    def _age(self, now: float) -> float:
        return float("inf") if self.last_frame is None else now - self.last_frame
