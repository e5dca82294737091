"""Integration fixtures: the session's embedded ClickHouse engine (one per process)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flowforge.clickhouse import connect
from flowforge.settings import Settings


@pytest.fixture(scope="session")
def engine_url(settings: Settings) -> str:
    """The test session's embedded engine (one per process): chdb under the test home."""
    return f"chdb://{(settings.home / 'clickhouse').resolve()}"


@pytest.fixture
def database(engine_url: str) -> Iterator[Any]:
    """A client on a fresh database of the session's engine, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    env = {"FLOWFORGE_CLICKHOUSE_URL": engine_url, "FLOWFORGE_CLICKHOUSE_DATABASE": name}
    client = connect(Settings.from_env(env).clickhouse)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {name}")
