"""The shared test stack's fixed ports are held by one test session at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support.stack import REPO, _ports_lock

CHILD = """
import sys
from tests.support.stack import _ports_lock
with _ports_lock(sys.argv[1]):
    print("acquired", flush=True)
"""


def test_a_second_session_on_the_same_ports_waits_for_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one session holds the ports, another says it waits and takes them only after."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the lock file goes there
    bootstrap = f"127.0.0.1:test-{uuid.uuid4().hex[:8]}"
    with _ports_lock(bootstrap):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, bootstrap],
            cwd=REPO,
            env=os.environ | {"TMPDIR": str(tmp_path)},
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
