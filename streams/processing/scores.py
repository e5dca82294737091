"""Luma scores: brightness, contrast and sharpness, measured at a fixed working size."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import cv2

from streams.processing.resizing import Image, scale

# Scores are measured on the image scaled (aspect ratio kept) to about this many pixels, so the
# same scene gives the same sharpness at 720p or 4K, and luma is computed on ~0.23 MP instead of
# the full resolution. 640x360 exactly for 16:9 sources. Smaller sources are enlarged, so a
# thumbnail reads as soft: it would look soft at the output size too.
WORKING_AREA: Final = 640 * 360


@dataclass(frozen=True, slots=True)
class Scores:
    """Mean luma (0-255), luma standard deviation, and variance of the Laplacian of luma."""

    brightness: float
    contrast: float
    sharpness: float


def working_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a width x height image scaled to about WORKING_AREA pixels."""
    factor = math.sqrt(WORKING_AREA / (width * height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def working_image(image: Image) -> Image:
    """``image`` scaled to its working size (INTER_AREA when shrinking a lot)."""
    height, width = image.shape[:2]
    return scale(image, *working_size(width, height))


def luma_scores(working: Image) -> Scores:
    """Scores of an image already at its working size (BGR or single-channel luma)."""
    luma = cv2.cvtColor(working, cv2.COLOR_BGR2GRAY) if working.ndim == 3 else working
    mean, deviation = cv2.meanStdDev(luma)
    # The 3x3 Laplacian of 8-bit luma is an integer in [-1020, 1020]: int16 holds it exactly, and
    # its variance from the exact sums (E[x^2] - E[x]^2, in double) equals meanStdDev's on
    # float32, at less than half the cost (bench/decode_limit.py).
    laplacian = cv2.Laplacian(luma, cv2.CV_16S)
    pixels = laplacian.size
    laplacian_mean = cv2.sumElems(laplacian)[0] / pixels
    sharpness = cv2.norm(laplacian, cv2.NORM_L2SQR) / pixels - laplacian_mean**2
    return Scores(
        brightness=float(mean[0, 0]),
        contrast=float(deviation[0, 0]),
        sharpness=max(0.0, float(sharpness)),
    )


def compute_scores(image: Image) -> Scores:
    """Brightness, contrast and sharpness of a BGR (or luma) image of any size."""
    return luma_scores(working_image(image))
