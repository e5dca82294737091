"""Fault drills: ClickHouse failures injected at the client boundary, switched by a JSON file.

``FLOWFORGE_SINK_FAULT_FILE=/path/faults.json`` wraps the sink's ClickHouse client. While the
file holds ``{"clickhouse": FAULT, "until": EPOCH_SECONDS}`` (``until`` optional: until the
file changes), calls fail the way a real outage does:

- ``refused``, ``timeout``, ``too_many_parts``: every insert and query fails before it reaches
  the engine (a refused connection, a timed-out socket, the server's TOO_MANY_PARTS, code 252);
- ``lost_reply``: every insert reaches the engine and is stored, then its reply is lost (a
  read timeout after the call returned), the case insert deduplication tokens exist for;
  queries are answered.

The reliability tests and operators' drills use it to see the spool fill and drain without
touching the real engine. Without the setting nothing is wrapped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

FAULTS: dict[str, Callable[[], Exception]] = {
    "refused": lambda: OperationalError(
        "Error HTTPConnectionPool: Max retries exceeded (Connection refused) [fault drill]"
    ),
    "timeout": lambda: OperationalError("Error: read timed out [fault drill]"),
    "too_many_parts": lambda: DatabaseError(
        "Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly "
        "slower than inserts. (TOO_MANY_PARTS) [fault drill]"
    ),
    "lost_reply": lambda: OperationalError(
        "Error: read timed out (the insert was stored, its reply lost) [fault drill]"
    ),
}
#: Faults that strike inserts after the engine has stored them; queries and commands pass.
AFTER_INSERT = frozenset({"lost_reply"})


class FaultInjectingClient:
    """A clickhouse-connect client whose calls fail as the fault file says; else delegates."""

    def __init__(self, client: Any, path: Path) -> None:
        self._client = client
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._fault: tuple[str, float] | None = None

    def active_fault(self) -> str | None:
        """The fault in force now, or None."""
        try:
            stat = self._path.stat()
        except OSError:
            self._stamp, self._fault = None, None
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._stamp, self._fault = stamp, _read(self._path)
        if self._fault is None or time.time() >= self._fault[1]:
            return None
        return self._fault[0]

    def _check(self) -> None:
        fault = self.active_fault()
        if fault is not None and fault not in AFTER_INSERT:
            raise FAULTS[fault]()

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        result = self._client.insert(*args, **kwargs)
        fault = self.active_fault()
        if fault in AFTER_INSERT:
            raise FAULTS[fault]()
        return result

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._client.query(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._client.command(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _read(path: Path) -> tuple[str, float] | None:
    """The file's fault, or None if it names none (an unreadable file injects nothing)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
        fault = str(value["clickhouse"])
        until = float(value.get("until", float("inf")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return (fault, until) if fault in FAULTS else None


def write_fault(path: Path, fault: str | None, *, seconds: float | None = None) -> None:
    """Switch a drill on (``fault`` for ``seconds``, or until changed) or off (None)."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
    value: dict[str, Any] = {} if fault is None else {"clickhouse": fault}
    if fault is not None and seconds is not None:
        value["until"] = time.time() + seconds
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    tmp.replace(path)
