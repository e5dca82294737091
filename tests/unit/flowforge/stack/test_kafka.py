"""The local Kafka service's pure parts: cluster ids and the rendered broker configuration."""

from __future__ import annotations

import base64
from pathlib import Path

from flowforge.core.settings import Settings
from flowforge.stack.kafka import KafkaService, new_cluster_id


def test_cluster_ids_never_start_with_a_dash() -> None:
    """Generated KRaft cluster ids are 16-byte URL-safe ids the storage tool cannot mistake for
    an option (1 in 64 random ids would start with '-')."""
    ids = [new_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids[:50])
    assert len(set(ids)) == len(ids)


def test_rendered_config_sizes_the_broker_for_images(tmp_path: Path) -> None:
    """server.properties carries the configured ports, data dir and 16 MiB message limits."""
    settings = Settings.from_env(
        {"FLOWFORGE_HOME": str(tmp_path), "FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19999"}
    )
    text = KafkaService(settings).render_config().read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19999,CONTROLLER://127.0.0.1:9093" in text
    assert "message.max.bytes=16777216" in text
    assert "replica.fetch.max.bytes=16777216" in text
    assert "auto.create.topics.enable=false" in text
    assert f"log.dirs={(tmp_path / 'kafka' / 'data').resolve()}" in text
