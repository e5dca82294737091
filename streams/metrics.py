"""The worker's Prometheus metrics (one registry per process, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_MS_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500)

IMAGES = Counter(
    "flowforge_worker_images",
    "Images given an outcome, by source and status (processed, skipped_*, rejected, duplicate).",
    ["source", "status"],
    registry=REGISTRY,
)
DLQ = Counter(
    "flowforge_worker_dlq",
    "Images sent to the dead-letter topic, by reason code.",
    ["reason"],
    registry=REGISTRY,
)
DECODE_MS = Histogram(
    "flowforge_worker_decode_ms",
    "Decode time per image (ms).",
    buckets=_MS_BUCKETS,
    registry=REGISTRY,
)
RESIZE_MS = Histogram(
    "flowforge_worker_resize_ms",
    "Resize + encode time per image (ms).",
    buckets=_MS_BUCKETS,
    registry=REGISTRY,
)
TOTAL_MS = Histogram(
    "flowforge_worker_processing_ms",
    "Processing time per image in the pool, decode to encoded output (ms).",
    buckets=_MS_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "flowforge_worker_in_flight", "Images being processed right now.", registry=REGISTRY
)
CHANGELOG_REPLAYED = Gauge(
    "flowforge_worker_table_changelog_replayed",
    "Changelog events a table applied from Kafka since start (recovery and standby).",
    ["table"],
    registry=REGISTRY,
)
OFFSET_GAPS = Counter(
    "flowforge_worker_offset_gaps",
    "images.raw offsets skipped before reaching the agent (should stay 0).",
    registry=REGISTRY,
)
LAG = Gauge(
    "flowforge_worker_lag",
    "Messages on assigned images.raw partitions not yet read.",
    registry=REGISTRY,
)
