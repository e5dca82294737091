"""The public surface of streams.processing, as the worker imports it."""

from __future__ import annotations

import pickle

import streams.processing as processing
from streams.processing import REJECT_REASONS, ImageRejected

EXPECTED_EXPORTS = {
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
}


def test_public_exports() -> None:
    """The package exports exactly the documented names, and each one exists."""
    assert set(processing.__all__) == EXPECTED_EXPORTS
    assert all(hasattr(processing, name) for name in processing.__all__)


def test_reason_codes() -> None:
    """The reason codes are the stable set the worker and dashboards group by."""
    assert {
        "empty",
        "too_large",
        "unknown_format",
        "bad_header",
        "too_many_pixels",
        "truncated",
        "undecodable",
        "unsupported",
    } == REJECT_REASONS


def test_image_rejected_carries_reason_detail_and_is_not_retriable() -> None:
    """ImageRejected exposes reason and detail, says both in str(), and is never retriable."""
    error = ImageRejected("truncated", "png has no IEND chunk")
    assert (error.reason, error.detail, error.retriable) == (
        "truncated",
        "png has no IEND chunk",
        False,
    )
    assert str(error) == "truncated: png has no IEND chunk"
    assert ImageRejected.retriable is False


def test_image_rejected_survives_pickling() -> None:
    """ImageRejected round-trips through pickle (e.g. from a process pool) with its fields."""
    error = pickle.loads(pickle.dumps(ImageRejected("empty", "no bytes")))  # noqa: S301
    assert isinstance(error, ImageRejected)
    assert (error.reason, error.detail) == ("empty", "no bytes")


def test_the_dead_letter_codes_of_the_process_stage_are_the_workers_reasons() -> None:
    """`flowforge dlq replay --reason` knows the process stage's codes from the shared core
    (which cannot import the worker); they are exactly the worker's reasons plus internal_error."""
    from flowforge.core.dead_letter import REASONS_BY_STAGE

    assert set(REASONS_BY_STAGE["process"]) == REJECT_REASONS | {"internal_error"}
