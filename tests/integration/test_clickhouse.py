"""The ClickHouse schema on the real (embedded) engine: migrations, replays, rollup, one owner."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
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
from flowforge.core.stats import query as statistics
from streams.records import ImageDuplicate, ImageMetadata, metadata_row
from streams.sink.writer import ClickHouseWriter
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


@pytest.mark.parametrize("table", ["images_metadata", "images_duplicates"])
def test_row_ttl_follows_the_setting(database: Any, table: str) -> None:
    """migrate sets the table's TTL on the ingest time to the configured days, and removes it
    for 0."""
    query = (
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
        "AND name = {table:String}"
    )
    migrate(database, ttl_days=30)
    [[engine]] = database.query(query, parameters={"table": table}).result_rows
    assert "TTL toDateTime(ingested_at) + toIntervalDay(30)" in engine
    migrate(database, ttl_days=0)
    [[engine]] = database.query(query, parameters={"table": table}).result_rows
    assert " TTL " not in engine


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


def _resent(image: ImageMetadata, ingested_at: datetime, offset: int) -> ImageDuplicate:
    """The worker's record of a duplicate delivery of ``image`` taken in at ``ingested_at``."""
    return ImageDuplicate(
        image_id=image.image_id, source_type=image.source_type, source_id=image.source_id,
        captured_at=image.captured_at, ingested_at=ingested_at, first_seen_at=image.processed_at,
        processed_at=ingested_at, status="duplicate", bytes=image.bytes,
        kafka_partition=image.kafka_partition, kafka_offset=offset, worker=image.worker,
    )  # fmt: skip


def test_statistics_count_resent_images_per_source(database: Any) -> None:
    """`flowforge stats`' query counts per source, within --since, each duplicate delivery with
    an ingest time of its own (a re-send) once however often Kafka redelivered it, and not a
    redelivery of an image's first message (the ingest time of its row); a source with only
    re-sends in the window is listed with 0 images."""
    migrate(database, ttl_days=0)
    now = datetime.now(tz=UTC)
    recent = _worker_record(0).derive(
        source_id="cam-1", ingested_at=now - timedelta(minutes=10), processed_at=now
    )
    old = _worker_record(1).derive(
        source_id="cam-2", ingested_at=now - timedelta(hours=2), processed_at=now
    )
    resend = _resent(recent, now - timedelta(minutes=5), offset=500)
    records = [
        recent,
        old,
        resend,
        resend.derive(kafka_offset=501),  # the same re-send, redelivered by Kafka
        _resent(recent, recent.ingested_at, offset=502),  # the first message, redelivered
        _resent(old, now - timedelta(minutes=1), offset=503),
    ]
    ClickHouseWriter(database).write([metadata_row(r.dumps()) for r in records])

    every = {s["source_id"]: s for s in statistics(database)}
    assert {k: (s["images"], s["duplicates"]) for k, s in every.items()} == {
        "cam-1": (1, 1),
        "cam-2": (1, 1),
    }
    hour = {s["source_id"]: s for s in statistics(database, since_s=3600)}
    assert {k: (s["images"], s["duplicates"]) for k, s in hour.items()} == {
        "cam-1": (1, 1),
        "cam-2": (0, 1),
    }
    assert hour["cam-2"]["brightness_avg"] is None
    resent_at = now - timedelta(minutes=1)
    seen = datetime.fromisoformat(hour["cam-2"]["last_seen"]).replace(tzinfo=UTC)
    assert seen == resent_at.replace(microsecond=resent_at.microsecond // 1000 * 1000)


def _worker_record(i: int) -> ImageMetadata:
    at = datetime(2026, 11, 24, 0, 57, 53, 378000, tzinfo=UTC)
    return ImageMetadata(
        image_id=f"cam-9-{i}", source_type="rtsp", source_id="cam-9", captured_at=at,
        ingested_at=at, processed_at=at, status="processed", reason="", width=1920, height=1080,
        out_width=640, out_height=360, bytes=200_000, format="jpeg", brightness=120.5,
        contrast=40.0, sharpness=300.0, processing_ms=9.5, kafka_partition=2, kafka_offset=100 + i,
        worker="vm:6066",
    )  # fmt: skip


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
