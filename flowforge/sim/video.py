"""`flowforge sim video`: an H.264 MP4 test video (moving pattern), written by ffmpeg."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from flowforge.sim.errors import SimError, SimUnavailable

log = logging.getLogger(__name__)


def write_test_video(
    out: Path, *, duration_s: float, size: tuple[int, int], fps: int, ffmpeg: str = "ffmpeg"
) -> Path:
    """Write ``out`` (H.264, yuv420p, MP4 with the index first) from ffmpeg's testsrc2."""
    program = shutil.which(ffmpeg)
    if program is None:
        raise SimUnavailable("ffmpeg is not installed; install the Debian package ffmpeg")
    width, height = size
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        program,
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={width}x{height}:rate={fps}:duration={duration_s:g}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        str(fps),
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        str(out),
    ]
    log.debug("running %s", " ".join(argv))
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SimError(f"ffmpeg could not write {out}: {detail}")
    return out
