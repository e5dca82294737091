"""A bridge's rejected record is the very JSON the worker's ImageMetadata record would be."""

from __future__ import annotations

from datetime import UTC, datetime

from flowforge.core.metadata import rejected_record
from streams.records import ImageMetadata, metadata_row


def test_rejected_record_equals_the_workers_record_byte_for_byte() -> None:
    """Same fields, order, time format and values as ImageMetadata.dumps() for a reject, and
    the sink's own check accepts it."""
    now = datetime(2026, 12, 2, 7, 53, 11, 84152, tzinfo=UTC)
    ours = rejected_record(
        image_id="abc",
        source_type="mqtt",
        source_id="cam-ü",
        captured_at_ms=1_700_000_000_123,
        ingested_at_ms=1_764_662_000_456,
        reason="empty",
        size=0,
        worker="host:bridge-mqtt",
        processed_at=now,
    )
    faust_record = ImageMetadata(
        image_id="abc",
        source_type="mqtt",
        source_id="cam-ü",
        captured_at=datetime.fromtimestamp(1_700_000_000.123, tz=UTC),
        ingested_at=datetime.fromtimestamp(1_764_662_000.456, tz=UTC),
        processed_at=now,
        status="rejected",
        reason="empty",
        width=0,
        height=0,
        out_width=0,
        out_height=0,
        bytes=0,
        format="",
        brightness=0.0,
        contrast=0.0,
        sharpness=0.0,
        processing_ms=0.0,
        kafka_partition=-1,
        kafka_offset=-1,
        worker="host:bridge-mqtt",
    )
    assert ours == faust_record.dumps()
    assert metadata_row(ours)["status"] == "rejected"
