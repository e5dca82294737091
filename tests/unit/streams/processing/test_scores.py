"""Luma scores: definitions, and sharpness that does not depend on the source resolution."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streams.processing import WORKING_AREA, compute_scores
from streams.processing.scores import working_size
from tests.support import images
from tests.support.images import scene

# Measured: the synthetic scene at 1280x720 vs 2560x1440 differs by under 0.2%, the real
# retina photo at 1411x1411 vs half size by 9%; 15% leaves room without hiding a scale bug
# (scoring at native size would change sharpness about fourfold per halving).
RESOLUTION_TOLERANCE = 0.15


def test_flat_image_scores() -> None:
    """A flat grey image has brightness equal to its grey level, zero contrast and sharpness."""
    scores = compute_scores(np.full((360, 640, 3), 128, np.uint8))
    assert (scores.brightness, scores.contrast, scores.sharpness) == (128.0, 0.0, 0.0)


def test_brightness_is_mean_luma() -> None:
    """Brightness is the mean of BT.601 luma (0.299 R + 0.587 G + 0.114 B)."""
    image = np.zeros((360, 640, 3), np.uint8)
    image[:, :, 2] = 200  # pure red
    assert compute_scores(image).brightness == pytest.approx(0.299 * 200, abs=0.5)


def test_contrast_is_luma_standard_deviation() -> None:
    """Contrast is the standard deviation of luma: half black, half white gives 127.5."""
    image = np.zeros((360, 640, 3), np.uint8)
    image[:, 320:] = 255
    assert compute_scores(image).contrast == pytest.approx(127.5, abs=0.01)


def test_grayscale_input_scores_like_bgr() -> None:
    """A single-channel luma image scores the same as its three-channel version."""
    gray = np.asarray(cv2.cvtColor(scene(640, 360), cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    bgr = np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    assert compute_scores(gray) == compute_scores(bgr)


@pytest.mark.parametrize("name", ["astronaut.png", "retina.jpg"])
def test_sharpness_is_variance_of_the_laplacian(name: str) -> None:
    """Sharpness equals the variance of the float Laplacian of luma at the working size."""
    pixels = images.real_photo_pixels(name)
    size = working_size(pixels.shape[1], pixels.shape[0])
    working = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    luma = cv2.cvtColor(working, cv2.COLOR_BGR2GRAY)
    _, deviation = cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_32F))
    expected = float(deviation[0, 0]) ** 2
    assert compute_scores(working).sharpness == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (1280, 720, (640, 360)),
        (4000, 3000, (554, 416)),
        (1080, 1920, (360, 640)),
        (64, 36, (640, 360)),
    ],
)
def test_working_size_keeps_aspect_and_area(
    width: int, height: int, expected: tuple[int, int]
) -> None:
    """The working size keeps the aspect ratio at about WORKING_AREA pixels, at any source size."""
    assert working_size(width, height) == expected
    assert abs(expected[0] * expected[1] - WORKING_AREA) < WORKING_AREA * 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_sharpness_is_resolution_independent(seed: int) -> None:
    """The same scene at 1280x720 and 2560x1440 gives sharpness within 15%."""
    small = compute_scores(np.ascontiguousarray(scene(1280, 720, seed))).sharpness
    large = compute_scores(np.ascontiguousarray(scene(2560, 1440, seed))).sharpness
    assert large == pytest.approx(small, rel=RESOLUTION_TOLERANCE)


def test_real_photo_sharpness_is_resolution_independent() -> None:
    """A real photo (retina, 1411x1411) and its half-size version give sharpness within 15%."""
    full = images.real_photo_pixels("retina.jpg")
    size = (full.shape[1] // 2, full.shape[0] // 2)
    half = np.asarray(cv2.resize(full, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    assert compute_scores(half).sharpness == pytest.approx(
        compute_scores(full).sharpness, rel=RESOLUTION_TOLERANCE
    )


def test_blur_lowers_sharpness_not_brightness() -> None:
    """Blurring a scene cuts its sharpness at least tenfold and leaves brightness within 1."""
    sharp = np.ascontiguousarray(scene(1280, 720))
    sharp_scores = compute_scores(sharp)
    blurred_scores = compute_scores(images.blur(sharp))
    assert blurred_scores.sharpness * 10 < sharp_scores.sharpness
    assert blurred_scores.brightness == pytest.approx(sharp_scores.brightness, abs=1.0)
