#!/bin/sh
# mqtt-broker's entrypoint (docker compose): write the password file, the ACL's user names and
# the config from the environment and the secret files, give the data directory to the
# mosquitto user, then become mosquitto. Nothing secret is kept in the repository or the image.
# Paths can be moved for a test run (MOSQUITTO_CONF, MOSQUITTO_RUN_DIR, MOSQUITTO_ACL_TEMPLATE,
# MOSQUITTO_DATA_DIR).
set -eu

# A password comes from NAME_FILE (a compose secret) or, failing that, from NAME.
secret() {
    eval "file=\${$1_FILE:-}"
    if [ -n "$file" ]; then
        if [ ! -r "$file" ]; then
            echo "entrypoint: $1_FILE=$file is not readable" >&2
            exit 2
        fi
        # Command substitution drops the trailing newline of `echo pw > file`.
        value=$(cat "$file")
    else
        eval "value=\${$1:-}"
    fi
    if [ -z "$value" ]; then
        echo "entrypoint: $1 (or $1_FILE) is required: set it in .env" >&2
        exit 2
    fi
    printf '%s' "$value"
}

: "${MQTT_BRIDGE_USERNAME:?MQTT_BRIDGE_USERNAME is required}"
: "${MQTT_PUBLISHER_USERNAME:?MQTT_PUBLISHER_USERNAME is required}"
bridge_password=$(secret MQTT_BRIDGE_PASSWORD)
publisher_password=$(secret MQTT_PUBLISHER_PASSWORD)

conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
run_dir="${MOSQUITTO_RUN_DIR:-/mosquitto/run}"
acl_template="${MOSQUITTO_ACL_TEMPLATE:-/mosquitto/config/acl.template}"
data_dir="${MOSQUITTO_DATA_DIR:-/mosquitto/data}"
# The largest message Mosquitto accepts follows Kafka's limit (FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES).
size_limit="${MQTT_MESSAGE_SIZE_LIMIT:-16777216}"
case "$size_limit" in '' | *[!0-9]*)
    echo "entrypoint: MQTT_MESSAGE_SIZE_LIMIT=$size_limit: expected plain bytes, e.g. 16777216" >&2
    exit 2
    ;;
esac

umask 077
mkdir -p "$run_dir"
rm -f "$run_dir/passwd" "$run_dir/acl" "$run_dir/mosquitto.conf"
touch "$run_dir/passwd"
mosquitto_passwd -b "$run_dir/passwd" "$MQTT_BRIDGE_USERNAME" "$bridge_password"
mosquitto_passwd -b "$run_dir/passwd" "$MQTT_PUBLISHER_USERNAME" "$publisher_password"
sed -e "s/\${bridge_user}/$MQTT_BRIDGE_USERNAME/" \
    -e "s/\${publisher_user}/$MQTT_PUBLISHER_USERNAME/" "$acl_template" > "$run_dir/acl"
sed -e "s/^message_size_limit .*/message_size_limit $size_limit/" "$conf" > "$run_dir/mosquitto.conf"
grep -q "^message_size_limit $size_limit\$" "$run_dir/mosquitto.conf" || {
    echo "entrypoint: $conf has no message_size_limit line to set" >&2
    exit 2
}
# mosquitto drops root privileges to its own user before it reads these files and writes its
# persistence: the image's own entrypoint chowns /mosquitto for the same reason, which this one
# replaces (a bind-mounted data directory is otherwise root's, and every autosave fails).
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown -R mosquitto:mosquitto "$run_dir"
    if [ -d "$data_dir" ]; then
        chown -R mosquitto:mosquitto "$data_dir"
    fi
fi
unset MQTT_BRIDGE_PASSWORD MQTT_PUBLISHER_PASSWORD bridge_password publisher_password
exec mosquitto -c "$run_dir/mosquitto.conf"
