"""Cheap completeness checks that catch truncated files before the decoder sees them.

A JPEG must have an EOI marker after its first scan and a PNG must have its IEND chunk; a WebP or
uncompressed BMP must be at least as long as its header declares. A JPEG that lacks EOI is
rejected even where libjpeg would decode it with a "Premature end of JPEG file" warning: its
missing rows would be filled with grey and scored as if they were the scene. Bytes after EOI or
IEND (camera trailers, motion-photo videos) are allowed. GIF and TIFF are left to the decoder.
"""

from __future__ import annotations

from typing import Final

from streams.processing.errors import ImageRejected
from streams.processing.header import ImageHeader

_JPEG_EOI: Final = b"\xff\xd9"
_PNG_IEND_CHUNK: Final = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"  # length 0, type, CRC


def check_complete(data: bytes, header: ImageHeader) -> None:
    """Raise ImageRejected("truncated") if ``data`` visibly ends before the image does."""
    if len(data) < header.min_length:
        raise ImageRejected(
            "truncated",
            f"{header.format} header declares {header.min_length} bytes, got {len(data)}",
        )
    # Entropy-coded JPEG data cannot contain 0xFFD9 (0xFF is stuffed), so an EOI after the
    # first scan is the end of the image; an EOI inside an EXIF thumbnail comes before it.
    if header.format == "jpeg" and data.rfind(_JPEG_EOI) < header.scan_offset:
        raise ImageRejected("truncated", "jpeg has no EOI marker after its scan data")
    if header.format == "png" and data.rfind(_PNG_IEND_CHUNK) < 0:
        raise ImageRejected("truncated", "png has no IEND chunk")
