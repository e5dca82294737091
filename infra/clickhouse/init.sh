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
# 3. FLOWFORGE_SINK_MODE=kafka-engine: the Kafka-engine tables and views (kafka_engine.sql, with
#    the brokers, metadata topic, a consumer group and the database filled in as `flowforge
#    clickhouse kafka-engine-sql` fills them); agent: kafka_engine_drop.sql, so only the sink
#    writes rows.
#
# It speaks ClickHouse's HTTP interface (FLOWFORGE_CLICKHOUSE_URL, default
# http://127.0.0.1:8123, where the image's entrypoint runs its init server) through GNU wget,
# which the image has (its entrypoint waits for that server with it): one statement per request,
# split as `flowforge clickhouse migrate` splits the files; the server's error ends the script.

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

url="${FLOWFORGE_CLICKHOUSE_URL:-http://127.0.0.1:8123}"
url="${url%/}"
user="${CLICKHOUSE_USER:?CLICKHOUSE_USER is required}"
password="${CLICKHOUSE_PASSWORD:?CLICKHOUSE_PASSWORD (or CLICKHOUSE_PASSWORD_FILE) is required}"

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
if [[ ! "$url" =~ ^https?://[^/?#[:space:]]+$ ]]; then
    echo "init: FLOWFORGE_CLICKHOUSE_URL=$url: expected http://HOST:PORT" >&2
    exit 2
fi
if [[ "$user$password" == *[[:cntrl:]]* ]]; then
    echo "init: CLICKHOUSE_USER and CLICKHOUSE_PASSWORD must not hold control characters" >&2
    exit 2
fi

# The credentials go to wget in a file of its own, not on its command line (which ps shows).
wgetrc="$(mktemp)"
trap 'rm -f "$wgetrc"' EXIT
chmod 600 "$wgetrc"
printf 'header = X-ClickHouse-User: %s\nheader = X-ClickHouse-Key: %s\n' "$user" "$password" >"$wgetrc"
database="" # the database statements run in, once it exists

sql() { # sql STATEMENT: run it; its result on stdout, the server's error on stderr (status 1)
    local target="$url/" out status=0 why
    if [[ -n "$database" ]]; then target+="?database=$database"; fi
    # --tries=1: a statement is never sent twice; --content-on-error: ClickHouse's error text.
    out=$(WGETRC="$wgetrc" wget -q -O - --tries=1 --content-on-error --post-data="$1" \
        "$target" 2>&1) || status=$?
    if ((status == 0)); then
        printf '%s' "$out"
        return 0
    fi
    case "$status" in # wget's exit statuses
    4) why="no answer (network failure)" ;;
    6) why="authentication failed for CLICKHOUSE_USER=$user (wrong CLICKHOUSE_PASSWORD?)" ;;
    8) why="${out:-an error status without a message}" ;;
    *) why="wget exit status $status${out:+: $out}" ;;
    esac
    echo "init: ClickHouse at $url refused a statement: $why" >&2
    echo "init: the statement was: $1" >&2
    return 1
}

statement_end=';[[:space:]]*$'
run_sql() { # run_sql < FILE: each statement of an SQL text: `--` lines dropped, a `;` ending a line ends one
    local statement="" line
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" =~ ^[[:space:]]*-- ]]; then continue; fi
        if [[ "$line" =~ $statement_end ]]; then
            statement+="${line%;*}"
            if [[ "$statement" =~ [^[:space:]] ]]; then sql "$statement" >/dev/null; fi
            statement=""
        else
            statement+="$line"$'\n'
        fi
    done
    if [[ "$statement" =~ [^[:space:]] ]]; then sql "$statement" >/dev/null; fi
}

sql "CREATE DATABASE IF NOT EXISTS $db" >/dev/null
database="$db"
sql "CREATE TABLE IF NOT EXISTS flowforge_schema_migrations (version UInt32, \
name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version" >/dev/null
current=$(sql "SELECT max(version) FROM flowforge_schema_migrations")

for file in "$dir"/migrations/[0-9][0-9][0-9]_*.sql; do
    name=$(basename "$file" .sql)
    version=$((10#${name%%_*}))
    if ((version <= current)); then
        continue
    fi
    run_sql <"$file"
    sql "INSERT INTO flowforge_schema_migrations (version, name) VALUES ($version, '$name')" >/dev/null
    echo "init: applied $name"
done

for table in images_metadata images_duplicates; do
    if ((ttl_days > 0)); then
        sql "ALTER TABLE $table MODIFY TTL toDateTime(ingested_at) + INTERVAL $ttl_days DAY" >/dev/null
    else
        sql "ALTER TABLE $table REMOVE TTL" >/dev/null 2>&1 || true
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
        -e "s/\$queue_database/$db/g" -e "s/\$database/$db/g" \
        "$dir/kafka_engine.sql" | run_sql
    echo "init: sink mode kafka-engine: ClickHouse consumes $topic from $brokers (group $group)"
else
    sed -e "s/\$queue_database/$db/g" "$dir/kafka_engine_drop.sql" | run_sql
    echo "init: sink mode agent: the workers' sink agents write $db.images_metadata"
fi
