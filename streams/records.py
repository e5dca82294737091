"""All Faust records: the wire types of images.metadata and the worker's tables."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import faust

from streams.errors import MetadataInvalid

#: Outcomes of a decoded image, then the outcome of an image sent to the dead-letter topic.
STATUSES = ("processed", "skipped_dark", "skipped_low_quality", "rejected")
#: The status of a duplicate delivery's record (an ImageDuplicate, not an outcome).
DUPLICATE = "duplicate"


class ImageMetadata(faust.Record, serializer="json", include_metadata=False):
    """One record per image on images.metadata; field names equal the ClickHouse columns."""

    image_id: str
    source_type: str
    source_id: str
    captured_at: datetime  # UTC, from the envelope's ff-captured-at (epoch ms): the image's time
    ingested_at: datetime  # UTC, from ff-ingested-at: when FlowForge received the image
    processed_at: datetime  # UTC, when the worker finished the image
    status: str  # processed | skipped_dark | skipped_low_quality | rejected
    reason: str  # why skipped or rejected (the dead-letter reason code); empty if processed
    width: int
    height: int
    out_width: int
    out_height: int
    bytes: int
    format: str
    brightness: float
    contrast: float
    sharpness: float
    processing_ms: float
    kafka_partition: int
    kafka_offset: int
    worker: str


class ImageDuplicate(faust.Record, serializer="json", include_metadata=False):
    """One record per duplicate delivery on images.metadata (status ``duplicate``): an image
    seen again within the dedup window; field names equal the images_duplicates columns."""

    image_id: str
    source_type: str
    source_id: str
    captured_at: datetime  # UTC, from this delivery's envelope
    ingested_at: datetime  # UTC, when FlowForge received this delivery (ff-ingested-at)
    first_seen_at: datetime | None  # when the image was first done; None: still in processing
    processed_at: datetime  # UTC, when the worker handled this delivery
    status: str  # always "duplicate"
    bytes: int
    kafka_partition: int
    kafka_offset: int
    worker: str


_TIMES = ("captured_at", "ingested_at", "processed_at", "first_seen_at")
_NULLABLE = ("first_seen_at",)


def _field_types(record: type[faust.Record]) -> dict[str, tuple[type, ...]]:
    return {
        name: (float, int) if kind is float else (kind,)
        for name, kind in record._options.fields.items()
        if kind in (str, int, float)
    }


_FIELD_TYPES = {kind: _field_types(kind) for kind in (ImageMetadata, ImageDuplicate)}


def metadata_row(raw: bytes) -> dict[str, Any]:
    """One images.metadata value (JSON) checked against its record class, as a row dict:
    ImageDuplicate for status ``duplicate`` (a row of images_duplicates), else ImageMetadata.

    Timestamps stay ISO 8601 strings (the writer converts them); raises MetadataInvalid naming
    the first problem, so the sink can dead-letter the record instead of failing the batch.
    """
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MetadataInvalid(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MetadataInvalid(f"expected a JSON object, got {type(value).__name__}")
    if value.get("status") == DUPLICATE:
        return _checked(value, ImageDuplicate)
    if "ingested_at" not in value and "processed_at" in value:
        # A record from a worker older than the ingest time: received about when processed.
        value["ingested_at"] = value["processed_at"]
    row = _checked(value, ImageMetadata)
    if row["status"] not in STATUSES:
        statuses = ", ".join((*STATUSES, DUPLICATE))
        raise MetadataInvalid(f"status {row['status']!r} is not one of {statuses}")
    return row


def _checked(value: dict[str, Any], record: type[faust.Record]) -> dict[str, Any]:
    """``value``'s fields of ``record``, each checked for its type."""
    types = _FIELD_TYPES[record]
    row: dict[str, Any] = {}
    for name in record._options.fields:
        if name not in value:
            raise MetadataInvalid(f"field {name} is missing")
        item = value[name]
        if name in _TIMES:
            if not (item is None and name in _NULLABLE) and not _is_time(item):
                raise MetadataInvalid(f"field {name} must be an ISO 8601 time")
        elif isinstance(item, bool) or not isinstance(item, types[name]):
            raise MetadataInvalid(f"field {name} must be {types[name][0].__name__}")
        row[name] = item
    return row


def _is_time(item: Any) -> bool:
    if not isinstance(item, str):
        return False
    try:
        datetime.fromisoformat(item)
    except ValueError:
        return False
    return True
