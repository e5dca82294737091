"""The worker's Prometheus metrics (one registry per process, served at /metrics)."""

from __future__ import annotations

import logging
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

#: Distinct ``source`` label values one worker's metrics keep. Source ids come from untrusted
#: messages: past this many, images of new sources count under OTHER_SOURCES (ClickHouse and
#: `flowforge stats` keep every source).
SOURCE_LABELS = 1000
OTHER_SOURCES = "other"
_labelled: set[str] = set()
_labelled_lock = threading.Lock()
_folding = False  # set once the cap is reached (its warning is logged once)


def source_label(source: str) -> str:
    """The ``source`` label for an image of ``source``: itself, or OTHER_SOURCES at the cap."""
    global _folding
    if source in _labelled:
        return source
    with _labelled_lock:
        if len(_labelled) < SOURCE_LABELS:
            _labelled.add(source)
            return source
        first, _folding = not _folding, True
    if first:
        log.warning(
            "more than %d sources: images of new ones count under source=%r in /metrics",
            SOURCE_LABELS,
            OTHER_SOURCES,
        )
    return OTHER_SOURCES


def reset_source_labels() -> None:
    """Forget the labelled sources (tests)."""
    global _folding
    with _labelled_lock:
        _labelled.clear()
        _folding = False


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
RETRYING = Gauge(
    "flowforge_worker_retrying",
    "Outputs an agent is retrying after a failure (Kafka sends, dead letters, sink batches); "
    "0 when healthy.",
    ["agent"],
    registry=REGISTRY,
)
OFFSET_GAPS = Counter(
    "flowforge_worker_offset_gaps",
    "images.raw offsets skipped before reaching the agent (should stay 0).",
    registry=REGISTRY,
)
GROUP_JOIN_ERRORS = Counter(
    "flowforge_worker_group_join_errors",
    "Transient errors joining the consumer group (such as a SyncGroup UnknownError from a loaded "
    "broker), each followed by a new join.",
    registry=REGISTRY,
)
LAG = Gauge(
    "flowforge_worker_lag",
    "Messages on assigned images.raw partitions not yet read.",
    registry=REGISTRY,
)

# --- the sink (agent "sink") ---------------------------------------------------------------

SINK_ROWS = Counter(
    "flowforge_sink_rows",
    "Metadata rows by outcome: inserted (direct), spooled, drained (spool to ClickHouse), "
    "dead_lettered.",
    ["outcome"],
    registry=REGISTRY,
)
SINK_INSERT_SECONDS = Histogram(
    "flowforge_sink_insert_seconds",
    "Duration of one ClickHouse insert (successful or not).",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
SINK_BATCH_ROWS = Histogram(
    "flowforge_sink_batch_rows",
    "Rows per ClickHouse insert.",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000),
    registry=REGISTRY,
)
SINK_INSERT_FAILURES = Counter(
    "flowforge_sink_insert_failures",
    "ClickHouse inserts that failed, by kind (unavailable: retried; rejected: dead-lettered; "
    "unknown: an unclassified error, retried then treated as rejected).",
    ["kind"],
    registry=REGISTRY,
)
SPOOL_ROWS = Gauge(
    "flowforge_sink_spool_rows", "Rows waiting in the local spool.", registry=REGISTRY
)
SPOOL_BYTES = Gauge(
    "flowforge_sink_spool_bytes", "Bytes of rows waiting in the local spool.", registry=REGISTRY
)
SPOOL_OLDEST_AGE = Gauge(
    "flowforge_sink_spool_oldest_age_seconds",
    "Age of the oldest spooled batch (0 when the spool is empty).",
    registry=REGISTRY,
)
SINK_PAUSED = Gauge(
    "flowforge_sink_paused",
    "1 while the spool is at its bound and the sink has stopped consuming images.metadata.",
    registry=REGISTRY,
)
SINK_CLICKHOUSE_UP = Gauge(
    "flowforge_sink_clickhouse_up",
    "1 when the last ClickHouse insert succeeded, 0 while ClickHouse is failing.",
    registry=REGISTRY,
)

# --- the Kafka engine (FLOWFORGE_SINK_MODE=kafka-engine, on the worker owning the engine) -----

KAFKA_ENGINE_REFUSED = Gauge(
    "flowforge_kafka_engine_refused_records",
    "images.metadata records the Kafka engine refused (rows of kafka_engine_refused, FINAL).",
    registry=REGISTRY,
)
KAFKA_ENGINE_READ = Gauge(
    "flowforge_kafka_engine_messages_read",
    "images.metadata records the Kafka engine's consumer read since this worker started.",
    registry=REGISTRY,
)
KAFKA_ENGINE_UP = Gauge(
    "flowforge_kafka_engine_up",
    "1 while the Kafka engine table consumes images.metadata and its state can be read.",
    registry=REGISTRY,
)
