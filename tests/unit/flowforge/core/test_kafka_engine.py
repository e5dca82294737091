"""The Kafka-engine SQL as rendered for a server and for the embedded engine."""

from __future__ import annotations

import pytest

from flowforge.core.errors import FlowForgeError
from flowforge.core.kafka_engine import (
    consumer_group,
    kafka_engine_drop_sql,
    kafka_engine_sql,
    queue_database,
)
from flowforge.core.settings import Settings


def test_embedded_rendering_keeps_the_kafka_objects_apart_from_the_rows() -> None:
    """Embedded: the Kafka table and its views go to the Memory database, rows and refused
    records to the configured one; the views reading the Kafka table come last (it consumes
    from the first one), and the drop stops consumption first."""
    settings = Settings.from_env({"FLOWFORGE_CLICKHOUSE_DATABASE": "ff"})
    statements = kafka_engine_sql(
        brokers="127.0.0.1:9092", topic="images.metadata", group=consumer_group("flowforge"),
        database="ff", queue_database=queue_database(settings),
    )  # fmt: skip
    assert queue_database(settings) == "ff_kafka"
    assert "ff_kafka.images_metadata_queue" in statements[0]
    assert "kafka_group_name = 'flowforge-clickhouse'" in statements[0]
    assert "kafka_handle_error_mode = 'stream'" in statements[0]
    assert "ff.kafka_engine_refused" in statements[1]
    assert "TO ff.images_metadata AS" in "\n".join(statements)
    reading_queue = [s for s in statements if "FROM ff_kafka.images_metadata_queue" in s]
    assert reading_queue == [statements[-1]]
    drop = kafka_engine_drop_sql(queue_database="ff_kafka")
    assert drop[0] == "DROP VIEW IF EXISTS ff_kafka.images_metadata_check"
    assert not any("kafka_engine_refused " in s for s in drop)


def test_a_server_keeps_everything_in_its_database() -> None:
    """Without a queue database (a server) every object is in the one database."""
    sql = "\n".join(kafka_engine_sql(brokers="k:9092", topic="t", group="g", database="db"))
    assert "db.images_metadata_queue" in sql
    assert "_kafka." not in sql


@pytest.mark.parametrize("name", ["brokers", "topic", "group", "database"])
def test_a_value_sql_cannot_hold_is_refused_by_name(name: str) -> None:
    """A broker list, topic, group or database with a quote or space fails naming the value."""
    values = {"brokers": "k:9092", "topic": "t", "group": "g", "database": "db"}
    values[name] = "x'; DROP TABLE y"
    with pytest.raises(FlowForgeError, match="has characters SQL cannot hold"):
        kafka_engine_sql(**values)
