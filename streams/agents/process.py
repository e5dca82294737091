"""Agent "process": every images.raw message gets exactly one outcome (metadata or dead letter)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from flowforge.core.backoff import Backoff
from flowforge.core.envelope import (
    CONTENT_TYPE,
    IMAGE_ID,
    SOURCE_ID,
    SOURCE_TYPE,
    Envelope,
    content_image_id,
    header_map,
    parse_envelope,
)
from flowforge.core.errors import EnvelopeError
from streams import metrics
from streams.app import IN_FLIGHT_PER_THREAD
from streams.dlq import acked, dead_letter
from streams.processing import ImageRejected, ProcessedImage, process_image
from streams.records import DUPLICATE, ImageDuplicate, ImageMetadata
from streams.retrying import Retrying, until_done

if TYPE_CHECKING:
    from streams.app import FlowForgeApp

log = logging.getLogger(__name__)

BRIGHTNESS_EMA_ALPHA = 0.05


@dataclass(frozen=True, slots=True)
class Rejected:
    """The outcome of an image refused before it was decoded, or while: no sizes, no scores."""

    reason: str  # the dead-letter reason code
    status: str = "rejected"
    format: str = ""
    width: int = 0
    height: int = 0
    out_width: int = 0
    out_height: int = 0
    brightness: float = 0.0
    contrast: float = 0.0
    sharpness: float = 0.0
    total_ms: float = 0.0


class Identity(NamedTuple):
    """Who an image is in its metadata record: from its envelope, or from the bare message."""

    image_id: str
    source_type: str
    source_id: str
    captured_at: datetime
    ingested_at: datetime

    @classmethod
    def of(cls, envelope: Envelope) -> Identity:
        captured_at = datetime.fromtimestamp(envelope.captured_at_ms / 1000, tz=UTC)
        ingested_at = datetime.fromtimestamp(envelope.ingested_at_ms / 1000, tz=UTC)
        return cls(
            envelope.image_id, envelope.source_type, envelope.source_id, captured_at, ingested_at
        )


class ImageProcessor:
    """Turns one Kafka event into its outcome; the agent only feeds events to it."""

    def __init__(self, flow: FlowForgeApp) -> None:
        if flow.tables is None:
            raise ValueError("the process agent needs the worker's tables")
        self.flow = flow
        self.tables = flow.tables
        self.ttl_ms = int(flow.settings.worker.dedup_ttl_hours * 3_600_000)
        self._in_flight: set[str] = set()
        self._next_offset: dict[int, int] = {}
        self.progress = Progress()
        self.counts = WorkerCounts()
        self.backoff = Backoff()
        self.retrying = Retrying("process")

    async def handle(self, event: Any) -> None:
        """One event: dedup, decode/score/resize in the pool, send outputs, update tables."""
        message = event.message
        self._check_gap(message)
        data = message.value if isinstance(message.value, bytes) else b""
        headers = header_map(message.headers)
        now_ms = int(time.time() * 1000)
        try:
            envelope = parse_envelope(headers, message.key, data, now_ms, _timestamp_ms(message))
        except EnvelopeError as exc:
            await self._reject(message, data, headers, None, "envelope", exc.reason, exc.detail)
            self._count("unknown", "rejected")
            self.counts.add(message.partition, "unknown", "rejected", None)
            self.progress.note("rejected")
            return
        image_id = envelope.image_id
        first_seen = self.tables.seen.get(image_id)
        fresh = first_seen is not None and now_ms - int(first_seen) < self.ttl_ms
        if fresh or image_id in self._in_flight:
            seen_ms = int(first_seen) if fresh else None
            await self._duplicate(message, envelope, len(data), seen_ms)
            return
        self._in_flight.add(image_id)
        metrics.IN_FLIGHT.inc()
        try:
            status, brightness = await self._process(message, data, headers, envelope)
            # Rejections are not remembered: `flowforge dlq replay` must be able to bring an
            # image back once its cause is fixed (a redelivered reject is just rejected again).
            if status != "rejected":
                self.tables.seen[image_id] = now_ms
        finally:
            metrics.IN_FLIGHT.dec()
            self._in_flight.discard(image_id)
        self._count(envelope.source_id, status)
        self.counts.add(message.partition, envelope.source_id, status, brightness)
        self.progress.note(status)

    async def _process(
        self, message: Any, data: bytes, headers: dict[str, str], envelope: Envelope
    ) -> tuple[str, float | None]:
        """The image's outcome, sent and acked: its status and, once decoded, its brightness."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self.flow.pool, process_image, data, self.flow.config
            )
        except ImageRejected as exc:
            await self._reject(message, data, headers, envelope, "process", exc.reason, exc.detail)
            return "rejected", None
        except Exception as exc:
            # A processing bug must not stop the worker: the image goes to the dead-letter
            # topic with the error, and the worker goes on.
            log.exception("processing image %s failed unexpectedly", envelope.image_id)
            detail = f"{type(exc).__name__}: {exc}"
            await self._reject(
                message, data, headers, envelope, "process", "internal_error", detail
            )
            return "rejected", None
        metrics.DECODE_MS.observe(result.decode_ms)
        metrics.RESIZE_MS.observe(result.resize_ms)
        metrics.TOTAL_MS.observe(result.total_ms)
        await until_done(
            f"sending the outputs of image {envelope.image_id}",
            lambda: self._send_outputs(message, data, envelope, result),
            backoff=self.backoff,
            retrying=self.retrying,
        )
        return result.status, result.brightness

    async def _send_outputs(
        self, message: Any, data: bytes, envelope: Envelope, result: ProcessedImage
    ) -> None:
        """The resized JPEG (unless skipped) and the metadata record, acknowledged by Kafka."""
        topics = self.flow.topics
        sent = []
        if result.jpeg is not None:
            out_headers = [
                (name, value) for name, value in envelope.headers() if name != CONTENT_TYPE
            ]
            out_headers.append((CONTENT_TYPE, b"image/jpeg"))
            sent.append(
                await topics.processed.send(
                    key=message.key,
                    value=result.jpeg,
                    headers=out_headers,
                    partition=await self.flow.partition_of(topics.processed, envelope.image_id),
                )
            )
        record = self._metadata(message, Identity.of(envelope), len(data), result)
        sent.append(
            await topics.metadata.send(
                key=envelope.source_id.encode(),
                value=record,
                partition=await self.flow.partition_of(topics.metadata, envelope.image_id),
            )
        )
        await acked(sent)

    def _metadata(
        self, message: Any, image: Identity, size: int, outcome: ProcessedImage | Rejected
    ) -> ImageMetadata:
        """The image's one images.metadata record, with its outcome."""
        return ImageMetadata(
            image_id=image.image_id,
            source_type=image.source_type,
            source_id=image.source_id,
            captured_at=image.captured_at,
            ingested_at=image.ingested_at,
            processed_at=datetime.now(tz=UTC),
            status=outcome.status,
            reason=outcome.reason,
            width=outcome.width,
            height=outcome.height,
            out_width=outcome.out_width,
            out_height=outcome.out_height,
            bytes=size,
            format=outcome.format,
            brightness=round(outcome.brightness, 3),
            contrast=round(outcome.contrast, 3),
            sharpness=round(outcome.sharpness, 3),
            processing_ms=round(outcome.total_ms, 3),
            kafka_partition=message.partition,
            kafka_offset=message.offset,
            worker=self.flow.worker_name,
        )

    async def _reject(
        self,
        message: Any,
        data: bytes,
        headers: dict[str, str],
        envelope: Envelope | None,
        stage: str,
        reason: str,
        detail: str,
    ) -> None:
        """Dead-letter the image, and record it on images.metadata with status ``rejected``.

        The metadata row makes every image visible in ClickHouse (rejects by reason on the
        dashboard); the dead letter keeps the bytes for inspection and replay. Each is retried
        until Kafka acknowledged it.
        """
        if envelope is not None:
            image = Identity.of(envelope)
        else:
            # The envelope is unusable, but what it says is kept: the record and the dead letter
            # carry the message's own image id (and source) when it has them.
            key = message.key if isinstance(message.key, bytes) else b""
            source_id = (
                headers.get(SOURCE_ID, "").strip()[:256]
                or key.decode("utf-8", errors="replace")[:200]
                or "unknown"
            )
            image = Identity(
                image_id=headers.get(IMAGE_ID, "").strip()[:128]
                or content_image_id(source_id, data),
                source_type=headers.get(SOURCE_TYPE, "")[:20] or "unknown",
                source_id=source_id,
                captured_at=datetime.now(tz=UTC),
                ingested_at=datetime.fromtimestamp(
                    (_timestamp_ms(message) or time.time() * 1000) / 1000, tz=UTC
                ),
            )
        await until_done(
            f"dead-lettering image {image.image_id}",
            lambda: dead_letter(
                self.flow, message, data, headers, stage=stage, reason=reason, detail=detail
            ),
            backoff=self.backoff,
            retrying=self.retrying,
        )
        record = self._metadata(message, image, len(data), Rejected(reason))
        await self._send_record(f"the record of image {image.image_id}", image.source_id, record)

    async def _send_record(
        self, what: str, source_id: str, record: ImageMetadata | ImageDuplicate
    ) -> None:
        """Send ``record`` on images.metadata, retried until Kafka acknowledged it."""
        key, topic = source_id.encode(), self.flow.topics.metadata

        async def send_record() -> None:
            partition = await self.flow.partition_of(topic, record.image_id)
            await acked([await topic.send(key=key, value=record, partition=partition)])

        await until_done(
            f"sending {what}", send_record, backoff=self.backoff, retrying=self.retrying
        )

    def _check_gap(self, message: Any) -> None:
        """Log and count offsets that Faust skipped on a partition (they would be lost)."""
        partition, offset = message.partition, message.offset
        expected = self._next_offset.get(partition)
        # Concurrent actors may see a partition's events slightly out of order; only a forward
        # jump past every offset seen so far is a gap.
        if expected is not None and offset > expected:
            metrics.OFFSET_GAPS.inc(offset - expected)
            log.error(
                "offsets %d-%d of %s partition %d were skipped before reaching the agent",
                expected,
                offset - 1,
                message.topic,
                partition,
            )
        if expected is None or offset >= expected:
            self._next_offset[partition] = offset + 1

    def reset_offsets(self) -> None:
        """Forget expected offsets (after a rebalance the next offsets are Faust's to choose)."""
        self._next_offset.clear()

    async def _duplicate(
        self, message: Any, envelope: Envelope, size: int, first_seen_ms: int | None
    ) -> None:
        """An image seen again within the dedup window: no new outcome (it has one), but a
        ``duplicate`` record on images.metadata (a row of images_duplicates, so ClickHouse
        counts it per source), acknowledged before the event is done; counted, and said in
        the log, so a re-sent photo is not mistaken for a lost one.

        ``first_seen_ms`` is None while the image's first delivery is still being processed.
        """
        when = (
            "is being processed now"
            if first_seen_ms is None
            else "was first seen "
            + datetime.fromtimestamp(first_seen_ms / 1000, tz=UTC).isoformat(timespec="seconds")
        )
        log.info(
            "duplicate image %s from source %s: it %s; no new row (dedup window %.0f h)",
            envelope.image_id,
            envelope.source_id,
            when,
            self.ttl_ms / 3_600_000,
        )
        image = Identity.of(envelope)
        record = ImageDuplicate(
            image_id=image.image_id,
            source_type=image.source_type,
            source_id=image.source_id,
            captured_at=image.captured_at,
            ingested_at=image.ingested_at,
            first_seen_at=(
                None
                if first_seen_ms is None
                else datetime.fromtimestamp(first_seen_ms / 1000, tz=UTC)
            ),
            processed_at=datetime.now(tz=UTC),
            status=DUPLICATE,
            bytes=size,
            kafka_partition=message.partition,
            kafka_offset=message.offset,
            worker=self.flow.worker_name,
        )
        await self._send_record(
            f"the duplicate record of image {image.image_id}", image.source_id, record
        )
        self._count(envelope.source_id, "duplicate")
        self.counts.add(message.partition, envelope.source_id, DUPLICATE, None)
        self.progress.note("duplicate")

    def _count(self, source: str, status: str) -> None:
        metrics.IMAGES.labels(source=metrics.source_label(source), status=status).inc()


