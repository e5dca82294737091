"""The shared test stack's fixed ports are held by one test session at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support.stack import REPO, _ports_lock, lock_shared_with_children

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


def test_a_benchmark_step_shares_the_lock_its_parent_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make bench` holds the ports for all its steps and runs each step as a child process,
    which starts the same stack: a child given the parent's lock in its environment goes on at
    once (it waited for its own parent, each step to its time limit, before). A child without
    it still waits: the test above."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bootstrap = f"127.0.0.1:test-{uuid.uuid4().hex[:8]}"
    with _ports_lock(bootstrap):
        env = os.environ | {"TMPDIR": str(tmp_path)} | lock_shared_with_children(bootstrap)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, bootstrap],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert child.stdout.strip() == "acquired", child.stderr
        assert "waiting" not in child.stderr
