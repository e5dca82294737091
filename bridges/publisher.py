"""KafkaPublisher: the one aiokafka producer the bridges publish images and dead letters with."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError

from bridges import metrics
from bridges.errors import PayloadRejected, PublishFailed
from flowforge.core.backoff import Backoff, retry
from flowforge.core.dead_letter import error_headers, fit, record_size, without_value
from flowforge.core.envelope import Envelope, content_image_id
from flowforge.core.kafka_admin import ensure_topics, topic_spec
from flowforge.core.metadata import rejected_record
from flowforge.core.partitioning import partition_for
from flowforge.core.settings import BridgeSettings, KafkaSettings

log = logging.getLogger(__name__)

ERROR_STAGE = "bridge"
# The broker watch: one metadata round trip this often, given this long to answer.
PROBE_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ImageMessage:
    """One image as a bridge received it, before it becomes a Kafka record."""

    source_type: str
    source_id: str
    origin: str
    data: bytes
    captured_at_ms: int
    content_type: str = "application/octet-stream"
    # When the bridge took the image in: retention and latency count from here.
    ingested_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    # content_image_id(source_id, data) when the caller hashed it already (off the event loop,
    # or from a file too large to hold): the envelope then hashes nothing
    image_id: str = ""

    def envelope(self) -> Envelope:
        """The envelope headers; the image id is the content hash, so redeliveries keep it."""
        return Envelope(
            image_id=self.image_id or content_image_id(self.source_id, self.data),
            source_type=self.source_type,
            source_id=self.source_id,
            captured_at_ms=self.captured_at_ms,
            content_type=self.content_type,
            origin=self.origin,
            ingested_at_ms=self.ingested_at_ms,
        )


@dataclass(frozen=True)
class Outcome:
    """What became of an image: published to the image topic, or rejected to the DLQ."""

    status: Literal["published", "rejected"]
    image_id: str
    reason: str = ""


class ByteBudget:
    """A bound on payload bytes in flight: ``acquire`` waits until the bytes fit.

    A single item larger than the whole budget is let through alone (when nothing else is in
    flight), so it waits instead of deadlocking.
    """

    def __init__(self, limit: int, gauge: Any = metrics.IN_FLIGHT_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self._gauge = gauge  # set to the bytes in use after each change (None: no gauge)
        self._changed = asyncio.Condition()

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes may go now."""
        return self.used == 0 or self.used + size <= self.limit

    async def acquire(self, size: int) -> None:
        """Wait until ``size`` bytes fit in the budget, then take them."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.fits(size))
            self.used += size
            if self._gauge is not None:
                self._gauge.set(self.used)

    async def release(self, size: int) -> None:
        """Give ``size`` bytes back and wake the waiters."""
        async with self._changed:
            self.used -= size
            if self._gauge is not None:
                self._gauge.set(self.used)
            self._changed.notify_all()


def dead_letter_headers(envelope: Envelope, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """The envelope plus the error headers of a bridge-stage dead letter."""
    return [*envelope.headers(), *error_headers(ERROR_STAGE, reason, detail)]


class KafkaPublisher:
    """Publishes images to the image topic with their envelope; rejected ones to the DLQ.

    acks=all with the idempotent producer, compression from the settings, ``max_request_size``
    equal to the topic limit (``FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES``), and a budget of payload
    bytes in flight (``FLOWFORGE_BRIDGE_IN_FLIGHT_BYTES``) so memory stays bounded.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        bridge: BridgeSettings,
        *,
        bridge_name: str,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen dataclass, safe as a default
    ) -> None:
        self.kafka = kafka
        self.bridge_name = bridge_name
        # The `worker` column of the records of the images this bridge refuses.
        self.worker_name = f"{socket.gethostname()}:bridge-{bridge_name}"
        self.budget = ByteBudget(bridge.in_flight_bytes)
        self.backoff = backoff
        self._compression = None if bridge.compression == "none" else bridge.compression
        self._linger_ms = bridge.linger_ms
        self._producer: AIOKafkaProducer | None = None
        self.last_ack = 0.0  # monotonic time of the last acknowledgement or of start()
        self.pending = 0  # records handed over and not yet acknowledged or given up
        self.reachable = True  # whether the last metadata round trip to Kafka succeeded
        self.unreachable_reason = ""
        self._watch: asyncio.Task[None] | None = None

    def kafka_health(self, stall_s: float = 30.0) -> tuple[bool, str]:
        """Whether Kafka is answering and acknowledging; every bridge's readiness includes it.

        Not ready when the broker watch cannot reach Kafka, or when records have waited for an
        acknowledgement for more than ``stall_s`` seconds.
        """
        if not self.reachable:
            return False, f"Kafka unreachable: {self.unreachable_reason}"
        idle = time.monotonic() - self.last_ack
        if self.pending and idle > stall_s:
            waiting = f"{self.pending} images wait for Kafka"
            return False, f"{waiting}, no acknowledgement for {idle:.0f}s"
        return True, f"{self.pending} images in flight"

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap_servers,
            client_id=f"flowforge-bridge-{self.bridge_name}",
            acks="all",
            enable_idempotence=True,
            compression_type=self._compression,
            max_request_size=self.kafka.max_message_bytes,
            max_batch_size=min(1024 * 1024, self.kafka.max_message_bytes),
            linger_ms=self._linger_ms,
        )

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Create the image, DLQ and metadata topics if missing, then connect (retrying while it
        is down)."""
        names = (self.kafka.topic_raw, self.kafka.topic_dlq, self.kafka.topic_metadata)
        await retry(
            lambda: ensure_topics(self.kafka, [topic_spec(self.kafka, n) for n in names]),
            what="creating the bridge topics",
            backoff=self.backoff,
            stop=stop,
        )

        async def connect() -> None:
            producer = self._new_producer()
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise PublishFailed(f"cannot connect to Kafka: {exc}") from exc
            self._producer = producer

        await retry(connect, what="connecting to Kafka", backoff=self.backoff, stop=stop)
        self.last_ack = time.monotonic()
        self.reachable = True
        self._watch = asyncio.create_task(self._watch_broker(), name="kafka-watch")
        log.info(
            "publisher connected to %s (topic %s, limit %d bytes, compression %s)",
            self.kafka.bootstrap_servers,
            self.kafka.topic_raw,
            self.kafka.max_message_bytes,
            self._compression or "none",
        )

    async def stop(self) -> None:
        """Flush what was handed over and close the producer."""
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
            log.info("publisher stopped")

    async def _watch_broker(self) -> None:
        """Every PROBE_SECONDS, one metadata round trip to the brokers, so readiness knows
        whether Kafka answers even while no image is waiting (the idempotent producer itself
        retries a record forever and never reports a broker that is away)."""
        while self._producer is not None:
            await asyncio.sleep(PROBE_SECONDS)
            producer = self._producer
            if producer is None:
                return
            try:
                await asyncio.wait_for(
                    producer.client.fetch_all_metadata(), timeout=PROBE_TIMEOUT_SECONDS
                )
            except (KafkaError, TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if self.reachable:
                    log.warning(
                        "Kafka %s unreachable (%s); images wait until it is back",
                        self.kafka.bootstrap_servers, reason,
                    )  # fmt: skip
                self.reachable = False
                self.unreachable_reason = reason
            else:
                if not self.reachable:
                    log.info("Kafka %s reachable again", self.kafka.bootstrap_servers)
                self.reachable = True
                self.unreachable_reason = ""

    def check(self, message: ImageMessage, envelope: Envelope | None = None) -> None:
        """Raise PayloadRejected if ``message`` (with ``envelope``, its envelope if known) can
        never be published (empty, too large)."""
        if not message.data:
            raise PayloadRejected("empty", "the payload is empty")
        headers = (envelope or message.envelope()).headers()
        size = record_size(message.source_id.encode(), message.data, headers)
        if size > self.kafka.max_message_bytes:
            raise PayloadRejected(
                "too_large",
                f"record of {size} bytes ({len(message.data)} payload) exceeds the topic limit of "
                f"{self.kafka.max_message_bytes} bytes (FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES)",
            )

    async def deliver(self, message: ImageMessage, stop: asyncio.Event | None = None) -> Outcome:
        """Publish ``message`` and wait for Kafka's acknowledgement; reject it to the DLQ if it
        can never be published. Retriable failures are retried with backoff until ``stop``."""
        envelope = message.envelope()  # hashed once: the image id
        try:
            self.check(message, envelope)
            await self._send_with_retry(
                self.kafka.topic_raw, envelope.image_id, message.source_id.encode(),
                message.data, envelope.headers(), stop,
            )  # fmt: skip
        except PayloadRejected as rejected:
            message = dataclasses.replace(message, image_id=envelope.image_id)
            return await self.reject(message, rejected.reason, rejected.detail, stop)
        metrics.PUBLISHED.labels(self.bridge_name).inc()
        return Outcome("published", envelope.image_id)

    async def reject(
        self,
        message: ImageMessage,
        reason: str,
        detail: str,
        stop: asyncio.Event | None = None,
        size: int | None = None,
    ) -> Outcome:
        """Publish ``message`` to the DLQ with ``reason``, and its ``rejected`` record to the
        metadata topic (so every image is a ClickHouse row); count and log it.

        The value is the original bytes when they fit the topic limit, else empty (the detail
        line gives the size): a dead letter must never be refused itself. ``size`` is the
        image's size when ``message`` does not hold its bytes (a file over the limit).
        """
        envelope = message.envelope()
        headers = dead_letter_headers(envelope, reason, detail)
        key, image_id = message.source_id.encode(), envelope.image_id
        value, headers = fit(key, message.data, headers, self.kafka.max_message_bytes)
        try:
            await self._send_with_retry(self.kafka.topic_dlq, image_id, key, value, headers, stop)
        except PayloadRejected:  # the broker's own limit is lower than ours: keep the headers
            headers = without_value(headers, len(value))
            await self._send_with_retry(self.kafka.topic_dlq, image_id, key, b"", headers, stop)
        record = rejected_record(
            image_id=envelope.image_id,
            source_type=envelope.source_type,
            source_id=envelope.source_id,
            captured_at_ms=envelope.captured_at_ms,
            ingested_at_ms=envelope.ingested_at_ms,
            reason=reason,
            size=len(message.data) if size is None else size,
            worker=self.worker_name,
        )
        await self._send_with_retry(self.kafka.topic_metadata, image_id, key, record, [], stop)
        metrics.REJECTED.labels(self.bridge_name, reason).inc()
        log.warning(
            "rejected image %s from %s (%s) to %s: %s: %s",
            envelope.image_id, message.source_id[:80], message.origin[:120],
            self.kafka.topic_dlq, reason, detail,
        )  # fmt: skip
        return Outcome("rejected", envelope.image_id, reason)

    async def _send_with_retry(
        self,
        topic: str,
        image_id: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        stop: asyncio.Event | None,
    ) -> Any:
        attempts = 0

        async def once() -> Any:
            nonlocal attempts
            if attempts:
                metrics.PUBLISH_RETRIES.labels(self.bridge_name).inc()
            attempts += 1
            return await self._send(topic, image_id, key, value, headers)

        self.pending += 1
        try:
            return await retry(once, what=f"publishing to {topic}", backoff=self.backoff, stop=stop)
        finally:
            self.pending -= 1

    async def _send(
        self, topic: str, image_id: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        """Send one record to the partition of its image id (flowforge.core.partitioning), keyed
        by its source id, and wait for Kafka's acknowledgement."""
        if self._producer is None:
            raise RuntimeError("KafkaPublisher.start() was not called")
        size = len(value)
        await self.budget.acquire(size)
        started = time.monotonic()
        try:
            partition = await partition_for(self._producer, topic, image_id)
            future = await self._producer.send(
                topic, value, key=key, headers=headers, partition=partition
            )
            result = await future
        except MessageSizeTooLargeError as exc:
            raise PayloadRejected("too_large", f"Kafka refused the record: {exc}") from exc
        except KafkaTimeoutError as exc:  # aiokafka flags it non-retriable; for us it is
            raise PublishFailed(f"Kafka did not acknowledge in time: {exc}") from exc
        finally:
            await self.budget.release(size)
        now = time.monotonic()
        self.last_ack = now
        metrics.PUBLISH_MS.observe((now - started) * 1000)
        return result
