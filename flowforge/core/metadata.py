"""The images.metadata record for an image refused before the worker saw it (by a bridge).

The worker writes its records as ``streams.records.ImageMetadata`` (a Faust record); the bridges
do not use Faust, so they write the same JSON here: the same fields in the same order, times as
Faust writes them (ISO 8601, microseconds, ``Z``). A unit test holds the two byte-equal.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime


def iso_time(moment: datetime) -> str:
    """``moment`` (timezone-aware) as Faust's JSON writes a datetime: UTC, ``...ffffffZ``."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def rejected_record(
    *,
    image_id: str,
    source_type: str,
    source_id: str,
    captured_at_ms: int,
    ingested_at_ms: int,
    reason: str,
    size: int,
    worker: str,
    processed_at: datetime | None = None,
) -> bytes:
    """The ``rejected`` images.metadata value of an image that never reached images.raw: no
    sizes or scores, the dead-letter ``reason`` code, partition and offset -1."""
    record = {
        "image_id": image_id,
        "source_type": source_type,
        "source_id": source_id,
        "captured_at": iso_time(datetime.fromtimestamp(captured_at_ms / 1000, tz=UTC)),
        "ingested_at": iso_time(datetime.fromtimestamp(ingested_at_ms / 1000, tz=UTC)),
        "processed_at": iso_time(processed_at or datetime.now(tz=UTC)),
        "status": "rejected",
        "reason": reason,
        "width": 0,
        "height": 0,
        "out_width": 0,
        "out_height": 0,
        "bytes": size,
        "format": "",
        "brightness": 0.0,
        "contrast": 0.0,
        "sharpness": 0.0,
        "processing_ms": 0.0,
        "kafka_partition": -1,
        "kafka_offset": -1,
        "worker": worker,
    }
    return json.dumps(record, separators=(",", ":")).encode()
