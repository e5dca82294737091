"""ClickHouseWriter on the real engine: columnar batches, retry-safe tokens, error classes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from flowforge.core.clickhouse import migrate
from flowforge.core.errors import ClickHouseUnavailable
from streams.errors import InsertRejected
from streams.sink.writer import COLUMNS, ClickHouseWriter, batch_token


def _record(i: int, source: str = "cam-1") -> dict[str, Any]:
    """A metadata record as the worker publishes it (JSON: ISO timestamps with Z)."""
    return {
        "image_id": f"{source}-{i:04d}", "source_type": "mqtt", "source_id": source,
        "captured_at": "2026-11-24T00:57:53.378000Z",
        "ingested_at": "2026-11-24T00:57:53.380000Z", "processed_at": "2026-11-24T00:57:53.394Z",
        "status": "processed", "reason": "", "width": 1280, "height": 720, "out_width": 640,
        "out_height": 360, "bytes": 112525, "format": "jpeg", "brightness": 60.5,
        "contrast": 30.25, "sharpness": 405.5, "processing_ms": 13.75, "kafka_partition": 4,
        "kafka_offset": i, "worker": "vm:6066",
    }  # fmt: skip


def test_batch_is_written_with_every_column(database: Any) -> None:
    """A batch of worker records becomes rows whose columns hold the records' values."""
    migrate(database, ttl_days=90)
    records = [_record(i) for i in range(50)]
    assert ClickHouseWriter(database).write(records) == 50
    row = database.query(
        f"SELECT {', '.join(COLUMNS)} FROM images_metadata WHERE image_id = %(id)s",  # noqa: S608
        parameters={"id": "cam-1-0007"},
    ).result_rows[0]
    got = dict(zip(COLUMNS, row, strict=True))
    assert got["captured_at"].replace(tzinfo=UTC) == datetime(2026, 11, 24, 0, 57, 53, 378000, UTC)
    assert (got["width"], got["out_height"], got["kafka_offset"]) == (1280, 360, 7)
    assert got["brightness"] == pytest.approx(60.5)
    assert database.query("SELECT count() FROM images_metadata").result_rows == [(50,)]


def _duplicate(i: int, ingested_at: str, offset: int) -> dict[str, Any]:
    """A duplicate delivery of image ``i`` as the worker publishes it."""
    record = _record(i)
    return {
        "image_id": record["image_id"], "source_type": "mqtt", "source_id": "cam-1",
        "captured_at": record["captured_at"], "ingested_at": ingested_at,
        "first_seen_at": "2026-11-24T00:57:53.394000Z", "processed_at": "2026-11-24T01:00:00Z",
        "status": "duplicate", "bytes": 112525, "kafka_partition": 4, "kafka_offset": offset,
        "worker": "vm:6066",
    }  # fmt: skip


def test_duplicates_get_rows_of_their_own_and_a_redelivery_collapses(database: Any) -> None:
    """In a batch with image records, a duplicate record becomes an images_duplicates row and
    leaves the image's one images_metadata row alone; the same duplicate delivered again (a
    Kafka redelivery: same image and ingest time, another batch) collapses to one row (FINAL),
    while another re-send (a new ingest time) is a row of its own."""
    migrate(database, ttl_days=90)
    writer = ClickHouseWriter(database)
    resend = _duplicate(0, "2026-11-24T01:00:00.000000Z", offset=50)
    assert writer.write([_record(0), resend, _record(1)]) == 3
    writer.write([resend | {"kafka_offset": 51}, _record(2)])  # redelivered, later batch
    writer.write([_duplicate(0, "2026-11-24T02:00:00.000000Z", offset=52)])
    images = database.query(
        "SELECT image_id, status FROM images_metadata FINAL ORDER BY image_id"
    ).result_rows
    assert images == [("cam-1-0000", "processed"), ("cam-1-0001", "processed"),
                      ("cam-1-0002", "processed")]  # fmt: skip
    duplicates = database.query(
        "SELECT image_id, source_id, toString(ingested_at), toString(first_seen_at) "
        "FROM images_duplicates FINAL ORDER BY ingested_at"
    ).result_rows
    assert duplicates == [
        ("cam-1-0000", "cam-1", "2026-11-24 01:00:00.000", "2026-11-24 00:57:53.394"),
        ("cam-1-0000", "cam-1", "2026-11-24 02:00:00.000", "2026-11-24 00:57:53.394"),
    ]


def test_retried_batch_does_not_double_rows(database: Any) -> None:
    """Writing the same batch again (a retry after a timeout) leaves the row count unchanged."""
    migrate(database, ttl_days=90)
    records = [_record(i) for i in range(20)]
    writer = ClickHouseWriter(database)
    writer.write(records)
    writer.write(records)
    assert database.query("SELECT count() FROM images_metadata").result_rows == [(20,)]


def test_token_depends_on_the_batch() -> None:
    """The dedup token is the same for the same batch and differs for any other."""
    batch = [_record(i) for i in range(3)]
    assert batch_token(batch) == batch_token([dict(r) for r in batch])
    assert batch_token(batch) != batch_token(batch[:2])
    assert batch_token(batch) != batch_token([*batch[:2], _record(9)])


def test_schema_mismatch_is_rejected_not_retried(database: Any) -> None:
    """A table without the expected columns makes the engine refuse: InsertRejected, final."""
    database.command(
        "CREATE TABLE images_metadata (image_id String) ENGINE = MergeTree ORDER BY image_id"
    )
    with pytest.raises(InsertRejected) as info:
        ClickHouseWriter(database).write([_record(1)])
    assert info.value.retriable is False


class _Failing:
    """The real client, with inserts failing as an outage or overload would (client boundary)."""

    def __init__(self, client: Any, error: Exception) -> None:
        self.client, self.error = client, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def insert(self, *args: Any, **kwargs: Any) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("Error HTTPConnectionPool: Connection refused"),
        DatabaseError("Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)"),
        DatabaseError("Code: 159. DB::Exception: Timeout exceeded. (TIMEOUT_EXCEEDED)"),
    ],
    ids=["refused", "too-many-parts", "timeout"],
)
def test_outages_and_overload_are_retriable(database: Any, error: Exception) -> None:
    """Refused connections, TOO_MANY_PARTS and timeouts raise ClickHouseUnavailable (retriable)."""
    migrate(database, ttl_days=90)
    with pytest.raises(ClickHouseUnavailable) as info:
        ClickHouseWriter(_Failing(database, error)).write([_record(1)])
    assert info.value.retriable is True


def test_a_backfill_batch_spanning_more_than_100_months_is_written(database: Any) -> None:
    """A batch of photos taken over 15 years (180 monthly partitions of captured_at) is one
    insert, not refused with code 252 (which the sink would retry forever)."""
    migrate(database, ttl_days=90)
    records = []
    for i in range(180):
        taken = datetime(2010 + i // 12, i % 12 + 1, 15, tzinfo=UTC)
        records.append(_record(i) | {"captured_at": taken.isoformat()})
    assert ClickHouseWriter(database).write(records) == 180
    assert database.query("SELECT count() FROM images_metadata").result_rows == [(180,)]
