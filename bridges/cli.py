"""`flowforge bridge ...`: the bridges' commands (added to the flowforge CLI in one line)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from flowforge.core.settings import Settings, parse_glob_patterns, parse_port


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
  flowforge bridge mqtt --web-port 6070       a second MQTT bridge on this machine (its own
                                              client id and session, derived from the port)
  FLOWFORGE_RTSP_URLS=rtsp://127.0.0.1:8554/cam1 flowforge bridge rtsp
  flowforge bridge batch ~/photos             every image under ~/photos, once
"""
)
def bridge() -> None:
    """The bridges: republish images from MQTT, RTSP cameras and directories into Kafka."""


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
    """Subscribe FLOWFORGE_MQTT_TOPIC/# (QoS 1, persistent session; the one filter matches the
    bare topic too) and publish each image to FLOWFORGE_KAFKA_TOPIC_RAW, acknowledging it to
    the broker only after Kafka did. The source id is the topic suffix
    (FLOWFORGE_MQTT_DEFAULT_SOURCE for the bare topic); empty, over-limit or badly addressed
    images go to the DLQ with a reason. With FLOWFORGE_MQTT_RECEIVE_MAXIMUM images or
    FLOWFORGE_BRIDGE_IN_FLIGHT_BYTES of payload waiting for Kafka it stops reading MQTT (the
    broker keeps the rest in the session).
    Stops cleanly on SIGTERM / Ctrl-C, finishing the images it accepted."""
    from bridges.lifecycle import run_bridge
    from bridges.mqtt import MqttBridge

    settings = ctx.find_root().obj.settings
    port = _web_port(web_port, settings.bridge.mqtt_web_port)
    # The web port also tells two bridges on one machine apart (default_client_id).
    bridge_settings = dataclasses.replace(settings.bridge, mqtt_web_port=port)
    settings = dataclasses.replace(settings, bridge=bridge_settings)
    code = run_bridge(MqttBridge(settings), bind=settings.bridge.web_bind, port=port)
    if code:
        raise SystemExit(code)


