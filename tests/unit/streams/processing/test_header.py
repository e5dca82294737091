"""Header parsing: declared dimensions of every format, read without decoding."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest

from streams.processing import ImageHeader, ImageRejected, read_header, sniff_format
from streams.processing.header import MAX_SIDE, exif_orientation
from tests.support import images
from tests.support.images import scene

WIDTH, HEIGHT = 96, 64


def _bgr() -> np.ndarray:
    return np.ascontiguousarray(scene(WIDTH, HEIGHT))


def _with_alpha(alpha: int) -> np.ndarray:
    return np.dstack([_bgr(), np.full((HEIGHT, WIDTH), alpha, np.uint8)])


FORMAT_CASES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "jpeg-baseline": ("jpeg", lambda: images.jpeg(_bgr())),
    "jpeg-progressive": ("jpeg", lambda: images.jpeg(_bgr(), progressive=True)),
    "jpeg-cmyk": ("jpeg", lambda: images.cmyk_jpeg(_bgr())),
    "jpeg-gray": ("jpeg", lambda: images.jpeg(_bgr()[:, :, 1].copy())),
    "png-rgb": ("png", lambda: images.png(_bgr())),
    "png-16bit": ("png", lambda: images.png(_bgr().astype(np.uint16) * 257)),
    "png-alpha": ("png", lambda: images.png(_with_alpha(9))),
    "png-palette": ("png", lambda: images.palette_png(_bgr())),
    "gif-animated": ("gif", lambda: images.animated_gif([_bgr(), _bgr()[::-1].copy()])),
    "bmp-bottom-up": ("bmp", lambda: images.encode(_bgr(), ".bmp")),
    "bmp-top-down": ("bmp", lambda: images.bmp_top_down(_bgr())),
    "webp-vp8": ("webp", lambda: images.encode(_bgr(), ".webp", 64, 80)),
    "webp-vp8l": ("webp", lambda: images.encode(_bgr(), ".webp", 64, 101)),
    "webp-vp8x": (
        "webp",
        lambda: images.encode(_with_alpha(99), ".webp", 64, 80),
    ),
    "tiff-opencv": ("tiff", lambda: images.encode(_bgr(), ".tiff")),
    "tiff-little-endian": ("tiff", lambda: images.tiff(_bgr()[:, :, 0].copy())),
    "tiff-big-endian": ("tiff", lambda: images.tiff(_bgr()[:, :, 0].copy(), big_endian=True)),
    "bigtiff": ("tiff", lambda: images.tiff(_bgr()[:, :, 0].copy(), bigtiff=True)),
}


@pytest.mark.parametrize("case", FORMAT_CASES, ids=list(FORMAT_CASES))
def test_reads_declared_dimensions(case: str) -> None:
    """Each format and variant yields its format name and the encoded width and height."""
    expected_format, make = FORMAT_CASES[case]
    header = read_header(make())
    assert (header.format, header.width, header.height) == (expected_format, WIDTH, HEIGHT)


def test_webp_vp8x_tags() -> None:
    """The three WebP variants really are VP8, VP8L and VP8X chunks (the cases above differ)."""
    chunks = {FORMAT_CASES[case][1]()[12:16] for case in ("webp-vp8", "webp-vp8l", "webp-vp8x")}
    assert chunks == {b"VP8 ", b"VP8L", b"VP8X"}


@pytest.mark.parametrize("big_endian", [False, True], ids=["II", "MM"])
def test_jpeg_exif_orientation(big_endian: bool) -> None:
    """APP1 Exif Orientation 6 is read in both byte orders and swaps the oriented size."""
    data = images.with_exif_orientation(images.jpeg(_bgr()), 6, big_endian=big_endian)
    header = read_header(data)
    assert (header.orientation, header.oriented_size) == (6, (HEIGHT, WIDTH))


@pytest.mark.parametrize(
    "block",
    [images.exif_block(9), images.exif_block(0), images.exif_block(6)[:12], b"XX*\x00", b""],
    ids=["orientation-9", "orientation-0", "cut", "bad-byte-order", "empty"],
)
def test_damaged_exif_means_upright(block: bytes) -> None:
    """An out-of-range, truncated or malformed EXIF block reads as orientation 1, never raises."""
    assert exif_orientation(block) == 1


def test_jpeg_tolerates_stray_bytes_between_segments() -> None:
    """Stray bytes before a marker are skipped, as libjpeg does, and SOF is still found."""
    data = images.jpeg(_bgr())
    (app0_length,) = struct.unpack_from(">H", data, 4)
    after_app0 = 4 + app0_length
    data = data[:after_app0] + b"\x00\x17junk" + data[after_app0:]
    assert read_header(data).width == WIDTH


def test_jpeg_scan_offset_points_at_sos() -> None:
    """scan_offset is the position of the first SOS marker."""
    data = images.jpeg(_bgr())
    assert read_header(data).scan_offset == data.find(b"\xff\xda")


def test_gif_frame_larger_than_screen() -> None:
    """A GIF whose first frame extends past its logical screen declares the frame's extent."""
    data = bytearray(images.animated_gif([_bgr()]))
    struct.pack_into("<HH", data, 6, 10, 10)  # logical screen 10x10, frame stays 96x64
    header = read_header(bytes(data))
    assert (header.width, header.height) == (WIDTH, HEIGHT)


