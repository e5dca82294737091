#!/bin/bash
# clickhouse-db's schema init (docker compose): run by the ClickHouse image from
# /docker-entrypoint-initdb.d at every start (CLICKHOUSE_ALWAYS_RUN_INITDB_SCRIPTS=1, so an init
# that failed once is retried), and safe to run again at any time
# (`docker compose exec clickhouse-db bash /flowforge/clickhouse/init.sh`).
#
# 1. the versioned schema (infra/clickhouse/migrations/NNN_*.sql) not yet applied, recorded in
#    flowforge_schema_migrations exactly as `flowforge clickhouse migrate` records it, so the
#    sink's migrate-on-start finds it applied;
# 2. the row TTL (FLOWFORGE_CLICKHOUSE_TTL_DAYS);
# 3. FLOWFORGE_SINK_MODE=kafka-engine: the Kafka-engine table and view (kafka_engine.sql, with the
#    brokers, metadata topic and a consumer group filled in as `flowforge clickhouse
#    kafka-engine-sql` fills them); agent: kafka_engine_drop.sql, so only the sink writes rows.

# The image's entrypoint executes an initdb script that has its execute bit and *sources* one
# that has not (a zip download or a checkout with core.fileMode=false loses the bit). Sourced,
# this script's `set -euo pipefail`, variables and `exit` would run inside the entrypoint's
# shell: run it in a bash of its own instead, and stop the entrypoint if it fails (the container
# then exits and restarts, rather than serving without its schema).
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    bash "${BASH_SOURCE[0]}" || exit
    return 0
fi

set -euo pipefail

# The password: CLICKHOUSE_PASSWORD (set by infra/clickhouse/entrypoint.sh from the secret file)
# or, under `docker compose exec`, the secret file itself.
if [[ -z "${CLICKHOUSE_PASSWORD:-}" && -n "${CLICKHOUSE_PASSWORD_FILE:-}" ]]; then
    CLICKHOUSE_PASSWORD="$(cat "$CLICKHOUSE_PASSWORD_FILE")"
fi

dir="${FLOWFORGE_CLICKHOUSE_SQL_DIR:-/flowforge/clickhouse}"
db="${CLICKHOUSE_DB:?CLICKHOUSE_DB is required}"
mode="${FLOWFORGE_SINK_MODE:-agent}"
ttl_days="${FLOWFORGE_CLICKHOUSE_TTL_DAYS:-90}"

client=(clickhouse client --host 127.0.0.1 --user "${CLICKHOUSE_USER:?}"
    --password "${CLICKHOUSE_PASSWORD:?}" --multiquery)

case "$mode" in agent | kafka-engine) ;; *)
    echo "init: FLOWFORGE_SINK_MODE=$mode: expected agent or kafka-engine" >&2
    exit 2
    ;;
esac
case "$ttl_days" in '' | *[!0-9]*)
    echo "init: FLOWFORGE_CLICKHOUSE_TTL_DAYS=$ttl_days: expected whole days (0 keeps rows)" >&2
    exit 2
    ;;
esac
if [[ ! "$db" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    echo "init: CLICKHOUSE_DB=$db: expected a plain identifier" >&2
    exit 2
fi

"${client[@]}" --query "CREATE DATABASE IF NOT EXISTS $db"
client+=(--database "$db")
"${client[@]}" --query "CREATE TABLE IF NOT EXISTS flowforge_schema_migrations (version UInt32, \
name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
current=$("${client[@]}" --query "SELECT max(version) FROM flowforge_schema_migrations")

for file in "$dir"/migrations/[0-9][0-9][0-9]_*.sql; do
    name=$(basename "$file" .sql)
    version=$((10#${name%%_*}))
    if ((version <= current)); then
        continue
    fi
    "${client[@]}" <"$file"
    "${client[@]}" --query "INSERT INTO flowforge_schema_migrations (version, name) VALUES ($version, '$name')"
    echo "init: applied $name"
done

for table in images_metadata images_duplicates; do
    if ((ttl_days > 0)); then
        "${client[@]}" --query "ALTER TABLE $table MODIFY TTL toDateTime(ingested_at) + INTERVAL $ttl_days DAY"
    else
        "${client[@]}" --query "ALTER TABLE $table REMOVE TTL" 2>/dev/null || true
    fi
done

if [[ "$mode" == kafka-engine ]]; then
    brokers="${FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS:-kafka:29092}"
    topic="${FLOWFORGE_KAFKA_TOPIC_METADATA:-images.metadata}"
    group="${FLOWFORGE_WORKER_APP_ID:-flowforge}-clickhouse"
    for value in "$brokers" "$topic" "$group"; do
        if [[ ! "$value" =~ ^[A-Za-z0-9._:,-]+$ ]]; then
            echo "init: kafka-engine SQL: $value has characters SQL cannot hold" >&2
            exit 2
        fi
    done
    sed -e "s/\$kafka_brokers/$brokers/g" -e "s/\$topic/$topic/g" -e "s/\$group/$group/g" \
        "$dir/kafka_engine.sql" | "${client[@]}"
    echo "init: sink mode kafka-engine: ClickHouse consumes $topic from $brokers (group $group)"
else
    "${client[@]}" <"$dir/kafka_engine_drop.sql"
    echo "init: sink mode agent: the workers' sink agents write $db.images_metadata"
fi
