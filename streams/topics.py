"""All Faust topics of the worker: images.raw in; processed, metadata and dlq out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from flowforge.core.settings import Settings
from streams.records import ImageMetadata


@dataclass(frozen=True)
class Topics:
    """The worker's topics, named by settings (so tests and deployments can rename them)."""

    raw: Any
    processed: Any
    metadata: Any  # ImageMetadata records (outcomes) and ImageDuplicate records
    dlq: Any


def _raw_bytes_topic(app: faust.App, name: str, settings: Settings) -> Any:
    # Image messages: key = source id, value = the image bytes untouched (never re-encoded).
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.kafka.partitions,
        allow_empty=True,
    )


def create_topics(app: faust.App, settings: Settings) -> Topics:
    """Declare the topics on ``app`` with FlowForge's partition count."""
    kafka = settings.kafka
    return Topics(
        raw=_raw_bytes_topic(app, kafka.topic_raw, settings),
        processed=_raw_bytes_topic(app, kafka.topic_processed, settings),
        metadata=app.topic(
            kafka.topic_metadata,
            key_type=bytes,
            key_serializer="raw",
            value_type=ImageMetadata,
            partitions=kafka.partitions,
        ),
        dlq=_raw_bytes_topic(app, kafka.topic_dlq, settings),
    )
