"""The ClickHouse schema on the real (embedded) engine: migrations, replays, rollup, one owner."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver._chdbclient import ChdbClient

from flowforge.core.clickhouse import (
    connect,
    migrate,
    migrations,
    schema_version,
)
from flowforge.core.settings import Settings
from tests.support.stack import stack_env

COLUMNS = ["image_id", "source_id", "captured_at", "processed_at", "status", "brightness"]


def _rows(n: int, *, source: str = "cam-1") -> list[tuple[object, ...]]:
    now = datetime.now(tz=UTC)
    statuses = ("processed", "skipped_dark", "skipped_low_quality", "rejected")
    # Image ids hash the source in (as the envelope's do), so they are unique across sources.
    # Rejected images have no brightness (0 in their rows).
    return [
        (f"{source}-img-{i}", source, now, now, statuses[i % 4], 0.0 if i % 4 == 3 else 50.0 + i)
        for i in range(n)
    ]


def test_migrate_applies_every_file_once(database: Any) -> None:
    """A fresh database gets every schema file in order; a second run applies nothing."""
    files = [m.path.name for m in migrations()]
    assert migrate(database, ttl_days=90) == files
    assert schema_version(database) == migrations()[-1].version
    assert migrate(database, ttl_days=90) == []
    assert database.query("SELECT * FROM images_metadata LIMIT 10").result_rows == []


def test_row_ttl_follows_the_setting(database: Any) -> None:
    """migrate sets the images_metadata TTL on the ingest time to the configured days, and
    removes it for 0."""
    query = (
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
        "AND name = 'images_metadata'"
    )
    migrate(database, ttl_days=30)
    assert (
        "TTL toDateTime(ingested_at) + toIntervalDay(30)" in database.query(query).result_rows[0][0]
    )
    migrate(database, ttl_days=0)
    assert " TTL " not in database.query(query).result_rows[0][0]


def test_replays_collapse_and_a_retried_batch_is_dropped(database: Any) -> None:
    """Replayed rows collapse under FINAL; a batch retried with its token is not stored twice."""
    migrate(database, ttl_days=90)
    rows = _rows(9)
    for _ in range(2):
        database.insert("images_metadata", rows, column_names=COLUMNS,
                        settings={"insert_deduplication_token": "batch-1"})  # fmt: skip
    assert database.query("SELECT count() FROM images_metadata").result_rows == [(9,)]
    database.insert("images_metadata", rows[:4], column_names=COLUMNS,
                    settings={"insert_deduplication_token": "batch-2"})  # fmt: skip
    assert database.query("SELECT count() FROM images_metadata FINAL").result_rows == [(9,)]


def test_rollup_agrees_with_the_raw_table(database: Any) -> None:
    """The per-minute rollup counts each image once per status, as the raw table does (FINAL),
    and its brightness aggregates leave rejected images out."""
    migrate(database, ttl_days=90)
    rows = _rows(12) + _rows(5, source="cam-2")
    database.insert("images_metadata", rows, column_names=COLUMNS)
    database.insert("images_metadata", rows[:6], column_names=COLUMNS)  # a replay
    raw = dict(
        database.query(
            "SELECT status, count() FROM images_metadata FINAL GROUP BY status"
        ).result_rows
    )
    rollup = database.query(
        "SELECT uniqExactMerge(images), uniqExactIfMerge(processed), uniqExactIfMerge(dark), "
        "uniqExactIfMerge(low_quality), uniqExactIfMerge(rejected), minMerge(brightness_min) "
        "FROM images_per_minute"
    ).result_rows[0]
    assert rollup == (
        sum(raw.values()),
        raw["processed"],
        raw["skipped_dark"],
        raw["skipped_low_quality"],
        raw["rejected"],
        50.0,
    )


def test_second_owner_of_the_embedded_engine_is_told_who_owns_it(
    database: Any, engine_url: str
) -> None:
    """Another process opening the engine this test process owns exits 1 naming our PID."""
    env = dict(os.environ, **stack_env(), FLOWFORGE_CLICKHOUSE_URL=engine_url)
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", "clickhouse", "migrate"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert f"is in use by pid {os.getpid()}" in last, last


def test_cli_migrate_on_its_own_engine(tmp_path: Path) -> None:
    """`flowforge clickhouse migrate` on a fresh engine applies the schema, then nothing."""
    env = dict(os.environ, FLOWFORGE_CLICKHOUSE_URL=f"chdb://{tmp_path / 'ch'}")
    command = [sys.executable, "-m", "flowforge", "clickhouse", "migrate"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "applied 001_images_metadata.sql" in first.stdout
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "applied" not in second.stdout
    assert f"schema version {migrations()[-1].version}" in second.stdout


def test_connect_keeps_no_client_open_but_the_one_it_returns(
    engine_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening the embedded engine on a named database goes through a client of ``default``
    (to create the database); that client is closed, only the returned one stays open."""
    opened: list[Any] = []
    closed: list[Any] = []
    real_get_client, real_close = clickhouse_connect.get_client, ChdbClient.close

    def get_client(**kwargs: Any) -> Any:
        opened.append(real_get_client(**kwargs))
        return opened[-1]

    def close(self: Any) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(clickhouse_connect, "get_client", get_client)
    monkeypatch.setattr(ChdbClient, "close", close)
    name = f"t_{uuid.uuid4().hex[:12]}"
    env = {"FLOWFORGE_CLICKHOUSE_URL": engine_url, "FLOWFORGE_CLICKHOUSE_DATABASE": name}
    client = connect(Settings.from_env(env).clickhouse)
    try:
        assert len(opened) == 2
        assert client is opened[-1]
        assert closed == [opened[0]]
        assert client.query("SELECT currentDatabase()").result_rows == [(name,)]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name}")
        client.close()
