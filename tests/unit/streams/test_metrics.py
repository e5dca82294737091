"""The worker's metrics stay bounded whatever sources the images name."""

from __future__ import annotations

from streams import metrics


def _series(source_prefix: str) -> set[str]:
    return {
        sample.labels["source"]
        for family in metrics.REGISTRY.collect()
        if family.name == "flowforge_worker_images"
        for sample in family.samples
        if sample.labels.get("source", "").startswith(source_prefix)
        or sample.labels.get("source") == metrics.OTHER_SOURCES
    }


def test_untrusted_source_ids_cannot_grow_the_series_without_limit() -> None:
    """Past SOURCE_LABELS distinct sources, images of new sources count under "other"; sources
    already labelled keep their own series."""
    metrics.reset_source_labels()
    limit = metrics.SOURCE_LABELS
    for i in range(limit + 50):
        metrics.IMAGES.labels(source=metrics.source_label(f"cap-{i}"), status="processed").inc()
    assert metrics.source_label("cap-0") == "cap-0"
    assert metrics.source_label("cap-new") == metrics.OTHER_SOURCES
    labelled = _series("cap-")
    assert len(labelled - {metrics.OTHER_SOURCES}) == limit
    assert metrics.OTHER_SOURCES in labelled
    folded = metrics.IMAGES.labels(source=metrics.OTHER_SOURCES, status="processed")._value.get()
    assert folded >= 50