def _patterns(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...] | None:
    if not value:
        return None
    try:
        return parse_glob_patterns(",".join(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@bridge.command(
    "batch",
    epilog="""\b
Exit codes:
  0  every matching file published, or already done (checkpoint); --watch stopped cleanly
  1  some files rejected: not images, empty or too large (to the DLQ), or outside the root,
     unreadable, changing while read (reported, not checkpointed: the next run retries them);
     or Kafka did not answer at start (nothing published)
  2  usage or settings error (bad DIR, a pattern with '..', a bad FLOWFORGE_* value)
  3  stopped (SIGTERM, Ctrl-C) before every file was handled: run it again to finish

\b
Examples:
  flowforge bridge batch ~/photos                    publish every image under ~/photos once
  flowforge bridge batch ~/photos                    again: publishes 0 (checkpoint)
  flowforge bridge batch /data/in --watch            keep publishing files as they arrive
  flowforge bridge batch shots --pattern '*.png' --no-recursive --source cam-07
  curl -s 127.0.0.1:6069/metrics | grep flowforge_bridge_files   # with --watch
""",
)
@click.argument(
    "directory",
    metavar="DIR",
    type=click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path),
)
@click.option(
    "--watch", is_flag=True, help="Keep scanning DIR and publish files once they settled."
)
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="GLOB",
    callback=_patterns,
    help="Files to publish (repeatable; default FLOWFORGE_BATCH_PATTERNS, common image types). "
    "Case-insensitive; matched against the name, or the relative path if it holds a '/'.",
)
@click.option(
    "--recursive/--no-recursive",
    default=None,
    help="Descend into subdirectories (default FLOWFORGE_BATCH_RECURSIVE, true).",
)
@click.option(
    "--source",
    "source_id",
    metavar="ID",
    help="Source id, the Kafka key (default FLOWFORGE_BATCH_SOURCE_ID, else DIR's name).",
)
@click.option(
    "--web-port",
    metavar="PORT",
    callback=_port,
    help="Port of /livez, /readyz, /metrics (default: FLOWFORGE_BRIDGE_BATCH_WEB_PORT, 6069, "
    "with --watch; any free port for a one-shot run).",
)
@click.pass_context
def batch(
    ctx: click.Context,
    directory: Path,
    watch: bool,
    patterns: tuple[str, ...] | None,
    recursive: bool | None,
    source_id: str | None,
    web_port: int | None,
) -> None:
    """Publish the image files under DIR to FLOWFORGE_KAFKA_TOPIC_RAW, each once: key and
    ff-source-id are the source id, the value is the file's bytes, ff-origin its path relative
    to DIR, ff-captured-at its mtime. A SQLite checkpoint under FLOWFORGE_HOME/batch/ records a
    file once Kafka acknowledged it, so a re-run publishes only new or changed files (and a
    killed run re-publishes at most the unacknowledged ones).

    Files that are not images (magic bytes), empty or over the topic limit go to the DLQ with
    a reason; symlinks leading outside DIR are not followed. All are reported and counted.
    One-shot (default): prints a summary line and exits; a progress bar on a terminal.
    --watch: scans every FLOWFORGE_BATCH_POLL_INTERVAL_S and publishes a file once its size and
    mtime held for FLOWFORGE_BATCH_SETTLE_S (so half-written files wait); stops on SIGTERM."""
    from bridges.batch import BatchBridge
    from bridges.lifecycle import run_bridge

    settings = ctx.find_root().obj.settings
    if source_id is not None:
        source_id = source_id.strip()
        if not source_id or len(source_id) > 128:
            raise click.BadParameter("expected 1-128 characters", param_hint="--source")
    if not watch:
        _kafka_answers(settings)
    default_port = settings.bridge.batch_web_port if watch else 0
    port = _web_port(web_port, default_port)
    runner = BatchBridge(
        settings,
        directory,
        watch=watch,
        patterns=patterns,
        recursive=recursive,
        source_id=source_id,
    )
    code = run_bridge(runner, bind=settings.bridge.web_bind, port=port)
    if runner.summary:
        tally = runner.tally
        matched = tally.published + tally.skipped + sum(tally.rejected.values()) + tally.unfinished
        nothing = ""
        if not matched:
            depth = "at any depth" if runner.recursive else "at its top level (--no-recursive)"
            nothing = f"; no file matches {','.join(runner.patterns)} {depth}"
        click.echo(f"batch {directory}: {runner.summary}{nothing}")
    code = code or runner.exit_code
    if code:
        raise SystemExit(code)


def _kafka_answers(settings: Settings) -> None:
    """A one-shot run starts only if Kafka answers one metadata round trip (it would otherwise
    wait for Kafka without end, saying little): else one line, exit 1, nothing published."""
    import asyncio
    import logging

    from flowforge.core.errors import FlowForgeError, ServiceUnhealthy
    from flowforge.core.kafka_admin import describe_cluster

    library = logging.getLogger("aiokafka")
    level = library.level
    library.setLevel(logging.CRITICAL)  # its connect errors would repeat what the line says
    try:
        asyncio.run(describe_cluster(settings.kafka, timeout_ms=10_000))
    except ServiceUnhealthy as exc:
        raise FlowForgeError(
            f"{exc}; nothing published: start it (`flowforge stack up`) or fix "
            "FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS, then run again (--watch waits for Kafka instead)"
        ) from exc
    finally:
        library.setLevel(level)


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
    from bridges.rtsp.bridge import RtspBridge

    settings = ctx.find_root().obj.settings
    port = _web_port(web_port, settings.bridge.rtsp_web_port)
    code = run_bridge(RtspBridge(settings), bind=settings.bridge.web_bind, port=port)
    if code:
        raise SystemExit(code)
