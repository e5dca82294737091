"""A bounded reader for the first IFD of a TIFF structure (TIFF files and EXIF blocks)."""

from __future__ import annotations

import struct
from collections.abc import Collection
from typing import Final

from streams.processing.errors import IfdError

TAG_IMAGE_WIDTH: Final = 256
TAG_IMAGE_LENGTH: Final = 257
TAG_ORIENTATION: Final = 274

_CLASSIC: Final = 42
_BIG: Final = 43
_TYPE_SHORT: Final = 3
_TYPE_LONG: Final = 4
_TYPE_LONG8: Final = 16


def read_first_ifd(tiff: bytes, wanted: Collection[int]) -> dict[int, int]:
    """Return the integer values of the ``wanted`` tags found in the first IFD of ``tiff``.

    ``tiff`` starts with the byte-order mark (``II``/``MM``); classic TIFF and BigTIFF are read.
    Only SHORT, LONG and LONG8 values are returned; other tags and types are skipped. Raises
    ``IfdError`` on a malformed structure and ``struct.error`` when an offset points past the end.
    """
    order = tiff[:2]
    if order == b"II":
        endian = "<"
    elif order == b"MM":
        endian = ">"
    else:
        raise IfdError(f"byte order mark {order!r} is neither II nor MM")
    (version,) = _unpack(endian + "H", tiff, 2)
    if version == _CLASSIC:
        (ifd,) = _unpack(endian + "I", tiff, 4)
        (count,) = _unpack(endian + "H", tiff, ifd)
        first, size, entry_format = ifd + 2, 12, endian + "HHI"
        value_at = 8
    elif version == _BIG:
        (ifd,) = _unpack(endian + "Q", tiff, 8)
        (count,) = _unpack(endian + "Q", tiff, ifd)
        first, size, entry_format = ifd + 8, 20, endian + "HHQ"
        value_at = 12
    else:
        raise IfdError(f"TIFF version {version} is neither 42 nor 43 (BigTIFF)")
    # A count larger than the data can hold runs into struct.error at the end of the data.
    count = min(count, max(0, (len(tiff) - first) // size) + 1)
    found: dict[int, int] = {}
    for index in range(count):
        entry = first + index * size
        tag, value_type, _n = _unpack(entry_format, tiff, entry)
        if tag not in wanted:
            continue
        if value_type == _TYPE_SHORT:
            (found[tag],) = _unpack(endian + "H", tiff, entry + value_at)
        elif value_type == _TYPE_LONG:
            (found[tag],) = _unpack(endian + "I", tiff, entry + value_at)
        elif value_type == _TYPE_LONG8 and version == _BIG:
            (found[tag],) = _unpack(endian + "Q", tiff, entry + value_at)
    return found


def _unpack(fmt: str, tiff: bytes, offset: int) -> tuple[int, ...]:
    """struct.unpack_from that also reports offsets beyond any buffer (up to 2**64) as short."""
    if offset > len(tiff):
        raise struct.error(f"offset {offset} is past the end of {len(tiff)} bytes")
    return struct.unpack_from(fmt, tiff, offset)
