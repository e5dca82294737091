"""The shape every local service shares: start when absent, wait until it answers, stop by PID."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flowforge.core.errors import (
    FlowForgeError,
    PortTaken,
    PrerequisiteMissing,
    ServiceStartFailed,
    ServiceUnhealthy,
)
from flowforge.core.settings import Settings
from flowforge.stack.process import ManagedProcess, port_holder

log = logging.getLogger(__name__)

# Host names that mean "this machine": only then does the stack start a service itself.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})

# Debian installs daemons such as mosquitto in /usr/sbin, which is not on every user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin")


def find_program(name: str, package_hint: str) -> str:
    """The absolute path of ``name``, or PrerequisiteMissing saying what to install."""
    found = shutil.which(name) or shutil.which(name, path=":".join(_EXTRA_BIN_DIRS))
    if not found:
        raise PrerequisiteMissing(f"{name} is not installed; install {package_hint} (make install)")
    return found


@dataclass(frozen=True)
class ServiceStatus:
    """What `flowforge stack status` shows for one service."""

    name: str
    state: str  # running | stopped | unhealthy | external | embedded
    pid: int | None
    address: str
    detail: str

    @property
    def healthy(self) -> bool:
        return self.state in ("running", "external", "embedded")


class LocalService(ABC):
    """A service of the local stack run as a child process we track by PID file."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        home = settings.home
        self.process = ManagedProcess(
            name=self.name,
            pid_file=home / "run" / f"{self.name}.pid",
            log_file=home / "logs" / f"{self.name}.log",
        )

    # -- what each service defines ------------------------------------------------------

    @property
    @abstractmethod
    def port(self) -> int:
        """The port the service listens on."""

    @property
    @abstractmethod
    def address(self) -> str:
        """host:port clients use."""

    @abstractmethod
    def prepare(self) -> Sequence[str]:
        """Install/render what the service needs; return the command line to start it."""

    @abstractmethod
    async def probe(self) -> None:
        """One real round trip to the service; raise ServiceUnhealthy if it does not answer."""

    @property
    def local(self) -> bool:
        """Whether the settings point at this machine (else the service is external)."""
        return True

    def adopt(self, holder_cmdline: Sequence[str]) -> bool:
        """Whether a process we did not start, holding our port, may be reused as this service."""
        return False

    def environment(self) -> dict[str, str]:
        """Variables to add to the service's environment (none by default)."""
        return {}

    async def after_start(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Work once the service answers (e.g. create topics); idempotent."""

    # -- shared lifecycle ---------------------------------------------------------------

    async def up(self) -> str:
        """Start the service unless running; wait until it answers. Return a one-line summary."""
        if not self.local:
            await self._wait_healthy(started=None)
            await self.after_start()
            return f"{self.name}: using external {self.address} (not started locally)"
        pid = self.process.pid()
        if pid is not None:
            await self._wait_healthy(started=None)
            await self.after_start()
            return f"{self.name}: already running, pid {pid}, {self.address}"
        holder = port_holder(self.port)
        if holder is not None:
            if self.adopt(holder.cmdline):
                await self._wait_healthy(started=None)
                await self.after_start()
                return f"{self.name}: reusing {holder.describe()} on {self.address} (same config)"
            raise PortTaken(
                f"{self.name}: port {self.port} is taken by {holder.describe()}, which FlowForge "
                f"did not start; stop it or choose another port in the settings"
            )
        argv = self.prepare()
        began = time.monotonic()
        self.process.start(argv, env=self.environment())
        await self._wait_healthy(started=began)
        await self.after_start()
        took = time.monotonic() - began
        pid = self.process.pid()
        return f"{self.name}: started pid {pid}, {self.address}, healthy in {took:.1f}s"

    def down(self) -> str:
        """Stop the process we started (by PID); never touch one we did not start."""
        if self.process.stop():
            return f"{self.name}: stopped"
        return f"{self.name}: not running (nothing of ours to stop)"

    async def status(self) -> ServiceStatus:
        if not self.local:
            try:
                await self.probe()
            except FlowForgeError as exc:
                return ServiceStatus(self.name, "unhealthy", None, self.address, str(exc))
            return ServiceStatus(self.name, "external", None, self.address, "not managed here")
        pid = self.process.pid()
        holder = port_holder(self.port) if pid is None else None
        if pid is None and holder is None:
            return ServiceStatus(self.name, "stopped", None, self.address, "")
        try:
            await self.probe()
        except FlowForgeError as exc:
            return ServiceStatus(self.name, "unhealthy", pid, self.address, str(exc))
        if pid is None and holder is not None:
            state = "external" if self.adopt(holder.cmdline) else "unhealthy"
            detail = f"not started by FlowForge: {holder.describe()}"
            return ServiceStatus(self.name, state, holder.pid, self.address, detail)
        return ServiceStatus(
            self.name, "running", pid, self.address, f"log {self.process.log_file}"
        )

    async def _wait_healthy(self, *, started: float | None) -> None:
        timeout = self.settings.stack.start_timeout_s
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if started is not None and self.process.exited():
                raise ServiceStartFailed(
                    f"{self.name} exited during start-up; read {self.process.log_file} "
                    f"(last lines: {self.process.log_tail()})"
                )
            try:
                await self.probe()
                return
            except ServiceUnhealthy as exc:
                last = exc
            await asyncio.sleep(0.25)
        raise ServiceStartFailed(
            f"{self.name} did not answer within {timeout:.0f}s ({last}); "
            f"read {self.process.log_file}"
        )


def tcp_accepts(host: str, port: int, timeout: float = 1.0) -> None:
    """Raise ServiceUnhealthy unless a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ServiceUnhealthy(f"{host}:{port} does not accept connections: {exc}") from exc


def read_text(path: Path) -> str:
    """The file's text, or '' if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""
