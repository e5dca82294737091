"""Decoding every format to upright 8-bit BGR, and the decisions on alpha, 16-bit and GIF."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from streams.processing import ProcessingConfig, decode, process_image, read_header
from tests.support import images
from tests.support.images import scene

WIDTH, HEIGHT = 320, 200


def _bgr() -> NDArray[np.uint8]:
    return np.ascontiguousarray(scene(WIDTH, HEIGHT))


def _gray() -> NDArray[np.uint8]:
    return np.ascontiguousarray(cv2.cvtColor(_bgr(), cv2.COLOR_BGR2GRAY))


def _decoded(data: bytes) -> NDArray[np.uint8]:
    return decode(data, read_header(data)).pixels


def _mean_abs_diff(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


# name -> (format, encoder, mean abs difference allowed against the BGR scene: lossy codecs
# measured 1.4-2.7, palette 5.7; flipped, grey or channel-swapped versions differ by 38-54)
DECODE_CASES: dict[str, tuple[str, Callable[[], bytes], float]] = {
    "jpeg-baseline": ("jpeg", lambda: images.jpeg(_bgr(), 95), 5.0),
    "jpeg-progressive": ("jpeg", lambda: images.jpeg(_bgr(), 95, progressive=True), 5.0),
    "jpeg-cmyk": ("jpeg", lambda: images.cmyk_jpeg(_bgr()), 5.0),
    "png-8bit": ("png", lambda: images.png(_bgr()), 0.0),
    "png-16bit": ("png", lambda: images.png(_bgr().astype(np.uint16) * 257), 0.0),
    "png-palette": ("png", lambda: images.palette_png(_bgr()), 10.0),
    "bmp": ("bmp", lambda: images.encode(_bgr(), ".bmp"), 0.0),
    "bmp-top-down": ("bmp", lambda: images.bmp_top_down(_bgr()), 0.0),
    "tiff": ("tiff", lambda: images.encode(_bgr(), ".tiff"), 0.0),
    "webp-lossy": (
        "webp",
        lambda: images.encode(_bgr(), ".webp", cv2.IMWRITE_WEBP_QUALITY, 95),
        5.0,
    ),
    "webp-lossless": (
        "webp",
        lambda: images.encode(_bgr(), ".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
        0.0,
    ),
    "gif": ("gif", lambda: images.animated_gif([_bgr()]), 8.0),
}


@pytest.mark.parametrize("case", DECODE_CASES, ids=list(DECODE_CASES))
def test_formats_decode_to_the_scene(case: str) -> None:
    """Each format and variant decodes to 8-bit BGR of the right size showing the scene."""
    _format, make, tolerance = DECODE_CASES[case]
    pixels = _decoded(make())
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert pixels.dtype == np.uint8
    assert _mean_abs_diff(pixels, _bgr()) <= tolerance


@pytest.mark.parametrize("case", DECODE_CASES, ids=list(DECODE_CASES))
def test_formats_are_processed(case: str) -> None:
    """process_image accepts each format: processed, lowercase format name, source size kept."""
    expected_format, make, _tolerance = DECODE_CASES[case]
    outcome = process_image(make(), ProcessingConfig())
    assert (outcome.status, outcome.format) == ("processed", expected_format)
    assert (outcome.width, outcome.height) == (WIDTH, HEIGHT)


@pytest.mark.parametrize(
    "make",
    [
        lambda: images.jpeg(_gray(), 95),
        lambda: images.png(_gray()),
        lambda: images.png(_gray().astype(np.uint16) * 257),
        lambda: images.tiff(_gray()),
        lambda: images.tiff(_gray(), big_endian=True),
        lambda: images.tiff(_gray(), bigtiff=True),
    ],
    ids=["jpeg", "png-8bit", "png-16bit", "tiff-le", "tiff-be", "bigtiff"],
)
def test_grayscale_becomes_three_equal_channels(make: Callable[[], bytes]) -> None:
    """Grayscale sources decode to BGR with three identical channels matching the gray values."""
    pixels = _decoded(make())
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(pixels[:, :, 0], pixels[:, :, 1])
    assert np.array_equal(pixels[:, :, 1], pixels[:, :, 2])
    assert _mean_abs_diff(pixels[:, :, 0], _gray()) <= 2.0


def test_16bit_drops_the_low_byte() -> None:
    """16-bit samples become value >> 8 (65535 -> 255, 0x1234 -> 0x12), not clipped or wrapped."""
    ramp = np.linspace(0, 65535, WIDTH * HEIGHT * 3).astype(np.uint16).reshape(HEIGHT, WIDTH, 3)
    pixels = _decoded(images.png(ramp))
    assert np.array_equal(pixels, (ramp >> 8).astype(np.uint8))


def test_alpha_is_dropped_not_composited() -> None:
    """A fully transparent PNG keeps its stored colours: alpha is dropped, not composited."""
    transparent = np.dstack([_bgr(), np.zeros((HEIGHT, WIDTH), np.uint8)])
    pixels = _decoded(images.png(transparent))
    assert np.array_equal(pixels, _bgr())


def test_animated_gif_uses_the_first_frame() -> None:
    """An animated GIF is processed from its first frame (this OpenCV decodes GIF)."""
    bright = np.full((HEIGHT, WIDTH, 3), 220, np.uint8)
    dark = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels = _decoded(images.animated_gif([bright, dark, dark]))
    assert float(pixels.mean()) == pytest.approx(220, abs=1.0)


def test_real_animated_gif() -> None:
    """scikit-image's real animated GIF decodes at the size its header declares."""
    data = images.real_photo("no_time_for_that_tiny.gif")
    header = read_header(data)
    decoded = decode(data, header)
    assert decoded.pixels.shape[:2] == (header.height, header.width)


# Orientation n -> how the stored pixels must be transformed to display them upright.
ORIENTATIONS: dict[int, Callable[[NDArray[np.uint8]], NDArray[np.uint8]]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a[:, ::-1], -1),
    8: lambda a: np.rot90(a, 1),
}


def _quadrants() -> NDArray[np.uint8]:
    """A 160x96 image with four flat colours in its quadrants: orientation is unambiguous."""
    image = np.zeros((96, 160, 3), np.uint8)
    image[:48, :80] = (0, 0, 255)
    image[:48, 80:] = (0, 255, 0)
    image[48:, :80] = (255, 0, 0)
    image[48:, 80:] = (255, 255, 255)
    return image


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_jpeg_exif_orientation_is_applied(orientation: int) -> None:
    """A JPEG's EXIF orientation (1-8) is applied: dimensions swap for 5-8, pixels are turned."""
    source = _quadrants()
    data = images.with_exif_orientation(images.jpeg(source, 95), orientation)
    expected = np.ascontiguousarray(ORIENTATIONS[orientation](source))
    decoded = decode(data, read_header(data))
    assert (decoded.width, decoded.height) == (expected.shape[1], expected.shape[0])
    assert _mean_abs_diff(decoded.pixels, expected) < 4.0


def test_png_exif_orientation_is_applied() -> None:
    """A PNG eXIf chunk with orientation 6 is applied by OpenCV too (exact for lossless PNG)."""
    source = _quadrants()
    chunk = images.png_chunk(b"eXIf", images.exif_block(6))
    data = images.png_with_chunk_after_ihdr(images.png(source), chunk)
    outcome = process_image(data, ProcessingConfig(min_sharpness=0))
    assert np.array_equal(_decoded(data), np.rot90(source, -1))
    assert (outcome.width, outcome.height) == (96, 160)
