"""The hostile-input corpus through a real worker on the real Kafka: it survives, one right
outcome per item, each reject dead-lettered with its specific reason."""

from __future__ import annotations

import urllib.request
from collections import Counter

from tests.support.hostile import corpus
from tests.support.pipeline import Pipeline


def test_hostile_corpus_through_the_worker(pipeline: Pipeline) -> None:
    """The worker stays alive (/livez 200); each good item is a metadata record with its status,
    each reject is in images.dlq with its reason and stage ``process`` plus a ``rejected``
    metadata record; nothing else is emitted."""
    cases = corpus()
    ids = pipeline.produce((case.name, case.data) for case in cases)
    by_id = dict(zip(ids, cases, strict=True))
    port = pipeline.start_worker()
    out = pipeline.collect(len(cases), settle=3)

    assert pipeline.alive(port), pipeline.worker_log(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=10) as response:
        assert response.status == 200
    assert Counter(m["image_id"] for m in out.metadata) == Counter(ids), "one record per item"
    assert Counter(out.dlq_ids()) == Counter(i for i, c in by_id.items() if c.rejected)
    got = {m["image_id"]: m["status"] for m in out.metadata if m["status"] != "rejected"}
    rejected = {m["image_id"]: m["reason"] for m in out.metadata if m["status"] == "rejected"}
    got |= {h["ff-image-id"]: "reject:" + h["ff-error-reason"] for h, _ in out.dlq}
    assert {by_id[i].name: v for i, v in got.items()} == {c.name: c.expected for c in cases}
    assert rejected == {h["ff-image-id"]: h["ff-error-reason"] for h, _ in out.dlq}
    for headers, data in out.dlq:
        assert headers["ff-error-stage"] == "process"
        assert data == by_id[headers["ff-image-id"]].data, "the DLQ keeps the original bytes"
    processed = {i for i, c in by_id.items() if c.expected == "processed"}
    assert {h["ff-image-id"] for h, _ in out.processed} == processed
