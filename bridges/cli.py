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
  FLOWFORGE_RTSP_URLS=rtsp://127.0.0.1:8554/cam1 flowforge bridge rtsp
"""
)
def bridge() -> None:
    """The bridges: republish images from MQTT and RTSP (and soon directories) into Kafka."""


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


@bridge.command(
    "rtsp",
    epilog="""\b
Examples:
  FLOWFORGE_RTSP_URLS=rtsp://127.0.0.1:8554/cam1,yard=rtsp://user:pw@10.0.0.7/live \\
    FLOWFORGE_RTSP_FPS=5 flowforge bridge rtsp
  FLOWFORGE_RTSP_URLS_FILE=cameras.txt flowforge bridge rtsp     # one [name=]URL a line
  curl -s 127.0.0.1:6068/v1/streams
  curl -s -X POST 127.0.0.1:6068/v1/streams -d '{"url": "rtsp://127.0.0.1:8554/cam2"}'
  curl -s -X POST 127.0.0.1:6068/v1/streams/cam2/reconnect
  curl -s -X DELETE 127.0.0.1:6068/v1/streams/cam2
""",
)
@click.option(
    "--web-port",
    metavar="PORT",
    callback=_port,
    help="Port of /livez, /readyz, /metrics, /v1/streams (default "
    "FLOWFORGE_BRIDGE_RTSP_WEB_PORT, 6068).",
)
@click.pass_context
def rtsp(ctx: click.Context, web_port: int | None) -> None:
    """Capture each stream of FLOWFORGE_RTSP_URLS (and FLOWFORGE_RTSP_URLS_FILE) in its own
    thread over TCP, sample it to FLOWFORGE_RTSP_FPS, JPEG-encode and publish each frame to
    FLOWFORGE_KAFKA_TOPIC_RAW, keyed by the stream's source id (NAME in NAME=URL, else the URL's
    path: rtsp://cam/live/1 -> live-1). A stream without frames for FLOWFORGE_RTSP_STALL_S is
    reconnected; failures back off up to FLOWFORGE_RTSP_BACKOFF_MAX_S. Streams are added,
    removed and reconnected at runtime through /v1/streams (bearer token
    FLOWFORGE_RTSP_API_TOKEN; required off loopback). Stops cleanly on SIGTERM / Ctrl-C."""
    from bridges.lifecycle import run_bridge
    from bridges.rtsp import RtspBridge

    settings = ctx.find_root().obj.settings
    port = _web_port(web_port, settings.bridge.rtsp_web_port)
    code = run_bridge(RtspBridge(settings), bind=settings.bridge.web_bind, port=port)
    if code:
        raise SystemExit(code)
