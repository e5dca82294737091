"""ClickHouseWriter: one columnar insert per batch of metadata records, safe to retry."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from flowforge.core.errors import ClickHouseUnavailable, FlowForgeError
from streams.errors import InsertRejected
from streams.records import DUPLICATE, ImageDuplicate, ImageMetadata

#: The images_metadata columns the sink writes, in the record's field order.
COLUMNS: tuple[str, ...] = tuple(ImageMetadata._options.fields)
#: The images_duplicates columns the sink writes (a duplicate delivery's record).
DUPLICATE_COLUMNS: tuple[str, ...] = tuple(ImageDuplicate._options.fields)
_TIMESTAMPS = frozenset({"captured_at", "ingested_at", "processed_at", "first_seen_at"})

# Server error codes worth retrying: overload, timeouts, network, read-only replicas, memory.
RETRIABLE_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        425,  # SYSTEM_ERROR
    }
)


def batch_token(records: Sequence[Mapping[str, Any]]) -> str:
    """A deterministic insert_deduplication_token: the same batch always gets the same token."""
    digest = hashlib.sha256()
    for record in records:
        key = f"{record['image_id']}@{record['kafka_partition']}:{record['kafka_offset']};"
        digest.update(key.encode())
    return digest.hexdigest()


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code in an exception's text (``Code: 252.``), if any."""
    text = str(exc)
    marker = text.find("Code: ")
    if marker < 0:
        return None
    digits = text[marker + 6 :].split(".", 1)[0].strip()
    return int(digits) if digits.isdigit() else None


def classify(exc: ClickHouseError | OSError) -> FlowForgeError:
    """ClickHouseUnavailable (retriable) for outages and overload, else InsertRejected."""
    if isinstance(exc, OperationalError | OSError):
        return ClickHouseUnavailable(f"ClickHouse unavailable: {_first_line(exc)}")
    code = error_code(exc)
    if code in RETRIABLE_CODES or (code is None and not isinstance(exc, DatabaseError)):
        return ClickHouseUnavailable(
            f"ClickHouse busy or failing (code {code}): {_first_line(exc)}"
        )
    return InsertRejected(f"ClickHouse rejected the batch (code {code}): {_first_line(exc)}")


class ClickHouseWriter:
    """Writes batches of metadata records through a clickhouse-connect client: image outcomes
    to images_metadata, duplicate deliveries (status ``duplicate``) to images_duplicates.

    Each batch is one columnar insert per table carrying :func:`batch_token` (deduplication
    tokens are per table), so a batch retried after a timeout (stored or not, in either
    table) never doubles rows; replays across batches collapse in the tables.

    A table's column types are read once (``DESCRIBE TABLE``) and sent with each insert:
    without them clickhouse-connect describes the table again before every insert. An insert
    refused after a schema change (a migration while the sink runs) reads them again and is
    tried once more, with the same token.
    """

    def __init__(
        self,
        client: Any,
        table: str = "images_metadata",
        duplicates_table: str = "images_duplicates",
    ) -> None:
        self.client = client
        self.table = table
        self.duplicates_table = duplicates_table
        self._types: dict[str, dict[str, str]] = {}

    def write(self, records: Sequence[Mapping[str, Any]], token: str | None = None) -> int:
        """Insert ``records`` (deduplicated by ``token``, default :func:`batch_token`).

        Returns how many; raises ClickHouseUnavailable (retry) or InsertRejected (do not).
        """
        if not records:
            return 0
        token = token or batch_token(records)
        images = [r for r in records if r["status"] != DUPLICATE]
        duplicates = [r for r in records if r["status"] == DUPLICATE]
        self._insert(self.table, COLUMNS, images, token)
        self._insert(self.duplicates_table, DUPLICATE_COLUMNS, duplicates, token)
        return len(records)

    def _insert(
        self, table: str, names: tuple[str, ...], records: list[Mapping[str, Any]], token: str
    ) -> None:
        if not records:
            return
        columns = [[_value(name, record[name]) for record in records] for name in names]
        known = table in self._types
        try:
            self._send(table, names, columns, token)
        except InsertRejected:
            if not known:
                raise
            self._types.pop(table, None)  # the schema may have changed since it was read
            self._send(table, names, columns, token)

    def _send(
        self, table: str, names: tuple[str, ...], columns: list[list[Any]], token: str
    ) -> None:
        try:
            self.client.insert(
                table,
                columns,
                column_names=list(names),
                column_type_names=self._column_types(table, names),
                column_oriented=True,
                settings={
                    "insert_deduplication_token": token,
                    # A backfill batch may span more than 100 monthly partitions (captured_at):
                    # the default limit would refuse it with code 252, retried forever.
                    "throw_on_max_partitions_per_insert_block": 0,
                },
            )
        except (ClickHouseError, OSError) as exc:
            raise classify(exc) from exc

    def _column_types(self, table: str, names: tuple[str, ...]) -> list[str] | None:
        """The types of ``names`` in ``table``, read once; None when the table lacks one of
        them (clickhouse-connect then describes the table and names the missing column)."""
        types = self._types.get(table)
        if types is None:
            described = self.client.query(f"DESCRIBE TABLE {table}").result_rows
            types = {str(row[0]): str(row[1]) for row in described}
            self._types[table] = types
        if any(name not in types for name in names):
            self._types.pop(table, None)
            return None
        return [types[name] for name in names]


def _value(name: str, value: Any) -> Any:
    if name in _TIMESTAMPS and isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
