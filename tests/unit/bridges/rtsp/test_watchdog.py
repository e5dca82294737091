"""StreamMachine: the per-stream states, the data-age watchdog, backoff and reconnect counts."""

from __future__ import annotations

import pytest

from bridges.errors import IllegalTransition
from bridges.rtsp.watchdog import StreamMachine, StreamState, Transition
from flowforge.core.backoff import Backoff

S = StreamState


def machine(stall_s: float = 2.0) -> tuple[StreamMachine, list[Transition]]:
    seen: list[Transition] = []
    return StreamMachine(stall_s, Backoff(initial=1.0, maximum=8.0), seen.append), seen


def test_first_frame_makes_a_connecting_stream_streaming() -> None:
    """connect then a frame gives streaming, without counting a reconnect."""
    m, seen = machine()
    assert m.connect("first")
    assert m.frame(10.0)
    assert m.state is S.STREAMING
    assert m.reconnects == 0
    assert [(t.old, t.new) for t in seen] == [(S.CONNECTING, S.STREAMING)]


def test_watchdog_marks_a_silent_stream_stalled_only_after_the_stall_time() -> None:
    """No frame for less than stall_s keeps streaming; stall_s or more gives stalled."""
    m, _ = machine(stall_s=2.0)
    m.connect()
    m.frame(10.0)
    assert not m.check(11.9)
    assert m.state is S.STREAMING
    assert m.check(12.0)
    assert m.state is S.STALLED
    assert not m.delivering(12.0)


def test_a_frame_after_the_stall_verdict_is_refused_and_reconnect_counts() -> None:
    """A late frame does not revive a stalled stream; the next connect is a reconnect."""
    m, _ = machine()
    m.connect()
    m.frame(10.0)
    m.check(13.0)
    assert not m.frame(13.1)
    assert m.connect("stalled")
    assert (m.state, m.reconnects) == (S.CONNECTING, 1)
    m.frame(14.0)
    assert m.state is S.STREAMING


def test_failures_back_off_exponentially_with_a_cap_and_reset_on_a_frame() -> None:
    """Each failure doubles the jittered delay's ceiling up to the cap; a frame resets it."""
    m, _ = machine()
    delays = []
    for _ in range(6):
        m.connect("retry")
        delays.append(m.fail("refused"))
        assert m.state is S.BACKOFF
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert m.reconnects == 5
    assert m.last_error == "refused"
    m.connect("retry")
    m.frame(1.0)
    assert (m.attempt, m.last_error) == (0, "")
    m.connect("retry")
    assert m.fail("again") <= 1.0


def test_a_read_failure_after_the_stall_time_is_a_stall_else_a_backoff() -> None:
    """lost() reconnects at once (0 s) when the read waited out the stall time, else backs off."""
    m, _ = machine(stall_s=2.0)
    m.connect()
    m.frame(10.0)
    assert m.lost(12.0, "read failed") == 0.0
    assert m.state is S.STALLED
    m.connect()
    m.frame(20.0)
    assert m.lost(20.1, "connection closed") > 0
    assert m.state is S.BACKOFF


def test_stopped_is_final_and_connect_reports_it() -> None:
    """After stop, connect returns False, frames are refused and stop is idempotent."""
    m, seen = machine()
    m.stop()
    m.stop()
    assert not m.connect()
    assert not m.frame(1.0)
    assert m.state is S.STOPPED
    assert [t.new for t in seen] == [S.STOPPED]


def test_illegal_transition_is_an_error() -> None:
    """A transition outside the table (backoff -> streaming) raises IllegalTransition."""
    m, _ = machine()
    m.fail("refused")
    with pytest.raises(IllegalTransition):
        m._to(S.STREAMING, "bug")
