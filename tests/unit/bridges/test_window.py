"""The window of messages and payload bytes between a library thread and their acknowledgement."""

from __future__ import annotations

import threading
import time

import pytest

from bridges.window import Window


def test_bytes_bound_the_window() -> None:
    """A message that would take the bytes over the bound finds no room; giving back makes room."""
    window = Window(max_items=10, max_bytes=100)
    assert window.take(60)
    assert not window.take(50)
    assert window.take(40)
    assert (window.items, window.bytes) == (2, 100)
    window.give(60)
    assert window.take(50)
    assert (window.items, window.bytes) == (2, 90)


def test_messages_bound_the_window() -> None:
    """Past max_items messages there is no room, however small they are."""
    window = Window(max_items=2, max_bytes=100)
    assert window.take(1)
    assert window.take(1)
    assert not window.take(1)


def test_an_oversized_message_goes_alone() -> None:
    """A message larger than the whole bound is let in when nothing else is held, and alone."""
    window = Window(max_items=10, max_bytes=100)
    assert window.take(10)
    assert not window.take(500)
    window.give(10)
    assert window.take(500)
    assert not window.take(1)


def test_take_waits_for_room_given_back_from_another_thread() -> None:
    """take(timeout) returns True as soon as another thread gives enough back."""
    window = Window(max_items=10, max_bytes=100)
    assert window.take(80)
    taken = threading.Event()

    def wait_for_room() -> None:
        if window.take(50, timeout=30):
            taken.set()

    waiter = threading.Thread(target=wait_for_room)
    waiter.start()
    assert not taken.wait(0.05)
    window.give(80)
    waiter.join(10)
    assert taken.is_set()
    assert window.bytes == 50


def test_take_gives_up_after_its_timeout() -> None:
    """With no room, take(0) answers at once and take(t) after about t seconds, both False."""
    window = Window(max_items=1, max_bytes=100)
    assert window.take(1)
    began = time.monotonic()
    assert not window.take(1)
    assert not window.take(1, timeout=0.05)
    assert time.monotonic() - began >= 0.05
    assert (window.items, window.bytes) == (1, 1)


def test_every_change_is_reported_under_the_lock() -> None:
    """on_change sees each new (items, bytes)."""
    seen: list[tuple[int, int]] = []
    window = Window(max_items=10, max_bytes=100, on_change=lambda i, b: seen.append((i, b)))
    window.take(30)
    window.take(20)
    window.give(30)
    assert seen == [(1, 30), (2, 50), (1, 20)]


def test_giving_back_more_than_is_held_is_an_error() -> None:
    """A give without its take is a bug, not a silent negative count."""
    window = Window(max_items=10, max_bytes=100)
    window.take(10)
    with pytest.raises(RuntimeError):
        window.give(11)


def test_a_window_without_room_is_refused() -> None:
    """max_items and max_bytes must each allow at least one."""
    with pytest.raises(ValueError, match="at least one"):
        Window(max_items=0, max_bytes=100)
