"""ClickHouseWriter's routing: image outcomes to images_metadata, duplicates to images_duplicates.

The client here records what would be sent; the real engine takes the same inserts in
tests/integration/test_clickhouse_writer.py.
"""

from __future__ import annotations

from typing import Any

from streams.sink.writer import COLUMNS, DUPLICATE_COLUMNS, ClickHouseWriter, batch_token


class RecordingClient:
    """Keeps each insert's table, column names, columns and settings."""

    def __init__(self) -> None:
        self.inserts: list[dict[str, Any]] = []

    def insert(self, table: str, data: Any, **kwargs: Any) -> None:
        self.inserts.append({"table": table, "data": data, **kwargs})


def _image(i: int) -> dict[str, Any]:
    return {name: 0 for name in COLUMNS} | {
        "image_id": f"img-{i}", "status": "processed", "kafka_offset": i,
        "captured_at": "2026-12-02T10:00:00.000000Z", "ingested_at": "2026-12-02T10:00:00Z",
        "processed_at": "2026-12-02T10:00:01Z",
    }  # fmt: skip


def _duplicate(i: int, first_seen: str | None) -> dict[str, Any]:
    return {name: 0 for name in DUPLICATE_COLUMNS} | {
        "image_id": "img-0", "status": "duplicate", "kafka_offset": 100 + i,
        "captured_at": "2026-12-02T10:00:00Z", "ingested_at": f"2026-12-02T10:0{i}:00Z",
        "first_seen_at": first_seen, "processed_at": "2026-12-02T10:05:00Z",
    }  # fmt: skip


def test_a_mixed_batch_is_split_by_status_into_the_two_tables() -> None:
    """Duplicate records go to images_duplicates with their own columns (first_seen_at a time,
    or None when unknown), the other records to images_metadata; each insert carries the
    batch's token, so a retried batch is dropped by both tables."""
    client = RecordingClient()
    batch = [_image(0), _duplicate(1, "2026-12-02T10:00:01Z"), _image(1), _duplicate(2, None)]
    assert ClickHouseWriter(client).write(batch) == 4
    images, duplicates = client.inserts
    assert images["table"] == "images_metadata"
    assert images["column_names"] == list(COLUMNS)
    assert images["data"][COLUMNS.index("image_id")] == ["img-0", "img-1"]
    assert duplicates["table"] == "images_duplicates"
    assert duplicates["column_names"] == list(DUPLICATE_COLUMNS)
    offsets = duplicates["data"][DUPLICATE_COLUMNS.index("kafka_offset")]
    assert offsets == [101, 102]
    first_seen = duplicates["data"][DUPLICATE_COLUMNS.index("first_seen_at")]
    assert first_seen[0].isoformat() == "2026-12-02T10:00:01+00:00"
    assert first_seen[1] is None
    token = batch_token(batch)
    assert images["settings"]["insert_deduplication_token"] == token
    assert duplicates["settings"]["insert_deduplication_token"] == token


def test_a_batch_of_one_kind_is_one_insert() -> None:
    """A batch without duplicates is a single images_metadata insert, as before duplicates
    had a table; a batch of duplicates only is a single images_duplicates insert."""
    client = RecordingClient()
    ClickHouseWriter(client).write([_image(0), _image(1)])
    ClickHouseWriter(client).write([_duplicate(1, None)])
    assert [i["table"] for i in client.inserts] == ["images_metadata", "images_duplicates"]
