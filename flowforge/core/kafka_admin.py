"""Kafka administration: FlowForge's topics with their partitions, retention and size limit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from flowforge.core.errors import ServiceUnhealthy
from flowforge.core.settings import KafkaSettings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    """A topic as FlowForge wants it."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def topic_configs(kafka: KafkaSettings) -> dict[str, str]:
    """Topic-level configs shared by FlowForge's topics: image-sized messages and retention."""
    retention = "-1" if kafka.retention_hours < 0 else str(kafka.retention_hours * HOUR_MS)
    return {"max.message.bytes": str(kafka.max_message_bytes), "retention.ms": retention}


def flowforge_topics(kafka: KafkaSettings) -> list[TopicSpec]:
    """The four FlowForge topics with the configured partitions, retention and size limit."""
    names = (kafka.topic_raw, kafka.topic_processed, kafka.topic_metadata, kafka.topic_dlq)
    return [topic_spec(kafka, name) for name in names]


def topic_spec(kafka: KafkaSettings, name: str) -> TopicSpec:
    """A topic named ``name`` with FlowForge's partitions, replication and configs."""
    return TopicSpec(name, kafka.partitions, kafka.replication_factor, topic_configs(kafka))


def admin_client(kafka: KafkaSettings, *, timeout_ms: int = 10_000) -> AIOKafkaAdminClient:
    """An (unstarted) admin client for the configured cluster."""
    return AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id="flowforge-admin",
        request_timeout_ms=timeout_ms,
    )


async def ensure_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Existing topics are left as they are (changing partitions of a keyed topic moves keys); a
    partition-count mismatch is logged, since Faust tables need the counts to agree.
    """
    wanted = list(specs)
    admin = admin_client(kafka)
    try:
        await admin.start()
        existing = {t["topic"]: t for t in await admin.describe_topics([s.name for s in wanted])}
        missing = [s for s in wanted if _partition_count(existing.get(s.name)) == 0]
        for spec in wanted:
            count = _partition_count(existing.get(spec.name))
            if count and count != spec.partitions:
                log.warning(
                    "topic %s has %d partitions, settings say %d; left unchanged",
                    spec.name,
                    count,
                    spec.partitions,
                )
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs)
                for s in missing
            ]
        )
    except KafkaError as exc:
        raise ServiceUnhealthy(
            f"cannot create topics on Kafka at {kafka.bootstrap_servers}: {exc}"
        ) from exc
    finally:
        await admin.close()
    created = []
    for name, code, message in _topic_errors(response):
        if code == 0:
            created.append(name)
        elif code != TOPIC_ALREADY_EXISTS:
            raise ServiceUnhealthy(f"Kafka refused to create topic {name}: {message} (code {code})")
    if created:
        log.info("created topics %s", ", ".join(created))
        await _wait_for_partitions(kafka, [s for s in missing if s.name in created])
    return created


async def _wait_for_partitions(
    kafka: KafkaSettings, specs: list[TopicSpec], timeout_s: float = 10.0
) -> None:
    """Wait until the cluster's metadata shows the new topics with all their partitions.

    CreateTopics returns before every broker's metadata cache has them; a client that fetches
    metadata in that window sees the topic with 0 partitions (Faust's table check then fails
    with PartitionsMismatch). Gives up quietly after ``timeout_s``.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    admin = admin_client(kafka)
    try:
        await admin.start()
        while True:
            described = {
                t["topic"]: t for t in await admin.describe_topics([s.name for s in specs])
            }
            if all(_partition_count(described.get(s.name)) == s.partitions for s in specs):
                return
            if asyncio.get_running_loop().time() >= deadline:
                log.warning("new topics not in the cluster metadata after %.0f s", timeout_s)
                return
            await asyncio.sleep(0.1)
    except KafkaError as exc:
        log.warning("could not check the new topics' partitions: %s", exc)
    finally:
        await admin.close()


async def describe_cluster(kafka: KafkaSettings, *, timeout_ms: int = 5_000) -> dict[str, Any]:
    """One metadata round trip to the cluster; raise ServiceUnhealthy if it does not answer."""
    admin = admin_client(kafka, timeout_ms=timeout_ms)
    try:
        await admin.start()
        cluster: dict[str, Any] = await admin.describe_cluster()
        return cluster
    except KafkaError as exc:
        raise ServiceUnhealthy(
            f"Kafka at {kafka.bootstrap_servers} does not answer: {exc}"
        ) from exc
    finally:
        await admin.close()


def _partition_count(described: dict[str, Any] | None) -> int:
    if not described or described.get("error_code", 0) != 0:
        return 0
    return len(described.get("partitions", []))


def _topic_errors(response: Any) -> list[tuple[str, int, str]]:
    errors = []
    for item in response.topic_errors:
        name, code = item[0], item[1]
        message = item[2] if len(item) > 2 else ""
        errors.append((name, int(code), str(message or "")))
    return errors
