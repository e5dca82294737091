-- FlowForge schema 004: when FlowForge received each image (the envelope's ff-ingested-at).
-- Retention (the TTL, applied after the migrations) and the ingest-to-row latency count from it,
-- not from captured_at, which is the image's own time (a file's mtime, a camera's clock): a
-- backfill of old photos stays, and a clock in the future no longer gives a negative latency.
-- Rows written before this version take their processed_at. The rollup's minute and latency
-- follow ingested_at from now on (the view is replaced; minutes already rolled up stay).
ALTER TABLE images_metadata
    ADD COLUMN IF NOT EXISTS ingested_at DateTime64(3, 'UTC') DEFAULT processed_at AFTER captured_at;

DROP VIEW IF EXISTS images_per_minute_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS images_per_minute_mv TO images_per_minute AS
SELECT
    toStartOfMinute(ingested_at) AS minute,
    source_id,
    uniqExactState(image_id) AS images,
    uniqExactIfState(image_id, status = 'processed') AS processed,
    uniqExactIfState(image_id, status = 'skipped_dark') AS dark,
    uniqExactIfState(image_id, status = 'skipped_low_quality') AS low_quality,
    uniqExactIfState(image_id, status = 'rejected') AS rejected,
    avgStateIf(brightness, status != 'rejected') AS brightness_avg,
    minStateIf(brightness, status != 'rejected') AS brightness_min,
    maxStateIf(brightness, status != 'rejected') AS brightness_max,
    quantilesState(0.5, 0.99)(toFloat64(dateDiff('millisecond', ingested_at, inserted_at))) AS latency_ms
FROM images_metadata
GROUP BY minute, source_id;
