"""Fault drills at the ClickHouse client boundary: switched by a file, off without one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from flowforge.core.faults import FaultInjectingClient, write_fault
from streams.sink.writer import classify


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def insert(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append("insert")
        return "inserted"

    def query(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append("query")
        return "rows"


def test_no_file_no_fault(tmp_path: Path) -> None:
    """Without the fault file every call reaches the real client."""
    inner = Recorder()
    client = FaultInjectingClient(inner, tmp_path / "missing.json")
    assert client.insert("t", []) == "inserted"
    assert client.query("SELECT 1") == "rows"
    assert inner.calls == ["insert", "query"]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("refused", OperationalError),
        ("timeout", OperationalError),
        ("too_many_parts", DatabaseError),
    ],
)
def test_each_fault_fails_like_the_real_outage_and_is_retriable(
    tmp_path: Path, fault: str, kind: type[Exception]
) -> None:
    """Each drill raises clickhouse-connect's own error type, which the sink treats as an outage
    (retriable), and the real client is not called."""
    path = tmp_path / "faults.json"
    write_fault(path, fault)
    inner = Recorder()
    client = FaultInjectingClient(inner, path)
    with pytest.raises(kind) as info:
        client.insert("t", [])
    assert classify(info.value).retriable
    assert inner.calls == []


def test_a_lost_reply_stores_the_insert_then_fails_like_a_timeout(tmp_path: Path) -> None:
    """``lost_reply``: the insert reaches the real client (stored), then raises a retriable
    read timeout; queries are answered meanwhile."""
    path = tmp_path / "faults.json"
    write_fault(path, "lost_reply")
    inner = Recorder()
    client = FaultInjectingClient(inner, path)
    with pytest.raises(OperationalError, match="reply lost") as info:
        client.insert("t", [])
    assert classify(info.value).retriable
    assert client.query("SELECT 1") == "rows"
    assert inner.calls == ["insert", "query"]


def test_a_fault_ends_when_switched_off_or_when_its_time_is_up(tmp_path: Path) -> None:
    """Writing "off" ends a drill at once; a timed drill ends by itself."""
    path = tmp_path / "faults.json"
    client = FaultInjectingClient(Recorder(), path)
    write_fault(path, "refused")
    assert client.active_fault() == "refused"
    write_fault(path, None)
    assert client.active_fault() is None
    write_fault(path, "timeout", seconds=0.2)
    assert client.active_fault() == "timeout"
    time.sleep(0.3)
    assert client.active_fault() is None


def test_unknown_fault_names_are_refused(tmp_path: Path) -> None:
    """write_fault refuses a fault it does not know, listing the ones it does."""
    with pytest.raises(ValueError, match="refused, timeout, too_many_parts, lost_reply"):
        write_fault(tmp_path / "f.json", "meteor")
