"""ProcessingConfig: the limits, thresholds and output geometry of the processing step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, get_args

ResizePolicy = Literal["stretch", "letterbox", "crop"]
RESIZE_POLICIES: Final[frozenset[str]] = frozenset(get_args(ResizePolicy))

MIB: Final = 1024 * 1024
MAX_LUMA: Final = 255.0
MAX_OUTPUT_SIDE: Final = 16384
JPEG_QUALITY_RANGE: Final = range(1, 101)

# Defaults for the quality filter, measured on scikit-image's bundled photos (astronaut, camera,
# coffee, chelsea, coins, rocket, motorcycle, grass, gravel, brick, moon, retina, hubble...)
# scored as this module does (luma at about 640x360 pixels, see scores.py):
# - contrast (luma standard deviation): real scenes 13-120 (the moon 13.2, most above 25); a
#   flat or fogged frame (lens cap, uniform wall) stays below 10, flat grey is 0.
# - sharpness (variance of the Laplacian at the working size): sharp photos 35-2400 (moon 35,
#   retina 78, chelsea 89, most 140-1300); the same photos blurred with a Gaussian of sigma
#   width/160 (about 3 px at the working size) fall to 1.5-6.1, flat grey is 0.
# 10 and 15 sit between the two groups with margin on both sides.
DEFAULT_MIN_CONTRAST: Final = 10.0
DEFAULT_MIN_SHARPNESS: Final = 15.0


@dataclass(frozen=True, slots=True)
class ProcessingConfig:
    """How process_image checks, filters and resizes one image; validated on construction.

    ``max_bytes``/``max_pixels`` bound the input (pixels as declared by the header, checked
    before decoding). Images darker than ``dark_threshold`` (mean luma 0-255) are skipped as
    dark; then images with contrast below ``min_contrast`` or sharpness below ``min_sharpness``
    as low quality. Others are resized to ``out_width`` x ``out_height`` by ``resize_policy``
    and encoded as JPEG at ``jpeg_quality``. ``fast_path`` lets large JPEGs decode at 1/2, 1/4
    or 1/8 scale in the DCT domain.
    """

    max_bytes: int = 16 * MIB
    max_pixels: int = 50_000_000
    dark_threshold: float = 40.0
    min_contrast: float = DEFAULT_MIN_CONTRAST
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    out_width: int = 640
    out_height: int = 360
    resize_policy: ResizePolicy = "stretch"
    jpeg_quality: int = 85
    fast_path: bool = True

    def __post_init__(self) -> None:
        _require_int("max_bytes", self.max_bytes, minimum=1)
        _require_int("max_pixels", self.max_pixels, minimum=1)
        _require_number("dark_threshold", self.dark_threshold, maximum=MAX_LUMA)
        _require_number("min_contrast", self.min_contrast, maximum=MAX_LUMA)
        _require_number("min_sharpness", self.min_sharpness)
        _require_int("out_width", self.out_width, minimum=1, maximum=MAX_OUTPUT_SIDE)
        _require_int("out_height", self.out_height, minimum=1, maximum=MAX_OUTPUT_SIDE)
        if self.resize_policy not in RESIZE_POLICIES:
            raise ValueError(
                f"resize_policy must be one of {sorted(RESIZE_POLICIES)}, "
                f"got {self.resize_policy!r}"
            )
        _require_int(
            "jpeg_quality",
            self.jpeg_quality,
            minimum=JPEG_QUALITY_RANGE.start,
            maximum=JPEG_QUALITY_RANGE.stop - 1,
        )
        if not isinstance(self.fast_path, bool):
            raise ValueError(f"fast_path must be a bool, got {self.fast_path!r}")


def _require_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _require_number(name: str, value: object, *, maximum: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (maximum is not None and value > maximum):
        bound = ">= 0" if maximum is None else f"between 0 and {maximum:g}"
        raise ValueError(f"{name} must be {bound}, got {value}")
