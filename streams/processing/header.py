"""Header parsing: an image's declared dimensions, read from its bytes before any decode.

Small pure parsers for JPEG (SOFn incl. progressive, plus the EXIF orientation in APP1), PNG
(IHDR), GIF (logical screen and first image descriptor), BMP (core and info headers, negative
height = top-down), WebP (VP8, VP8L, VP8X) and TIFF (first IFD, both byte orders, BigTIFF). They
let the pipeline refuse a decompression bomb at the cost of reading a few bytes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final

from flowforge.core.formats import ImageFormat, sniff_format
from streams.processing.errors import IfdError, ImageRejected
from streams.processing.tiff_ifd import (
    TAG_IMAGE_LENGTH,
    TAG_IMAGE_WIDTH,
    TAG_ORIENTATION,
    read_first_ifd,
)

# OpenCV's own per-side limit (CV_IO_MAX_IMAGE_WIDTH/HEIGHT): a larger side is not a real image.
MAX_SIDE: Final = 1 << 20
ORIENTATIONS_SWAPPING_SIDES: Final = frozenset({5, 6, 7, 8})

_JPEG_SOF_MARKERS: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_JPEG_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7
_NOT_FF: Final = re.compile(rb"[^\xff]")  # the marker code after 0xFF fill bytes
_JPEG_SOI: Final = 0xD8
_JPEG_EOI: Final = 0xD9
_JPEG_SOS: Final = 0xDA
_JPEG_APP1: Final = 0xE1
_EXIF_PREFIX: Final = b"Exif\x00\x00"
_PNG_IHDR_LENGTH: Final = 13
_GIF_EXTENSION: Final = 0x21
_GIF_IMAGE: Final = 0x2C
_GIF_TRAILER: Final = 0x3B
_GIF_HEADER_END: Final = 13
_BMP_CORE_HEADER: Final = 12
_BMP_INFO_HEADER: Final = 40
_BMP_UNCOMPRESSED: Final = frozenset({0, 3, 6})  # BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS
_BMP_BITS: Final = frozenset({1, 2, 4, 8, 16, 24, 32})
_RIFF_HEADER: Final = 8
_VP8_START_CODE: Final = b"\x9d\x01\x2a"
_VP8L_SIGNATURE: Final = 0x2F
_VP8_SIDE_MASK: Final = 0x3FFF
_VP8L_SIDE_BITS: Final = 14


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What an image's header declares.

    ``width``/``height`` are as stored (before EXIF orientation); for GIF they cover both the
    logical screen and the first frame. ``orientation`` is the EXIF/TIFF orientation (1-8) that
    JPEG (APP1 Exif) and TIFF (tag 274) declare, 1 when absent or for other formats (OpenCV
    applies theirs when decoding). ``min_length`` is the byte count the header implies a complete
    file has (RIFF size, BMP pixel array; 0 when unknown); ``scan_offset`` is where the first
    JPEG scan (SOS) starts (0 for other formats).
    """

    format: ImageFormat
    width: int
    height: int
    orientation: int = 1
    min_length: int = 0
    scan_offset: int = 0

    @property
    def pixels(self) -> int:
        """Declared pixel count, width times height."""
        return self.width * self.height

    @property
    def oriented_size(self) -> tuple[int, int]:
        """(width, height) once the EXIF orientation is applied."""
        if self.orientation in ORIENTATIONS_SWAPPING_SIDES:
            return self.height, self.width
        return self.width, self.height


def read_header(data: bytes) -> ImageHeader:
    """Parse the header of ``data``; raise ImageRejected (unknown_format, bad_header, truncated).

    Checks that the dimensions are between 1 and MAX_SIDE; the caller compares the pixel count
    against its own limit.
    """
    image_format = sniff_format(data)
    if image_format is None:
        raise ImageRejected(
            "unknown_format", f"magic bytes {data[:8].hex()} are not JPEG/PNG/GIF/BMP/TIFF/WebP"
        )
    try:
        header = _PARSERS[image_format](data)
    except struct.error as exc:
        raise ImageRejected(
            "truncated", f"{image_format} data ends inside its header ({len(data)} bytes)"
        ) from exc
    except IfdError as exc:
        raise ImageRejected("bad_header", f"tiff: {exc}") from exc
    for side, value in (("width", header.width), ("height", header.height)):
        if not 1 <= value <= MAX_SIDE:
            raise ImageRejected(
                "bad_header", f"{image_format} header declares {side} {value} (not 1..{MAX_SIDE})"
            )
    return header


