"""Property tests: no input bytes make process_image or read_header raise anything but
ImageRejected."""

from __future__ import annotations

import functools

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.processing import (
    REJECT_REASONS,
    ImageRejected,
    ProcessedImage,
    ProcessingConfig,
    process_image,
)
from streams.processing.header import MAX_SIDE, read_header
from tests.support import images
from tests.support.images import scene

# A lower pixel limit keeps mutated headers that declare large images fast to reject.
CONFIG = ProcessingConfig(max_pixels=2_000_000)
STATUSES = {"processed", "skipped_dark", "skipped_low_quality"}
MAGICS = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",
    b"RIFF\x00\x01\x00\x00WEBPVP8 ",
    b"RIFF\x00\x01\x00\x00WEBPVP8L",
    b"RIFF\x00\x01\x00\x00WEBPVP8X",
]
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@functools.cache
def _seeds() -> dict[str, bytes]:
    """Small valid images of every format, the starting points for mutation."""
    bgr = np.ascontiguousarray(scene(96, 64))
    return {
        "jpeg": images.jpeg(bgr),
        "jpeg-progressive": images.jpeg(bgr, progressive=True),
        "jpeg-exif": images.with_exif_orientation(images.jpeg(bgr), 6),
        "png": images.png(bgr),
        "png-16bit": images.png(bgr.astype(np.uint16) * 257),
        "gif": images.animated_gif([bgr, bgr[::-1].copy()]),
        "bmp": images.encode(bgr, ".bmp"),
        "webp": images.encode(bgr, ".webp"),
        "tiff": images.encode(bgr, ".tiff"),
        "tiff-big-endian": images.tiff(bgr[:, :, 0].copy(), big_endian=True),
        "tiff-bigtiff": images.tiff(bgr[:, :, 1].copy(), bigtiff=True),
        "jpeg-cmyk": images.cmyk_jpeg(bgr),
        "png-palette": images.palette_png(bgr),
        "bmp-top-down": images.bmp_top_down(bgr),
        "webp-lossless": images.encode(bgr, ".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
    }


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid seed image with 1-4 bit flips, truncations, insertions, deletions or overwrites.

    Positions favour the first 64 bytes half of the time, where the headers are.
    """
    data = bytearray(_seeds()[draw(st.sampled_from(sorted(_seeds())))])
    for _ in range(draw(st.integers(1, 4))):
        limit = len(data)
        position = draw(st.integers(0, min(limit, 64)) | st.integers(0, limit))
        operation = draw(
            st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite", "splice"])
        )
        if operation == "flip" and position < limit:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "truncate":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif operation == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=4))
            data[position : position + len(patch)] = patch
        elif operation == "splice":  # the head of this image on the tail of another
            other = _seeds()[draw(st.sampled_from(sorted(_seeds())))]
            data[position:] = other[draw(st.integers(0, len(other))) :]
    return bytes(data)


def _assert_processed_or_rejected(data: bytes) -> None:
    outcome: ProcessedImage | ImageRejected
    try:
        outcome = process_image(data, CONFIG)
    except ImageRejected as rejected:
        outcome = rejected
    if isinstance(outcome, ImageRejected):
        assert outcome.reason in REJECT_REASONS
        assert outcome.retriable is False
        return
    assert isinstance(outcome, ProcessedImage)
    assert outcome.status in STATUSES
    assert (outcome.jpeg is not None) == (outcome.status == "processed")


@PROPERTY_SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary bytes give a ProcessedImage or ImageRejected with a known reason, nothing else."""
    _assert_processed_or_rejected(data)


@PROPERTY_SETTINGS
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_arbitrary_bytes_after_a_magic(magic: bytes, tail: bytes) -> None:
    """Garbage behind each format's magic bytes never raises anything but ImageRejected."""
    _assert_processed_or_rejected(magic + tail)


@PROPERTY_SETTINGS
@given(mutated_images())
def test_mutated_images(data: bytes) -> None:
    """Damaged real encodings of every format never raise anything but ImageRejected."""
    _assert_processed_or_rejected(data)


@PROPERTY_SETTINGS
@given(mutated_images() | st.binary(max_size=512))
def test_read_header_gives_sane_dimensions_or_a_header_reason(data: bytes) -> None:
    """read_header on damaged or arbitrary bytes returns a header with sides in 1..MAX_SIDE or
    raises ImageRejected with a header-level reason, nothing else."""
    try:
        header = read_header(data)
    except ImageRejected as rejected:
        reason: str | None = rejected.reason
    else:
        reason = None
    if reason is not None:
        assert reason in {"unknown_format", "bad_header", "truncated"}
        return
    assert 1 <= header.width <= MAX_SIDE
    assert 1 <= header.height <= MAX_SIDE
    assert 1 <= header.orientation <= 8
    assert header.min_length >= 0
    assert 0 <= header.scan_offset <= len(data)


def test_seeds_are_processed() -> None:
    """Every unmutated seed is a valid image that process_image accepts."""
    config = ProcessingConfig(min_sharpness=0, min_contrast=0, dark_threshold=0)
    outcomes = {name: process_image(data, config).status for name, data in _seeds().items()}
    assert set(outcomes.values()) == {"processed"}
