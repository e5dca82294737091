"""PID-file process tracking: stop only what we started, never a process that reused the PID."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from flowforge.stack.process import ManagedProcess

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _managed(tmp_path: Path) -> ManagedProcess:
    return ManagedProcess("sleeper", tmp_path / "run" / "s.pid", tmp_path / "logs" / "s.log")


def test_start_then_stop_leaves_no_process(tmp_path: Path) -> None:
    """A started process is tracked by its PID file and gone after stop()."""
    managed = _managed(tmp_path)
    pid = managed.start(SLEEPER)
    assert managed.pid() == pid
    assert managed.stop(timeout=5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert managed.pid() is None
    assert not managed.pid_file.exists()


def test_stop_without_a_process_reports_nothing_stopped(tmp_path: Path) -> None:
    """stop() with no PID file returns False and signals nothing."""
    assert _managed(tmp_path).stop() is False


def test_pid_file_of_another_process_is_treated_as_stale(tmp_path: Path) -> None:
    """A PID file whose start time does not match the live process (PID reuse) is ignored."""
    managed = _managed(tmp_path)
    managed.pid_file.parent.mkdir(parents=True)
    me = psutil.Process()
    managed.pid_file.write_text(json.dumps({"pid": me.pid, "create_time": me.create_time() - 1000}))
    assert managed.pid() is None
    assert managed.stop() is False
    assert psutil.pid_exists(me.pid)


def test_log_tail_shows_the_last_lines(tmp_path: Path) -> None:
    """log_tail() gives the end of the service's log for error messages."""
    managed = _managed(tmp_path)
    managed.log_file.parent.mkdir(parents=True)
    managed.log_file.write_text("one\ntwo\nthree\n")
    assert managed.log_tail(2) == "two | three"


def test_kill_ends_even_a_process_that_ignores_sigterm_at_once(tmp_path: Path) -> None:
    """kill() SIGKILLs the process (one ignoring SIGTERM too) without a grace period."""
    managed = _managed(tmp_path)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    pid = managed.start([sys.executable, "-c", stubborn])
    began = time.monotonic()
    assert managed.kill()
    assert time.monotonic() - began < 5
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert managed.pid() is None
    assert managed.kill() is False


def test_child_keeps_the_exit_code_of_the_started_process(tmp_path: Path) -> None:
    """``child`` is the Popen of the process start() started, with its exit code."""
    managed = _managed(tmp_path)
    assert managed.child is None
    pid = managed.start([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert managed.child is not None
    assert managed.child.pid == pid
    assert managed.child.wait(timeout=10) == 3


def test_env_is_the_whole_environment_unless_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With inherit_env=False the child sees only ``env``; by default ``env`` adds to ours."""
    monkeypatch.setenv("FF_PARENT_ONLY", "parent")
    show = "import os; print(os.environ.get('FF_PARENT_ONLY'), os.environ.get('FF_CHILD'))"
    for inherit in (True, False):
        managed = _managed(tmp_path)
        managed.start([sys.executable, "-c", show], env={"FF_CHILD": "c"}, inherit_env=inherit)
        assert managed.child is not None
        assert managed.child.wait(timeout=10) == 0
    lines = managed.log_file.read_text().splitlines()
    assert [line for line in lines if not line.startswith("---") and line] == [
        "parent c",
        "None c",
    ]


def test_stop_of_a_child_in_our_process_group_signals_it_alone(tmp_path: Path) -> None:
    """A child started with own_session=False stays in our group; stop() ends it at once."""
    managed = _managed(tmp_path)
    pid = managed.start(SLEEPER, own_session=False)
    assert os.getpgid(pid) == os.getpgrp()
    began = time.monotonic()
    assert managed.stop(timeout=5)
    assert time.monotonic() - began < 3
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
