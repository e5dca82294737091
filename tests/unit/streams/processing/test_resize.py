"""Output geometry: stretch, letterbox and crop give exactly the configured size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streams.processing import ProcessingConfig, ResizePolicy, process_image, resize
from streams.processing.resizing import interpolation_for
from tests.support import images
from tests.support.images import scene

POLICIES: list[ResizePolicy] = ["stretch", "letterbox", "crop"]
RED, BLUE, GREY = (0, 0, 255), (255, 0, 0), (128, 128, 128)


def _banded(width: int = 1200, height: int = 900) -> np.ndarray:
    """A 4:3 grey image with a red band on top and a blue band at the bottom, 100 rows each."""
    image = np.full((height, width, 3), GREY, np.uint8)
    image[:100] = RED
    image[-100:] = BLUE
    return image


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    ("src_width", "src_height"),
    [(1200, 900), (1920, 1080), (1080, 1920), (640, 360), (100, 80), (5000, 7), (3, 2000)],
)
@pytest.mark.parametrize(("width", "height"), [(640, 360), (320, 320), (1, 1)])
def test_every_policy_gives_the_exact_size(
    policy: ResizePolicy, src_width: int, src_height: int, width: int, height: int
) -> None:
    """Every policy returns exactly width x height x 3 for any source shape, extreme ones too."""
    source = np.full((src_height, src_width, 3), 77, np.uint8)
    assert resize(source, width, height, policy).shape == (height, width, 3)


def test_stretch_keeps_all_content() -> None:
    """Stretch maps the whole source onto the target: the 100/900 red band becomes 40/360 rows."""
    out = resize(_banded(), 640, 360, "stretch")
    assert np.all(out[:39] == RED)
    assert np.all(out[-39:] == BLUE)
    assert np.all(out[41:-41] == GREY)


def test_letterbox_keeps_aspect_ratio_with_black_bands() -> None:
    """Letterbox fits a 4:3 source as 480x360 centred between two 80-pixel black bands."""
    out = resize(_banded(), 640, 360, "letterbox")
    assert np.all(out[:, :80] == 0)
    assert np.all(out[:, -80:] == 0)
    picture = out[:, 80:-80]
    assert picture.shape == (360, 480, 3)
    assert np.all(picture[:39] == RED)
    assert np.all(picture[-39:] == BLUE)
    assert np.all(picture[41:-41] == GREY)


def test_letterbox_pads_top_and_bottom_for_wide_sources() -> None:
    """A 3:1 source letterboxed into 640x360 is 640x213 between black bands of 73 and 74 rows."""
    out = resize(np.full((400, 1200, 3), 200, np.uint8), 640, 360, "letterbox")
    assert np.all(out[:73] == 0)
    assert np.all(out[73:286] == 200)
    assert np.all(out[286:] == 0)


def test_crop_cuts_evenly_from_both_sides() -> None:
    """Crop fills 16:9 from a 4:3 source by cutting 112 rows top and bottom: the bands vanish."""
    out = resize(_banded(), 640, 360, "crop")
    assert np.all(out == GREY)


def test_crop_keeps_the_centre() -> None:
    """Crop of a wide source keeps its centre column and drops the outer parts."""
    source = np.zeros((360, 1920, 3), np.uint8)
    source[:, 640:1280] = 255  # the middle third is white
    out = resize(source, 640, 360, "crop")
    assert np.all(out == 255)


def test_interpolation_rule() -> None:
    """Shrinking by 2x or more in either direction uses INTER_AREA, anything else INTER_LINEAR."""
    assert interpolation_for(1280, 720, 640, 360) == cv2.INTER_AREA
    assert interpolation_for(1280, 400, 640, 360) == cv2.INTER_AREA
    assert interpolation_for(960, 540, 640, 360) == cv2.INTER_LINEAR
    assert interpolation_for(320, 180, 640, 360) == cv2.INTER_LINEAR


@pytest.mark.parametrize("policy", POLICIES)
def test_process_image_outputs_the_configured_size(policy: ResizePolicy) -> None:
    """process_image's JPEG has exactly out_width x out_height for each policy."""
    config = ProcessingConfig(out_width=400, out_height=300, resize_policy=policy)
    outcome = process_image(images.jpeg(np.ascontiguousarray(scene(1280, 720))), config)
    assert outcome.jpeg is not None
    assert images.decode_jpeg(outcome.jpeg).shape == (300, 400, 3)
    assert (outcome.out_width, outcome.out_height) == (400, 300)


def test_process_image_letterbox_bands_survive_jpeg() -> None:
    """Through process_image, a 4:3 source letterboxed into 640x360 has black side bands."""
    config = ProcessingConfig(resize_policy="letterbox", min_sharpness=0)
    outcome = process_image(images.png(_banded()), config)
    assert outcome.jpeg is not None
    out = images.decode_jpeg(outcome.jpeg).astype(np.int16)
    assert out[:, :76].max() <= 8
    assert out[:, -76:].max() <= 8
    assert out[150:210, 100:540].mean() == pytest.approx(128, abs=3)


def test_jpeg_quality_is_applied() -> None:
    """A lower jpeg_quality gives a smaller output JPEG of the same scene."""
    data = images.png(np.ascontiguousarray(scene(1280, 720)))
    low = process_image(data, ProcessingConfig(jpeg_quality=20)).jpeg
    high = process_image(data, ProcessingConfig(jpeg_quality=95)).jpeg
    assert low is not None
    assert high is not None
    assert len(low) * 2 < len(high)
