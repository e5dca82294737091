"""Decoding with OpenCV into 8-bit BGR, with the reduced (DCT-domain) JPEG fast path.

Decisions, pinned by the tests against the installed OpenCV:
- EXIF orientation: ``cv2.imdecode`` applies it (JPEG APP1, PNG eXIf, WebP EXIF, TIFF tag 274),
  also in the IMREAD_REDUCED_* modes, so decoded pixels are upright and width/height are after
  orientation. Our own JPEG EXIF reading serves only the fast path's choice of scale; if OpenCV
  disagrees, the decoded shape says so and the image is decoded again at full size.
- Alpha is dropped (IMREAD_COLOR keeps the stored colour of transparent pixels), not composited.
- 16-bit samples become 8-bit by dropping the low byte (IMREAD_COLOR: 65535 -> 255, 0 -> 0).
- Palette and grayscale images come out as 3-channel BGR; CMYK JPEGs are converted by libjpeg.
- GIF: the first frame, when this OpenCV build has its GIF decoder (added in 4.11, off by default
  there; present in the 5.0 wheels the tests ran on); otherwise ``unsupported``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final, cast

import cv2
import numpy as np

from streams.processing.errors import ImageRejected
from streams.processing.header import ImageHeader
from streams.processing.resizing import Image

REDUCTIONS: Final = (8, 4, 2)
_REDUCED_COLOR_FLAGS: Final = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
# A 1x1 GIF: if OpenCV cannot decode it, this build has no GIF decoder.
_TINY_GIF: Final = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """Upright 8-bit BGR pixels, possibly reduced, with the full-size upright dimensions."""

    pixels: Image
    width: int
    height: int
    reduction: int = 1


def choose_reduction(header: ImageHeader, min_width: int, min_height: int, min_area: int) -> int:
    """Largest JPEG reduction (8, 4, 2) keeping the upright image >= the given size, else 1."""
    if header.format != "jpeg":
        return 1
    width, height = header.oriented_size
    for factor in REDUCTIONS:
        reduced_width, reduced_height = width // factor, height // factor
        if (
            reduced_width >= min_width
            and reduced_height >= min_height
            and reduced_width * reduced_height >= min_area
        ):
            return factor
    return 1


def decode(data: bytes, header: ImageHeader, reduction: int = 1) -> DecodedImage:
    """Decode ``data`` to upright 8-bit BGR, at 1/``reduction`` scale for JPEG (2, 4 or 8).

    Raises ImageRejected (undecodable, unsupported).
    """
    if reduction == 1:
        pixels = _imdecode(data, header, cv2.IMREAD_COLOR)
        return DecodedImage(pixels, width=pixels.shape[1], height=pixels.shape[0])
    pixels = _imdecode(data, header, _REDUCED_COLOR_FLAGS[reduction])
    width, height = header.oriented_size
    expected = (math.ceil(height / reduction), math.ceil(width / reduction))
    if pixels.shape[:2] != expected:  # OpenCV oriented it otherwise than we read: play safe
        return decode(data, header)
    return DecodedImage(pixels, width=width, height=height, reduction=reduction)


@functools.cache
def opencv_decodes_gif() -> bool:
    """Whether this OpenCV build has a GIF decoder (probed once with a 1x1 GIF)."""
    return cv2.imdecode(np.frombuffer(_TINY_GIF, np.uint8), cv2.IMREAD_COLOR) is not None


def _imdecode(data: bytes, header: ImageHeader, flags: int) -> Image:
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise ImageRejected("undecodable", f"{header.format}: OpenCV raised {exc.err}") from exc
    if pixels is None:
        if header.format == "gif" and not opencv_decodes_gif():
            raise ImageRejected("unsupported", "this OpenCV build does not decode GIF")
        raise ImageRejected("undecodable", f"OpenCV could not decode this {header.format}")
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageRejected(
            "unsupported", f"{header.format} decoded to {pixels.dtype} {pixels.shape}"
        )
    return cast(Image, pixels)
