"""images.metadata records as the sink reads them: valid records pass, anything else is named."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import MetadataInvalid
from streams.records import STATUSES, ImageDuplicate, ImageMetadata, metadata_row


def _record(**changes: object) -> dict[str, object]:
    now = datetime.now(tz=UTC)
    record = ImageMetadata(
        image_id="abc", source_type="mqtt", source_id="cam-1", captured_at=now,
        ingested_at=now, processed_at=now, status="processed", reason="", width=1280, height=720,
        out_width=640, out_height=360, bytes=1000, format="jpeg", brightness=90.5,
        contrast=30.0, sharpness=120.0, processing_ms=3.5, kafka_partition=1, kafka_offset=7,
        worker="host:6066",
    )  # fmt: skip
    value: dict[str, object] = json.loads(record.dumps())
    value.update(changes)
    return value


def _duplicate(**changes: object) -> dict[str, object]:
    now = datetime.now(tz=UTC)
    record = ImageDuplicate(
        image_id="abc", source_type="mqtt", source_id="cam-1", captured_at=now,
        ingested_at=now, first_seen_at=now, processed_at=now, status="duplicate", bytes=1000,
        kafka_partition=1, kafka_offset=8, worker="host:6066",
    )  # fmt: skip
    value: dict[str, object] = json.loads(record.dumps())
    value.update(changes)
    return value


def test_a_worker_record_becomes_a_row_with_every_column() -> None:
    """A record serialized by the worker's own record class passes unchanged, all 21 fields."""
    value = _record()
    row = metadata_row(json.dumps(value).encode())
    assert row == {name: value[name] for name in ImageMetadata._options.fields}
    assert len(row) == 21


def test_a_record_without_an_ingest_time_takes_its_processing_time() -> None:
    """A record from a worker older than ingested_at is still a row: received about when it
    was processed."""
    value = _record()
    del value["ingested_at"]
    row = metadata_row(json.dumps(value).encode())
    assert row["ingested_at"] == value["processed_at"]


def test_every_status_including_rejected_is_accepted() -> None:
    """Each documented status passes, rejected (a dead-lettered image's row) included."""
    for status in STATUSES:
        assert metadata_row(json.dumps(_record(status=status)).encode())["status"] == status
    assert "rejected" in STATUSES


def test_a_duplicate_record_becomes_a_duplicates_row() -> None:
    """A duplicate delivery's record (status duplicate) passes with the images_duplicates
    columns, its first-seen time null while the first delivery was still in flight."""
    value = _duplicate()
    row = metadata_row(json.dumps(value).encode())
    assert row == {name: value[name] for name in ImageDuplicate._options.fields}
    assert row["status"] == "duplicate"
    in_flight = metadata_row(json.dumps(_duplicate(first_seen_at=None)).encode())
    assert in_flight["first_seen_at"] is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps(_record(width="wide")).encode(), "field width must be int"),
        (json.dumps(_record(width=True)).encode(), "field width must be int"),
        (json.dumps(_record(captured_at="yesterday")).encode(), "captured_at must be an ISO"),
        (json.dumps(_record(status="lost")).encode(), "status 'lost' is not one of"),
        (json.dumps({"image_id": "x"}).encode(), "field source_type is missing"),
        (json.dumps(_duplicate(first_seen_at="soon")).encode(), "first_seen_at must be an ISO"),
        (json.dumps(_duplicate(ingested_at=None)).encode(), "ingested_at must be an ISO"),
        (json.dumps(_duplicate(kafka_offset="8")).encode(), "field kafka_offset must be int"),
    ],
)
def test_bad_records_are_refused_naming_the_problem(value: bytes, message: str) -> None:
    """Each kind of bad value raises MetadataInvalid (reason bad_metadata) saying what is wrong."""
    with pytest.raises(MetadataInvalid, match=message) as info:
        metadata_row(value)
    assert info.value.reason == "bad_metadata"


@given(st.binary(max_size=2000))
def test_any_bytes_give_a_row_or_metadata_invalid(data: bytes) -> None:
    """Arbitrary bytes never raise anything but MetadataInvalid."""
    try:
        row = metadata_row(data)
    except MetadataInvalid as exc:
        explained = bool(exc.detail)
    else:
        kinds = (ImageDuplicate, ImageMetadata)
        explained = any(set(row) == set(kind._options.fields) for kind in kinds)
    assert explained


@given(
    st.dictionaries(
        st.sampled_from(sorted(ImageMetadata._options.fields)),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    )
)
def test_any_json_object_gives_a_row_or_metadata_invalid(fields: dict[str, object]) -> None:
    """JSON objects with the right names and any values are either valid rows or refused."""
    value = _record()
    value.update(fields)
    try:
        row = metadata_row(json.dumps(value).encode())
    except MetadataInvalid:
        return
    assert set(row) == set(ImageMetadata._options.fields)


@given(
    st.dictionaries(
        st.sampled_from(sorted(ImageDuplicate._options.fields)),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    )
)
def test_any_duplicate_fields_give_a_row_or_metadata_invalid(fields: dict[str, object]) -> None:
    """Duplicate records with any values are either rows of one of the two kinds or refused."""
    value = _duplicate()
    value.update(fields)
    try:
        row = metadata_row(json.dumps(value).encode())
    except MetadataInvalid:
        return
    kinds = (ImageDuplicate, ImageMetadata)
    assert any(set(row) == set(kind._options.fields) for kind in kinds)
