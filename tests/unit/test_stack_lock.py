"""The shared test stack's fixed ports are held by one test session at a time."""

from __future__ import annotations

import subprocess
import sys
import uuid

from tests.support.stack import REPO, _ports_lock

CHILD = """
import sys
from tests.support.stack import _ports_lock
with _ports_lock(sys.argv[1]):
    print("acquired", flush=True)
"""


def test_a_second_session_on_the_same_ports_waits_for_the_first() -> None:
    """While one session holds the ports, another says it waits and takes them only after."""
    bootstrap = f"127.0.0.1:test-{uuid.uuid4().hex[:8]}"
    with _ports_lock(bootstrap):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, bootstrap],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stderr is not None
        waiting = child.stderr.readline()
        assert "waiting for another test session" in waiting
        assert child.poll() is None
    out, _err = child.communicate(timeout=30)
    assert out.strip() == "acquired"
