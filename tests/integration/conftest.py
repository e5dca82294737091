"""Integration fixtures: the session's embedded ClickHouse engine (one per process), and a
private pipeline (topics, app id, home) per test."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowforge.core.clickhouse import connect, embedded_path
from flowforge.core.clickhouse_http import ClickHouseHttpServer, HttpUser
from flowforge.core.settings import Settings
from flowforge.stack import Stack
from tests.support.pipeline import Pipeline, make_pipeline
from tests.support.stack import stack_env
from tests.support.unique import free_port, unique_name


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


#: The application user of :func:`clickhouse_server`, as a deployment's sink logs in.
SERVER_USER = HttpUser("flowforge", "sink-secret")


@pytest.fixture
def clickhouse_server(engine_url: str, database: Any) -> Iterator[ClickHouseHttpServer]:
    """ClickHouse's HTTP interface over the session's engine on a free port, its database a fresh
    one and its application user SERVER_USER: a ClickHouse server as a compose deployment's
    sink sees one (FLOWFORGE_CLICKHOUSE_URL=http://...)."""
    path = embedded_path(engine_url)
    assert path is not None
    server = ClickHouseHttpServer(
        path, port=free_port(), database=database.database, users=(SERVER_USER,)
    )
    server.start()
    yield server
    server.close()


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest, settings: Settings, services: Stack, tmp_path: Path
) -> Iterator[Pipeline]:
    """Private topics, app id and home (so its own embedded engine) for this test, on the
    session's Kafka; its worker processes are stopped at the end. A module may set
    ``PIPELINE_ENV`` (a dict) to add settings for its workers."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:1] or "p"
    p = make_pipeline(unique_name(request, prefix), settings, stack_env(), tmp_path)
    p.env.update(getattr(request.module, "PIPELINE_ENV", {}))
    yield p
    p.stop_all()
    try:  # the shared broker would otherwise hold every test's topics to the end
        p.delete_topics()
    except Exception as exc:  # noqa: BLE001 - cleanup; the test's own outcome stands
        warnings.warn(f"topics of {p.settings.worker.app_id} not deleted: {exc!r}", stacklevel=1)
