"""Dead-letter replay: images from images.dlq back onto images.raw, with their original envelope."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from flowforge.cli.tail import Record, read_topic
from flowforge.core.dead_letter import NOT_REPLAYABLE
from flowforge.core.envelope import (
    ERROR_REASON,
    ERROR_STAGE,
    IMAGE_ID,
    ORIGINAL_TOPIC,
    SOURCE_ID,
)
from flowforge.core.errors import ServiceUnhealthy
from flowforge.core.partitioning import partition_for
from flowforge.core.settings import KafkaSettings

# Stages whose dead letters are images from images.raw (the sink's are metadata records).
IMAGE_STAGES = ("bridge", "envelope", "process")


@dataclass(frozen=True)
class ReplayFilter:
    """Which dead letters to replay: reasons, sources, a time window (epoch ms, inclusive)."""

    reasons: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None

    def wants(self, record: Record) -> bool:
        """Whether ``record`` passes every filter given."""
        reason = record.headers.get(ERROR_REASON, "")
        source = record.headers.get(SOURCE_ID) or (record.key or b"").decode(errors="replace")
        if self.reasons and reason not in self.reasons:
            return False
        if self.sources and source not in self.sources:
            return False
        if self.since_ms is not None and record.timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or record.timestamp_ms <= self.until_ms


@dataclass
class ReplayReport:
    """What a replay did (or, dry, would do)."""

    scanned: int = 0
    replayed: Counter[str] = field(default_factory=Counter)  # by reason
    not_replayable: Counter[str] = field(default_factory=Counter)  # why not: sink record, no bytes
    filtered_out: int = 0

    @property
    def total(self) -> int:
        return sum(self.replayed.values())


def why_not_replayable(record: Record, raw_topic: str) -> str | None:
    """None for an image from images.raw; else why not: a sink's metadata record, an image
    whose source id the bridge refused (``NOT_REPLAYABLE``: a replay would make it a row), or
    a dead letter without its bytes (a bridge keeps none for a payload over the size limit)."""
    stage = record.headers.get(ERROR_STAGE, "")
    origin = record.headers.get(ORIGINAL_TOPIC, raw_topic)
    if stage not in IMAGE_STAGES or origin != raw_topic:
        return "not an image"
    refused = NOT_REPLAYABLE.get(record.headers.get(ERROR_REASON, ""))
    if refused is not None:
        return refused
    return None if record.value else "no bytes kept"


def replay_headers(record: Record) -> list[tuple[str, bytes]]:
    """The original envelope: every header but the dead letter's own (ff-error-*, ff-original-*)."""
    return [
        (name, value.encode())
        for name, value in record.headers.items()
        if not name.startswith(("ff-error-", "ff-original-"))
    ]


async def replay(
    kafka: KafkaSettings,
    wanted: ReplayFilter,
    *,
    dry_run: bool,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Re-publish the dead letters present now that pass ``wanted``; return the counts.

    Reads images.dlq from its start up to its current end (records arriving meanwhile wait for
    the next replay) and publishes with acks from all replicas, idempotently. The worker
    processes a replayed image again (rejections are not remembered as done), so an image
    rejected for a cause since fixed gets its outcome.
    """
    report = ReplayReport()
    producer = None
    if not dry_run:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            max_request_size=kafka.request_bytes,
        )
    try:
        if producer is not None:
            await producer.start()
        pending = []
        async for record in read_topic(kafka, kafka.topic_dlq, from_beginning=True, follow=False):
            report.scanned += 1
            if progress is not None:
                progress(1)
            why_not = why_not_replayable(record, kafka.topic_raw)
            if why_not is not None:
                report.not_replayable[why_not] += 1
                continue
            if not wanted.wants(record):
                report.filtered_out += 1
                continue
            report.replayed[record.headers.get(ERROR_REASON, "unknown")] += 1
            if producer is not None:
                image_id = record.headers.get(IMAGE_ID, "").strip()
                partition = None  # no image id: where its key puts it, as the producer did
                if image_id:
                    partition = await partition_for(producer, kafka.topic_raw, image_id)
                pending.append(
                    await producer.send(
                        kafka.topic_raw,
                        record.value,
                        key=record.key,
                        headers=replay_headers(record),
                        partition=partition,
                    )
                )
        for future in pending:
            await future
    except KafkaError as exc:
        raise ServiceUnhealthy(f"replay to {kafka.topic_raw} failed: {exc}") from exc
    finally:
        if producer is not None:
            await producer.stop()
    return report
