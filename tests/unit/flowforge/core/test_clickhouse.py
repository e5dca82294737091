"""The ClickHouse client factory: connection errors never carry credentials."""

from __future__ import annotations

import socket

import pytest

from flowforge.core.clickhouse import connect
from flowforge.core.errors import ClickHouseUnavailable
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
