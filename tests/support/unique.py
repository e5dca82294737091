"""Names and ports unique to a test run: a Kafka-safe name per test, a free port per caller."""

from __future__ import annotations

import re
import socket
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now and never handed out before in this process.

    The port is released before the caller's process binds it, so the kernel may offer it again
    to the next caller: a bridge and a worker once got the same port, the worker bound it first,
    the bridge died, and its readiness probe was answered by the worker. Remembering what was
    handed out closes that window within one test run.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def unique_name(request: pytest.FixtureRequest, prefix: str = "t") -> str:
    """A Kafka-safe name unique to this test run and test."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60]
    return f"{prefix}.{base}.{uuid.uuid4().hex[:8]}"
