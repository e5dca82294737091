"""Image format sniffing from magic bytes."""

from __future__ import annotations

from typing import Final, Literal

ImageFormat = Literal["jpeg", "png", "gif", "bmp", "tiff", "webp"]

_JPEG_MAGIC: Final = b"\xff\xd8\xff"
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_GIF_MAGICS: Final = (b"GIF87a", b"GIF89a")
_BMP_MAGIC: Final = b"BM"
_TIFF_MAGICS: Final = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_RIFF_MAGIC: Final = b"RIFF"
_WEBP_FORM: Final = b"WEBP"


def sniff_format(data: bytes) -> ImageFormat | None:
    """Return the format the leading magic bytes announce, or None if none we handle."""
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_GIF_MAGICS):
        return "gif"
    if data.startswith(_TIFF_MAGICS):
        return "tiff"
    if data.startswith(_RIFF_MAGIC) and data[8:12] == _WEBP_FORM:
        return "webp"
    if data.startswith(_BMP_MAGIC):
        return "bmp"
    return None
