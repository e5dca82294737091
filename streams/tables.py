"""The worker's Faust table: the processed-image cache.

It lives on the ``sqlite://`` store (one SQLite file per partition under the worker's data
directory); an entry is written to the changelog partition of the images.raw partition its
image arrived on, where every delivery of that image arrives.

Per-source figures are not a table: a table partitioned like images.raw holds, on each worker,
only the sources of its partitions, so they come from ClickHouse (``flowforge stats``, the
dashboard); the worker's own counters (``/stats``, ``/metrics``) are its own, since its start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from mode.utils.times import want_seconds

from flowforge.core.kafka_admin import TopicSpec
from flowforge.core.settings import Settings

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Tables:
    """The worker's tables."""

    seen: Any  # image id -> epoch ms first processed: drops redelivered or replayed images


def create_tables(app: faust.App, settings: Settings) -> Tables:
    """Declare the tables on ``app``."""
    ttl_ms = int(settings.worker.dedup_ttl_hours * HOUR_MS)
    seen = app.Table(
        "seen-images",
        key_type=str,
        value_type=int,
        default=None,
        partitions=settings.kafka.partitions,
        help="Image ids already given an outcome, with the time (epoch ms).",
        # A bounded cache: the SQLite store purges rows older than the dedup window, and Kafka
        # deletes the same changelog records (segments rolled at a quarter of the window, so
        # retention acts on time); the agent also ignores entries older than the window.
        store=f"sqlite://?ttl_s={ttl_ms / 1000:.0f}",
        extra_topic_configs={
            "cleanup.policy": "compact,delete",
            "retention.ms": str(ttl_ms),
            "segment.ms": str(max(ttl_ms // 4, 60_000)),
        },
    )
    return Tables(seen=seen)


def changelog_specs(app: faust.App, settings: Settings) -> list[TopicSpec]:
    """The changelog topics of ``app``'s tables as Faust would declare them (name, partitions,
    cleanup policy, retention and the tables' extra configs), so the worker can create them
    before Faust starts: Faust creating one itself can race its consumer's metadata."""
    specs = []
    for table in app.tables.values():
        topic = table.changelog_topic
        flags = [f for f, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on]
        configs = {"cleanup.policy": ",".join(sorted(flags))} if flags else {}
        if topic.retention:
            configs["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        configs.update({k: str(v) for k, v in (topic.config or {}).items()})
        partitions = topic.partitions or app.conf.topic_partitions
        specs.append(
            TopicSpec(
                topic.get_topic_name(), partitions, settings.kafka.replication_factor, configs
            )
        )
    return specs
