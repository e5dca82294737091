"""Image processing core: bytes in, scored and resized JPEG out; pure functions, no I/O.

from streams.processing import ProcessingConfig, ImageRejected, process_image
outcome = process_image(data, ProcessingConfig())  # ProcessedImage, or raises ImageRejected
"""

from __future__ import annotations

from flowforge.core.formats import ImageFormat, sniff_format
from streams.processing.config import ProcessingConfig, ResizePolicy
from streams.processing.decoding import DecodedImage, choose_reduction, decode
from streams.processing.errors import REJECT_REASONS, ImageRejected, RejectReason
from streams.processing.header import ImageHeader, read_header
from streams.processing.pipeline import process_image
from streams.processing.resizing import resize
from streams.processing.result import ProcessedImage, ProcessStatus
from streams.processing.scores import WORKING_AREA, Scores, compute_scores
from streams.processing.truncation import check_complete

__all__ = [
    "REJECT_REASONS",
    "WORKING_AREA",
    "DecodedImage",
    "ImageFormat",
    "ImageHeader",
    "ImageRejected",
    "ProcessStatus",
    "ProcessedImage",
    "ProcessingConfig",
    "RejectReason",
    "ResizePolicy",
    "Scores",
    "check_complete",
    "choose_reduction",
    "compute_scores",
    "decode",
    "process_image",
    "read_header",
    "resize",
    "sniff_format",
]
