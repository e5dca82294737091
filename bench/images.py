"""The benchmarks' image sets: deterministic camera-like JPEGs, and real photos from a wheel.

- ``camera_set(width, height, count)``: ``count`` distinct q85 JPEGs of the scenes of
  tests/support/images.py (lit gradient, shapes, sensor noise), each numbered so its content and
  image id differ;
- ``photo_set()``: the colour photographs bundled inside the scikit-image wheel (installed with
  the ``dev`` extra; files read as they ship, no download, skimage not imported).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tests.support.images import jpeg, numbered, scene

# Colour photographs in scikit-image's wheel (skimage/data) that FlowForge processes (not dark):
# the grayscale, synthetic, microscopy and document images there are left out, and so is
# hubble_deep_field.jpg, which is skipped as dark (brightness 19 < 40).
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "rocket.jpg",
    "retina.jpg",
)
SCENES = 4  # distinct base scenes a camera set cycles through


@dataclass(frozen=True)
class ImageSet:
    """Named encoded images with what they are, for the results."""

    name: str
    payloads: list[bytes]
    description: str
    files: list[dict[str, object]]

    @property
    def mean_kib(self) -> float:
        return sum(len(p) for p in self.payloads) / len(self.payloads) / 1024


def camera_set(width: int, height: int, count: int) -> ImageSet:
    """``count`` distinct width x height q85 JPEGs of camera-like scenes (deterministic)."""
    payloads = [jpeg(numbered(scene(width, height, seed=i % SCENES), i)) for i in range(count)]
    return ImageSet(
        name=f"{height}p",
        payloads=payloads,
        description=f"{count} synthetic {width}x{height} camera-like JPEGs, quality 85",
        files=[],
    )


def photo_dir() -> Path:
    """skimage/data of the installed scikit-image wheel; SystemExit if it is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "scikit-image is not installed: the real-photo set is its bundled sample data "
            "(pip install -e '.[dev]')"
        )
    return Path(spec.origin).parent / "data"


def photo_set() -> ImageSet:
    """The bundled colour photographs, bytes as shipped (PNG and JPEG), with their sizes."""
    root = photo_dir()
    payloads, files = [], []
    for name in PHOTOS:
        data = (root / name).read_bytes()
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            raise SystemExit(f"{root / name}: OpenCV cannot decode it")
        payloads.append(data)
        files.append(
            {"name": name, "width": pixels.shape[1], "height": pixels.shape[0], "bytes": len(data)}
        )
    return ImageSet(
        name="photos",
        payloads=payloads,
        description=f"{len(PHOTOS)} colour photos bundled in the scikit-image wheel "
        "(0.2-2 MP, PNG and JPEG as shipped)",
        files=files,
    )
