"""Dead letters: the original bytes and headers plus why, never larger than the topic allows.

The bridges and the worker build their dead letters here, so a dead letter is never refused
itself: when the original bytes with the error headers would exceed the topic limit, the value is
emptied, the headers are kept, and the detail says how many bytes were dropped.
"""

from __future__ import annotations

from typing import Final

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from flowforge.core.envelope import ERROR_DETAIL, ERROR_REASON, ERROR_STAGE

Headers = list[tuple[str, bytes]]

#: Every dead-letter reason code (``ff-error-reason``), by the stage that writes it; a test
#: keeps it complete against the bridges' and the worker's codes.
REASONS_BY_STAGE: Final[dict[str, tuple[str, ...]]] = {
    "bridge": ("empty", "too_large", "bad_source_id", "not_an_image"),
    "envelope": ("bad_envelope",),
    "process": (
        "empty",
        "too_large",
        "unknown_format",
        "bad_header",
        "too_many_pixels",
        "truncated",
        "undecodable",
        "unsupported",
        "internal_error",
    ),
    "sink": ("clickhouse_rejected",),
}
KNOWN_REASONS: Final = frozenset(r for codes in REASONS_BY_STAGE.values() for r in codes)

#: Reasons whose images are never replayed, and why: the bridge refused the source id (the
#: MQTT topic), so a replay would turn it into rows under that refused id.
NOT_REPLAYABLE: Final[dict[str, str]] = {"bad_source_id": "refused source id"}

# Longest ff-error-detail, in characters.
MAX_DETAIL = 300


def record_size(key: bytes, value: bytes, headers: Headers) -> int:
    """The size Kafka's limits see for one record (aiokafka's estimate, batch overhead in)."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    return size


def error_headers(stage: str, reason: str, detail: str) -> Headers:
    """The ``ff-error-*`` headers: which stage refused the image, the reason code, the detail."""
    return [
        (ERROR_STAGE, stage.encode()),
        (ERROR_REASON, reason.encode()),
        (ERROR_DETAIL, detail[:MAX_DETAIL].encode("utf-8", errors="replace")),
    ]


def without_value(headers: Headers, size: int) -> Headers:
    """``headers`` of a dead letter whose value of ``size`` bytes is dropped, the detail saying
    so first (so truncation never cuts the size off)."""
    note = f"value of {size} bytes dropped: over the dead-letter topic's limit"
    out = []
    for name, value in headers:
        if name == ERROR_DETAIL:
            detail = f"{note}; {value.decode('utf-8', errors='replace')}"
            value = detail[:MAX_DETAIL].encode("utf-8", errors="replace")
        out.append((name, value))
    return out


def fit(key: bytes, value: bytes, headers: Headers, limit: int) -> tuple[bytes, Headers]:
    """The value and headers of a dead letter within ``limit`` bytes: the original bytes when
    they fit with the headers, else an empty value (see :func:`without_value`)."""
    if record_size(key, value, headers) <= limit:
        return value, headers
    return b"", without_value(headers, len(value))
