"""FlowForge's own processes (`flowforge worker`, `flowforge bridge ...`, `flowforge sim rtsp`)
started by a test or a benchmark: the one way the harnesses start them, and their sockets."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from flowforge.stack.process import ManagedProcess

# The `flowforge` command of this interpreter (the installed package, whatever PATH holds).
FLOWFORGE_COMMAND = (sys.executable, "-m", "flowforge")
LOOPBACK = frozenset({"127.0.0.1", "::1"})


class FlowForgeProcess:
    """One `flowforge ARGS` process started by :func:`start_flowforge`.

    Started and stopped by the local stack's own ``ManagedProcess`` (``flowforge.stack.process``),
    as `flowforge stack up` starts the services: output appended to a log file, a PID file beside
    it, stop = SIGTERM and SIGKILL after a timeout. It keeps Popen's view of its end (``poll``,
    ``wait``, ``returncode``) for the tests that check how a process exited.
    """

    def __init__(self, managed: ManagedProcess) -> None:
        assert managed.child is not None, "start the managed process first"
        self.managed = managed
        self.popen: subprocess.Popen[bytes] = managed.child

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    @property
    def log_file(self) -> Path:
        return self.managed.log_file

    def poll(self) -> int | None:
        """The exit code, or None while the process runs."""
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit (TimeoutExpired after ``timeout``); return the exit code."""
        return self.popen.wait(timeout=timeout)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process alone."""
        self.popen.send_signal(sig)

    def signal(self, sig: signal.Signals, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit (TimeoutExpired after ``timeout``); return the
        exit code."""
        self.popen.send_signal(sig)
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, and SIGKILL if it still runs after ``timeout``; nothing if it has ended."""
        if self.popen.poll() is None:
            self.managed.stop(timeout=timeout)
            self.popen.wait(timeout=10)


def start_flowforge(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    cwd: Path | None = None,
    own_session: bool = False,
) -> FlowForgeProcess:
    """Start `flowforge ARGS` with exactly ``env`` as its environment, in ``cwd``, its output
    appended to ``log`` (a PID file of this run beside it, as a restart may append to the same
    log); return at once (readiness is the caller's).

    The process stays in the caller's process group, so it ends with the test run or benchmark
    step that started it even when that is killed; ``own_session=True`` puts it in a session of
    its own (a process the test signals as a group, as the stack's services are).
    """
    pid_file = log.with_name(f"{log.stem}.{uuid.uuid4().hex[:8]}.pid")
    managed = ManagedProcess(name=log.stem, pid_file=pid_file, log_file=log)
    argv = [*FLOWFORGE_COMMAND, *args]
    managed.start(argv, cwd=cwd, env=env, inherit_env=False, own_session=own_session)
    return FlowForgeProcess(managed)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by ``pid`` or its children."""
    process = psutil.Process(pid)
    addresses = set()
    for member in (process, *process.children(recursive=True)):
        for conn in member.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                addresses.add((conn.laddr.ip, conn.laddr.port))
    return addresses
