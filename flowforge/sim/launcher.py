"""`flowforge sim rtsp`: settings + config file -> SimConfig, port checks, exec the server."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket
from pathlib import Path

import flowforge
from flowforge.core.settings import Settings
from flowforge.sim.config import SimConfig, StreamConfig, default_streams, load_file, validate
from flowforge.sim.errors import SimConfigError, SimPortBusy, SimUnavailable
from flowforge.stack.process import port_holder

log = logging.getLogger(__name__)

SERVER_MODULE = "flowforge.sim.server"


def stream_defaults(settings: Settings) -> StreamConfig:
    """The parameters a stream gets unless its file table or API body says otherwise."""
    sim = settings.sim
    width, height = sim.size
    return StreamConfig(
        name="default",
        width=width,
        height=height,
        fps=sim.fps,
        bitrate_kbps=sim.bitrate_kbps,
        encoder=sim.encoder,
        day_night_period_s=sim.day_night_period_s,
    )


def build_config(
    settings: Settings,
    *,
    config_file: Path | None = None,
    streams: int | None = None,
    bind: str | None = None,
    rtsp_port: int | None = None,
    api_port: int | None = None,
) -> SimConfig:
    """Settings, then the config file (if any), then command-line options, validated."""
    sim = settings.sim
    defaults = stream_defaults(settings)
    config = SimConfig(
        bind=sim.bind,
        rtsp_port=sim.rtsp_port,
        api_port=sim.api_port,
        token=sim.token.reveal(),
        log_level=settings.log_level,
        streams=default_streams(sim.streams, defaults),
    )
    path = config_file or (Path(sim.config) if sim.config else None)
    if path is not None:
        config = load_file(path, base=config, stream_defaults=defaults)
    if streams is not None:
        config = dataclasses.replace(config, streams=default_streams(streams, defaults))
    if bind is not None:
        config = dataclasses.replace(config, bind=bind)
    if rtsp_port is not None:
        config = dataclasses.replace(config, rtsp_port=rtsp_port)
    if api_port is not None:
        config = dataclasses.replace(config, api_port=api_port)
    validate(config)
    return config


def check_port(host: str, port: int, what: str, option: str) -> None:
    """Raise SimPortBusy (naming the holder) if ``host:port`` cannot be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                holder = port_holder(port)
                who = f" by {holder.describe()}" if holder else ""
                raise SimPortBusy(
                    f"{what} port {port} on {host} is in use{who}; stop it or pass {option}"
                ) from exc
            raise SimConfigError(f"cannot listen on {host}:{port} ({exc.strerror})") from exc


def check_ports(config: SimConfig) -> None:
    check_port(config.bind, config.rtsp_port, "RTSP", "--rtsp-port")
    check_port(config.bind, config.api_port, "API", "--api-port")


def server_argv(python: str) -> list[str]:
    return [python, "-m", SERVER_MODULE]


def server_env(base: dict[str, str]) -> dict[str, str]:
    """The environment for the server: FlowForge's source on PYTHONPATH, nothing else added."""
    source_root = str(Path(flowforge.__file__).resolve().parent.parent)
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, base.get("PYTHONPATH")) if p)
    return env


def exec_server(config: SimConfig, python: str) -> None:
    """Replace this process with the server under ``python``; the config goes in on stdin.

    stdin keeps the API token out of the command line and the environment.
    """
    if not Path(python).is_file() or not os.access(python, os.X_OK):
        raise SimUnavailable(
            f"FLOWFORGE_SIM_PYTHON={python} is not an executable; point it at a Python that "
            "has python3-gi (Debian: /usr/bin/python3)"
        )
    data = config.to_json().encode()
    read_end, write_end = os.pipe()
    if len(data) > 60_000:  # a pipe buffer holds 64 KiB; nobody reads until after exec
        raise SimConfigError(f"simulator config too large ({len(data)} bytes); use fewer streams")
    os.write(write_end, data)
    os.close(write_end)
    os.dup2(read_end, 0)
    os.close(read_end)
    log.debug("exec %s", " ".join(server_argv(python)))
    os.execve(python, server_argv(python), server_env(dict(os.environ)))  # noqa: S606
