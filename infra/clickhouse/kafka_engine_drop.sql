-- FlowForge: undo the Kafka-engine alternative (FLOWFORGE_SINK_MODE=agent). Run by the ClickHouse
-- container's init script (infra/clickhouse/init.sh) in agent mode, so the view and the sink
-- agent never both write images_metadata. The view goes first: it reads the queue table.
DROP VIEW IF EXISTS images_metadata_from_kafka;

DROP TABLE IF EXISTS images_metadata_queue;
