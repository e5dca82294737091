#!/bin/sh
# kafka-init (docker compose, one shot): create FlowForge's four topics with the partitions,
# replication, retention and size limit of the FLOWFORGE_KAFKA_* settings, as `flowforge stack up`
# does for the local stack (flowforge/core/kafka_admin.py). Existing topics are left as they are
# (changing the partitions of a keyed topic would move keys). Runs in the Apache Kafka image;
# KAFKA_TOPICS_CMD points elsewhere for a test run.
set -eu

topics_cmd="${KAFKA_TOPICS_CMD:-/opt/kafka/bin/kafka-topics.sh}"
bootstrap="${FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS:?FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS is required}"
partitions="${FLOWFORGE_KAFKA_PARTITIONS:-6}"
replication="${FLOWFORGE_KAFKA_REPLICATION_FACTOR:-1}"
retention_hours="${FLOWFORGE_KAFKA_RETENTION_HOURS:-168}"
max_bytes="${FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES:-16777216}"

for pair in "FLOWFORGE_KAFKA_PARTITIONS=$partitions" "FLOWFORGE_KAFKA_REPLICATION_FACTOR=$replication" \
    "FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES=$max_bytes"; do
    case "${pair#*=}" in
        '' | *[!0-9]*)
            echo "create-topics: $pair: expected a whole number (sizes in plain bytes, e.g. 16777216)" >&2
            exit 2
            ;;
    esac
done
case "$retention_hours" in
    -1) retention_ms=-1 ;;
    '' | *[!0-9]*)
        echo "create-topics: FLOWFORGE_KAFKA_RETENTION_HOURS=$retention_hours: expected hours or -1" >&2
        exit 2
        ;;
    *) retention_ms=$((retention_hours * 3600000)) ;;
esac

for topic in "${FLOWFORGE_KAFKA_TOPIC_RAW:-images.raw}" \
    "${FLOWFORGE_KAFKA_TOPIC_PROCESSED:-images.processed}" \
    "${FLOWFORGE_KAFKA_TOPIC_METADATA:-images.metadata}" \
    "${FLOWFORGE_KAFKA_TOPIC_DLQ:-images.dlq}"; do
    "$topics_cmd" --bootstrap-server "$bootstrap" --create --if-not-exists --topic "$topic" \
        --partitions "$partitions" --replication-factor "$replication" \
        --config "max.message.bytes=$max_bytes" --config "retention.ms=$retention_ms"
    echo "create-topics: $topic ready ($partitions partitions)"
done
