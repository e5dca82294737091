"""The benchmarks' local stack: the test stack (tests/stack.env), started if needed and stopped
afterwards if the benchmark started it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from flowforge.core.settings import Settings
from flowforge.stack import Stack
from tests.conftest import stack_env


@contextmanager
def running_test_stack() -> Iterator[Stack]:
    """Kafka and Mosquitto of the test stack, up for the duration of the ``with`` block."""
    stack = Stack(Settings.from_env(stack_env()))
    ours = [s for s in stack.services if s.process.pid() is None]
    asyncio.run(stack.up(report=lambda _line: None))
    try:
        yield stack
    finally:
        for service in ours:
            service.down()
