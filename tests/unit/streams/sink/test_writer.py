"""ClickHouseWriter's routing: image outcomes to images_metadata, duplicates to images_duplicates.

The client here records what would be sent; the real engine takes the same inserts in
tests/integration/test_clickhouse_writer.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from streams.errors import InsertRejected
from streams.sink.writer import COLUMNS, DUPLICATE_COLUMNS, ClickHouseWriter, batch_token


class RecordingClient:
    """Keeps each insert's table, column names, columns and settings, and each query; answers
    ``DESCRIBE TABLE`` with ``types`` (every column a String unless set)."""

    def __init__(self) -> None:
        self.inserts: list[dict[str, Any]] = []
        self.queries: list[str] = []
        self.types: dict[str, str] = {}
        self.refuse: list[Exception] = []  # raised by the next inserts, in order

    def insert(self, table: str, data: Any, **kwargs: Any) -> None:
        self.inserts.append({"table": table, "data": data, **kwargs})
        if self.refuse:
            raise self.refuse.pop(0)

    def query(self, sql: str) -> Any:
        self.queries.append(sql)
        names = COLUMNS if "images_metadata" in sql else DUPLICATE_COLUMNS
        rows = [(name, self.types.get(name, "String"), "", "") for name in names]
        return SimpleNamespace(result_rows=rows)


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


def test_a_tables_column_types_are_read_once_and_sent_with_every_insert() -> None:
    """Three batches into both tables describe each table once; every insert carries the
    column types, so clickhouse-connect does not describe the table before each insert."""
    client = RecordingClient()
    client.types = {"brightness": "Float64", "image_id": "String"}
    writer = ClickHouseWriter(client)
    for i in range(3):
        writer.write([_image(i), _duplicate(i, None)])
    assert sorted(client.queries) == [
        "DESCRIBE TABLE images_duplicates",
        "DESCRIBE TABLE images_metadata",
    ]
    images = [i for i in client.inserts if i["table"] == "images_metadata"]
    assert len(images) == 3
    for insert in images:
        types = dict(zip(insert["column_names"], insert["column_type_names"], strict=True))
        assert types["brightness"] == "Float64"
        assert types["image_id"] == "String"


def test_an_insert_refused_after_a_schema_change_reads_the_types_again_once() -> None:
    """A refusal of an insert sent with types read earlier (the schema changed under the sink)
    re-reads them and tries once more with the same token; a second refusal is the batch's."""
    client = RecordingClient()
    writer = ClickHouseWriter(client)
    writer.write([_image(0)])
    client.types = {"brightness": "Float32"}
    client.refuse = [DatabaseError("Code: 53. DB::Exception: Type mismatch")]
    assert writer.write([_image(1)]) == 1
    assert client.queries == ["DESCRIBE TABLE images_metadata"] * 2
    retried, sent = client.inserts[1], client.inserts[2]
    assert retried["settings"] == sent["settings"]
    assert sent["column_type_names"][COLUMNS.index("brightness")] == "Float32"
    client.refuse = [DatabaseError("Code: 53. DB::Exception: Type mismatch")] * 2
    with pytest.raises(InsertRejected, match="code 53"):
        writer.write([_image(2)])
    # A first insert (types just read) is not retried: its refusal is the batch's at once.
    fresh = RecordingClient()
    fresh.refuse = [DatabaseError("Code: 53. DB::Exception: Type mismatch")]
    with pytest.raises(InsertRejected):
        ClickHouseWriter(fresh).write([_image(3)])
    assert len(fresh.inserts) == 1
