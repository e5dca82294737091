"""Opening an RTSP stream with OpenCV's FFmpeg backend: over TCP, a short probe, bounded waits.

The RTSP bridge and ``flowforge sim check`` open streams the same way, through this module.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import cv2

from flowforge.core.errors import CaptureUnavailable
from flowforge.core.urls import redact_url, strip_credentials

# FFmpeg options for OpenCV's capture: interleaved TCP (a dropped connection is seen at once)
# and a short stream probe, so a stream opens in well under a second instead of 2-3 s.
CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;200000|probesize;4096"
OPTIONS_VARIABLE = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# The registered ports of RTSP and of RTSP over TLS, for a URL that names none.
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}

_env_lock = threading.Lock()


def use_capture_options() -> None:
    """Make OpenCV's FFmpeg backend open streams with CAPTURE_OPTIONS (TCP, short probe).

    FFmpeg reads them from the environment when a capture opens; they are set once for the
    process and left set, so opens of different streams never wait for each other (a lock
    around set-open-restore would serialise them behind the slowest open).
    """
    with _env_lock:
        if os.environ.get(OPTIONS_VARIABLE) != CAPTURE_OPTIONS:
            os.environ[OPTIONS_VARIABLE] = CAPTURE_OPTIONS


def open_capture(url: str, *, open_timeout_s: float, read_timeout_s: float) -> Any:
    """An opened cv2.VideoCapture on the rtsp:// ``url``, or CaptureUnavailable with a reason
    that never shows the URL's credentials.

    The server's port is tried first, so a camera that is off fails within ``open_timeout_s``
    with the connection error instead of FFmpeg's generic one.
    """
    # Host and port from the URL without its user-info: a password holding '/', '#' or '?'
    # would otherwise be parsed as the host (and its text could reach an error message).
    parts = urlsplit(strip_credentials(url))
    shown = redact_url(url)
    if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
        raise CaptureUnavailable(f"{shown}: expected an rtsp:// URL with a host", retriable=False)
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise CaptureUnavailable(f"bad port in {parts.netloc!r}", retriable=False) from None
    try:
        with socket.create_connection((host, port), timeout=open_timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CaptureUnavailable(f"cannot connect to {host}:{port} ({reason})") from None
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(read_timeout_s * 1000),
    ]
    use_capture_options()
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        raise CaptureUnavailable(
            f"{shown}: the server answers but no H.264 stream could be opened (no such "
            f"path, no frames within {open_timeout_s:g}s, or a codec OpenCV cannot read)"
        )
    return capture
