"""Processes the local stack starts: PID files, start, stop by PID, and who holds a port."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from flowforge.core.ports import PortHolder, port_holder

log = logging.getLogger(__name__)

__all__ = ["ManagedProcess", "PortHolder", "port_holder"]

# Children started by this process, so they are reaped (no zombies in a long-lived parent such
# as the test session). A CLI that exits hands its children to init, which reaps them.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


@dataclass
class ManagedProcess:
    """One service process started by FlowForge, tracked by a PID file under the stack's home.

    The PID file holds the PID, the process's start time and its command line, so ``stop`` never
    signals an unrelated process that reused the PID.
    """

    name: str
    pid_file: Path
    log_file: Path
    # The Popen of the process that ``start`` started in this Python process (its exit code).
    child: subprocess.Popen[bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        own_session: bool = True,
    ) -> int:
        """Start ``argv`` (in its own session by default), output appended to the log file;
        return its PID.

        ``env`` adds to (or overrides) this process's environment for the child; with
        ``inherit_env=False`` it is the child's whole environment. ``own_session=False`` keeps
        the child in this process's group (a test's worker, gone with its test run); then
        ``stop`` and ``kill`` signal the child alone.
        """
        if env is not None and not inherit_env:
            child_env: dict[str, str] | None = dict(env)
        else:
            child_env = {**os.environ, **env} if env else None
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            out.write(f"\n--- flowforge: starting {self.name}: {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=child_env,
                start_new_session=own_session,
            )
        _children[proc.pid] = proc
        self.child = proc
        info = psutil.Process(proc.pid)
        record = {"pid": proc.pid, "create_time": info.create_time(), "argv": list(argv)}
        self.pid_file.write_text(json.dumps(record), encoding="utf-8")
        log.debug("%s started pid=%d log=%s", self.name, proc.pid, self.log_file)
        return proc.pid

    def pid(self) -> int | None:
        """The PID of our running process, or None (stale PID files are removed)."""
        try:
            record = json.loads(self.pid_file.read_text(encoding="utf-8"))
            pid = int(record["pid"])
            _reap(pid)
            proc = psutil.Process(pid)
            same = abs(proc.create_time() - float(record["create_time"])) < 1.0
            alive = proc.status() != psutil.STATUS_ZOMBIE
        except (OSError, ValueError, KeyError, TypeError, psutil.NoSuchProcess):
            self.pid_file.unlink(missing_ok=True)
            return None
        if same and alive:
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def stop(self, *, timeout: float = 30.0) -> bool:
        """SIGTERM our process group, SIGKILL after ``timeout``; return whether one was running."""
        pid = self.pid()
        if pid is None:
            return False
        log.info("%s stopping pid=%d", self.name, pid)
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            log.warning("%s pid=%d ignored SIGTERM for %.0fs; killing", self.name, pid, timeout)
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL our process group at once, as a crash would (fault drills); return whether
        one was running."""
        pid = self.pid()
        if pid is None:
            return False
        log.info("%s killing pid=%d", self.name, pid)
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def exited(self) -> bool:
        """True if the process we started is no longer running."""
        return self.pid() is None

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the log file, for an error message."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` leads, or the process alone if it leads none."""
    try:
        if os.getpgid(pid) != pid:
            os.kill(pid, sig)
            return
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                _reap(pid)  # it ended since the call above: collect it now, leave no zombie
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False
