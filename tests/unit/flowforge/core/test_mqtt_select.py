"""poll_select keeps select.select()'s contract, which paho-mqtt's loop relies on."""

from __future__ import annotations

import os
import socket

import pytest

from flowforge.core.mqtt import poll_select


def test_ready_sockets_are_reported_as_select_reports_them_past_descriptor_1024() -> None:
    """A socket numbered over 1024 with data waiting is readable and writable; one with nothing
    to read is only writable; a zero timeout returns at once."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    left, right = socket.socketpair()
    try:
        assert left.fileno() >= 1024
        assert poll_select([left], [], [], 0.0) == ([], [], [])
        right.send(b"x")
        assert poll_select([left], [left], [], 1.0) == ([left], [left], [])
        assert poll_select([right], [right], [], 0.0) == ([], [right], [])
    finally:
        left.close()
        right.close()
        for fd in held:
            os.close(fd)


def test_errors_keep_selects_types_which_paho_handles() -> None:
    """A socket paho has set to None raises TypeError and a closed one (-1) ValueError, as with
    select.select(): paho treats both as a lost connection."""
    closed = socket.socket()
    closed.close()
    with pytest.raises(TypeError, match="fileno"):
        poll_select([None], [], [], 0.0)
    with pytest.raises(ValueError, match="negative"):
        poll_select([closed], [], [], 0.0)


def test_a_peer_that_hung_up_is_readable() -> None:
    """A hang-up makes the socket readable, so paho reads the end of the stream."""
    left, right = socket.socketpair()
    right.close()
    try:
        assert poll_select([left], [], [], 1.0)[0] == [left]
    finally:
        left.close()
