"""ClickHouse consuming images.metadata itself (FLOWFORGE_SINK_MODE=kafka-engine): its SQL, applied
and undone, and what it reports (records read, records refused).

The statements are infra/clickhouse/kafka_engine.sql (and kafka_engine_drop.sql), the same on a
server (applied by the container's init) and on the embedded engine (applied by the worker that
owns it, at every start). One adaptation for the embedded engine, for a chdb bug: after
``import chdb`` (which opens and closes the engine once at import) ClickHouse's process-wide
registry of streaming tables is shut down, so ``CREATE TABLE ... ENGINE = Kafka`` raises
``Code: 49. Shutdown was called (LOGICAL_ERROR)`` although the table is attached and consuming,
and a directory holding such a table on disk then fails to reopen ("Load job 'startup table'
failed ... Shutdown was called"). So there the Kafka table and its views live in a database with
``ENGINE = Memory`` (never written to disk, created again at every start), that one error on
CREATE is checked and ignored, and the rows go to the persistent database.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from string import Template
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError

from flowforge.core.clickhouse import Migration
from flowforge.core.errors import ClickHouseUnavailable, FlowForgeError
from flowforge.core.resources import infra_dir
from flowforge.core.settings import Settings

log = logging.getLogger(__name__)

QUEUE_TABLE = "images_metadata_queue"
REFUSED_TABLE = "kafka_engine_refused"
# The chdb bug's error on CREATE TABLE ... ENGINE = Kafka (see the module docstring).
_SPURIOUS_SHUTDOWN = "Shutdown was called"
_SQL_VALUE = re.compile(r"[A-Za-z0-9._:,\-]+")


def consumer_group(app_id: str) -> str:
    """The Kafka engine's consumer group: the app id + ``-clickhouse`` (as init.sh names it)."""
    return f"{app_id}-clickhouse"


def queue_database(settings: Settings) -> str:
    """Where the embedded engine keeps the Kafka table and its views: a Memory database beside
    the configured one (see the module docstring)."""
    return f"{settings.clickhouse.database}_kafka"


def kafka_engine_sql(
    *, brokers: str, topic: str, group: str, database: str, queue_database: str | None = None
) -> list[str]:
    """The Kafka-engine statements (infra/clickhouse/kafka_engine.sql), placeholders filled:
    rows go to ``database``; the Kafka table and its views are in ``queue_database`` (the same
    by default, as on a server)."""
    values = {
        "kafka_brokers": brokers,
        "topic": topic,
        "group": group,
        "database": database,
        "queue_database": queue_database or database,
    }
    return _statements("kafka_engine.sql", values)


def kafka_engine_drop_sql(*, queue_database: str) -> list[str]:
    """The statements undoing :func:`kafka_engine_sql` (infra/clickhouse/kafka_engine_drop.sql);
    the refused records stay."""
    return _statements("kafka_engine_drop.sql", {"queue_database": queue_database})


def _statements(name: str, values: dict[str, str]) -> list[str]:
    for key, value in values.items():
        if not _SQL_VALUE.fullmatch(value):
            raise FlowForgeError(
                f"kafka-engine SQL: {key} {value!r} has characters SQL cannot hold"
            )
    path = infra_dir() / "clickhouse" / name
    rendered = Template(path.read_text(encoding="utf-8")).substitute(values)
    return Migration.statements_of(rendered)


def start_embedded(client: Any, settings: Settings) -> None:
    """Have the embedded engine consume images.metadata: its Memory database and the Kafka table
    and views in it, created afresh against FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS. ``client`` must
    stay open while the engine consumes (the owner's). Run after the migrations."""
    queue_db = queue_database(settings)
    statements = kafka_engine_sql(
        brokers=settings.kafka.bootstrap_servers,
        topic=settings.kafka.topic_metadata,
        group=consumer_group(settings.worker.app_id),
        database=settings.clickhouse.database,
        queue_database=queue_db,
    )
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS {queue_db} ENGINE = Memory")
        for statement in statements:
            _create(client, statement, queue_db)
    except ClickHouseError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise ClickHouseUnavailable(f"kafka-engine tables not created: {first}") from exc
    log.info(
        "clickhouse: consuming %s from %s (Kafka engine, group %s)",
        settings.kafka.topic_metadata,
        settings.kafka.bootstrap_servers,
        consumer_group(settings.worker.app_id),
    )


def _create(client: Any, statement: str, queue_db: str) -> None:
    try:
        client.command(statement)
    except ClickHouseError as exc:
        if _SPURIOUS_SHUTDOWN not in str(exc) or not _exists(client, queue_db, QUEUE_TABLE):
            raise
        log.debug("clickhouse: ignored the embedded engine's spurious %r", _SPURIOUS_SHUTDOWN)


def _exists(client: Any, database: str, table: str) -> bool:
    rows = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": database, "t": table},
    ).result_rows
    return bool(rows[0][0])


def drop_embedded(client: Any, settings: Settings) -> None:
    """Undo :func:`start_embedded` (agent mode: only the sink agent writes rows). The Memory
    database does not outlive the process, so this finds nothing after a restart; it holds the
    rule "the two never both write" should the tables ever be kept on disk."""
    queue_db = queue_database(settings)
    if _database_exists(client, queue_db):
        for statement in kafka_engine_drop_sql(queue_database=queue_db):
            client.command(statement)


def _database_exists(client: Any, database: str) -> bool:
    rows = client.query(
        "SELECT count() FROM system.databases WHERE name = {db:String}",
        parameters={"db": database},
    ).result_rows
    return bool(rows[0][0])


@dataclass(frozen=True)
class EngineState:
    """What the Kafka engine reports: whether its table is there, messages its consumers read
    since the engine started, their last error (empty if none) and the refused records."""

    consuming: bool
    messages_read: int
    last_error: str
    refused: int


def state(client: Any, settings: Settings) -> EngineState:
    """The Kafka engine's state (system.kafka_consumers and the refused records, FINAL)."""
    queue_db = queue_database(settings)
    consumers = client.query(
        "SELECT sum(num_messages_read), "
        "argMax(arrayElement(`exceptions.text`, -1), arrayElement(`exceptions.time`, -1)) "
        "FROM system.kafka_consumers WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": queue_db, "t": QUEUE_TABLE},
    ).result_rows
    refused = client.query(f"SELECT count() FROM {REFUSED_TABLE} FINAL").result_rows  # noqa: S608
    read, error = consumers[0] if consumers else (0, "")
    return EngineState(
        consuming=_exists(client, queue_db, QUEUE_TABLE),
        messages_read=int(read or 0),
        last_error=str(error or ""),
        refused=int(refused[0][0]),
    )
