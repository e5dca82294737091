"""Dead letters: the original bytes and headers plus why, never larger than the topic allows.

The bridges and the worker build their dead letters here, so a dead letter is never refused
itself: when the original bytes with the error headers would exceed the topic limit, the value is
emptied, the headers are kept, and the detail says how many bytes were dropped.
"""

from __future__ import annotations

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from flowforge.core.envelope import ERROR_DETAIL, ERROR_REASON, ERROR_STAGE

Headers = list[tuple[str, bytes]]

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
