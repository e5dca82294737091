#!/bin/bash
# clickhouse-db's entrypoint (docker compose): read the two passwords from their secret files
# into this process's environment, which the image's /entrypoint.sh, the server
# (users.d/grafana.xml's from_env) and the init scripts inherit, then run the image's own
# entrypoint. The container's configured environment (what `docker inspect` shows) holds only
# the file paths. Run with bash explicitly, so the file needs no execute bit.
set -euo pipefail

read_secret() { # NAME: NAME_FILE's content (trailing newline dropped) into NAME, exported
    local name="$1" file_var="$1_FILE"
    local file="${!file_var:-}"
    if [[ -n "$file" ]]; then
        if [[ ! -r "$file" ]]; then
            echo "entrypoint: $file_var=$file is not readable" >&2
            exit 2
        fi
        local value
        value="$(cat "$file")"
        export "$name=$value"
        unset "$file_var"
    fi
    if [[ -z "${!name:-}" ]]; then
        echo "entrypoint: $name (or ${name}_FILE) is required: set it in .env" >&2
        exit 2
    fi
}

read_secret CLICKHOUSE_PASSWORD
read_secret CLICKHOUSE_GRAFANA_PASSWORD
exec "${CLICKHOUSE_ENTRYPOINT:-/entrypoint.sh}" "$@"
