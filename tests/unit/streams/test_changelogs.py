"""The worker creates its tables' changelog topics itself, exactly as Faust would declare them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faust.transport.drivers.aiokafka import Transport
from mode.utils.times import want_seconds

from flowforge.core.settings import Settings
from streams.tables import changelog_specs
from streams.worker import build_worker


def faust_declaration(topic: Any) -> dict[str, str]:
    """The configs Faust's own topic declaration (Topic.maybe_declare) sends for ``topic``."""
    retention = int(want_seconds(topic.retention) * 1000.0) if topic.retention else None
    config = Transport._topic_config(
        Transport.__new__(Transport), retention, topic.compacting, topic.deleting
    )
    config.update(topic.config or {})
    return {k: str(v) for k, v in config.items()}


def test_changelog_specs_match_what_faust_would_declare(tmp_path: Path) -> None:
    """One spec per table: Faust's changelog name, the configured partitions and Faust's
    cleanup policy, retention and extra configs (seen-images: compact,delete with the TTL)."""
    settings = Settings.from_env(
        {
            "FLOWFORGE_HOME": str(tmp_path),
            "FLOWFORGE_WORKER_AGENTS": "process",
            "FLOWFORGE_KAFKA_PARTITIONS": "5",
        }
    )
    flow = build_worker(settings, None)
    specs = {s.name: s for s in changelog_specs(flow.app, settings)}
    app_id = flow.app.conf.id
    # One table: per-source figures are ClickHouse's, not a table split over the workers.
    assert set(specs) == {f"{app_id}-seen-images-changelog"}
    for table in flow.app.tables.values():
        topic = table.changelog_topic
        spec = specs[topic.get_topic_name()]
        assert spec.partitions == 5
        assert spec.replication_factor == settings.kafka.replication_factor
        assert spec.configs == faust_declaration(topic)
    seen = specs[f"{app_id}-seen-images-changelog"].configs
    assert seen["cleanup.policy"] == "compact,delete"
    assert int(seen["retention.ms"]) == int(settings.worker.dedup_ttl_hours * 3_600_000)
