-- FlowForge's Kafka-engine alternative to the sink agent (FLOWFORGE_SINK_MODE=kafka-engine):
-- ClickHouse consumes images.metadata itself and materialized views write images_metadata and,
-- for the duplicate records (status 'duplicate'), images_duplicates.
-- Applied by the ClickHouse container's init (infra/clickhouse/init.sh) on a server, and by the
-- worker owning the embedded engine at every start. Apply after the migrations.
-- Placeholders: $kafka_brokers, $topic, $group; $database (where images_metadata is) and
-- $queue_database (where the Kafka table and its views are: $database on a server; on the
-- embedded engine a Memory database, recreated at every start, see flowforge/core/kafka_engine.py).
--
-- No record is skipped silently: one that is not JSON of the right types (the engine's
-- kafka_handle_error_mode = 'stream' puts it in _error / _raw_message), lacks a field, has a time
-- that does not parse or an unknown status becomes a row of kafka_engine_refused, with why and
-- the raw message, as the sink agent would dead-letter it (`bad_metadata`).
--
-- Delivery: the engine commits a block's offsets after its views' inserts; killed in between,
-- it reads the block again, and ReplacingMergeTree on image_id collapses the copy under FINAL.

-- Every column Nullable, so a missing field is told apart from a zero or an empty string.
CREATE TABLE IF NOT EXISTS $queue_database.images_metadata_queue
(
    image_id        Nullable(String),
    source_type     Nullable(String),
    source_id       Nullable(String),
    captured_at     Nullable(String),
    ingested_at     Nullable(String),
    first_seen_at   Nullable(String),
    processed_at    Nullable(String),
    status          Nullable(String),
    reason          Nullable(String),
    width           Nullable(UInt32),
    height          Nullable(UInt32),
    out_width       Nullable(UInt32),
    out_height      Nullable(UInt32),
    bytes           Nullable(UInt64),
    format          Nullable(String),
    brightness      Nullable(Float32),
    contrast        Nullable(Float32),
    sharpness       Nullable(Float32),
    processing_ms   Nullable(Float32),
    kafka_partition Nullable(Int32),
    kafka_offset    Nullable(Int64),
    worker          Nullable(String)
)
ENGINE = Kafka
SETTINGS
    kafka_broker_list = '$kafka_brokers',
    kafka_topic_list = '$topic',
    kafka_group_name = '$group',
    kafka_format = 'JSONEachRow',
    kafka_num_consumers = 1,
    kafka_flush_interval_ms = 500,
    kafka_handle_error_mode = 'stream',
    input_format_skip_unknown_fields = 1;

-- Refused records (kept when the mode is switched back to agent): ReplacingMergeTree on the
-- record's position, so one re-read after a crash counts once under FINAL.
CREATE TABLE IF NOT EXISTS $database.kafka_engine_refused
(
    refused_at        DateTime64(3, 'UTC') DEFAULT now64(3),
    message_topic     String,
    message_partition UInt64,
    message_offset    UInt64,
    message_key       String,
    error             String,
    raw_message       String
)
ENGINE = ReplacingMergeTree
ORDER BY (message_topic, message_partition, message_offset);

