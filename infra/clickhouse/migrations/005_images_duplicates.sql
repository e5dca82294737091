-- FlowForge schema 005: duplicate deliveries, one row each. An image seen again within the
-- worker's dedup window gets no second images_metadata row (its outcome stands); the worker sends
-- a `duplicate` record instead, which the sink (or the Kafka engine's view) writes here.
--
-- Engine: ReplacingMergeTree ordered by (source_id, image_id, ingested_at). The ingest time is
-- the delivery's own (its envelope's ff-ingested-at): Kafka redelivering the same message keeps
-- it, so the redelivery collapses into one row (FINAL), while a re-send is a new row. Batches
-- carry the sink's insert_deduplication_token, as in images_metadata. The row TTL (on
-- ingested_at) is set after the migrations, as for images_metadata.
CREATE TABLE IF NOT EXISTS images_duplicates
(
    image_id        String,
    source_type     LowCardinality(String),
    source_id       LowCardinality(String),
    captured_at     DateTime64(3, 'UTC'),
    ingested_at     DateTime64(3, 'UTC'),
    -- When the worker first finished the image; NULL while it was still being processed.
    first_seen_at   Nullable(DateTime64(3, 'UTC')),
    processed_at    DateTime64(3, 'UTC'),
    status          LowCardinality(String),
    bytes           UInt64,
    kafka_partition Int32,
    kafka_offset    Int64,
    worker          LowCardinality(String),
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(processed_at)
PARTITION BY toYYYYMM(ingested_at)
ORDER BY (source_id, image_id, ingested_at)
SETTINGS non_replicated_deduplication_window = 1000;

-- Re-sends: the duplicates that are deliveries of their own. A duplicate with the ingest time of
-- its image's row is the image's first message delivered again (say, after a worker crash, before
-- the dedup cache had it), not a re-send: it is left out. `flowforge stats` and the dashboard
-- count this view.
CREATE VIEW IF NOT EXISTS images_resent AS
SELECT *
FROM images_duplicates FINAL
WHERE (image_id, ingested_at) NOT IN (
    SELECT image_id, ingested_at
    FROM images_metadata
    WHERE image_id IN (SELECT image_id FROM images_duplicates)
);
