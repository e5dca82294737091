"""`flowforge sim check`: open an RTSP URL with OpenCV, measure resolution, fps and brightness."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cv2

from flowforge.core.urls import redact_url
from flowforge.sim.errors import SimCheckFailed

log = logging.getLogger(__name__)

# FFmpeg options for OpenCV's capture: interleaved TCP (a dropped connection is seen at once)
# and a short stream probe, so a stream opens in well under a second instead of 2-3 s.
CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;200000|probesize;4096"
# Frames already buffered while opening arrive in a burst; they are read before measuring.
WARMUP_S = 0.5

_env_lock = threading.Lock()


@dataclass(frozen=True)
class CheckResult:
    """What `flowforge sim check` measured on one stream."""

    url: str
    width: int
    height: int
    fps: float
    frames: int
    seconds: float
    brightness: float
    open_s: float

    def lines(self) -> list[str]:
        return [
            self.url,
            f"resolution {self.width}x{self.height}",
            f"fps {self.fps:.1f} (measured over {self.seconds:.1f} s, {self.frames} frames)",
            f"first frame brightness {self.brightness:.1f} (mean luma 0-255)",
            f"opened in {self.open_s:.2f} s",
        ]


def open_capture(url: str, *, timeout_s: float = 5.0) -> Any:
    """An opened cv2.VideoCapture (FFmpeg backend, CAPTURE_OPTIONS) or SimCheckFailed."""
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
        raise SimCheckFailed(f"{shown}: expected an rtsp:// URL with a host", retriable=False)
    port = parts.port or 554
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SimCheckFailed(f"cannot connect to {parts.hostname}:{port} ({reason})") from exc
    timeout_ms = int(timeout_s * 1000)
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        timeout_ms,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        timeout_ms,
    ]
    with _env_lock:
        previous = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = CAPTURE_OPTIONS
        try:
            capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            if previous is None:
                del os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"]
            else:
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = previous
    if not capture.isOpened():
        raise SimCheckFailed(
            f"{shown}: the server answers but no H.264 stream could be opened "
            "(no such path, or a codec OpenCV cannot read)"
        )
    return capture


def mean_luma(frame: Any) -> float:
    """Mean brightness (0-255) of a BGR frame."""
    return float(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).mean())


def check_stream(url: str, *, seconds: float = 3.0, timeout_s: float = 5.0) -> CheckResult:
    """Open ``url``, read its first frame, then count frames for ``seconds`` (after a warm-up)."""
    began = time.monotonic()
    capture = open_capture(url, timeout_s=timeout_s)
    try:
        ok, frame = capture.read()
        if not ok:
            raise SimCheckFailed(f"{redact_url(url)}: opened, but no frame within {timeout_s:g} s")
        opened = time.monotonic() - began
        height, width = frame.shape[:2]
        brightness = mean_luma(frame)
        warm_until = time.monotonic() + WARMUP_S
        while time.monotonic() < warm_until:
            if not capture.read()[0]:
                raise SimCheckFailed(f"{redact_url(url)}: the stream stopped after its first frame")
        frames = 0
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            if not capture.read()[0]:
                raise SimCheckFailed(
                    f"{redact_url(url)}: the stream stopped after {frames} frames ({elapsed:.1f} s)"
                )
            frames += 1
        elapsed = time.monotonic() - start
    finally:
        capture.release()
    log.debug("checked %s: %d frames in %.2f s", redact_url(url), frames, elapsed)
    return CheckResult(
        url=redact_url(url),
        width=int(width),
        height=int(height),
        fps=frames / elapsed,
        frames=frames,
        seconds=elapsed,
        brightness=brightness,
        open_s=opened,
    )
