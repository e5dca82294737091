"""`flowforge validate`: settings, Kafka, topics, MQTT and ClickHouse checked, each with a fix."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from flowforge.core.errors import FlowForgeError
from flowforge.core.settings import Settings


@dataclass(frozen=True)
class Check:
    """One check's outcome; ``fix`` says what to do when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order; a check that cannot run (service down) fails, it never raises."""
    checks = [
        Check("settings", True, f"loaded ({_count_settings()} settings, see flowforge config)")
    ]
    kafka_ok = _kafka(settings, checks)
    if kafka_ok:
        _topics(settings, checks)
    else:
        checks.append(
            Check("topics", False, "not checked: Kafka does not answer", "fix Kafka first")
        )
    _mqtt(settings, checks)
    _clickhouse(settings, checks)
    return checks


def _count_settings() -> int:
    from flowforge.core.settings import SPECS

    return len(SPECS)


def _kafka(settings: Settings, checks: list[Check]) -> bool:
    from flowforge.core.kafka_admin import describe_cluster

    servers = settings.kafka.bootstrap_servers
    try:
        cluster = asyncio.run(describe_cluster(settings.kafka))
    except FlowForgeError as exc:
        checks.append(
            Check(
                "kafka",
                False,
                str(exc),
                "start it (`flowforge stack up` locally) or fix FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS",
            )
        )
        return False
    brokers = len(cluster.get("brokers", []))
    checks.append(
        Check("kafka", True, f"{servers}: {brokers} broker(s), cluster {cluster.get('cluster_id')}")
    )
    return True


def _topics(settings: Settings, checks: list[Check]) -> None:
    from flowforge.cli.topics import inspect_topics
    from flowforge.core.kafka_admin import flowforge_topics

    kafka = settings.kafka
    specs = flowforge_topics(kafka)
    try:
        states = asyncio.run(inspect_topics(kafka, [s.name for s in specs]))
    except FlowForgeError as exc:
        checks.append(Check("topics", False, str(exc), "fix Kafka first"))
        return
    create = "create it with FlowForge's settings (`flowforge stack up` does; so does kafka-init)"
    for state in states:
        name = f"topic {state.name}"
        if not state.exists:
            checks.append(Check(name, False, "does not exist", create))
            continue
        problems = []
        if len(state.partitions) != kafka.partitions:
            problems.append(f"{len(state.partitions)} partitions, settings say {kafka.partitions}")
        limit = int(state.configs.get("max.message.bytes", "0") or 0)
        if limit < kafka.max_message_bytes:
            problems.append(
                f"max.message.bytes {limit} < FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES "
                f"{kafka.max_message_bytes}"
            )
        if problems:
            fix = "recreate the topic, or change the settings to match it"
            checks.append(Check(name, False, "; ".join(problems), fix))
        else:
            checks.append(
                Check(name, True, f"{len(state.partitions)} partitions, max message {limit} bytes")
            )


def _mqtt(settings: Settings, checks: list[Check]) -> None:
    from flowforge.core.mqtt import mqtt_round_trip

    mqtt = settings.mqtt
    where = f"{mqtt.host}:{mqtt.port}"
    try:
        mqtt_round_trip(mqtt, timeout=5.0)
    except FlowForgeError as exc:
        checks.append(
            Check(
                "mqtt",
                False,
                str(exc),
                "start it (`flowforge stack up` locally) or fix FLOWFORGE_MQTT_* (host, port, "
                "credentials)",
            )
        )
        return
    checks.append(Check("mqtt", True, f"{where}: publish/subscribe round trip"))


def _clickhouse(settings: Settings, checks: list[Check]) -> None:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from flowforge.core.clickhouse import (
        connect,
        embedded_path,
        live_owner,
        migrations,
        schema_version,
        through_owner,
    )
    from flowforge.core.urls import redact_url

    ch = settings.clickhouse
    latest = migrations()[-1].version
    migrate = "run `flowforge clickhouse migrate` (the worker's sink also does at start)"
    path = embedded_path(ch.url)
    owner = live_owner(path) if path is not None else None
    if owner is None and path is not None and not path.is_dir():
        from flowforge.core.errors import StackNotFound

        fix = StackNotFound.HINT
        detail = f"no embedded ClickHouse at {path} (nothing has run under this FLOWFORGE_HOME)"
        checks.append(Check("clickhouse", False, detail, fix))
        return
    try:
        reach = through_owner(ch)
        client = connect(reach)
        try:
            version = schema_version(client)
        finally:
            client.close()
    except (FlowForgeError, ClickHouseError, OSError, ValueError, KeyError) as exc:
        fix = "start it, or fix FLOWFORGE_CLICKHOUSE_URL and credentials"
        checks.append(Check("clickhouse", False, f"{redact_url(ch.url)}: {exc}", fix))
        return
    where = redact_url(ch.url)
    if owner is not None:
        where = f"embedded, owned by pid {owner['pid']}, through its HTTP interface {reach.url}"
    checks.append(Check("clickhouse", True, where))
    if version < latest:
        checks.append(Check("schema", False, f"version {version}, latest is {latest}", migrate))
    else:
        checks.append(Check("schema", True, f"version {version} (latest)"))


def format_checks(checks: list[Check]) -> str:
    """The checks as an aligned table: check, PASS/FAIL, detail, and what to do for failures."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.name.ljust(width)}  {'PASS' if c.ok else 'FAIL'}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"{''.ljust(width)}        -> {c.fix}")
    return "\n".join(lines)
