"""The quality filter: dark first, then low quality, with thresholds chosen on real photos."""

from __future__ import annotations

import re

import numpy as np
import pytest

from streams.processing import ProcessingConfig, process_image
from tests.support import images
from tests.support.images import REAL_PHOTOS, scene

CONFIG = ProcessingConfig()


@pytest.mark.parametrize("name", REAL_PHOTOS)
def test_real_photos_pass_the_default_thresholds(name: str) -> None:
    """Real photos (scikit-image's bundled set) are processed with the default thresholds."""
    outcome = process_image(images.real_photo(name), CONFIG)
    assert (outcome.status, outcome.reason) == ("processed", "")
    assert outcome.jpeg is not None


@pytest.mark.parametrize("name", REAL_PHOTOS)
def test_blurred_real_photos_are_low_quality(name: str) -> None:
    """The same photos blurred (sigma = width/160) are skipped as low quality for sharpness."""
    blurred = images.blur(images.real_photo_pixels(name))
    outcome = process_image(images.png(blurred), CONFIG)
    assert outcome.status == "skipped_low_quality"
    assert re.fullmatch(r"sharpness \d+\.\d < 15", outcome.reason)


def test_flat_grey_is_low_quality_on_both_counts() -> None:
    """A flat grey frame is low quality, and the reason names contrast and sharpness."""
    outcome = process_image(images.jpeg(np.full((720, 1280, 3), 128, np.uint8)), CONFIG)
    assert outcome.status == "skipped_low_quality"
    assert outcome.reason == "contrast 0.0 < 10, sharpness 0.0 < 15"


def test_low_contrast_alone_is_low_quality() -> None:
    """A sharp but faded scene (contrast under 10) is skipped for contrast only."""
    bgr = np.ascontiguousarray(scene(640, 360)).astype(np.float32)
    faded = np.clip(128 + (bgr - bgr.mean()) * 0.2, 0, 255).astype(np.uint8)
    outcome = process_image(images.png(faded), ProcessingConfig(min_sharpness=0))
    assert outcome.status == "skipped_low_quality"
    assert re.fullmatch(r"contrast \d\.\d < 10", outcome.reason)


def test_dark_frame_is_skipped_dark() -> None:
    """A dark frame is skipped as dark with its brightness in the reason."""
    dark = (np.ascontiguousarray(scene(1280, 720)) // 8).astype(np.uint8)
    outcome = process_image(images.jpeg(dark), CONFIG)
    assert outcome.status == "skipped_dark"
    assert re.fullmatch(r"brightness \d+\.\d < 40", outcome.reason)


def test_real_dark_photo_is_skipped_dark() -> None:
    """The real Hubble deep field photo (mean luma about 19) is skipped as dark."""
    outcome = process_image(images.real_photo("hubble_deep_field.jpg"), CONFIG)
    assert outcome.status == "skipped_dark"
    assert outcome.brightness == pytest.approx(19.2, abs=1.0)


def test_dark_is_checked_before_quality() -> None:
    """A black frame, also flat, is reported as dark rather than low quality."""
    outcome = process_image(images.png(np.zeros((360, 640, 3), np.uint8)), CONFIG)
    assert (outcome.status, outcome.reason) == ("skipped_dark", "brightness 0.0 < 40")


def test_skipped_images_have_no_output() -> None:
    """A skipped image carries its scores and source size but no JPEG and 0x0 output."""
    outcome = process_image(images.png(np.full((200, 300, 3), 10, np.uint8)), CONFIG)
    assert outcome.status == "skipped_dark"
    assert (outcome.jpeg, outcome.out_width, outcome.out_height, outcome.resize_ms) == (
        None,
        0,
        0,
        0.0,
    )
    assert (outcome.width, outcome.height, outcome.brightness) == (300, 200, 10.0)


def test_thresholds_come_from_the_config() -> None:
    """With all thresholds at zero, a flat grey frame is processed."""
    config = ProcessingConfig(dark_threshold=0, min_contrast=0, min_sharpness=0)
    outcome = process_image(images.png(np.full((360, 640, 3), 128, np.uint8)), config)
    assert (outcome.status, outcome.reason) == ("processed", "")


def test_processed_outcome_fields() -> None:
    """A processed image reports format, sizes, scores, a JPEG of the output size, and timings."""
    outcome = process_image(images.jpeg(np.ascontiguousarray(scene(1280, 720))), CONFIG)
    assert (outcome.status, outcome.format, outcome.width, outcome.height) == (
        "processed",
        "jpeg",
        1280,
        720,
    )
    assert outcome.jpeg is not None
    assert images.decode_jpeg(outcome.jpeg).shape == (360, 640, 3)
    assert (outcome.out_width, outcome.out_height) == (640, 360)
    assert 0 < outcome.decode_ms <= outcome.total_ms
    assert 0 <= outcome.resize_ms <= outcome.total_ms