class SourceCounts:
    """One source's outcomes in this worker since it started."""

    __slots__ = ("brightness_avg", "counts", "last_seen")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.brightness_avg = 0.0  # exponential moving average over its decoded images here
        self.last_seen = 0.0  # epoch seconds

    def as_json(self) -> dict[str, Any]:
        c = self.counts
        return {
            "images": sum(n for status, n in c.items() if status != DUPLICATE),
            "processed": c.get("processed", 0),
            "dark": c.get("skipped_dark", 0),
            "low_quality": c.get("skipped_low_quality", 0),
            "rejected": c.get("rejected", 0),
            "duplicates": c.get(DUPLICATE, 0),
            "brightness_avg": round(self.brightness_avg, 3),
            "last_seen": self.last_seen,
        }


class WorkerCounts:
    """This worker's outcomes since it started, per source and per images.raw partition: what
    ``/stats`` serves. Only the images of the partitions it held; per-source totals over every
    worker are ClickHouse's (``flowforge stats``). Sources past the ``/metrics`` cap count under
    its ``other`` label, so memory stays bounded however many sources there are."""

    def __init__(self) -> None:
        self.since = time.time()
        self.sources: dict[str, SourceCounts] = {}
        self.partitions: dict[int, int] = {}

    def add(self, partition: int, source: str, status: str, brightness: float | None) -> None:
        counts = self.sources.get(label := metrics.source_label(source))
        if counts is None:
            counts = self.sources[label] = SourceCounts()
        decoded = sum(
            counts.counts.get(s, 0) for s in ("processed", "skipped_dark", "skipped_low_quality")
        )
        if brightness is not None:
            avg = counts.brightness_avg
            counts.brightness_avg = (
                brightness if decoded == 0 else avg + BRIGHTNESS_EMA_ALPHA * (brightness - avg)
            )
        counts.counts[status] = counts.counts.get(status, 0) + 1
        counts.last_seen = time.time()
        self.partitions[partition] = self.partitions.get(partition, 0) + 1

    def as_json(self, worker: str) -> dict[str, Any]:
        return {
            "scope": "this worker since it started, over the images.raw partitions it held; "
            "totals per source: flowforge stats (ClickHouse)",
            "worker": worker,
            "since": datetime.fromtimestamp(self.since, tz=UTC).isoformat(timespec="seconds"),
            "sources": {source: c.as_json() for source, c in sorted(self.sources.items())},
            "partitions": {str(p): n for p, n in sorted(self.partitions.items())},
        }


