"""Test images made by the tests: camera-like scenes, dark frames, each format, hostile payloads."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from numpy.typing import NDArray


def scene(width: int, height: int, seed: int = 0, gain: float = 1.0) -> NDArray[np.uint8]:
    """A deterministic camera-like BGR frame: gradients, shapes, edges and sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 90 + 60 * np.sin(x / (width / 6.0) + seed) + 40 * np.cos(y / (height / 4.0))
    img = np.stack([base, base * 0.9 + 20, base * 0.8 + 30], axis=-1)
    for _ in range(12):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(max(4, width // 40), max(5, width // 8)))
        colour = [float(c) for c in rng.integers(0, 255, 3)]
        cv2.circle(img, (cx, cy), r, colour, -1)
        cv2.rectangle(img, (cx, cy), (cx + r, cy + r // 2), colour[::-1], 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img * gain, 0, 255).astype(np.uint8)


def jpeg(img: NDArray[np.uint8], quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def encode(img: NDArray[np.generic], ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def png_header_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def mixed_set() -> dict[str, tuple[bytes, str]]:
    """Named payloads with the outcome each must get: a status, or ``dlq:<reason>``."""
    bright = scene(1280, 720, seed=1)
    return {
        "jpeg-720p": (jpeg(bright), "processed"),
        "jpeg-1080p": (jpeg(scene(1920, 1080, seed=2)), "processed"),
        "png": (encode(scene(800, 600, seed=3), ".png"), "processed"),
        "png-16bit": (encode(scene(640, 480, seed=4).astype(np.uint16) * 257, ".png"), "processed"),
        "webp": (encode(scene(800, 450, seed=5), ".webp"), "processed"),
        "bmp": (encode(scene(640, 360, seed=6), ".bmp"), "processed"),
        "tiff": (encode(scene(640, 480, seed=7), ".tiff"), "processed"),
        "gray-jpeg": (jpeg(cv2.cvtColor(bright, cv2.COLOR_BGR2GRAY)), "processed"),
        "dark": (jpeg(scene(1280, 720, seed=8, gain=0.12)), "skipped_dark"),
        "flat": (encode(np.full((360, 640, 3), 128, np.uint8), ".png"), "skipped_low_quality"),
        "empty": (b"", "dlq:empty"),
        "random": (np.random.default_rng(9).bytes(5000), "dlq:unknown_format"),
        "truncated-jpeg": (jpeg(scene(1280, 720, seed=10))[:4000], "dlq:truncated"),
        "bomb": (png_header_bomb(), "dlq:too_many_pixels"),
    }
