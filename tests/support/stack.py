"""The test stack: its settings (tests/stack.env), and Kafka + Mosquitto run through the product's
own stack code (``flowforge.stack.Stack``) for the session fixture, the fault drills and bench."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from flowforge.core.settings import Settings
from flowforge.stack import Stack
from tests.support.unique import free_port

REPO = Path(__file__).resolve().parents[2]
STACK_ENV = REPO / "tests" / "stack.env"
_PATH_VARS = {"FLOWFORGE_HOME", "FLOWFORGE_STACK_CACHE_DIR"}


def stack_env() -> dict[str, str]:
    """tests/stack.env as a dict, with its relative paths anchored at the repository root."""
    env = {}
    for line in STACK_ENV.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = str(REPO / value) if key in _PATH_VARS else value
    return env


def private_stack_env(home: Path, kafka_heap: str | None = None) -> dict[str, str]:
    """The test stack's settings for a throw-away stack beside it: its own home ``home`` and free
    ports; ``kafka_heap``, if given, is its broker's Java heap (else the stack's default)."""
    env = stack_env()
    env.update(
        {
            "FLOWFORGE_HOME": str(home),
            "FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "FLOWFORGE_STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
            "FLOWFORGE_MQTT_PORT": str(free_port()),
        }
    )
    if kafka_heap is not None:
        env["FLOWFORGE_STACK_KAFKA_HEAP"] = kafka_heap
    return env


@contextmanager
def running_stack(
    home: Path | None = None, *, kafka_heap: str | None = None
) -> Iterator[tuple[Stack, dict[str, str]]]:
    """Kafka and Mosquitto up for the ``with`` block (``Stack.up``: each started unless running,
    and waited for until it answers); afterwards it stops the services it started, none other.

    Without ``home``: the shared test stack (tests/stack.env, fixed ports), as the session
    fixture and the benchmarks use it. With ``home``: a throw-away stack there on free ports
    (:func:`private_stack_env`), which a test may stop, kill and restart without disturbing the
    shared one. Yields the stack and the environment of its settings (to build processes on).
    """
    env = stack_env() if home is None else private_stack_env(home, kafka_heap)
    with ExitStack() as held:
        if home is None:
            held.enter_context(_ports_lock(env["FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS"]))
        stack = Stack(Settings.from_env(env))
        ours = [s for s in stack.services if s.process.pid() is None]
        try:
            asyncio.run(stack.up(report=lambda _line: None))
            yield stack, env
        finally:
            for service in reversed(ours):
                service.down()


# Lock files this process holds (a second flock of the same file here would wait for itself).
_held: set[Path] = set()

#: Set by a process holding the ports lock for a child it starts to work under it (``make
#: bench``'s steps): "<holder's pid>:<lock file>"; only a direct child of the holder uses it.
LOCK_HELD_BY_PARENT = "TEST_STACK_PORTS_LOCK_HELD_BY"  # not FLOWFORGE_*: no setting


def _lock_path(bootstrap: str) -> Path:
    port = bootstrap.rpartition(":")[2]
    return Path(tempfile.gettempdir()) / f"flowforge-test-stack-{port}.lock"


def lock_shared_with_children(bootstrap: str | None = None) -> dict[str, str]:
    """Environment for a child process to run under the ports lock this process holds (of
    ``bootstrap``, by default the shared test stack's), instead of waiting for it."""
    path = _lock_path(bootstrap or stack_env()["FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS"])
    return {LOCK_HELD_BY_PARENT: f"{os.getpid()}:{path}"}


def shared_ports_lock() -> AbstractContextManager[None]:
    """The machine-wide lock of the shared test stack's ports (see :func:`_ports_lock`), for a
    test session to take before its tests run: waiting for another session then counts
    against no test's time limit."""
    return _ports_lock(stack_env()["FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS"])


@contextmanager
def _ports_lock(bootstrap: str) -> Iterator[None]:
    """Hold the machine-wide lock of the shared test stack's fixed ports for the ``with`` block,
    so a second test session or benchmark (another clone, say) waits for this one instead of
    failing on ports in use. The kernel drops the lock when the process dies. Re-entrant within
    a process."""
    path = _lock_path(bootstrap)
    if path in _held or os.environ.get(LOCK_HELD_BY_PARENT) == f"{os.getppid()}:{path}":
        yield
        return
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            port = bootstrap.rpartition(":")[2]
            print(f"waiting for another test session on port {port} ({path})", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)
            fcntl.flock(handle, fcntl.LOCK_UN)
