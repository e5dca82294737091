-- FlowForge schema 001: one row per image, columns = the images.metadata record fields.
-- Applied idempotently by `flowforge clickhouse migrate` (and the ClickHouse container's init).
--
-- Engine: ReplacingMergeTree ordered by (source_id, image_id). A redelivered or replayed image keeps
-- its image id (and source), so its rows collapse at merge time and `FINAL` shows each image once;
-- the version column processed_at keeps the newest outcome. Batches are also inserted with a
-- deterministic insert_deduplication_token, and non_replicated_deduplication_window makes the engine
-- drop an exactly repeated batch (a sink retrying after a timeout) before it is ever stored.
CREATE TABLE IF NOT EXISTS images_metadata
(
    image_id        String,
    source_type     LowCardinality(String),
    source_id       LowCardinality(String),
    captured_at     DateTime64(3, 'UTC'),
    processed_at    DateTime64(3, 'UTC'),
    status          LowCardinality(String),
    reason          String,
    width           UInt32,
    height          UInt32,
    out_width       UInt32,
    out_height      UInt32,
    bytes           UInt64,
    format          LowCardinality(String),
    brightness      Float32,
    contrast        Float32,
    sharpness       Float32,
    processing_ms   Float32,
    kafka_partition Int32,
    kafka_offset    Int64,
    worker          LowCardinality(String),
    -- When the row reached ClickHouse: ingest-to-row latency = inserted_at - captured_at.
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(processed_at)
PARTITION BY toYYYYMM(captured_at)
ORDER BY (source_id, image_id)
SETTINGS non_replicated_deduplication_window = 1000;
