"""process_image: bytes in, a ProcessedImage or ImageRejected out; no I/O, thread-safe."""

from __future__ import annotations

import time
from typing import Final

import cv2

from streams.processing.config import ProcessingConfig
from streams.processing.decoding import choose_reduction, decode
from streams.processing.errors import ImageRejected
from streams.processing.header import read_header
from streams.processing.resizing import resize
from streams.processing.result import ProcessedImage, ProcessStatus
from streams.processing.scores import WORKING_AREA, Scores, luma_scores, working_image
from streams.processing.truncation import check_complete

_MS: Final = 1000.0


def process_image(data: bytes, config: ProcessingConfig) -> ProcessedImage:
    """Check, decode, score, filter, resize and JPEG-encode one image.

    Steps: size limits; format and header dimensions (pixel limit before any decode);
    completeness; decode (DCT-reduced for large JPEGs when ``config.fast_path``); scores on luma
    at a fixed working size; skip dark, then low-quality images; resize by the configured policy
    and encode JPEG. Raises ImageRejected, and no other exception, for any input bytes.
    """
    started = time.perf_counter()
    if not data:
        raise ImageRejected("empty", "no bytes")
    if len(data) > config.max_bytes:
        raise ImageRejected("too_large", f"{len(data)} bytes > max_bytes {config.max_bytes}")
    header = read_header(data)
    if header.pixels > config.max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            f"{header.format} header declares {header.width}x{header.height} = "
            f"{header.pixels} pixels > max_pixels {config.max_pixels}",
        )
    check_complete(data, header)

    reduction = 1
    if config.fast_path:
        # Reduce only while the image still covers the output and the scores' working size.
        reduction = choose_reduction(header, config.out_width, config.out_height, WORKING_AREA)
    decode_started = time.perf_counter()
    decoded = decode(data, header, reduction)
    decode_ms = (time.perf_counter() - decode_started) * _MS

    working = working_image(decoded.pixels)
    scores = luma_scores(working)
    status, reason = _classify(scores, config)
    out_width = out_height = 0
    jpeg: bytes | None = None
    resize_ms = 0.0
    if status == "processed":
        resize_started = time.perf_counter()
        out_width, out_height = config.out_width, config.out_height
        if config.resize_policy == "stretch" and working.shape[:2] == (out_height, out_width):
            output = working  # the working image is already the stretched output
        else:
            output = resize(decoded.pixels, out_width, out_height, config.resize_policy)
        resize_ms = (time.perf_counter() - resize_started) * _MS
        ok, encoded = cv2.imencode(".jpg", output, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        if not ok:
            raise ImageRejected("unsupported", "OpenCV could not encode the resized image")
        jpeg = encoded.tobytes()
    return ProcessedImage(
        status=status,
        reason=reason,
        format=header.format,
        width=decoded.width,
        height=decoded.height,
        out_width=out_width,
        out_height=out_height,
        brightness=scores.brightness,
        contrast=scores.contrast,
        sharpness=scores.sharpness,
        jpeg=jpeg,
        decode_ms=decode_ms,
        resize_ms=resize_ms,
        total_ms=(time.perf_counter() - started) * _MS,
        fast_path_used=decoded.reduction > 1,
    )


def _classify(scores: Scores, config: ProcessingConfig) -> tuple[ProcessStatus, str]:
    """Dark first, then low quality (contrast or sharpness too low); else processed."""
    if scores.brightness < config.dark_threshold:
        return "skipped_dark", f"brightness {scores.brightness:.1f} < {config.dark_threshold:g}"
    failures = []
    if scores.contrast < config.min_contrast:
        failures.append(f"contrast {scores.contrast:.1f} < {config.min_contrast:g}")
    if scores.sharpness < config.min_sharpness:
        failures.append(f"sharpness {scores.sharpness:.1f} < {config.min_sharpness:g}")
    if failures:
        return "skipped_low_quality", ", ".join(failures)
    return "processed", ""
