"""The envelope's ingest time: a bridge's header, else the Kafka record's time; never garbage."""

from __future__ import annotations

import pytest

from flowforge.core.envelope import CAPTURED_AT, INGESTED_AT, parse_envelope
from flowforge.core.errors import EnvelopeError

NOW_MS = 1_764_662_400_000


def test_a_bridges_ingest_time_is_kept_and_the_capture_time_is_the_images_own() -> None:
    """Both headers are taken as they are (a photo from 2012 keeps its time)."""
    headers = {INGESTED_AT: str(NOW_MS - 5), CAPTURED_AT: "1338552000000"}
    envelope = parse_envelope(headers, b"cam", b"x", NOW_MS, timestamp_ms=NOW_MS - 50)
    assert (envelope.ingested_at_ms, envelope.captured_at_ms) == (NOW_MS - 5, 1_338_552_000_000)


def test_without_an_envelope_the_kafka_timestamp_is_the_ingest_and_capture_time() -> None:
    """A bare message (`kcat -P`): ingested when Kafka took it, or now without a timestamp."""
    bare = parse_envelope({}, b"cam", b"x", NOW_MS, timestamp_ms=NOW_MS - 50)
    assert (bare.ingested_at_ms, bare.captured_at_ms) == (NOW_MS - 50, NOW_MS - 50)
    assert parse_envelope({}, b"cam", b"x", NOW_MS).ingested_at_ms == NOW_MS


@pytest.mark.parametrize("raw", ["soon", "-1", "1e3", str(10**15)])
def test_an_ingest_time_that_is_not_epoch_milliseconds_is_a_bad_envelope(raw: str) -> None:
    """A malformed ff-ingested-at is refused as bad_envelope, naming the header."""
    with pytest.raises(EnvelopeError) as info:
        parse_envelope({INGESTED_AT: raw}, b"cam", b"x", NOW_MS)
    assert info.value.reason == "bad_envelope"
    assert INGESTED_AT in info.value.detail
