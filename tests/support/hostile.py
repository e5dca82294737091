"""The hostile-input corpus: damaged, deceptive and oversized images, generated in code.

Each case has the outcome process_image must give (with the default ProcessingConfig): a status
(``processed``, ``skipped_dark``, ``skipped_low_quality``) or ``reject:<reason>``. Cases whose
header alone must refuse them set ``before_decode``: OpenCV must never see their bytes.
The corpus is deterministic (fixed seeds), so the unit and integration tests share it and
RELIABILITY.md's table lists it.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from tests.support import images
from tests.support.images import Image, scene

HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n"
JS = b"*/=1;alert(document.cookie);//"


@dataclass(frozen=True)
class HostileCase:
    """One corpus item: its bytes, the outcome it must get, and why it is in the corpus."""

    name: str
    data: bytes
    expected: str  # a status, or "reject:<reason>"
    why: str
    before_decode: bool = False

    @property
    def reason(self) -> str | None:
        """The reject reason expected, or None for an image that must be accepted."""
        return self.expected.removeprefix("reject:") if self.rejected else None

    @property
    def rejected(self) -> bool:
        """Whether the case must be rejected."""
        return self.expected.startswith("reject:")


def picture(width: int = 640, height: int = 360, number: int = 0) -> Image:
    """A camera-like scene with ``number`` drawn on it: one scene (one canvas to draw, the
    slow part) gives every case distinct bytes."""
    return np.ascontiguousarray(images.numbered(scene(width, height, seed=50), number))


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("payload.html", date_time=(2020, 1, 1, 0, 0, 0)), HTML)
    return buffer.getvalue()


def _jpeg_sof(data: bytes) -> int:
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        sof = data.find(marker)
        if sof > 0:
            return sof
    raise AssertionError("no SOF0/SOF2 segment")


def _gif_js_polyglot() -> bytes:
    """A GIF whose logical screen width reads ``/*`` so the file is also JavaScript."""
    gif = bytearray(images.animated_gif([picture(320, 240, 51)]))
    gif[6:8] = b"/*"  # width 0x2A2F = 10799
    return bytes(gif) + JS


def _png_ihdr(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + images.png_chunk(b"IHDR", ihdr)


def _gif_screen(width: int, height: int) -> bytes:
    gif = bytearray(images.animated_gif([picture(64, 48, 52)]))
    struct.pack_into("<HH", gif, 6, width, height)
    return bytes(gif)


def _bmp_size(width: int, height: int) -> bytes:
    data = bytearray(images.encode(picture(64, 48, 53), ".bmp"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def _webp_vp8x(width: int, height: int) -> bytes:
    chunk = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    chunk += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _tiff_size(width: int, height: int) -> bytes:
    data = bytearray(images.tiff(picture(64, 48, 54)[:, :, 1].copy()))
    # The first IFD's entries start at 10; ImageWidth and ImageLength are the first two.
    struct.pack_into("<I", data, 10 + 8, width)
    struct.pack_into("<I", data, 10 + 12 + 8, height)
    return bytes(data)


def _exif_orientation_out_of_range() -> bytes:
    """An APP1 Exif whose Orientation is 9 (there are only 1-8)."""
    data = images.with_exif_orientation(images.jpeg(picture(number=55)), 1)
    block = images.exif_block(1)
    patched = images.exif_block(9)
    return data.replace(block, patched, 1)


def _exif_offset_out_of_bounds() -> bytes:
    """An APP1 Exif whose IFD0 offset points far past the end of the block."""
    data = images.with_exif_orientation(images.jpeg(picture(number=56)), 6)
    block = images.exif_block(6)
    broken = block[:4] + struct.pack("<I", 0x7FFF_FFF0) + block[8:]
    return data.replace(block, broken, 1)


def _jpeg_scan_garbage() -> bytes:
    """A JPEG whose entropy-coded data is replaced by noise (markers, EOI intact)."""
    data = bytearray(images.jpeg(picture(number=57)))
    header = data.find(b"\xff\xda")
    scan = header + 2 + struct.unpack_from(">H", data, header + 2)[0]
    rng = np.random.default_rng(57)
    noise = rng.integers(0, 255, len(data) - 2 - scan, dtype=np.uint8)  # no 0xFF: no markers
    data[scan:-2] = noise.tobytes()
    return bytes(data)


def _progressive_cut_mid_scan() -> bytes:
    data = images.jpeg(picture(1280, 720, 58), progressive=True)
    scans = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    assert len(scans) > 2, "a progressive JPEG has several scans"
    return data[: (scans[1] + scans[2]) // 2]  # inside the second scan


def _cmyk() -> bytes:
    return images.cmyk_jpeg(picture(800, 600, 59))


def _first_frame_bright_second_dark() -> bytes:
    bright = picture(320, 240, 60)
    dark = np.ascontiguousarray((picture(320, 240, 61) * 0.1).astype(np.uint8))
    return images.animated_gif([bright, dark])


def _sixteen_bit() -> bytes:
    return images.png(picture(number=62).astype(np.uint16) * 257)


def _one_by_one(fmt: str) -> bytes:
    pixel = np.full((1, 1, 3), 200, np.uint8)
    return images.jpeg(pixel) if fmt == "jpeg" else images.png(pixel)


def _png_chunk_swap() -> bytes:
    """PNG magic in front of a JPEG body: the header says PNG, the bytes are JPEG."""
    return b"\x89PNG\r\n\x1a\n" + images.jpeg(picture(number=63))[2:]


def _jpeg_magic_png_body() -> bytes:
    """JPEG magic in front of a PNG body."""
    return b"\xff\xd8\xff" + images.png(picture(number=64))


def _webp_riff_size_huge() -> bytes:
    data = bytearray(images.encode(picture(number=65), ".webp"))
    struct.pack_into("<I", data, 4, 0xFFFF_FFF0)
    return bytes(data)


def _tiff_ifd_past_end() -> bytes:
    data = bytearray(images.tiff(picture(64, 48, 66)[:, :, 0].copy()))
    struct.pack_into("<I", data, 4, 0x7FFF_0000)
    return bytes(data)


def _pil(image: Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(image[:, :, ::-1])).save(buffer, fmt, **options)
    return buffer.getvalue()


@functools.cache
def corpus() -> tuple[HostileCase, ...]:
    """Every hostile case, in a stable order with unique names and unique bytes."""
    jpeg = images.jpeg(picture(1280, 720, 70))
    png = images.png(picture(800, 600, 71))
    sof = _jpeg_sof(jpeg)
    cases = [
        HostileCase("zero-bytes", b"", "reject:empty", "no bytes at all", True),
        HostileCase(
            "random-bytes",
            np.random.default_rng(72).bytes(4096),
            "reject:unknown_format",
            "4 KiB of noise",
            True,
        ),
        HostileCase("html", HTML, "reject:unknown_format", "an HTML page with a script", True),
        HostileCase("zip", _zip(), "reject:unknown_format", "a ZIP archive", True),
        HostileCase(
            "jpeg-truncated-half", jpeg[: len(jpeg) // 2], "reject:truncated", "half a JPEG", True
        ),
        HostileCase(
            "jpeg-truncated-in-header",
            jpeg[: sof + 6],
            "reject:truncated",
            "ends inside the SOF segment",
            True,
        ),
        HostileCase(
            "jpeg-magic-only", b"\xff\xd8\xff", "reject:truncated", "SOI and nothing else", True
        ),
        HostileCase(
            "jpeg-progressive-cut-mid-scan",
            _progressive_cut_mid_scan(),
            "reject:truncated",
            "a progressive JPEG cut inside its second scan",
            True,
        ),
        HostileCase(
            "png-truncated-half", png[: len(png) // 2], "reject:truncated", "half a PNG", True
        ),
        HostileCase(
            "png-truncated-in-ihdr", png[:20], "reject:truncated", "ends inside IHDR", True
        ),
        HostileCase(
            "jpeg-sof-65535x65535",
            images.set_jpeg_size(jpeg, 65535, 65535),
            "reject:too_many_pixels",
            "SOF claims 65535x65535",
            True,
        ),
        HostileCase(
            "png-ihdr-65535x65535",
            images.png_bomb(65535, 65535),
            "reject:too_many_pixels",
            "IHDR claims 65535x65535 over 1 KiB of IDAT",
            True,
        ),
        HostileCase(
            "png-20000x20000",
            images.png_bomb(20_000, 20_000),
            "reject:too_many_pixels",
            "a 400-megapixel PNG header (decompression bomb)",
            True,
        ),
        HostileCase(
            "jpeg-20000x20000",
            images.set_jpeg_size(images.jpeg(picture(64, 48, 73)), 20_000, 20_000),
            "reject:too_many_pixels",
            "a 400-megapixel JPEG header",
            True,
        ),
        HostileCase(
            "gif-screen-65535x65535",
            _gif_screen(65535, 65535),
            "reject:too_many_pixels",
            "GIF logical screen claims 65535x65535",
            True,
        ),
        HostileCase(
            "bmp-20000x-20000",
            _bmp_size(20_000, -20_000),
            "reject:too_many_pixels",
            "top-down BMP header claiming 20000x20000",
            True,
        ),
        HostileCase(
            "bmp-64x-20000",
            _bmp_size(64, -20_000),
            "reject:truncated",
            "top-down BMP claiming 20000 rows over the pixels of 48",
            True,
        ),
        HostileCase(
            "webp-vp8x-16384x16384",
            _webp_vp8x(16384, 16384),
            "reject:too_many_pixels",
            "WebP VP8X canvas of 268 megapixels",
            True,
        ),
        HostileCase(
            "tiff-20000x20000",
            _tiff_size(20_000, 20_000),
            "reject:too_many_pixels",
            "TIFF IFD claims 20000x20000",
            True,
        ),
        HostileCase(
            "png-ihdr-width-0",
            _png_ihdr(0, 100),
            "reject:bad_header",
            "IHDR width 0",
            True,
        ),
        HostileCase(
            "png-ihdr-width-2^31",
            _png_ihdr(2**31, 1),
            "reject:bad_header",
            "IHDR width beyond OpenCV's per-side limit",
            True,
        ),
        HostileCase(
            "jpeg-sof-height-0",
            images.set_jpeg_size(images.jpeg(picture(64, 48, 74)), 64, 0),
            "reject:bad_header",
            "SOF height 0 (DNL) is not supported",
            True,
        ),
        HostileCase(
            "bmp-height-min-int",
            _bmp_size(64, -(2**31)),
            "reject:bad_header",
            "BMP height -2^31: abs() overflows a 32-bit int",
            True,
        ),
        HostileCase(
            "bmp-width-negative",
            _bmp_size(-64, 48),
            "reject:bad_header",
            "BMP negative width",
            True,
        ),
        HostileCase(
            "png-magic-jpeg-body",
            _png_chunk_swap(),
            "reject:bad_header",
            "PNG signature in front of a JPEG body",
            True,
        ),
        HostileCase(
            "jpeg-magic-png-body",
            _jpeg_magic_png_body(),
            "reject:truncated",
            "JPEG SOI in front of a PNG body: no SOF/SOS marker before the end",
            True,
        ),
        HostileCase(
            "webp-riff-size-huge",
            _webp_riff_size_huge(),
            "reject:truncated",
            "RIFF size 4 GiB on a small WebP",
            True,
        ),
        HostileCase(
            "tiff-ifd-past-end",
            _tiff_ifd_past_end(),
            "reject:truncated",
            "first IFD offset beyond the end of the file",
            True,
        ),
        HostileCase(
            "jpeg-scan-noise",
            _jpeg_scan_garbage(),
            "processed",
            "noise as entropy-coded data: libjpeg decodes it with warnings OpenCV does not"
            " surface (known limitation)",
        ),
        HostileCase(
            "png-bad-bit-depth",
            _png_ihdr(64, 64, bit_depth=7) + images.png_chunk(b"IEND", b""),
            "reject:undecodable",
            "IHDR bit depth 7",
        ),
        HostileCase(
            "png-7000x7000-1KiB",
            images.png_bomb(7000, 7000),
            "reject:undecodable",
            "49 megapixels (just under max_pixels) over 1 KiB of IDAT: libpng stops early",
        ),
        HostileCase(
            "png-1048576x40",
            images.png_bomb(1 << 20, 40),
            "reject:undecodable",
            "the widest side allowed, 40 rows: over libpng's own width limit",
        ),
        HostileCase(
            "jpeg-1x1", _one_by_one("jpeg"), "skipped_low_quality", "1x1 JPEG: no contrast"
        ),
        HostileCase("png-1x1", _one_by_one("png"), "skipped_low_quality", "1x1 PNG"),
        HostileCase("jpeg-cmyk", _cmyk(), "processed", "Adobe CMYK JPEG: converted by libjpeg"),
        HostileCase("png-16bit", _sixteen_bit(), "processed", "16-bit RGB PNG"),
        HostileCase(
            "gif-animated",
            _first_frame_bright_second_dark(),
            "processed",
            "animated GIF, bright first frame then dark: first frame scored",
        ),
        HostileCase(
            "jpeg-plus-zip",
            images.jpeg(picture(number=75)) + _zip(),
            "processed",
            "JPEG/ZIP polyglot: bytes after EOI allowed, output re-encoded",
        ),
        HostileCase(
            "jpeg-plus-html",
            images.jpeg(picture(number=76)) + HTML,
            "processed",
            "JPEG/HTML polyglot",
        ),
        HostileCase(
            "png-plus-html",
            images.png(picture(number=77)) + HTML,
            "processed",
            "PNG/HTML polyglot: bytes after IEND",
        ),
        HostileCase("gif-js-polyglot", _gif_js_polyglot(), "processed", "GIF/JS polyglot"),
        HostileCase(
            "bmp-top-down",
            images.bmp_top_down(picture(number=78)),
            "processed",
            "BMP with negative height (rows top-down)",
        ),
        HostileCase(
            "jpeg-exif-orientation-9",
            _exif_orientation_out_of_range(),
            "processed",
            "EXIF orientation 9 (out of range): treated as upright",
        ),
        HostileCase(
            "jpeg-exif-offset-out-of-bounds",
            _exif_offset_out_of_bounds(),
            "processed",
            "EXIF IFD offset past the block: orientation ignored",
        ),
        HostileCase(
            "webp-lossless",
            _pil(picture(number=79), "WEBP", lossless=True),
            "processed",
            "lossless WebP (VP8L)",
        ),
        HostileCase(
            "tiff-big-endian",
            images.tiff(picture(number=80)[:, :, 2].copy(), big_endian=True),
            "processed",
            "big-endian TIFF",
        ),
        HostileCase(
            "tiff-bigtiff",
            images.tiff(picture(number=81)[:, :, 2].copy(), bigtiff=True),
            "processed",
            "BigTIFF",
        ),
    ]
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "corpus names must be unique"
    blobs = [case.data for case in cases]
    assert len(set(blobs)) == len(blobs), "corpus bytes must be unique (one image id each)"
    return tuple(cases)