class Progress:
    """Counts outcomes and the time of the last one, for readiness and the statistics log line."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last_progress = time.monotonic()
        self._logged: dict[str, int] = {}
        self._logged_at = time.monotonic()

    def note(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        self.last_progress = time.monotonic()

    def changed(self) -> bool:
        """Whether any outcome happened since the last statistics line."""
        return self.counts != self._logged

    def log_line(self) -> str:
        """Outcomes since the previous call, and the rate."""
        now = time.monotonic()
        delta = {k: v - self._logged.get(k, 0) for k, v in self.counts.items()}
        total = sum(delta.values())
        rate = total / max(now - self._logged_at, 1e-9)
        self._logged, self._logged_at = dict(self.counts), now
        parts = " ".join(f"{k}={v}" for k, v in sorted(delta.items()) if v)
        return f"processing: n={total} rate={rate:.1f}/s {parts}".rstrip()


def register(flow: FlowForgeApp) -> tuple[Any, ImageProcessor]:
    """Register the "process" agent and its statistics timer; the agent and its processor."""
    processor = ImageProcessor(flow)

    async def process(stream: Any) -> None:
        async for event in stream.events():
            await processor.handle(event)

    # More actors than pool threads: while some wait for Kafka's acks (acks=all, tens of ms
    # under load), others keep the threads busy. In-flight images stay bounded by the actor count.
    actors = IN_FLIGHT_PER_THREAD * flow.concurrency
    agent = flow.app.agent(flow.topics.raw, name="process", concurrency=actors)(process)

    async def log_statistics() -> None:
        if processor.progress.changed():
            log.info(processor.progress.log_line())

    async def forget_offsets(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        processor.reset_offsets()

    flow.app.timer(interval=flow.settings.worker.stats_interval_s)(log_statistics)
    flow.app.on_rebalance_complete.connect(forget_offsets)
    return agent, processor


def _timestamp_ms(message: Any) -> int | None:
    """The Kafka record's timestamp in epoch ms (Faust gives seconds), if it has a usable one."""
    timestamp = getattr(message, "timestamp", None)
    if isinstance(timestamp, int | float) and timestamp > 0:
        return int(timestamp * 1000)
    return None
