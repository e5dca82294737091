"""Every rejection reason, each from a crafted input, through process_image."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

import streams.processing.decoding as decode_module
from streams.processing import ImageRejected, ProcessedImage, ProcessingConfig, process_image
from tests.support import images
from tests.support.images import scene

CONFIG = ProcessingConfig()


def _jpeg() -> bytes:
    return images.jpeg(np.ascontiguousarray(scene(320, 200)))


def _png() -> bytes:
    return images.png(np.ascontiguousarray(scene(320, 200)))


def _reason(data: bytes, config: ProcessingConfig = CONFIG) -> str:
    with pytest.raises(ImageRejected) as caught:
        process_image(data, config)
    return caught.value.reason


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any call to cv2.imdecode fail the test: the rejection must come before decoding."""

    def refuse(*_args: object) -> None:
        pytest.fail("cv2.imdecode was called")

    monkeypatch.setattr(cv2, "imdecode", refuse)


def test_empty(no_decoding: None) -> None:
    """Zero bytes are rejected as empty."""
    assert _reason(b"") == "empty"


def test_too_large(no_decoding: None) -> None:
    """More bytes than max_bytes are rejected as too_large, even for a valid image."""
    data = _jpeg()
    assert _reason(data, ProcessingConfig(max_bytes=len(data) - 1)) == "too_large"


def test_exactly_max_bytes_is_accepted() -> None:
    """An image of exactly max_bytes is accepted (the limit is inclusive)."""
    data = _jpeg()
    assert process_image(data, ProcessingConfig(max_bytes=len(data))).status == "processed"


def test_random_bytes_are_unknown_format(no_decoding: None) -> None:
    """Random bytes without an image magic are rejected as unknown_format."""
    data = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert _reason(b"\x00" + data) == "unknown_format"


def test_png_bomb_is_refused_before_decoding(no_decoding: None) -> None:
    """A PNG whose IHDR declares 20000x20000 over a few bytes is too_many_pixels, undecoded."""
    assert _reason(images.png_bomb(20000, 20000)) == "too_many_pixels"


def test_jpeg_bomb_is_refused_before_decoding(no_decoding: None) -> None:
    """A JPEG whose SOF declares 65500x65500 is too_many_pixels without being decoded."""
    assert _reason(images.set_jpeg_size(_jpeg(), 65500, 65500)) == "too_many_pixels"


def test_pixel_limit_is_inclusive() -> None:
    """An image of exactly max_pixels is accepted; one pixel fewer allowed rejects it."""
    data = _jpeg()
    assert process_image(data, ProcessingConfig(max_pixels=320 * 200)).status == "processed"
    assert _reason(data, ProcessingConfig(max_pixels=320 * 200 - 1)) == "too_many_pixels"


def test_garbage_after_png_magic_is_bad_header(no_decoding: None) -> None:
    """A PNG signature followed by JPEG bytes (a polyglot) is bad_header."""
    assert _reason(b"\x89PNG\r\n\x1a\n" + _jpeg()) == "bad_header"


def test_garbage_after_jpeg_magic_is_rejected(no_decoding: None) -> None:
    """A JPEG magic followed by text never reaches the decoder (truncated: no marker found)."""
    assert _reason(b"\xff\xd8\xff" + b"this is not a jpeg at all" * 10) == "truncated"


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 0.999])
def test_truncated_jpeg(fraction: float, no_decoding: None) -> None:
    """A JPEG cut anywhere after its header has no EOI and is rejected as truncated."""
    data = _jpeg()
    assert _reason(data[: int(len(data) * fraction)]) == "truncated"


def test_jpeg_missing_only_eoi_is_truncated(no_decoding: None) -> None:
    """A JPEG whose last two bytes (EOI) are missing is truncated, by our rule, undecoded."""
    assert _reason(_jpeg()[:-2]) == "truncated"


def test_jpeg_eoi_in_exif_thumbnail_does_not_hide_truncation(no_decoding: None) -> None:
    """An EOI inside an APP segment before the scan does not count as the image's end."""
    data = _jpeg()
    app15 = b"\xff\xef" + struct.pack(">H", 6) + b"\xff\xd9\x00\x00"
    data = data[:2] + app15 + data[2:]
    assert _reason(data[: len(data) // 2]) == "truncated"


def test_trailing_bytes_after_eoi_are_accepted() -> None:
    """Bytes after a JPEG's EOI (a camera trailer, a motion-photo video) do not reject it."""
    data = _jpeg() + b"\x00\x00ftypmp42" + bytes(range(256)) * 4
    assert process_image(data, CONFIG).status == "processed"


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.99])
def test_truncated_png(fraction: float, no_decoding: None) -> None:
    """A PNG cut before its IEND chunk is rejected as truncated."""
    data = _png()
    assert _reason(data[: int(len(data) * fraction)]) == "truncated"


def test_truncated_webp_and_bmp(no_decoding: None) -> None:
    """A WebP or BMP shorter than its header declares is rejected as truncated."""
    bgr = np.ascontiguousarray(scene(320, 200))
    webp = images.encode(bgr, ".webp")
    bmp = images.encode(bgr, ".bmp")
    assert _reason(webp[:-10]) == "truncated"
    assert _reason(bmp[:-10]) == "truncated"


def test_garbage_image_data_is_undecodable() -> None:
    """A PNG with a valid IHDR and IEND but garbage IDAT reaches OpenCV and is undecodable."""
    data = images.png(np.ascontiguousarray(scene(64, 48)))
    idat = data.find(b"IDAT")
    (length,) = struct.unpack_from(">I", data, idat - 4)
    garbage = bytes((i * 37 + 11) % 256 for i in range(length))
    chunk = images.png_chunk(b"IDAT", garbage)
    data = data[: idat - 4] + chunk + data[idat + 4 + length + 4 :]
    assert _reason(data) == "undecodable"


def test_gif_without_opencv_gif_support_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GIF OpenCV cannot decode, on a build without a GIF decoder, is unsupported."""
    monkeypatch.setattr(decode_module, "opencv_decodes_gif", lambda: False)
    monkeypatch.setattr(cv2, "imdecode", lambda *_args: None)
    data = images.animated_gif([np.ascontiguousarray(scene(64, 48))])
    assert _reason(data) == "unsupported"


def test_this_opencv_decodes_gif() -> None:
    """The installed OpenCV has a GIF decoder, so GIFs are processed rather than unsupported."""
    assert decode_module.opencv_decodes_gif() is True


def test_opencv_error_becomes_undecodable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cv2.error raised inside imdecode is turned into ImageRejected("undecodable")."""

    def explode(*_args: object) -> None:
        raise cv2.error("simulated decoder failure")

    monkeypatch.setattr(cv2, "imdecode", explode)
    assert _reason(_jpeg()) == "undecodable"


def test_real_float_tiff_is_undecodable() -> None:
    """scikit-image's 64-bit-sample TIFF, which this OpenCV cannot read, is undecodable."""
    assert _reason(images.real_photo("multipage_rgb.tif")) == "undecodable"


def test_accepted_outcome_type() -> None:
    """A valid image gives a ProcessedImage, the only other outcome of process_image."""
    assert isinstance(process_image(_jpeg(), CONFIG), ProcessedImage)