-- Each record checked once: `problem` is empty for a good record, else why it is refused.
CREATE TABLE IF NOT EXISTS $queue_database.images_metadata_checked
(
    image_id        Nullable(String),
    source_type     Nullable(String),
    source_id       Nullable(String),
    captured_at     Nullable(String),
    ingested_at     Nullable(String),
    first_seen_at   Nullable(String),
    processed_at    Nullable(String),
    status          Nullable(String),
    reason          Nullable(String),
    width           Nullable(UInt32),
    height          Nullable(UInt32),
    out_width       Nullable(UInt32),
    out_height      Nullable(UInt32),
    bytes           Nullable(UInt64),
    format          Nullable(String),
    brightness      Nullable(Float32),
    contrast        Nullable(Float32),
    sharpness       Nullable(Float32),
    processing_ms   Nullable(Float32),
    kafka_partition Nullable(Int32),
    kafka_offset    Nullable(Int64),
    worker          Nullable(String),
    captured_time     Nullable(DateTime64(3, 'UTC')),
    ingested_time     Nullable(DateTime64(3, 'UTC')),
    first_seen_time   Nullable(DateTime64(3, 'UTC')),
    processed_time    Nullable(DateTime64(3, 'UTC')),
    problem           String,
    message_topic     String,
    message_partition UInt64,
    message_offset    UInt64,
    message_key       String,
    raw_message       String
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS $queue_database.images_metadata_from_kafka
TO $database.images_metadata AS
SELECT
    assumeNotNull(image_id) AS image_id,
    assumeNotNull(source_type) AS source_type,
    assumeNotNull(source_id) AS source_id,
    assumeNotNull(captured_time) AS captured_at,
    assumeNotNull(ingested_time) AS ingested_at,
    assumeNotNull(processed_time) AS processed_at,
    assumeNotNull(status) AS status,
    assumeNotNull(reason) AS reason,
    assumeNotNull(width) AS width,
    assumeNotNull(height) AS height,
    assumeNotNull(out_width) AS out_width,
    assumeNotNull(out_height) AS out_height,
    assumeNotNull(bytes) AS bytes,
    assumeNotNull(format) AS format,
    assumeNotNull(brightness) AS brightness,
    assumeNotNull(contrast) AS contrast,
    assumeNotNull(sharpness) AS sharpness,
    assumeNotNull(processing_ms) AS processing_ms,
    assumeNotNull(kafka_partition) AS kafka_partition,
    assumeNotNull(kafka_offset) AS kafka_offset,
    assumeNotNull(worker) AS worker
FROM $queue_database.images_metadata_checked
WHERE problem = '' AND status != 'duplicate';

CREATE MATERIALIZED VIEW IF NOT EXISTS $queue_database.images_duplicates_from_kafka
TO $database.images_duplicates AS
SELECT
    assumeNotNull(image_id) AS image_id,
    assumeNotNull(source_type) AS source_type,
    assumeNotNull(source_id) AS source_id,
    assumeNotNull(captured_time) AS captured_at,
    assumeNotNull(ingested_time) AS ingested_at,
    first_seen_time AS first_seen_at,
    assumeNotNull(processed_time) AS processed_at,
    assumeNotNull(status) AS status,
    assumeNotNull(bytes) AS bytes,
    assumeNotNull(kafka_partition) AS kafka_partition,
    assumeNotNull(kafka_offset) AS kafka_offset,
    assumeNotNull(worker) AS worker
FROM $queue_database.images_metadata_checked
WHERE problem = '' AND status = 'duplicate';

CREATE MATERIALIZED VIEW IF NOT EXISTS $queue_database.kafka_engine_refused_from_kafka
TO $database.kafka_engine_refused AS
SELECT message_topic, message_partition, message_offset, message_key, problem AS error, raw_message
FROM $queue_database.images_metadata_checked
WHERE problem != '';

-- Last: the engine starts consuming once a view reads its table, and the views above must
-- be there to take the first block.
CREATE MATERIALIZED VIEW IF NOT EXISTS $queue_database.images_metadata_check
TO $queue_database.images_metadata_checked AS
-- An outcome record carries the image's figures; a duplicate record (status 'duplicate') does not.
WITH ifNull(status, '') != 'duplicate' AS outcome
SELECT
    image_id,
    source_type,
    source_id,
    captured_at,
    ingested_at,
    first_seen_at,
    processed_at,
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
    worker,
    parseDateTime64BestEffortOrNull(captured_at, 3, 'UTC') AS captured_time,
    -- A record from a worker older than the ingest time: received about when processed.
    parseDateTime64BestEffortOrNull(ifNull(ingested_at, processed_at), 3, 'UTC') AS ingested_time,
    parseDateTime64BestEffortOrNull(first_seen_at, 3, 'UTC') AS first_seen_time,
    parseDateTime64BestEffortOrNull(processed_at, 3, 'UTC') AS processed_time,
    multiIf(
        length(_error) > 0, concat('not a metadata record: ', trimRight(_error)),
        image_id IS NULL OR image_id = '', 'field image_id is missing',
        source_type IS NULL, 'field source_type is missing',
        source_id IS NULL, 'field source_id is missing',
        captured_at IS NULL, 'field captured_at is missing',
        processed_at IS NULL, 'field processed_at is missing',
        status IS NULL, 'field status is missing',
        reason IS NULL AND outcome, 'field reason is missing',
        width IS NULL AND outcome, 'field width is missing',
        height IS NULL AND outcome, 'field height is missing',
        out_width IS NULL AND outcome, 'field out_width is missing',
        out_height IS NULL AND outcome, 'field out_height is missing',
        bytes IS NULL, 'field bytes is missing',
        format IS NULL AND outcome, 'field format is missing',
        brightness IS NULL AND outcome, 'field brightness is missing',
        contrast IS NULL AND outcome, 'field contrast is missing',
        sharpness IS NULL AND outcome, 'field sharpness is missing',
        processing_ms IS NULL AND outcome, 'field processing_ms is missing',
        kafka_partition IS NULL, 'field kafka_partition is missing',
        kafka_offset IS NULL, 'field kafka_offset is missing',
        worker IS NULL, 'field worker is missing',
        captured_time IS NULL, 'field captured_at must be an ISO 8601 time',
        ingested_time IS NULL, 'field ingested_at must be an ISO 8601 time',
        processed_time IS NULL, 'field processed_at must be an ISO 8601 time',
        first_seen_at IS NOT NULL AND first_seen_time IS NULL,
            'field first_seen_at must be an ISO 8601 time or null',
        status NOT IN ('processed', 'skipped_dark', 'skipped_low_quality', 'rejected', 'duplicate'),
            concat('status ''', status, ''' is not one of processed, skipped_dark, ',
                'skipped_low_quality, rejected, duplicate'),
        ''
    ) AS problem,
    _topic AS message_topic,
    _partition AS message_partition,
    _offset AS message_offset,
    _key AS message_key,
    if(length(_raw_message) > 0, _raw_message, formatRowNoNewline('JSONEachRow',
        image_id, source_type, source_id, captured_at, ingested_at, first_seen_at, processed_at,
        status, reason,
        width, height, out_width, out_height, bytes, format, brightness, contrast, sharpness,
        processing_ms, kafka_partition, kafka_offset, worker)) AS raw_message
FROM $queue_database.images_metadata_queue;