def test_bmp_min_length() -> None:
    """An uncompressed BMP declares its full length (header plus padded rows)."""
    data = images.encode(_bgr(), ".bmp")
    assert read_header(data).min_length == len(data)


def test_webp_min_length() -> None:
    """A WebP declares its RIFF length plus the 8-byte RIFF header."""
    data = FORMAT_CASES["webp-vp8"][1]()
    assert read_header(data).min_length == len(data)


def test_image_header_geometry() -> None:
    """pixels is width*height; oriented_size swaps only for orientations 5-8."""
    assert ImageHeader("jpeg", 30, 20).pixels == 600
    swapped = [o for o in range(1, 9) if ImageHeader("jpeg", 30, 20, o).oriented_size == (20, 30)]
    assert swapped == [5, 6, 7, 8]


def _jpeg_eoi_first() -> bytes:
    return b"\xff\xd8\xff\xd9" + b"\x00" * 32


def _jpeg_sos_first() -> bytes:
    data = images.jpeg(_bgr())
    return data[:2] + data[data.find(b"\xff\xda") :]


def _png_not_ihdr() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + images.png_chunk(b"tEXt", b"x" * 13) + b"\x00" * 20


def _webp_unknown_chunk() -> bytes:
    return b"RIFF\x20\x00\x00\x00WEBPABCD" + b"\x00" * 24


def _bmp_bad_dib() -> bytes:
    data = bytearray(images.encode(_bgr(), ".bmp"))
    struct.pack_into("<I", data, 14, 20)
    return bytes(data)


def _bmp_negative_width() -> bytes:
    data = bytearray(images.encode(_bgr(), ".bmp"))
    struct.pack_into("<i", data, 18, -WIDTH)
    return bytes(data)


def _gif_no_image() -> bytes:
    return b"GIF89a\x10\x00\x10\x00\x00\x00\x00;"


def _tiff_no_size() -> bytes:
    return b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHII", 262, 3, 1, 1) + b"\0" * 4


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (_jpeg_eoi_first, "before any scan"),
        (_jpeg_sos_first, "before any frame header"),
        (lambda: images.set_jpeg_size(images.jpeg(_bgr()), WIDTH, 0), "height 0"),
        (_png_not_ihdr, "not IHDR"),
        (lambda: images.png_bomb(0, 10), "width 0"),
        (lambda: images.png_bomb(MAX_SIDE + 1, 1), f"width {MAX_SIDE + 1}"),
        (_webp_unknown_chunk, "not VP8"),
        (_bmp_bad_dib, "DIB header size 20"),
        (_bmp_negative_width, f"width -{WIDTH}"),
        (_gif_no_image, "no image"),
        (_tiff_no_size, "no ImageWidth"),
    ],
    ids=[
        "jpeg-eoi-first",
        "jpeg-sos-first",
        "jpeg-zero-height",
        "png-not-ihdr",
        "png-zero-width",
        "png-absurd-width",
        "webp-unknown-chunk",
        "bmp-dib-size",
        "bmp-negative-width",
        "gif-no-image",
        "tiff-no-size",
    ],
)
def test_bad_header(make: Callable[[], bytes], detail: str) -> None:
    """Malformed headers and zero or absurd dimensions are rejected as bad_header."""
    with pytest.raises(ImageRejected) as caught:
        read_header(make())
    assert caught.value.reason == "bad_header"
    assert detail in caught.value.detail


@pytest.mark.parametrize(
    ("case", "length"),
    [
        ("jpeg-baseline", 30),
        ("png-rgb", 20),
        ("gif-animated", 12),
        ("bmp-bottom-up", 20),
        ("webp-vp8", 24),
        ("tiff-little-endian", 12),
        ("tiff-opencv", 40),
    ],
)
def test_data_ending_inside_the_header_is_truncated(case: str, length: int) -> None:
    """Data that stops inside the header (or before a TIFF IFD it points to) is truncated."""
    data = FORMAT_CASES[case][1]()[:length]
    with pytest.raises(ImageRejected) as caught:
        read_header(data)
    assert caught.value.reason == "truncated"


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xd8", b"hello world", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x00\x00\x00\x0cjP  "],
    ids=["empty", "half-jpeg-magic", "text", "riff-wave", "jpeg2000"],
)
def test_unknown_format(data: bytes) -> None:
    """Bytes without a handled magic are unknown_format; sniff_format says None for them."""
    assert sniff_format(data) is None
    with pytest.raises(ImageRejected) as caught:
        read_header(data)
    assert caught.value.reason == "unknown_format"
