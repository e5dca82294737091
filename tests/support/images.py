"""Test images: synthetic camera-like scenes, encoders, crafted headers and real photos."""

from __future__ import annotations

import functools
import importlib.util
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image as PILImage

Image = NDArray[np.uint8]

# Real photos bundled in the scikit-image wheel (no download): read as files, skimage not imported.
REAL_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg")


@functools.cache
def scene(width: int, height: int, seed: int = 0) -> Image:
    """A camera-like BGR scene (read-only): lit gradient, random shapes and sensor noise.

    The scene is drawn on a fixed 2560x1440 canvas and scaled with INTER_AREA, so two sizes of
    the same seed show the same scene at two resolutions, as two cameras would.
    """
    full = _canvas(seed)
    if (width, height) == full.shape[1::-1]:
        return full
    interpolation = cv2.INTER_AREA if width <= full.shape[1] else cv2.INTER_LINEAR
    resized = cv2.resize(full, (width, height), interpolation=interpolation)
    scaled = np.ascontiguousarray(resized, dtype=np.uint8)
    scaled.flags.writeable = False
    return scaled


@functools.cache
def _canvas(seed: int) -> Image:
    canvas_width, canvas_height = 2560, 1440
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, canvas_width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, canvas_height, dtype=np.float32)[:, None]
    image = np.empty((canvas_height, canvas_width, 3), np.float32)
    image[..., 0] = 90 + 80 * x
    image[..., 1] = 70 + 110 * y
    image[..., 2] = 150 - 70 * x
    for _ in range(60):
        colour = tuple(float(v) for v in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, canvas_width)), int(rng.integers(0, canvas_height))
        size = int(rng.integers(20, 240))
        if rng.random() < 0.5:
            cv2.circle(image, (cx, cy), size, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(image, (cx, cy), (cx + size, cy + size // 2), colour, -1, cv2.LINE_AA)
    image += rng.normal(0.0, 3.0, image.shape).astype(np.float32)
    full = np.clip(image, 0, 255).astype(np.uint8)
    full.flags.writeable = False
    return full


def encode(image: NDArray[np.integer[Any]], ext: str, *params: int) -> bytes:
    """cv2.imencode that fails the test instead of returning False."""
    ok, encoded = cv2.imencode(ext, image, list(params))
    assert ok, f"cv2 could not encode {ext}"
    return encoded.tobytes()


def jpeg(image: Image, quality: int = 85, *, progressive: bool = False) -> bytes:
    """Baseline (or progressive) JPEG of a BGR or grayscale image."""
    return encode(
        image,
        ".jpg",
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_PROGRESSIVE,
        int(progressive),
    )


def png(image: NDArray[np.integer[Any]]) -> bytes:
    """PNG of an 8/16-bit gray, BGR or BGRA image."""
    return encode(image, ".png")


def cmyk_jpeg(image: Image) -> bytes:
    """A CMYK JPEG (Adobe, 4 components) made with Pillow, since OpenCV cannot write one."""
    buffer = io.BytesIO()
    PILImage.fromarray(image[:, :, ::-1]).convert("CMYK").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def palette_png(image: Image) -> bytes:
    """An indexed-colour (palette) PNG made with Pillow."""
    buffer = io.BytesIO()
    PILImage.fromarray(image[:, :, ::-1]).quantize(colors=64).save(buffer, "PNG")
    return buffer.getvalue()


def animated_gif(frames: list[Image]) -> bytes:
    """An animated GIF of BGR frames made with Pillow."""
    pil_frames = [PILImage.fromarray(frame[:, :, ::-1]) for frame in frames]
    buffer = io.BytesIO()
    pil_frames[0].save(
        buffer, "GIF", save_all=True, append_images=pil_frames[1:], duration=100, loop=0
    )
    return buffer.getvalue()


def exif_block(orientation: int, *, big_endian: bool = False) -> bytes:
    """A TIFF-structured EXIF block whose IFD0 holds only Orientation."""
    endian = ">" if big_endian else "<"
    order = b"MM" if big_endian else b"II"
    return (
        order
        + struct.pack(endian + "HI", 42, 8)
        + struct.pack(endian + "H", 1)
        + struct.pack(endian + "HHIHH", 274, 3, 1, orientation, 0)
        + struct.pack(endian + "I", 0)
    )


def with_exif_orientation(jpeg_data: bytes, orientation: int, *, big_endian: bool = False) -> bytes:
    """``jpeg_data`` with an APP1 Exif segment declaring ``orientation`` inserted after SOI."""
    payload = b"Exif\x00\x00" + exif_block(orientation, big_endian=big_endian)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg_data[:2] + app1 + jpeg_data[2:]


def png_chunk(chunk_type: bytes, body: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return (
        struct.pack(">I", len(body))
        + chunk_type
        + body
        + struct.pack(">I", zlib.crc32(chunk_type + body))
    )


def png_with_chunk_after_ihdr(png_data: bytes, chunk: bytes) -> bytes:
    """``png_data`` with ``chunk`` inserted right after the IHDR chunk."""
    ihdr_end = 8 + 8 + 13 + 4
    return png_data[:ihdr_end] + chunk + png_data[ihdr_end:]


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height 8-bit gray over a few bytes of IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def set_jpeg_size(jpeg_data: bytes, width: int, height: int) -> bytes:
    """``jpeg_data`` with the dimensions in its first SOF0/SOF2 segment replaced."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        sof = jpeg_data.find(marker)
        if sof > 0:
            patched = bytearray(jpeg_data)
            struct.pack_into(">HH", patched, sof + 5, height, width)
            return bytes(patched)
    raise AssertionError("no SOF0/SOF2 segment")


def tiff(image: Image, *, big_endian: bool = False, bigtiff: bool = False) -> bytes:
    """An uncompressed 8-bit grayscale TIFF written by hand (either byte order, or BigTIFF)."""
    height, width = image.shape
    endian = ">" if big_endian else "<"
    pixels = image.tobytes()
    entries = [  # tag, type, value
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),  # BitsPerSample
        (259, 3, 1),  # Compression: none
        (262, 3, 1),  # PhotometricInterpretation: BlackIsZero
        (273, 4, 0),  # StripOffsets, patched below
        (277, 3, 1),  # SamplesPerPixel
        (278, 4, height),  # RowsPerStrip
        (279, 4, len(pixels)),  # StripByteCounts
    ]
    order = b"MM" if big_endian else b"II"
    if bigtiff:
        header_size, entry_size, count_format, tail = 16, 20, "Q", "Q"
        header = order + struct.pack(endian + "HHHQ", 43, 8, 0, header_size)
    else:
        header_size, entry_size, count_format, tail = 8, 12, "H", "I"
        header = order + struct.pack(endian + "HI", 42, header_size)
    count_size = struct.calcsize(count_format)
    ifd_size = count_size + entry_size * len(entries) + struct.calcsize(tail)
    data_offset = header_size + ifd_size
    ifd = struct.pack(endian + count_format, len(entries))
    for tag, value_type, value in entries:
        if tag == 273:
            value = data_offset
        if bigtiff:
            value_format = "H6x" if value_type == 3 else "I4x"
            ifd += struct.pack(endian + "HHQ" + value_format, tag, value_type, 1, value)
        else:
            value_format = "H2x" if value_type == 3 else "I"
            ifd += struct.pack(endian + "HHI" + value_format, tag, value_type, 1, value)
    ifd += struct.pack(endian + tail, 0)
    return header + ifd + pixels


def bmp_top_down(image: Image) -> bytes:
    """A BMP stored top-down (negative height), made from OpenCV's bottom-up BMP."""
    data = bytearray(encode(image, ".bmp"))
    (pixel_offset,) = struct.unpack_from("<I", data, 10)
    (height,) = struct.unpack_from("<i", data, 22)
    rows = bytes(data[pixel_offset:])
    row_size = len(rows) // height
    flipped = b"".join(rows[i * row_size : (i + 1) * row_size] for i in reversed(range(height)))
    struct.pack_into("<i", data, 22, -height)
    return bytes(data[:pixel_offset]) + flipped


def blur(image: Image, sigma_fraction: float = 1 / 160) -> Image:
    """``image`` blurred with a Gaussian whose sigma is a fraction of its width."""
    sigma = image.shape[1] * sigma_fraction
    return np.ascontiguousarray(cv2.GaussianBlur(image, (0, 0), sigma))


def real_photo_path(name: str) -> Path:
    """Path of a photo bundled in the scikit-image wheel; fails the test if not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        pytest.fail(
            "scikit-image is not installed: the real-photo tests need its bundled sample data "
            "(pip install -e '.[dev]')",
            pytrace=False,
        )
    path = Path(spec.origin).parent / "data" / name
    assert path.is_file(), f"{path} is missing from the scikit-image installation"
    return path


def real_photo(name: str) -> bytes:
    """The encoded bytes of a photo bundled in the scikit-image wheel."""
    return real_photo_path(name).read_bytes()


def real_photo_pixels(name: str) -> Image:
    """A bundled photo decoded to BGR."""
    pixels = cv2.imdecode(np.frombuffer(real_photo(name), np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None
    return np.ascontiguousarray(pixels)


def decode_jpeg(data: bytes) -> Image:
    """Decode an output JPEG for inspection."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None
    return np.ascontiguousarray(pixels)


def numbered(image: Image, number: int) -> Image:
    """A copy of ``image`` with ``number`` drawn on it: distinct content (and id) per frame."""
    frame = image.copy()
    cv2.putText(frame, str(number), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    return frame


def mixed_set() -> dict[str, tuple[bytes, str]]:
    """Named payloads with the outcome each must get from the worker: a status or ``dlq:<reason>``.

    Real photos, synthetic camera frames in every format, dark and flat frames, and hostile input.
    """
    bright = scene(1280, 720, seed=1)
    dark = np.ascontiguousarray((scene(1280, 720, seed=2) * 0.12).astype(np.uint8))
    return {
        "photo-astronaut": (real_photo("astronaut.png"), "processed"),
        "photo-rocket": (real_photo("rocket.jpg"), "processed"),
        "jpeg-720p": (jpeg(bright), "processed"),
        "jpeg-1080p": (jpeg(scene(1920, 1080, seed=3)), "processed"),
        "jpeg-progressive": (jpeg(scene(1280, 720, seed=4), progressive=True), "processed"),
        "jpeg-cmyk": (cmyk_jpeg(scene(800, 600, seed=5)), "processed"),
        "jpeg-gray": (
            jpeg(np.ascontiguousarray(cv2.cvtColor(bright, cv2.COLOR_BGR2GRAY))),
            "processed",
        ),
        "png": (png(scene(800, 600, seed=6)), "processed"),
        "png-16bit": (png(scene(640, 480, seed=7).astype(np.uint16) * 257), "processed"),
        "png-palette": (palette_png(scene(640, 480, seed=8)), "processed"),
        "webp": (encode(scene(800, 450, seed=9), ".webp"), "processed"),
        "bmp": (encode(scene(640, 360, seed=10), ".bmp"), "processed"),
        "tiff": (encode(scene(640, 480, seed=11), ".tiff"), "processed"),
        "gif-animated": (
            animated_gif([scene(320, 240, seed=12), scene(320, 240, seed=13)]),
            "processed",
        ),
        "dark": (jpeg(dark), "skipped_dark"),
        "flat": (png(np.full((360, 640, 3), 128, np.uint8)), "skipped_low_quality"),
        "empty": (b"", "dlq:empty"),
        "random": (np.random.default_rng(9).bytes(5000), "dlq:unknown_format"),
        "truncated-jpeg": (jpeg(scene(1280, 720, seed=14))[:4000], "dlq:truncated"),
        "bomb": (png_bomb(20_000, 20_000), "dlq:too_many_pixels"),
    }
