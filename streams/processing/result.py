"""ProcessedImage: the outcome of processing one image (processed or skipped)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flowforge.core.formats import ImageFormat

ProcessStatus = Literal["processed", "skipped_dark", "skipped_low_quality"]


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    """One image's outcome.

    ``reason`` is "" when processed, else a short text such as "brightness 12.3 < 40".
    ``width``/``height`` are the full-size source dimensions after EXIF orientation;
    ``out_width``/``out_height`` and ``jpeg`` are 0 and None when skipped. Scores are on luma
    (see the scores module). ``decode_ms`` times the decode, ``resize_ms`` the output resize (0 when
    skipped), ``total_ms`` the whole call including checks, scoring and JPEG encoding.
    ``fast_path_used`` says the JPEG was decoded at reduced scale.
    """

    status: ProcessStatus
    reason: str
    format: ImageFormat
    width: int
    height: int
    out_width: int
    out_height: int
    brightness: float
    contrast: float
    sharpness: float
    jpeg: bytes | None
    decode_ms: float
    resize_ms: float
    total_ms: float
    fast_path_used: bool
