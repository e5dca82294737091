-- FlowForge's Kafka-engine alternative to the sink agent (FLOWFORGE_SINK_MODE=kafka-engine, docker
-- compose / ClickHouse server only: the embedded engine cannot run Kafka engine tables).
-- ClickHouse consumes images.metadata itself and a materialized view writes images_metadata;
-- a second view writes the duplicate records (status 'duplicate') to images_duplicates.
-- Placeholders ($kafka_brokers, $topic, $group) are filled by `flowforge clickhouse kafka-engine-sql`.
-- Apply after the migrations. Rows whose JSON does not parse go to the _error virtual column
-- (kafka_handle_error_mode = 'stream') and are skipped by the view instead of stopping the table.
CREATE TABLE IF NOT EXISTS images_metadata_queue
(
    image_id        String,
    source_type     String,
    source_id       String,
    captured_at     String,
    ingested_at     String,
    first_seen_at   String,
    processed_at    String,
    status          String,
    reason          String,
    width           UInt32,
    height          UInt32,
    out_width       UInt32,
    out_height      UInt32,
    bytes           UInt64,
    format          String,
    brightness      Float32,
    contrast        Float32,
    sharpness       Float32,
    processing_ms   Float32,
    kafka_partition Int32,
    kafka_offset    Int64,
    worker          String
)
ENGINE = Kafka
SETTINGS
    kafka_broker_list = '$kafka_brokers',
    kafka_topic_list = '$topic',
    kafka_group_name = '$group',
    kafka_format = 'JSONEachRow',
    kafka_num_consumers = 1,
    kafka_handle_error_mode = 'stream',
    input_format_skip_unknown_fields = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS images_metadata_from_kafka TO images_metadata AS
SELECT
    image_id,
    source_type,
    source_id,
    parseDateTime64BestEffort(captured_at, 3, 'UTC') AS captured_at,
    parseDateTime64BestEffort(if(ingested_at = '', processed_at, ingested_at), 3, 'UTC') AS ingested_at,
    parseDateTime64BestEffort(processed_at, 3, 'UTC') AS processed_at,
    status,
    reason,
    width,
    height,
    out_width,
    out_height,
    bytes,
    format,
    brightness,
    contrast,
    sharpness,
    processing_ms,
    kafka_partition,
    kafka_offset,
    worker
FROM images_metadata_queue
WHERE length(_error) = 0 AND status != 'duplicate';

CREATE MATERIALIZED VIEW IF NOT EXISTS images_duplicates_from_kafka TO images_duplicates AS
SELECT
    image_id,
    source_type,
    source_id,
    parseDateTime64BestEffort(captured_at, 3, 'UTC') AS captured_at,
    parseDateTime64BestEffort(ingested_at, 3, 'UTC') AS ingested_at,
    parseDateTime64BestEffortOrNull(first_seen_at, 3, 'UTC') AS first_seen_at,
    parseDateTime64BestEffort(processed_at, 3, 'UTC') AS processed_at,
    status,
    bytes,
    kafka_partition,
    kafka_offset,
    worker
FROM images_metadata_queue
WHERE length(_error) = 0 AND status = 'duplicate';
