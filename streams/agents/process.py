"""Agent "process": every images.raw message gets exactly one outcome (metadata or dead letter)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from faust.streams import _current_event

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
from streams.processing import ImageRejected, ProcessedImage, ProcessingConfig, process_image
from streams.records import DUPLICATE, ImageDuplicate, ImageMetadata
from streams.retrying import Retrying, until_done

if TYPE_CHECKING:
    from streams.app import FlowForgeApp

log = logging.getLogger(__name__)

BRIGHTNESS_EMA_ALPHA = 0.05
# How long a batch waits to fill before it is processed as it is: the most a quiet feed's
# image waits (a busy feed fills the batch from what Faust already fetched).
BATCH_WITHIN_S = 0.02


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


@dataclass(slots=True)
class Item:
    """One event of a batch on its way to its outcome."""

    event: Any
    message: Any
    data: bytes
    headers: dict[str, str]
    envelope: Envelope | None = None  # None: unreadable, rejected at the envelope stage
    owned: bool = False  # this batch processes it (it was put in flight)
    status: str = ""
    brightness: float | None = None
    first_seen: int | None = None  # a duplicate's first outcome (epoch ms), None: in flight
    reject: tuple[str, str, str] | None = None  # stage, reason, detail

    @property
    def image_id(self) -> str:
        return self.envelope.image_id if self.envelope is not None else ""

    @property
    def source_id(self) -> str:
        return self.envelope.source_id if self.envelope is not None else "unknown"


@contextmanager
def current(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event in this task while the block runs.

    Table reads and writes take their partition from it, and Faust sets it only for events
    iterated one by one; a batch's events need it set for each (faust-streaming issue 497).
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def process_each(
    payloads: list[bytes], config: ProcessingConfig
) -> list[ProcessedImage | Exception]:
    """:func:`process_image` over ``payloads`` (in a pool thread): each image's result, or the
    exception that refused it."""
    results: list[ProcessedImage | Exception] = []
    for data in payloads:
        try:
            results.append(process_image(data, config))
        except Exception as exc:  # noqa: BLE001 - the agent logs it and dead-letters the image
            results.append(exc)
    return results


class ImageProcessor:
    """Turns each Kafka event of a batch into its outcome; the agent only feeds batches to it."""

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

    async def handle_batch(
        self, events: Sequence[Any], ack: Callable[[Any], Awaitable[Any]]
    ) -> None:
        """Give each event of a batch its one outcome, then ``ack(event)`` each, in order.

        Dedup against ``seen-images`` and the images in flight (this batch's too); decode, score
        and resize in the pool, one share of the batch per thread in one call; send a share's
        outputs as soon as it is done and await Kafka's acknowledgements together (an image
        whose send failed is retried on its own until Kafka has it); write ``seen-images`` only
        for images whose outputs Kafka acknowledged. Nothing here raises for one image; an
        event is acked only once its outcome is acknowledged, and one left unacked (a worker
        killed or cancelled meanwhile) is delivered again.
        """
        now_ms = int(time.time() * 1000)
        items = [self._admit(event, now_ms) for event in events]
        owned = [item for item in items if item.owned]
        metrics.IN_FLIGHT.inc(len(owned))
        try:
            await asyncio.gather(
                self._process_all(owned),
                *(self._reject_item(item) for item in items if item.reject is not None),
                *(self._duplicate(item) for item in items if item.status == DUPLICATE),
            )
            for item in owned:
                # Rejections are not remembered: `flowforge dlq replay` must be able to bring an
                # image back once its cause is fixed (a redelivered reject is rejected again).
                if item.status != "rejected":
                    with current(item.event):
                        self.tables.seen[item.image_id] = now_ms
        finally:
            metrics.IN_FLIGHT.dec(len(owned))
            for item in owned:
                self._in_flight.discard(item.image_id)
        for item in items:
            await ack(item.event)

    def _admit(self, event: Any, now_ms: int) -> Item:
        """Read ``event``'s envelope and sort it: an image to process (put in flight), a
        duplicate (seen within the dedup window, or in flight) or a reject."""
        message = event.message
        data = message.value if isinstance(message.value, bytes) else b""
        item = Item(event, message, data, header_map(message.headers))
        try:
            envelope = parse_envelope(
                item.headers, message.key, data, now_ms, _timestamp_ms(message)
            )
        except EnvelopeError as exc:
            item.reject = ("envelope", exc.reason, exc.detail)
            item.status = "rejected"
            return item
        item.envelope = envelope
        with current(event):
            first_seen = self.tables.seen.get(envelope.image_id)
        fresh = first_seen is not None and now_ms - int(first_seen) < self.ttl_ms
        if fresh or envelope.image_id in self._in_flight:
            item.status = DUPLICATE
            item.first_seen = int(first_seen) if fresh else None
            return item
        self._in_flight.add(envelope.image_id)
        item.owned = True
        return item

    async def _process_all(self, owned: list[Item]) -> None:
        """Process ``owned`` in the pool, one share per thread, sending each share's outcomes as
        soon as it is done; return once Kafka acknowledged every outcome."""
        if owned:
            size = -(-len(owned) // self.flow.concurrency)
            shares = [owned[i : i + size] for i in range(0, len(owned), size)]
            await asyncio.gather(*(self._process_share(share) for share in shares))

    async def _process_share(self, share: list[Item]) -> None:
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(
            self.flow.pool, process_each, [item.data for item in share], self.flow.config
        )
        sending = []
        for item, result in zip(share, results, strict=True):
            if isinstance(result, ProcessedImage):
                metrics.DECODE_MS.observe(result.decode_ms)
                metrics.RESIZE_MS.observe(result.resize_ms)
                metrics.TOTAL_MS.observe(result.total_ms)
                item.status, item.brightness = result.status, result.brightness
                sending.append(self._deliver(item, result))
                continue
            item.status = "rejected"
            if isinstance(result, ImageRejected):
                item.reject = ("process", result.reason, result.detail)
            else:
                # A processing bug must not stop the worker: the image goes to the dead-letter
                # topic with the error, and the worker goes on.
                log.error("processing image %s failed unexpectedly", item.image_id, exc_info=result)
                item.reject = ("process", "internal_error", f"{type(result).__name__}: {result}")
            sending.append(self._reject_item(item))
        await asyncio.gather(*sending)

    async def _deliver(self, item: Item, result: ProcessedImage) -> None:
        """Send ``item``'s outputs, retried until Kafka acknowledged them."""
        envelope = item.envelope
        assert envelope is not None
        await until_done(
            f"sending the outputs of image {envelope.image_id}",
            lambda: self._send_outputs(item.message, item.data, envelope, result),
            backoff=self.backoff,
            retrying=self.retrying,
        )
        self._note(item)

    async def _reject_item(self, item: Item) -> None:
        assert item.reject is not None
        stage, reason, detail = item.reject
        await self._reject(
            item.message, item.data, item.headers, item.envelope, stage, reason, detail
        )
        self._note(item)

    def _note(self, item: Item) -> None:
        """Count ``item``'s outcome (acknowledged by Kafka) on /metrics, /stats and the log."""
        self._count(item.source_id, item.status)
        self.counts.add(item.message.partition, item.source_id, item.status, item.brightness)
        self.progress.note(item.status)

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

    def check_gap(self, message: Any) -> None:
        """Log and count offsets that Faust skipped on a partition (they would be lost).

        Called as each event leaves Faust's queue for an actor's batch, in delivery order (a
        batch is processed later, and the actors' batches interleave)."""
        partition, offset = message.partition, message.offset
        expected = self._next_offset.get(partition)
        # Only a forward jump past every offset seen so far is a gap (after a rebalance the
        # expected offsets are forgotten: the next ones are Faust's to choose).
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

    async def _duplicate(self, item: Item) -> None:
        """An image seen again within the dedup window: no new outcome (it has one), but a
        ``duplicate`` record on images.metadata (a row of images_duplicates, so ClickHouse
        counts it per source), acknowledged before the event is done; counted, and said in
        the log, so a re-sent photo is not mistaken for a lost one.

        ``item.first_seen`` is None while the image's first delivery is still being processed.
        """
        message, envelope, first_seen_ms = item.message, item.envelope, item.first_seen
        assert envelope is not None
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
            bytes=len(item.data),
            kafka_partition=message.partition,
            kafka_offset=message.offset,
            worker=self.flow.worker_name,
        )
        await self._send_record(
            f"the duplicate record of image {image.image_id}", image.source_id, record
        )
        self._note(item)

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
        def check_gap(value: Any) -> Any:  # runs as Faust dequeues the event, before batching
            processor.check_gap(stream.current_event.message)
            return value

        stream.add_processor(check_gap)
        # Faust never acks these events itself: each is acked once its outcome is, so one in
        # hand when the worker is killed or cancelled is delivered again.
        async for events in stream.noack_take(batch, within=BATCH_WITHIN_S):
            await processor.handle_batch(events, stream.ack)

    # One actor per pool thread, each with a batch of IN_FLIGHT_PER_THREAD images: while one
    # waits for Kafka's acknowledgements of its batch, the other's keeps the threads busy.
    # Their acks interleave; the worker's consumer never commits past an image in flight
    # (streams/transport.py).
    batch = IN_FLIGHT_PER_THREAD
    agent = flow.app.agent(flow.topics.raw, name="process", concurrency=max(2, flow.concurrency))(
        process
    )

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
