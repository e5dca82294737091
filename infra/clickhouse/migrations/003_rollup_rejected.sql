-- FlowForge schema 003: rejected images are rows too (status 'rejected', reason = the dead-letter
-- code), so the rollup counts them per minute, and brightness aggregates leave them out (a reject
-- has no brightness). The view is replaced; -If states merge with the plain states already stored.
ALTER TABLE images_per_minute
    ADD COLUMN IF NOT EXISTS rejected AggregateFunction(uniqExactIf, String, UInt8) AFTER low_quality;

DROP VIEW IF EXISTS images_per_minute_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS images_per_minute_mv TO images_per_minute AS
SELECT
    toStartOfMinute(captured_at) AS minute,
    source_id,
    uniqExactState(image_id) AS images,
    uniqExactIfState(image_id, status = 'processed') AS processed,
    uniqExactIfState(image_id, status = 'skipped_dark') AS dark,
    uniqExactIfState(image_id, status = 'skipped_low_quality') AS low_quality,
    uniqExactIfState(image_id, status = 'rejected') AS rejected,
    avgStateIf(brightness, status != 'rejected') AS brightness_avg,
    minStateIf(brightness, status != 'rejected') AS brightness_min,
    maxStateIf(brightness, status != 'rejected') AS brightness_max,
    quantilesState(0.5, 0.99)(toFloat64(dateDiff('millisecond', captured_at, inserted_at))) AS latency_ms
FROM images_metadata
GROUP BY minute, source_id;
