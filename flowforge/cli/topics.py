"""Topic inspection for operators: partitions, configs, offsets, message counts and group lag."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    KafkaError,
)

from flowforge.core.errors import ServiceUnhealthy
from flowforge.core.kafka_admin import admin_client
from flowforge.core.settings import KafkaSettings

CONFIG_KEYS = ("retention.ms", "max.message.bytes", "cleanup.policy")


@dataclass
class PartitionState:
    """One partition: first and end offsets, and the group's committed offset and lag."""

    partition: int
    start: int
    end: int
    committed: int | None = None
    lag: int | None = None

    @property
    def messages(self) -> int:
        """Messages held now (end minus first offset; compacted topics may hold fewer)."""
        return self.end - self.start


@dataclass
class TopicState:
    """A topic as the broker has it."""

    name: str
    exists: bool
    replication: int = 0
    configs: dict[str, str] = field(default_factory=dict)
    partitions: list[PartitionState] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(p.messages for p in self.partitions)

    @property
    def lag(self) -> int | None:
        lags = [p.lag for p in self.partitions if p.lag is not None]
        return sum(lags) if lags else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with per-partition message counts and the totals."""
        value = asdict(self)
        for item, partition in zip(value["partitions"], self.partitions, strict=True):
            item["messages"] = partition.messages
        value["messages"] = self.messages
        value["lag"] = self.lag
        return value


async def inspect_topics(
    kafka: KafkaSettings, names: list[str], group: str | None = None
) -> list[TopicState]:
    """Describe ``names`` on the cluster; with ``group``, add its committed offsets and lag."""
    admin = admin_client(kafka)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )
    try:
        await admin.start()
        await consumer.start()
        described = {t["topic"]: t for t in await admin.describe_topics(names)}
        states = [_state(name, described.get(name)) for name in names]
        existing = [s for s in states if s.exists]
        await _add_configs(admin, existing)
        tps = [TopicPartition(s.name, p.partition) for s in existing for p in s.partitions]
        if tps:
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            committed = await _committed_offsets(admin, group) if group else {}
            for state in existing:
                for p in state.partitions:
                    tp = TopicPartition(state.name, p.partition)
                    p.start, p.end = int(starts[tp]), int(ends[tp])
                    if group:
                        meta = committed.get(tp)
                        # As Kafka's own tools: no committed offset, no lag figure.
                        p.committed = int(meta.offset) if meta is not None else None
                        p.lag = None if p.committed is None else max(0, p.end - p.committed)
    except KafkaError as exc:
        raise ServiceUnhealthy(
            f"Kafka at {kafka.bootstrap_servers} does not answer: {exc}"
        ) from exc
    finally:
        await consumer.stop()
        await admin.close()
    return states


async def _committed_offsets(admin: Any, group: str, timeout_s: float = 15.0) -> dict[Any, Any]:
    """The group's committed offsets, retrying while the cluster sets up its group coordinator
    (a fresh cluster creates __consumer_offsets on the first group request)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            offsets: dict[Any, Any] = await admin.list_consumer_group_offsets(group)
            return offsets
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


def _state(name: str, described: dict[str, Any] | None) -> TopicState:
    if not described or described.get("error_code", 0) != 0 or not described.get("partitions"):
        return TopicState(name, exists=False)
    partitions = sorted(described["partitions"], key=lambda p: p["partition"])
    replication = max(len(p.get("replicas", [])) for p in partitions)
    return TopicState(
        name,
        exists=True,
        replication=replication,
        partitions=[PartitionState(p["partition"], 0, 0) for p in partitions],
    )


async def _add_configs(admin: Any, states: list[TopicState]) -> None:
    if not states:
        return
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in states]
    by_name = {s.name: s for s in states}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object().get("resources", []):
            state = by_name.get(resource.get("resource_name"))
            if state is None:
                continue
            for entry in resource.get("configs", resource.get("config_entries", [])):
                name = entry.get("config_names", entry.get("name"))
                if name in CONFIG_KEYS:
                    state.configs[name] = str(entry.get("config_value", entry.get("value")))


def format_topics(states: list[TopicState], *, group: str | None) -> str:
    """Topics as a text block: one summary line per topic, then one line per partition."""
    lines = []
    for s in states:
        if not s.exists:
            lines.append(f"{s.name}: does not exist")
            continue
        retention = _retention(s.configs.get("retention.ms", "?"))
        limit = _size(s.configs.get("max.message.bytes", "?"))
        summary = (
            f"{s.name}: {len(s.partitions)} partitions, replication {s.replication}, "
            f"retention {retention}, max message {limit}, {s.messages} messages"
        )
        if group:
            summary += f", group {group} lag {s.lag if s.lag is not None else '-'}"
        lines.append(summary)
        header = "  partition  start        end     messages"
        lines.append(header + ("    committed        lag" if group else ""))
        for p in s.partitions:
            row = f"  {p.partition:>9}  {p.start:>5}  {p.end:>9}  {p.messages:>11}"
            if group:
                committed = "-" if p.committed is None else str(p.committed)
                row += f"  {committed:>11}  {p.lag if p.lag is not None else '-':>9}"
            lines.append(row)
    return "\n".join(lines)


def _retention(ms: str) -> str:
    if not ms.lstrip("-").isdigit():
        return ms
    value = int(ms)
    if value < 0:
        return "forever"
    hours = value / 3_600_000
    return f"{hours / 24:g}d" if hours >= 24 and hours % 24 == 0 else f"{hours:g}h"


def _size(raw: str) -> str:
    if not raw.isdigit():
        return raw
    value = int(raw)
    return f"{value / 1048576:g}MiB" if value >= 1048576 else f"{value}B"
