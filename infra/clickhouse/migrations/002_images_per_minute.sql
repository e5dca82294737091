-- FlowForge schema 002: per-minute rollup per source, fed by a materialized view; dashboards read it.
-- Counts are distinct image ids (uniqExact states), so a replayed image is not counted twice and the
-- rollup agrees with `SELECT count() FROM images_metadata FINAL`.
CREATE TABLE IF NOT EXISTS images_per_minute
(
    minute          DateTime('UTC'),
    source_id       LowCardinality(String),
    images          AggregateFunction(uniqExact, String),
    processed       AggregateFunction(uniqExactIf, String, UInt8),
    dark            AggregateFunction(uniqExactIf, String, UInt8),
    low_quality     AggregateFunction(uniqExactIf, String, UInt8),
    brightness_avg  AggregateFunction(avg, Float32),
    brightness_min  AggregateFunction(min, Float32),
    brightness_max  AggregateFunction(max, Float32),
    latency_ms      AggregateFunction(quantiles(0.5, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (source_id, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS images_per_minute_mv TO images_per_minute AS
SELECT
    toStartOfMinute(captured_at) AS minute,
    source_id,
    uniqExactState(image_id) AS images,
    uniqExactIfState(image_id, status = 'processed') AS processed,
    uniqExactIfState(image_id, status = 'skipped_dark') AS dark,
    uniqExactIfState(image_id, status = 'skipped_low_quality') AS low_quality,
    avgState(brightness) AS brightness_avg,
    minState(brightness) AS brightness_min,
    maxState(brightness) AS brightness_max,
    quantilesState(0.5, 0.99)(toFloat64(dateDiff('millisecond', captured_at, inserted_at))) AS latency_ms
FROM images_metadata
GROUP BY minute, source_id;
