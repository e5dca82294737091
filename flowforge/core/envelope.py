"""The envelope: Kafka headers on every image message (bridges write them, workers read them)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flowforge.core.errors import EnvelopeError

IMAGE_ID = "ff-image-id"
SOURCE_TYPE = "ff-source-type"
SOURCE_ID = "ff-source-id"
CAPTURED_AT = "ff-captured-at"
CONTENT_TYPE = "ff-content-type"
ORIGIN = "ff-origin"
INGESTED_AT = "ff-ingested-at"
ENVELOPE_HEADERS = (
    IMAGE_ID,
    SOURCE_TYPE,
    SOURCE_ID,
    CAPTURED_AT,
    CONTENT_TYPE,
    ORIGIN,
    INGESTED_AT,
)

ERROR_STAGE = "ff-error-stage"
ERROR_REASON = "ff-error-reason"
ERROR_DETAIL = "ff-error-detail"
ORIGINAL_TOPIC = "ff-original-topic"
ORIGINAL_PARTITION = "ff-original-partition"
ORIGINAL_OFFSET = "ff-original-offset"

SOURCE_TYPES = ("mqtt", "rtsp", "batch")
MAX_HEADER_TEXT = 1024


@dataclass(frozen=True)
class Envelope:
    """The envelope headers of one image message, decoded and checked."""

    image_id: str
    source_type: str
    source_id: str
    captured_at_ms: int
    content_type: str
    origin: str
    ingested_at_ms: int  # when FlowForge received the image (a bridge, or the Kafka timestamp)

    def headers(self) -> list[tuple[str, bytes]]:
        """The envelope as Kafka headers (UTF-8 values)."""
        values = (
            self.image_id,
            self.source_type,
            self.source_id,
            str(self.captured_at_ms),
            self.content_type,
            self.origin,
            str(self.ingested_at_ms),
        )
        return [
            (name, value.encode()) for name, value in zip(ENVELOPE_HEADERS, values, strict=True)
        ]


def header_map(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> dict[str, str]:
    """Kafka headers as a dict of UTF-8 strings (undecodable bytes replaced, never raising)."""
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {
        str(name): (value or b"").decode("utf-8", errors="replace")[:MAX_HEADER_TEXT]
        for name, value in items
    }


def content_image_id(source_id: str, data: bytes) -> str:
    """The stable id of an image: a hash of its source id and content (redeliveries keep it)."""
    return content_digest(source_id, data)[:32]


def content_digest(source_id: str, data: bytes) -> str:
    """SHA-256 (hex) of the source id, a NUL and the content: the image id is its first 32
    digits, so one hash gives both (the batch bridge keeps the whole in its checkpoint)."""
    digest = hashlib.sha256(source_id.encode("utf-8", errors="replace") + b"\0")
    digest.update(data)
    return digest.hexdigest()


def frame_image_id(stream_id: str, timestamp_ms: int) -> str:
    """The stable id of a video frame: a hash of its stream (source) id and capture time."""
    digest = hashlib.sha256(f"{stream_id}\0{timestamp_ms}".encode("utf-8", errors="replace"))
    return digest.hexdigest()[:32]


def parse_envelope(
    headers: Mapping[str, str],
    key: bytes | None,
    data: bytes,
    now_ms: int,
    timestamp_ms: int | None = None,
) -> Envelope:
    """Decode the envelope of a message from any producer, filling what a bridge would have set.

    A missing image id is derived from source id and content (as bridges do), a missing source
    id from the message key, a missing ingest time from the Kafka record's ``timestamp_ms`` (or
    ``now_ms``), a missing capture time from the ingest time. A time that is not epoch
    milliseconds raises EnvelopeError(``bad_envelope``).
    """
    source_type = headers.get(SOURCE_TYPE, "").strip() or "unknown"
    key_text = (key or b"").decode("utf-8", errors="replace")
    source_id = headers.get(SOURCE_ID, "").strip() or key_text or "unknown"
    image_id = headers.get(IMAGE_ID, "").strip() or content_image_id(source_id, data)
    ingested_at_ms = _epoch_ms(headers, INGESTED_AT, timestamp_ms or now_ms)
    captured_at_ms = _epoch_ms(headers, CAPTURED_AT, ingested_at_ms)
    return Envelope(
        image_id=image_id[:128],
        source_type=source_type[:32],
        source_id=source_id[:256],
        captured_at_ms=captured_at_ms,
        content_type=headers.get(CONTENT_TYPE, ""),
        origin=headers.get(ORIGIN, ""),
        ingested_at_ms=ingested_at_ms,
    )


def _epoch_ms(headers: Mapping[str, str], name: str, default: int) -> int:
    """Header ``name`` as epoch milliseconds (``default`` when absent); bad_envelope if not."""
    raw = headers.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise EnvelopeError(
            "bad_envelope", f"{name} is not epoch milliseconds: {raw[:40]!r}"
        ) from None
    if not 0 <= value < 10**14:
        raise EnvelopeError("bad_envelope", f"{name} out of range: {value}")
    return value
