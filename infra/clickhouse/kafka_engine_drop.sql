-- FlowForge: undo the Kafka-engine alternative (FLOWFORGE_SINK_MODE=agent). Run by the ClickHouse
-- container's init script (infra/clickhouse/init.sh) in agent mode, so the views and the sink
-- agent never both write a table. The views go first: they read the queue table.
DROP VIEW IF EXISTS images_metadata_from_kafka;

DROP VIEW IF EXISTS images_duplicates_from_kafka;

DROP TABLE IF EXISTS images_metadata_queue;
