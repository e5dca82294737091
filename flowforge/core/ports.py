"""Who holds a TCP port, and a clear error when a process's own listening port is taken."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import psutil

from flowforge.core.errors import PortInUse


@dataclass(frozen=True)
class PortHolder:
    """A process listening on a TCP port."""

    pid: int
    cmdline: tuple[str, ...]

    def describe(self) -> str:
        return f"pid {self.pid} ({' '.join(self.cmdline)[:160] or 'unknown command'})"


def port_holder(port: int) -> PortHolder | None:
    """Return the process listening on ``port`` (any address), or None if the port is free."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # pragma: no cover - non-root on some kernels
        conns = []
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return PortHolder(pid=-1, cmdline=())
            return PortHolder(pid=conn.pid, cmdline=tuple(_cmdline(conn.pid)))
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        return list(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def port_in_use(what: str, bind: str, port: int, instead: str) -> PortInUse:
    """The error for ``what`` (e.g. "the worker's web port") at ``bind:port`` being taken: it
    names the process holding it, if visible, and ``instead``, what to run instead."""
    holder = port_holder(port)
    by = f"by {holder.describe()}" if holder is not None and holder.pid > 0 else "already"
    return PortInUse(f"{what} {bind}:{port} is in use {by}; {instead}")


def ensure_free(what: str, bind: str, port: int, instead: str) -> None:
    """Raise :func:`port_in_use`'s error if ``bind:port`` cannot be bound because it is taken
    (checked before a server library would fail on it with a traceback). Port 0 is always free;
    other bind errors are left to the server that binds for real."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)
    except OSError:
        return
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_in_use(what, bind, port, instead) from exc
