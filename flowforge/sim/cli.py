"""`flowforge sim`: the RTSP simulator, a test video writer and an RTSP stream check."""

from __future__ import annotations

import os
from pathlib import Path

import click

from flowforge.core.settings import Settings, parse_port, parse_size_wxh


class _Port(click.ParamType):
    name = "port"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        try:
            return parse_port(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Size(click.ParamType):
    name = "WxH"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_size_wxh(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _settings(ctx: click.Context) -> Settings:
    state = ctx.find_root().obj
    settings = getattr(state, "settings", None)
    return settings if isinstance(settings, Settings) else Settings.from_env({})


@click.group(
    epilog="""\b
Examples:
  flowforge sim rtsp                               /cam1../cam3 on rtsp://127.0.0.1:8554
  flowforge sim video demo.mp4 --duration 20
  flowforge sim check rtsp://127.0.0.1:8554/cam1
"""
)
def sim() -> None:
    """Simulated cameras for testing video ingest: an RTSP server, test videos, a checker."""


@sim.command(
    "rtsp",
    epilog="""\b
Examples:
  flowforge sim rtsp                               3 test patterns, RTSP 8554, API 9997
  flowforge sim rtsp --streams 5 --rtsp-port 18554 --api-port 19997
  flowforge sim rtsp --config sim.toml             streams from a file (see README)
  flowforge sim rtsp --print-config                the effective config as JSON, then exit
  curl -s 127.0.0.1:9997/v1/paths                  paths with clients and frames served
  curl -X POST 127.0.0.1:9997/v1/paths -d '{"name": "cam4", "size": "320x240", "fps": 5}'
  curl -X POST 127.0.0.1:9997/v1/paths/cam1/freeze (unfreeze, drop; DELETE /v1/paths/cam4)
""",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML or JSON file: bind, ports, [defaults], [[streams]] (over FLOWFORGE_SIM_*).",
)
@click.option("--streams", type=click.IntRange(0, 64), help="Serve /cam1../camN test patterns.")
@click.option("--bind", help="Address to listen on (off loopback needs FLOWFORGE_SIM_TOKEN).")
@click.option("--rtsp-port", type=_Port(), help="RTSP port (default FLOWFORGE_SIM_RTSP_PORT).")
@click.option("--api-port", type=_Port(), help="HTTP API port (default FLOWFORGE_SIM_API_PORT).")
@click.option("--print-config", is_flag=True, help="Print the effective config (no token), exit.")
@click.pass_context
def sim_rtsp(
    ctx: click.Context,
    config_file: Path | None,
    streams: int | None,
    bind: str | None,
    rtsp_port: int | None,
    api_port: int | None,
    print_config: bool,
) -> None:
    """Serve simulated cameras over RTSP (GStreamer), with an HTTP API and /metrics.

    Each stream has a mount /NAME with its own resolution, fps, bitrate, source (a moving test
    pattern or a looped video file) and a day/night brightness cycle. The server runs under
    FLOWFORGE_SIM_PYTHON (the system Python with python3-gi); this command becomes that process.
    """
    from flowforge.sim.launcher import build_config, check_ports, exec_server

    settings = _settings(ctx)
    config = build_config(
        settings,
        config_file=config_file,
        streams=streams,
        bind=bind,
        rtsp_port=rtsp_port,
        api_port=api_port,
    )
    if print_config:
        click.echo(config.to_json(with_token=False))
        return
    check_ports(config)
    exec_server(config, settings.sim.python)


@sim.command(
    "video",
    epilog="""\b
Examples:
  flowforge sim video demo.mp4
  flowforge sim video clip.mp4 --duration 5 --size 320x240 --fps 10
""",
)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--duration", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True, help="Seconds."
)
@click.option("--size", type=_Size(), default="640x360", show_default=True, help="WIDTHxHEIGHT.")
@click.option("--fps", type=click.IntRange(1, 120), default=15, show_default=True)
def sim_video(out: Path, duration: float, size: tuple[int, int], fps: int) -> None:
    """Write an H.264 MP4 test video (moving pattern) for a file-source stream."""
    from flowforge.sim.video import write_test_video

    write_test_video(out, duration_s=duration, size=size, fps=fps)
    click.echo(
        f"wrote {out} ({size[0]}x{size[1]}, {fps} fps, {duration:g} s, "
        f"{out.stat().st_size} bytes, H.264 MP4)"
    )


@sim.command(
    "check",
    epilog="""\b
Examples:
  flowforge sim check rtsp://127.0.0.1:8554/cam1
  flowforge sim check rtsp://user:pass@camera.local/stream1 --seconds 5
""",
)
@click.argument("url")
@click.option(
    "--seconds",
    type=click.FloatRange(0.5, 600),
    default=3.0,
    show_default=True,
    help="How long to count frames for the fps figure.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.5, 120),
    default=5.0,
    show_default=True,
    help="Seconds to wait to connect, open and for each frame.",
)
def sim_check(url: str, seconds: float, timeout: float) -> None:
    """Open an RTSP URL with OpenCV; print resolution, measured fps and first-frame brightness.

    Exits 1 with one line if the stream cannot be opened or read.
    """
    # FFmpeg and OpenCV print their own warnings to stderr; the error below says it in one line.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    from flowforge.sim.check import check_stream

    result = check_stream(url, seconds=seconds, timeout_s=timeout)
    for line in result.lines():
        click.echo(line)
