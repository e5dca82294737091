"""Resizing to the output geometry: stretch, letterbox (pad with black) or centre crop."""

from __future__ import annotations

from typing import Final, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from streams.processing.config import ResizePolicy

# Shrinking by this factor or more in either direction uses INTER_AREA (no aliasing); smaller
# steps, such as the last one after a reduced JPEG decode, and enlargements use INTER_LINEAR,
# which is faster and as good there.
AREA_SHRINK_FACTOR: Final = 2

Image = NDArray[np.uint8]


def interpolation_for(src_width: int, src_height: int, width: int, height: int) -> int:
    """OpenCV interpolation flag for scaling src_width x src_height to width x height."""
    if src_width >= AREA_SHRINK_FACTOR * width or src_height >= AREA_SHRINK_FACTOR * height:
        return int(cv2.INTER_AREA)
    return int(cv2.INTER_LINEAR)


def scale(image: Image, width: int, height: int) -> Image:
    """Scale ``image`` to exactly width x height (no aspect ratio kept)."""
    src_height, src_width = image.shape[:2]
    if (src_width, src_height) == (width, height):
        return image
    flag = interpolation_for(src_width, src_height, width, height)
    return cast(Image, cv2.resize(image, (width, height), interpolation=flag))


def resize(image: Image, width: int, height: int, policy: ResizePolicy) -> Image:
    """Return ``image`` (H x W x 3) as exactly width x height by ``policy``.

    stretch: scale to the target, distorting the aspect ratio if it differs. letterbox: fit
    inside the target keeping the aspect ratio, centred on black bands. crop: fill the target
    keeping the aspect ratio, cutting the overflow evenly from both sides.
    """
    src_height, src_width = image.shape[:2]
    if policy == "stretch":
        return scale(image, width, height)
    if policy == "letterbox":
        factor = min(width / src_width, height / src_height)
        fit_width = min(width, max(1, round(src_width * factor)))
        fit_height = min(height, max(1, round(src_height * factor)))
        canvas = np.zeros((height, width, *image.shape[2:]), dtype=np.uint8)
        left = (width - fit_width) // 2
        top = (height - fit_height) // 2
        canvas[top : top + fit_height, left : left + fit_width] = scale(
            image, fit_width, fit_height
        )
        return canvas
    # crop: cut the source region that fills the target, then scale only that region.
    factor = max(width / src_width, height / src_height)
    crop_width = min(src_width, max(1, round(width / factor)))
    crop_height = min(src_height, max(1, round(height / factor)))
    left = (src_width - crop_width) // 2
    top = (src_height - crop_height) // 2
    return scale(image[top : top + crop_height, left : left + crop_width], width, height)
