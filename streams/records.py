"""All Faust records: the wire types of images.metadata and the worker's tables."""

from __future__ import annotations

from datetime import datetime

import faust

STATUSES = ("processed", "skipped_dark", "skipped_low_quality")


class ImageMetadata(faust.Record, serializer="json", include_metadata=False):
    """One record per image on images.metadata; field names equal the ClickHouse columns."""

    image_id: str
    source_type: str
    source_id: str
    captured_at: datetime  # UTC, from the envelope's ff-captured-at (epoch ms)
    processed_at: datetime  # UTC, when the worker finished the image
    status: str  # processed | skipped_dark | skipped_low_quality
    reason: str
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


class SourceStats(faust.Record, serializer="json", include_metadata=False):
    """Per-source counters kept in the worker's stats table (served at /stats)."""

    images: int = 0
    processed: int = 0
    dark: int = 0
    low_quality: int = 0
    rejected: int = 0
    duplicates: int = 0
    brightness_avg: float = 0.0  # exponential moving average over decoded images
    last_seen: float = 0.0  # epoch seconds
