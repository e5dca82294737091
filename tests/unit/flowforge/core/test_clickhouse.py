"""The ClickHouse client factory: connection errors never carry credentials; an engine another
process owns is reached through its HTTP interface."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flowforge.core.clickhouse import OWNER_FILE, connect, through_owner
from flowforge.core.errors import ClickHouseUnavailable, EngineLocked
from flowforge.core.settings import Settings

MARKER = "Zq9-ch-marker"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_error_names_the_server_without_credentials() -> None:
    """A refused connection to an http:// ClickHouse with a password set raises
    ClickHouseUnavailable naming the URL, and no part of the password."""
    port = _closed_port()
    settings = Settings.from_env(
        {
            "FLOWFORGE_CLICKHOUSE_URL": f"http://127.0.0.1:{port}",
            "FLOWFORGE_CLICKHOUSE_USERNAME": "app",
            "FLOWFORGE_CLICKHOUSE_PASSWORD": f"pw-{MARKER}",
        }
    )
    with pytest.raises(ClickHouseUnavailable) as info:
        connect(settings.clickhouse)
    message = str(info.value)
    assert f"ClickHouse at http://127.0.0.1:{port}" in message
    chain = [info.value, info.value.__cause__, info.value.__context__]
    assert all(MARKER not in f"{exc!s} {exc!r}" for exc in chain if exc is not None)


def _owned(tmp_path: Path, record: dict[str, object]) -> Settings:
    """Settings on an embedded engine directory whose owner file holds ``record``."""
    (tmp_path / OWNER_FILE).write_text(json.dumps(record), encoding="utf-8")
    return Settings.from_env(
        {
            "FLOWFORGE_CLICKHOUSE_URL": f"chdb://{tmp_path}",
            "FLOWFORGE_CLICKHOUSE_USERNAME": "app",
            "FLOWFORGE_CLICKHOUSE_PASSWORD": "secret",
            "FLOWFORGE_CLICKHOUSE_DATABASE": "images",
        }
    )


def test_an_engine_owned_by_a_live_worker_is_reached_through_its_http_interface(
    tmp_path: Path,
) -> None:
    """With a live process (not this one) recorded as the owner with an HTTP address, the
    settings to reach the data are that address, with the same user, password and database."""
    settings = _owned(tmp_path, {"pid": os.getppid(), "http": "http://127.0.0.1:18123"})
    reach = through_owner(settings.clickhouse)
    assert reach.url == "http://127.0.0.1:18123"
    assert (reach.username, reach.password.reveal(), reach.database) == ("app", "secret", "images")


def test_an_unowned_engine_or_one_this_process_owns_is_opened_directly(tmp_path: Path) -> None:
    """No owner file, an owner that is this process, or a dead owner: the settings unchanged."""
    settings = Settings.from_env({"FLOWFORGE_CLICKHOUSE_URL": f"chdb://{tmp_path}"}).clickhouse
    assert through_owner(settings) is settings
    ours = _owned(tmp_path, {"pid": os.getpid(), "http": "http://127.0.0.1:18123"}).clickhouse
    assert through_owner(ours) is ours
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = _owned(tmp_path, {"pid": dead.pid, "http": "http://127.0.0.1:18123"}).clickhouse
    assert through_owner(gone) is gone


def test_an_owner_serving_no_http_interface_is_named(tmp_path: Path) -> None:
    """A live owner without an HTTP address (its port 0, or not a worker) is EngineLocked,
    naming its pid and command line."""
    record = {"pid": os.getppid(), "argv": ["flowforge", "stats"]}
    with pytest.raises(EngineLocked) as info:
        through_owner(_owned(tmp_path, record).clickhouse)
    assert f"is in use by pid {os.getppid()} (flowforge stats)" in str(info.value)
    assert "serves no HTTP interface" in str(info.value)
