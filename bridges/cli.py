"""`flowforge bridge ...`: the bridges' commands (added to the flowforge CLI in one line)."""

from __future__ import annotations

import click

from flowforge.settings import parse_port


def _web_port(value: int | None, default: int) -> int:
    return default if value is None else value


def _port(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_port(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(
    epilog="""\b
Examples:
  flowforge bridge mqtt                       images/raw and images/raw/<source> into images.raw
  flowforge bridge mqtt --web-port 6070       a second MQTT bridge on this machine
"""
)
def bridge() -> None:
    """The bridges: republish images from MQTT (and soon RTSP, directories) into Kafka."""


@bridge.command(
    "mqtt",
    epilog="""\b
Examples:
  flowforge bridge mqtt
  mosquitto_pub -q 1 -t images/raw/cam-01 -f photo.jpg   # one record, key cam-01
  curl -s 127.0.0.1:6067/metrics | grep flowforge_bridge
  FLOWFORGE_MQTT_HOST=broker FLOWFORGE_MQTT_USERNAME=bridge \\
    FLOWFORGE_MQTT_PASSWORD_FILE=/run/secrets/mqtt flowforge bridge mqtt
""",
)
@click.option(
    "--web-port",
    metavar="PORT",
    callback=_port,
    help="Port of /livez, /readyz, /metrics (default FLOWFORGE_BRIDGE_MQTT_WEB_PORT, 6067).",
)
@click.pass_context
def mqtt(ctx: click.Context, web_port: int | None) -> None:
    """Subscribe FLOWFORGE_MQTT_TOPIC and FLOWFORGE_MQTT_TOPIC/# (QoS 1, persistent session) and
    publish each image to FLOWFORGE_KAFKA_TOPIC_RAW, acknowledging it to the broker only after
    Kafka did. The source id is the topic suffix (FLOWFORGE_MQTT_DEFAULT_SOURCE for the bare
    topic); empty, over-limit or badly addressed images go to the DLQ with a reason.
    Stops cleanly on SIGTERM / Ctrl-C, finishing the images it accepted."""
    from bridges.lifecycle import run_bridge
    from bridges.mqtt import MqttBridge

    settings = ctx.find_root().obj.settings
    port = _web_port(web_port, settings.bridge.mqtt_web_port)
    code = run_bridge(MqttBridge(settings), bind=settings.bridge.web_bind, port=port)
    if code:
        raise SystemExit(code)
