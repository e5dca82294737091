#!/bin/sh
# mqtt-broker's entrypoint (docker compose): write the password file and the ACL's user names
# from the environment, then become mosquitto. Nothing secret is kept in the repository or the
# image. Paths can be moved for a test run (MOSQUITTO_CONF, MOSQUITTO_RUN_DIR, MOSQUITTO_ACL_TEMPLATE).
set -eu

: "${MQTT_BRIDGE_USERNAME:?MQTT_BRIDGE_USERNAME is required}"
: "${MQTT_BRIDGE_PASSWORD:?MQTT_BRIDGE_PASSWORD is required (set FLOWFORGE_MQTT_PASSWORD in .env)}"
: "${MQTT_PUBLISHER_USERNAME:?MQTT_PUBLISHER_USERNAME is required}"
: "${MQTT_PUBLISHER_PASSWORD:?MQTT_PUBLISHER_PASSWORD is required (set it in .env)}"

conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
run_dir="${MOSQUITTO_RUN_DIR:-/mosquitto/run}"
acl_template="${MOSQUITTO_ACL_TEMPLATE:-/mosquitto/config/acl.template}"

umask 077
mkdir -p "$run_dir"
rm -f "$run_dir/passwd" "$run_dir/acl"
touch "$run_dir/passwd"
mosquitto_passwd -b "$run_dir/passwd" "$MQTT_BRIDGE_USERNAME" "$MQTT_BRIDGE_PASSWORD"
mosquitto_passwd -b "$run_dir/passwd" "$MQTT_PUBLISHER_USERNAME" "$MQTT_PUBLISHER_PASSWORD"
sed -e "s/\${bridge_user}/$MQTT_BRIDGE_USERNAME/" \
    -e "s/\${publisher_user}/$MQTT_PUBLISHER_USERNAME/" "$acl_template" > "$run_dir/acl"
# mosquitto drops root privileges to its own user before it reads these files.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown -R mosquitto:mosquitto "$run_dir"
fi
unset MQTT_BRIDGE_PASSWORD MQTT_PUBLISHER_PASSWORD
exec mosquitto -c "$conf"