def _bad(image_format: ImageFormat, detail: str) -> ImageRejected:
    return ImageRejected("bad_header", f"{image_format}: {detail}")


def _u8(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from("B", data, offset)[0]
    return value


def _jpeg(data: bytes) -> ImageHeader:
    """Walk the JPEG marker segments up to the first SOS, reading SOFn and the APP1 Exif."""
    size: tuple[int, int] | None = None
    orientation: int | None = None
    position = 2  # after SOI
    while True:
        # Like libjpeg, skip stray bytes before a marker, then any 0xFF fill bytes.
        marker_offset = data.find(b"\xff", position)
        code = _NOT_FF.search(data, marker_offset) if marker_offset >= 0 else None
        if code is None:
            raise struct.error("no marker before the end of the data")
        marker = data[code.start()]
        position = code.end()
        if marker == 0x00 or marker in _JPEG_STANDALONE_MARKERS:
            continue
        if marker in (_JPEG_SOI, _JPEG_EOI):
            raise _bad("jpeg", f"marker 0xFF{marker:02X} before any scan")
        (length,) = struct.unpack_from(">H", data, position)
        if length < 2:
            raise _bad("jpeg", f"segment 0xFF{marker:02X} has length {length}")
        end = position + length
        if end > len(data):
            raise struct.error(f"segment 0xFF{marker:02X} runs past the end of the data")
        if marker == _JPEG_SOS:
            if size is None:
                raise _bad("jpeg", "scan (SOS) before any frame header (SOFn)")
            width, height = size
            return ImageHeader("jpeg", width, height, orientation or 1, scan_offset=marker_offset)
        if marker in _JPEG_SOF_MARKERS and size is None:
            if length < 8:
                raise _bad("jpeg", f"frame header (SOF) of length {length}")
            height, width = struct.unpack_from(">HH", data, position + 3)
            size = (width, height)
        elif marker == _JPEG_APP1 and orientation is None:
            segment = data[position + 2 : end]
            if segment.startswith(_EXIF_PREFIX):
                orientation = exif_orientation(segment[len(_EXIF_PREFIX) :])
        position = end


def exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (1-8) of an EXIF block; 1 when absent, malformed or out of range.

    A damaged EXIF block does not make the image unusable, so it never raises.
    """
    try:
        value = read_first_ifd(tiff, (TAG_ORIENTATION,)).get(TAG_ORIENTATION, 1)
    except (struct.error, IfdError):
        return 1
    return value if 1 <= value <= 8 else 1


def _png(data: bytes) -> ImageHeader:
    """Read the IHDR chunk, which the PNG specification requires to come first."""
    length, chunk_type, width, height = struct.unpack_from(">I4sII", data, 8)
    if chunk_type != b"IHDR" or length != _PNG_IHDR_LENGTH:
        raise _bad("png", f"first chunk is {chunk_type!r} of length {length}, not IHDR")
    return ImageHeader("png", width, height)


def _gif(data: bytes) -> ImageHeader:
    """Read the logical screen, then skip extensions to the first image descriptor."""
    screen_width, screen_height, flags = struct.unpack_from("<HHB", data, 6)
    position = _GIF_HEADER_END
    if flags & 0x80:  # global colour table follows
        position += 3 * (2 << (flags & 0x07))
    while True:
        block = _u8(data, position)
        if block == _GIF_EXTENSION:
            position += 2  # introducer and label, then data sub-blocks up to a zero length
            while (sub_block := _u8(data, position)) != 0:
                position += 1 + sub_block
            position += 1
        elif block == _GIF_IMAGE:
            left, top, width, height = struct.unpack_from("<HHHH", data, position + 1)
            if width == 0 or height == 0:
                raise _bad("gif", f"first frame declares {width}x{height}")
            # A decoder may allocate whichever is larger: the screen or the frame's extent.
            return ImageHeader(
                "gif", max(screen_width, left + width), max(screen_height, top + height)
            )
        elif block == _GIF_TRAILER:
            raise _bad("gif", "no image before the trailer")
        else:
            raise _bad("gif", f"unknown block 0x{block:02X} at offset {position}")


def _bmp(data: bytes) -> ImageHeader:
    """Read the BITMAPCOREHEADER or BITMAPINFOHEADER (and its larger successors)."""
    pixel_offset, dib_size = struct.unpack_from("<II", data, 10)
    if dib_size == _BMP_CORE_HEADER:
        width, height, _planes, bits = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    elif dib_size >= _BMP_INFO_HEADER:
        width, height, _planes, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    else:
        raise _bad("bmp", f"DIB header size {dib_size}")
    if width <= 0:
        raise _bad("bmp", f"width {width}")
    height = abs(height)  # negative height: rows stored top-down
    min_length = 0
    if compression in _BMP_UNCOMPRESSED and bits in _BMP_BITS:
        row_bytes = (width * bits + 31) // 32 * 4
        min_length = pixel_offset + row_bytes * height
    return ImageHeader("bmp", width, height, min_length=min_length)


def _webp(data: bytes) -> ImageHeader:
    """Read the first chunk of the RIFF container: VP8 (lossy), VP8L (lossless) or VP8X."""
    (riff_size,) = struct.unpack_from("<I", data, 4)
    (chunk,) = struct.unpack_from("4s", data, 12)
    min_length = _RIFF_HEADER + riff_size
    if chunk == b"VP8 ":
        start_code, width, height = struct.unpack_from("<3sHH", data, 23)
        if start_code != _VP8_START_CODE:
            raise _bad("webp", "VP8 key frame start code missing")
        width, height = width & _VP8_SIDE_MASK, height & _VP8_SIDE_MASK
    elif chunk == b"VP8L":
        signature, bits = struct.unpack_from("<BI", data, 20)
        if signature != _VP8L_SIGNATURE:
            raise _bad("webp", f"VP8L signature 0x{signature:02X}")
        width = (bits & _VP8_SIDE_MASK) + 1
        height = ((bits >> _VP8L_SIDE_BITS) & _VP8_SIDE_MASK) + 1
    elif chunk == b"VP8X":
        w0, w1, w2, h0, h1, h2 = struct.unpack_from("<6B", data, 24)
        width = (w0 | w1 << 8 | w2 << 16) + 1
        height = (h0 | h1 << 8 | h2 << 16) + 1
    else:
        raise _bad("webp", f"first chunk {chunk!r} is not VP8, VP8L or VP8X")
    return ImageHeader("webp", width, height, min_length=min_length)


def _tiff(data: bytes) -> ImageHeader:
    """Read ImageWidth, ImageLength and Orientation from the first IFD."""
    tags = read_first_ifd(data, (TAG_IMAGE_WIDTH, TAG_IMAGE_LENGTH, TAG_ORIENTATION))
    if TAG_IMAGE_WIDTH not in tags or TAG_IMAGE_LENGTH not in tags:
        raise _bad("tiff", "first IFD has no ImageWidth/ImageLength")
    orientation = tags.get(TAG_ORIENTATION, 1)
    return ImageHeader(
        "tiff",
        tags[TAG_IMAGE_WIDTH],
        tags[TAG_IMAGE_LENGTH],
        orientation if 1 <= orientation <= 8 else 1,
    )


_PARSERS: Final = {
    "jpeg": _jpeg,
    "png": _png,
    "gif": _gif,
    "bmp": _bmp,
    "webp": _webp,
    "tiff": _tiff,
}
