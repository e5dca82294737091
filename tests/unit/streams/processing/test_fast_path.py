"""The JPEG fast path (DCT-domain reduced decode) agrees with the full decode."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from streams.processing import (
    WORKING_AREA,
    ImageHeader,
    ProcessingConfig,
    choose_reduction,
    decode,
    process_image,
    read_header,
    resize,
)
from tests.support import images
from tests.support.images import scene

FAST = ProcessingConfig()
PLAIN = ProcessingConfig(fast_path=False)
# Measured: brightness and contrast differ by under 0.3; sharpness by under 1% when the reduced
# image is already the working size (1280x720 at 1/2, 2560x1440 at 1/4), and about 18% lower
# when a 1.5x INTER_LINEAR step follows (1920x1080 at 1/2). Blurred images score 10-50x lower,
# so 25% does not move an image across the sharpness threshold by itself.
BRIGHTNESS_TOLERANCE = 1.0
CONTRAST_TOLERANCE = 1.0
SHARPNESS_TOLERANCE = 0.25
OUTPUT_PIXEL_TOLERANCE = 4.0  # mean absolute difference of the two output JPEGs


def _jpeg_scene(width: int, height: int, seed: int = 0) -> bytes:
    return images.jpeg(np.ascontiguousarray(scene(width, height, seed)), 85)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _jpeg_scene(1280, 720),
        lambda: _jpeg_scene(1920, 1080),
        lambda: _jpeg_scene(1920, 1080, seed=1),
        lambda: images.real_photo("retina.jpg"),
    ],
    ids=["1280x720", "1920x1080", "1920x1080-seed1", "real-retina-1411"],
)
def test_fast_path_agrees_with_plain_path(make: Callable[[], bytes]) -> None:
    """Fast and plain paths agree: same sizes, brightness and contrast within 1, sharpness 25%."""
    data = make()
    fast = process_image(data, FAST)
    plain = process_image(data, PLAIN)
    assert (fast.fast_path_used, plain.fast_path_used) == (True, False)
    assert (fast.status, fast.width, fast.height, fast.out_width, fast.out_height) == (
        plain.status,
        plain.width,
        plain.height,
        plain.out_width,
        plain.out_height,
    )
    assert fast.brightness == pytest.approx(plain.brightness, abs=BRIGHTNESS_TOLERANCE)
    assert fast.contrast == pytest.approx(plain.contrast, abs=CONTRAST_TOLERANCE)
    assert fast.sharpness == pytest.approx(plain.sharpness, rel=SHARPNESS_TOLERANCE)
    assert fast.jpeg is not None
    assert plain.jpeg is not None
    fast_out = images.decode_jpeg(fast.jpeg).astype(np.int16)
    plain_out = images.decode_jpeg(plain.jpeg).astype(np.int16)
    assert float(np.mean(np.abs(fast_out - plain_out))) < OUTPUT_PIXEL_TOLERANCE


@pytest.mark.parametrize(
    ("width", "height", "orientation", "expected"),
    [
        (1280, 720, 1, 2),
        (1920, 1080, 1, 2),
        (2560, 1440, 1, 4),
        (5120, 2880, 1, 8),
        (1279, 720, 1, 1),
        (1280, 719, 1, 1),
        (640, 360, 1, 1),
        (1920, 1080, 6, 1),  # upright 1080x1920: 540 wide at 1/2, narrower than 640
        (2560, 1440, 6, 2),  # upright 1440x2560: 720x1280 at 1/2, 360 wide at 1/4
        (2560, 1440, 8, 2),
        (2560, 1440, 3, 4),
    ],
)
def test_reduction_choice(width: int, height: int, orientation: int, expected: int) -> None:
    """The largest reduction keeps the upright image at least the output and working size."""
    header = ImageHeader("jpeg", width, height, orientation)
    assert choose_reduction(header, 640, 360, WORKING_AREA) == expected


def test_reduction_respects_a_larger_output() -> None:
    """A 1280x720 output from a 2560x1440 JPEG reduces only by 2."""
    assert choose_reduction(ImageHeader("jpeg", 2560, 1440), 1280, 720, WORKING_AREA) == 2


def test_reduction_is_jpeg_only() -> None:
    """Other formats are always decoded at full size."""
    assert choose_reduction(ImageHeader("png", 5120, 2880), 640, 360, WORKING_AREA) == 1


def test_fast_path_with_exif_rotation() -> None:
    """A 2560x1440 JPEG with orientation 6 uses the fast path and reports 1440x2560, turned."""
    data = images.with_exif_orientation(_jpeg_scene(2560, 1440), 6)
    fast = process_image(data, FAST)
    plain = process_image(data, PLAIN)
    assert fast.fast_path_used
    assert (fast.width, fast.height) == (plain.width, plain.height) == (1440, 2560)
    assert fast.brightness == pytest.approx(plain.brightness, abs=BRIGHTNESS_TOLERANCE)
    assert fast.sharpness == pytest.approx(plain.sharpness, rel=SHARPNESS_TOLERANCE)
    assert fast.jpeg is not None
    upright = np.ascontiguousarray(np.rot90(scene(2560, 1440), -1))
    expected = resize(upright, 640, 360, "stretch").astype(np.int16)
    output = images.decode_jpeg(fast.jpeg).astype(np.int16)
    assert float(np.mean(np.abs(output - expected))) < OUTPUT_PIXEL_TOLERANCE


def test_fast_path_not_used_when_rotation_makes_it_too_narrow() -> None:
    """A 1920x1080 JPEG turned upright by orientation 6 (1080 wide) is decoded at full size."""
    data = images.with_exif_orientation(_jpeg_scene(1920, 1080), 6)
    outcome = process_image(data, FAST)
    assert not outcome.fast_path_used
    assert (outcome.width, outcome.height) == (1080, 1920)


def test_fast_path_off_by_config() -> None:
    """fast_path=False decodes a large JPEG at full size."""
    assert not process_image(_jpeg_scene(1920, 1080), PLAIN).fast_path_used


def test_reduced_decode_falls_back_when_orientation_disagrees() -> None:
    """If the reduced image's shape contradicts our EXIF reading, the image is decoded in full."""
    data = _jpeg_scene(1280, 720)
    wrong = dataclasses.replace(read_header(data), orientation=6)
    decoded = decode(data, wrong, reduction=2)
    assert (decoded.reduction, decoded.width, decoded.height) == (1, 1280, 720)
    assert decoded.pixels.shape == (720, 1280, 3)
