"""Why an image is rejected: one error, ``ImageRejected``, with a stable reason code.

The tree::

    FlowForgeError                 (flowforge.core.errors) base; ``retriable`` for backoff loops
    +-- ImageRejected              these bytes are not an image we process (never retriable)
    +-- IfdError                   a TIFF/EXIF IFD is malformed; the header reader turns it into
                                   ImageRejected (``bad_header``) or ignores the orientation

``ImageRejected.reason`` is one of these codes (stable: dashboards and tables group by it):

    empty             no bytes at all
    too_large         more bytes than ``ProcessingConfig.max_bytes``
    unknown_format    the magic bytes are not JPEG, PNG, GIF, BMP, TIFF or WebP
    bad_header        the header is malformed, or declares zero or absurd dimensions
    too_many_pixels   the header declares more than ``max_pixels`` (found before any decode)
    truncated         the data ends before the header, the JPEG EOI, the PNG IEND chunk or the
                      length the header declares (RIFF size, BMP pixel array)
    undecodable       OpenCV cannot decode the data
    unsupported       a recognised image this build cannot use (e.g. GIF without OpenCV's GIF
                      decoder, or a decoded array that is not 8-bit BGR)

Trying again cannot change the outcome for the same bytes, so ``retriable`` is always False.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from flowforge.core.errors import FlowForgeError

RejectReason = Literal[
    "empty",
    "too_large",
    "unknown_format",
    "bad_header",
    "too_many_pixels",
    "truncated",
    "undecodable",
    "unsupported",
]
REJECT_REASONS: Final[frozenset[str]] = frozenset(get_args(RejectReason))


class ImageRejected(FlowForgeError):
    """The bytes are not an image this pipeline processes; ``reason`` is a stable code."""

    retriable = False

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[RejectReason, str]]:
        return (type(self), (self.reason, self.detail))


class IfdError(FlowForgeError, ValueError):
    """The TIFF structure is malformed (bad byte order, version or value type)."""
