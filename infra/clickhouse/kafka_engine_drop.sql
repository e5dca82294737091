-- FlowForge: undo the Kafka-engine alternative (FLOWFORGE_SINK_MODE=agent), so its views and the
-- sink agent never both write images_metadata. Run by the ClickHouse container's init script
-- (infra/clickhouse/init.sh) and by the worker owning the embedded engine, in agent mode.
-- Placeholder: $queue_database (see kafka_engine.sql). The view reading the Kafka table goes
-- first (consumption stops), then what it fed. The refused records (kafka_engine_refused) stay.
DROP VIEW IF EXISTS $queue_database.images_metadata_check;

DROP VIEW IF EXISTS $queue_database.images_metadata_from_kafka;

DROP VIEW IF EXISTS $queue_database.images_duplicates_from_kafka;

DROP VIEW IF EXISTS $queue_database.kafka_engine_refused_from_kafka;

DROP TABLE IF EXISTS $queue_database.images_metadata_checked;

DROP TABLE IF EXISTS $queue_database.images_metadata_queue;
