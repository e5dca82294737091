"""ProcessingConfig: documented defaults and validation of every field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from streams.processing import ProcessingConfig


def test_defaults() -> None:
    """The defaults are the documented limits, thresholds and output geometry."""
    config = ProcessingConfig()
    assert dataclasses.asdict(config) == {
        "max_bytes": 16 * 1024 * 1024,
        "max_pixels": 50_000_000,
        "dark_threshold": 40.0,
        "min_contrast": 10.0,
        "min_sharpness": 15.0,
        "out_width": 640,
        "out_height": 360,
        "resize_policy": "stretch",
        "jpeg_quality": 85,
        "fast_path": True,
    }


def test_frozen() -> None:
    """A config cannot be changed after construction."""
    config = ProcessingConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.out_width = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_bytes", 0),
        ("max_bytes", 1.5),
        ("max_bytes", True),
        ("max_pixels", -1),
        ("dark_threshold", -0.1),
        ("dark_threshold", 256),
        ("dark_threshold", float("nan")),
        ("dark_threshold", "40"),
        ("min_contrast", -1.0),
        ("min_contrast", 300.0),
        ("min_sharpness", float("inf")),
        ("min_sharpness", -5),
        ("out_width", 0),
        ("out_height", 100_000),
        ("out_height", 360.0),
        ("resize_policy", "fit"),
        ("jpeg_quality", 0),
        ("jpeg_quality", 101),
        ("fast_path", 1),
    ],
)
def test_rejects_bad_values(field: str, value: Any) -> None:
    """A bad value raises ValueError naming the field."""
    with pytest.raises(ValueError, match=field):
        ProcessingConfig(**{field: value})


def test_accepts_edge_values() -> None:
    """Boundary values (zero thresholds, quality 1 and 100, 1x1 output, ints for floats) pass."""
    config = ProcessingConfig(
        dark_threshold=0,
        min_contrast=0.0,
        min_sharpness=0,
        out_width=1,
        out_height=1,
        jpeg_quality=100,
        resize_policy="crop",
        fast_path=False,
    )
    assert (config.out_width, config.jpeg_quality, config.resize_policy) == (1, 100, "crop")
    assert ProcessingConfig(jpeg_quality=1).jpeg_quality == 1
