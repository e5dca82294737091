"""FLOWFORGE_SINK_MODE=kafka-engine on the native stack: the worker owning the embedded engine has
ClickHouse consume images.metadata itself (Kafka engine table and views), with no sink agent."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from datetime import datetime

from tests.support.images import mixed_set
from tests.support.pipeline import Pipeline, metadata_record

PIPELINE_ENV = {"FLOWFORGE_SINK_MODE": "kafka-engine"}  # the conftest pipeline adds it


def _record(i: int, **changes: object) -> bytes:
    """Metadata record ``i`` with fields changed (``None``: the field left out)."""
    record = {**json.loads(metadata_record(i)), **changes}
    return json.dumps({k: v for k, v in record.items() if v is not None}).encode()


# Records on images.metadata that are not image metadata, each with the reason it is refused.
BAD_RECORDS = {
    b"not json at all": "not a metadata record: Cannot parse input",
    b"[1, 2]": "not a metadata record: Cannot parse input",
    b'{"image_id": "x", "width": "wide"}': "not a metadata record: Cannot parse input",
    b"{}": "field image_id is missing",
    _record(1, status="bogus"): "status 'bogus' is not one of",
    _record(2, captured_at="yesterday"): "field captured_at must be an ISO 8601 time",
    _record(3, worker=None): "field worker is missing",
}


def test_kafka_engine_mode_writes_one_row_per_image_and_refuses_bad_records_visibly(
    pipeline: Pipeline,
) -> None:
    """Images of every outcome (rejects included) through a processing worker, with the engine
    owner in kafka-engine mode: exactly one row FINAL per image, with the values of its metadata
    record, written by ClickHouse's Kafka table (no sink agent ran); an image sent again is one
    images_duplicates row; every bad record put on images.metadata is a kafka_engine_refused
    row with its raw bytes and why, and counted on the owner's /metrics."""
    owner = pipeline.start_worker(agents="sink")
    pipeline.start_worker(agents="process")
    cases = mixed_set()
    ids = pipeline.produce((name, payload) for name, (payload, _) in cases.items())
    out = pipeline.collect(len(ids), settle=1)
    name, (payload, _) = next(iter(cases.items()))
    [again] = pipeline.produce([(f"again-{name}", payload)])  # a re-send: a duplicate record
    assert again in ids
    pipeline.produce_metadata(list(BAD_RECORDS))  # after reading the workers' own records
    assert "rejected" in {m["status"] for m in out.metadata}

    def refused() -> float:
        return pipeline.metric(owner, "flowforge_kafka_engine_refused_records")

    pipeline.wait_until(lambda: pipeline.rows() == len(ids), "a row per image", 120)
    duplicates = "SELECT image_id FROM images_duplicates FINAL"
    pipeline.wait_until(lambda: pipeline.query_engine(duplicates) == [[again]], "the duplicate")
    pipeline.wait_until(lambda: refused() == len(BAD_RECORDS), "the refused records counted")
    assert pipeline.metric(owner, "flowforge_sink_rows_total") == 0, "a sink agent wrote rows"
    ready = pipeline.wait_until(lambda: _readyz(owner), "the owner ready")
    assert "kafka engine" in ready, ready
    pipeline.kill_worker(owner, signal.SIGTERM)

    rows = pipeline.query_engine(
        "SELECT image_id, status, reason, width, brightness, kafka_offset, "
        "toUnixTimestamp64Milli(captured_at), toUnixTimestamp64Milli(ingested_at) "
        "FROM images_metadata FINAL ORDER BY image_id"
    )
    assert [r[0] for r in rows] == sorted(ids)
    records = {m["image_id"]: m for m in out.metadata}
    for image_id, status, reason, width, brightness, offset, captured, ingested in rows:
        record = records[image_id]
        assert (status, reason, width, offset, captured, ingested) == (
            record["status"], record["reason"], record["width"], record["kafka_offset"],
            _ms(record["captured_at"]), _ms(record["ingested_at"]),
        )  # fmt: skip
        assert abs(brightness - record["brightness"]) < 1e-3
    refused_rows = pipeline.query_engine(
        "SELECT raw_message, error FROM kafka_engine_refused FINAL ORDER BY message_offset"
    )
    assert len(refused_rows) == len(BAD_RECORDS), refused_rows
    unparsed = "not a metadata record"
    parsed = [(json.loads(r), e) for r, e in refused_rows if not e.startswith(unparsed)]
    for record, why in BAD_RECORDS.items():
        if why.startswith(unparsed):  # kept as received
            [error] = [e for r, e in refused_rows if r == record.decode()]
        else:  # parsed, then refused: kept as the engine read it (a missing field is null)
            image_id = json.loads(record).get("image_id")
            [error] = [e for r, e in parsed if r["image_id"] == image_id]
        assert error.startswith(why), (record, error)


def _ms(iso: str) -> int:
    """Epoch milliseconds of an ISO 8601 time of a metadata record."""
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def _readyz(port: int) -> str:
    """The worker's /readyz text when it answers 200, else empty."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError:
        return ""
