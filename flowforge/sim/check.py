"""`flowforge sim check`: open an RTSP URL with OpenCV, measure resolution, fps and brightness."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from flowforge.core.capture import open_capture as open_rtsp
from flowforge.core.errors import CaptureUnavailable
from flowforge.core.urls import redact_url
from flowforge.sim.errors import SimCheckFailed
from streams.processing.scores import compute_scores

log = logging.getLogger(__name__)

# Frames already buffered while opening arrive in a burst; they are read before measuring.
WARMUP_S = 0.5


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
    """An opened cv2.VideoCapture (FFmpeg backend, the RTSP bridge's options) or SimCheckFailed."""
    try:
        return open_rtsp(url, open_timeout_s=timeout_s, read_timeout_s=timeout_s)
    except CaptureUnavailable as exc:
        raise SimCheckFailed(str(exc), retriable=exc.retriable) from None


def mean_luma(frame: Any) -> float:
    """Brightness (mean luma, 0-255) of a BGR frame, scored as the worker scores an image."""
    return compute_scores(frame).brightness


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
