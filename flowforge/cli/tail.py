"""Reading topics for people: one line per record, images described (and saved), JSON compacted."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from flowforge.cli.errors import TopicMissing
from flowforge.core.envelope import ENVELOPE_HEADERS, ERROR_REASON, IMAGE_ID, header_map
from flowforge.core.errors import ServiceUnhealthy
from flowforge.core.settings import KafkaSettings

# Headers shown on a line, shortened (the ff- prefix dropped); the rest are left out.
SHOWN_HEADERS = (*ENVELOPE_HEADERS[1:], ERROR_REASON, "ff-error-stage", "ff-error-detail")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "bmp": "bmp",
    "webp": "webp",
    "tiff": "tif",
}


@dataclass(frozen=True)
class Record:
    """One Kafka record, decoded as far as a line needs."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]


def describe_image(data: bytes) -> tuple[str, str]:
    """``(format, "WxH")`` of an image from its header alone (no decode); unknowns say so."""
    from streams.processing.errors import ImageRejected
    from streams.processing.header import read_header

    if not data:
        return "empty", "-"
    try:
        header = read_header(data)
    except ImageRejected as exc:
        return f"not an image ({exc.reason})", "-"
    return str(header.format), f"{header.width}x{header.height}"


def format_record(record: Record, *, image: bool) -> str:
    """One line: time, partition/offset, key, envelope headers, then the value described."""
    when = datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
    key = record.key.decode("utf-8", errors="replace") if record.key is not None else "-"
    parts = [when, f"{record.partition}/{record.offset}", f"key={key}"]
    if IMAGE_ID in record.headers:
        parts.append(f"id={record.headers[IMAGE_ID][:16]}")
    for name in SHOWN_HEADERS:
        if name in record.headers:
            parts.append(f"{name.removeprefix('ff-')}={record.headers[name]!r}"
                         if " " in record.headers[name] else
                         f"{name.removeprefix('ff-')}={record.headers[name]}")  # fmt: skip
    if image:
        fmt, size = describe_image(record.value)
        parts.append(f"{len(record.value)}B {fmt} {size}")
    else:
        parts.append(_compact_json(record.value))
    return " ".join(parts)


def _compact_json(value: bytes) -> str:
    try:
        return json.dumps(json.loads(value), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return f"{len(value)}B (not JSON)"


def save_image(record: Record, directory: Path) -> Path:
    """Write the record's bytes to DIR/<image id>.<ext>; return the path."""
    name = record.headers.get(IMAGE_ID) or f"{record.topic}-{record.partition}-{record.offset}"
    fmt, _ = describe_image(record.value)
    ext = _EXTENSIONS.get(fmt, "bin")
    path = directory / f"{_SAFE_NAME.sub('_', name)[:120]}.{ext}"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_bytes(record.value)
    return path


async def read_topic(
    kafka: KafkaSettings,
    topic: str,
    *,
    last: int | None = None,
    from_beginning: bool = False,
    follow: bool = True,
    on_ready: Callable[[], None] | None = None,
) -> AsyncIterator[Record]:
    """Records of ``topic``: the ``last`` N (by timestamp), or from the beginning, or only new
    ones; without ``follow``, stop at the end offsets seen when reading began."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=kafka.request_bytes,
        fetch_max_bytes=max(64 * 1024 * 1024, kafka.request_bytes),
        request_timeout_ms=15_000,
    )
    try:
        await consumer.start()
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # no public metadata refresh
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise TopicMissing(f"topic {topic} does not exist on {kafka.bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if last is not None:
                consumer.seek(tp, max(starts[tp], ends[tp] - last))
            elif from_beginning:
                consumer.seek(tp, starts[tp])
            else:
                consumer.seek(tp, ends[tp])
        if on_ready is not None:
            on_ready()
        if last is not None:
            backlog = [r async for r in _until(consumer, tps, ends)]
            backlog.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
            for record in backlog[-last:] if last else []:
                yield record
        elif not follow:
            async for record in _until(consumer, tps, ends):
                yield record
            return
        if not follow:
            return
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    yield _record(r)
    except KafkaError as exc:
        raise ServiceUnhealthy(
            f"Kafka at {kafka.bootstrap_servers} does not answer: {exc}"
        ) from exc
    finally:
        await consumer.stop()


async def _until(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: dict[TopicPartition, int]
) -> AsyncIterator[Record]:
    """Records up to the end offsets ``ends`` (exclusive), then stop."""
    pending = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, records in batch.items():
            for r in records:
                if r.offset < ends[tp]:
                    yield _record(r)
        pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}


def _record(r: Any) -> Record:
    return Record(
        topic=r.topic,
        partition=r.partition,
        offset=r.offset,
        timestamp_ms=int(r.timestamp or 0),
        key=r.key,
        value=r.value if r.value is not None else b"",
        headers=header_map(r.headers),
    )
