"""The bridges' Prometheus metrics (one registry per process, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_MS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)

RECEIVED = Counter(
    "flowforge_bridge_received",
    "Images received from the source.",
    ["bridge"],
    registry=REGISTRY,
)
PUBLISHED = Counter(
    "flowforge_bridge_published",
    "Images acknowledged by Kafka on the image topic.",
    ["bridge"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "flowforge_bridge_rejected",
    "Images rejected (sent to the dead-letter topic, never to the image topic), by reason.",
    ["bridge", "reason"],
    registry=REGISTRY,
)
DROPPED = Counter(
    "flowforge_bridge_dropped",
    "Images dropped without a dead letter (e.g. queue_full), by reason.",
    ["bridge", "reason"],
    registry=REGISTRY,
)
IN_FLIGHT_BYTES = Gauge(
    "flowforge_bridge_in_flight_bytes",
    "Payload bytes handed to the Kafka producer and not yet acknowledged.",
    registry=REGISTRY,
)
PUBLISH_MS = Histogram(
    "flowforge_bridge_publish_latency_ms",
    "Time from handing a record to the producer to Kafka's acknowledgement (ms).",
    buckets=_MS_BUCKETS,
    registry=REGISTRY,
)
CONNECTED = Gauge(
    "flowforge_bridge_source_connected",
    "1 while the bridge is connected to its source (MQTT broker).",
    ["bridge"],
    registry=REGISTRY,
)
RECONNECTS = Counter(
    "flowforge_bridge_reconnects",
    "Connections to the source after the first one.",
    ["bridge"],
    registry=REGISTRY,
)
PUBLISH_RETRIES = Counter(
    "flowforge_bridge_publish_retries",
    "Records handed to Kafka again after a retriable failure.",
    ["bridge"],
    registry=REGISTRY,
)
HELD_BYTES = Gauge(
    "flowforge_bridge_held_bytes",
    "Payload bytes received from the source and not yet acknowledged by Kafka (MQTT bridge).",
    ["bridge"],
    registry=REGISTRY,
)
HELD_BACK = Gauge(
    "flowforge_bridge_source_held_back",
    "1 while the source's library thread waits for room (the MQTT bridge stops reading MQTT).",
    ["bridge"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "flowforge_bridge_queue_depth",
    "Messages handed over by the source's library thread, not yet taken by the event loop.",
    ["bridge"],
    registry=REGISTRY,
)
FILES_SEEN = Counter(
    "flowforge_bridge_files_seen",
    "Files matched by the batch bridge's scans (each version of a file once).",
    ["bridge"],
    registry=REGISTRY,
)
FILES_SKIPPED = Counter(
    "flowforge_bridge_files_skipped",
    "Files skipped because the checkpoint holds them as done (same size and mtime, or content).",
    ["bridge"],
    registry=REGISTRY,
)
FILES_REJECTED = Counter(
    "flowforge_bridge_files_rejected",
    "Files not published to the image topic, by reason (dead-lettered or refused locally).",
    ["bridge", "reason"],
    registry=REGISTRY,
)
PUBLISHED_BYTES = Counter(
    "flowforge_bridge_published_bytes",
    "Payload bytes acknowledged by Kafka on the image topic.",
    ["bridge"],
    registry=REGISTRY,
)

# The RTSP bridge, per stream (label ``source`` = the source id, never the URL).
RTSP_CAPTURED = Counter(
    "flowforge_bridge_rtsp_frames_captured",
    "Frames read from the stream (every frame is decoded, sampled or not).",
    ["source"],
    registry=REGISTRY,
)
RTSP_PUBLISHED = Counter(
    "flowforge_bridge_rtsp_frames_published",
    "Sampled frames acknowledged by Kafka.",
    ["source"],
    registry=REGISTRY,
)
RTSP_DROPPED = Counter(
    "flowforge_bridge_rtsp_frames_dropped",
    "Frames not published: fps_cap (beyond the target fps), queue_full (replaced by a newer "
    "frame before Kafka took it), too_old (past FLOWFORGE_RTSP_MAX_FRAME_AGE_S).",
    ["source", "reason"],
    registry=REGISTRY,
)
RTSP_STATE = Gauge(
    "flowforge_bridge_rtsp_state",
    "1 for the stream's current state (connecting, streaming, stalled, backoff, stopped).",
    ["source", "state"],
    registry=REGISTRY,
)
RTSP_RECONNECTS = Counter(
    "flowforge_bridge_rtsp_reconnects",
    "Connection attempts to the stream after the first (stalls, drops, failures, requests).",
    ["source"],
    registry=REGISTRY,
)
RTSP_FRAME_AGE = Gauge(
    "flowforge_bridge_rtsp_frame_age_seconds",
    "Seconds since the stream's newest frame (-1 before the first).",
    ["source"],
    registry=REGISTRY,
)
