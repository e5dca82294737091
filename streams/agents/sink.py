"""The sink: images.metadata batches into ClickHouse; a batch is durable before its offsets.

Batches come from the sink's own Kafka consumer (streams/agents/sink_consumer.py: flush on size
or age), which records a batch's offsets only once :meth:`SinkAgent.handle_batch` returns, so
that never returns before the batch is durable (inserted, or in the spool) and never raises:
bad records go to the dead-letter topic, ClickHouse outages go to the spool, and a shutdown
waits for the batch in hand to be stored. At the spool's bound it waits for the drain to make
room: nothing more is consumed, and nothing is dropped. Every ClickHouse and spool call runs
on one thread (see streams/sink/core.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from flowforge.core.backoff import Backoff
from flowforge.core.envelope import header_map
from flowforge.core.errors import ClickHouseUnavailable
from streams import metrics
from streams.agents.sink_consumer import SinkConsumer
from streams.app import sink_group
from streams.dlq import dead_letter
from streams.errors import MetadataInvalid
from streams.records import metadata_row
from streams.retrying import Retrying, until_done
from streams.sink.core import Drained, MetadataSink, Stored
from streams.sink.spool import Spool
from streams.sink.writer import ClickHouseWriter
from streams.threads import in_thread

if TYPE_CHECKING:
    from streams.app import FlowForgeApp

log = logging.getLogger(__name__)

T = TypeVar("T")

# Spooled rows merged into one insert while draining (at least one batch).
DRAIN_ROWS = 10_000


class _Origin:
    """Where a dead-lettered row came from, when it is no longer a Kafka message (the spool)."""

    def __init__(self, topic: str, key: bytes) -> None:
        self.topic, self.key, self.partition, self.offset = topic, key, -1, -1


class SinkAgent:
    """The sink's asynchronous side: batches in, drain loop, back-pressure, readiness."""

    def __init__(self, flow: FlowForgeApp, client: Any) -> None:
        """``client`` takes the inserts, on the sink's thread."""
        self.flow = flow
        sink = flow.settings.sink
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ff-sink")
        spool = Spool(sink.spool_path, int(sink.spool_max_mb * 1024 * 1024))
        self.core = MetadataSink(
            ClickHouseWriter(client), spool, drain_rows=max(DRAIN_ROWS, sink.batch_size)
        )
        self.client = client
        self.backoff = Backoff(sink.retry_initial_s, sink.retry_max_s)
        self.failures = 0  # consecutive failed drain attempts: the backoff's exponent
        self.retrying = Retrying("sink")
        self.last_flush = time.monotonic()
        self._wake: asyncio.Event | None = None
        # Set when the worker stops: a batch in hand is then spooled even over the bound
        # (by at most that batch), so the worker does not wait on a drain to stop.
        self._stopping = False
        if spool.batches:
            log.info("sink: %d rows from an earlier run wait in the spool", spool.rows)

    @property
    def wake(self) -> asyncio.Event:
        if self._wake is None:  # created in the worker's loop
            self._wake = asyncio.Event()
        return self._wake

    def stop_waiting_for_room(self) -> None:
        """The worker stops: a batch in hand goes to the spool even at its bound."""
        self._stopping = True

    async def handle_batch(self, records: list[Any]) -> None:
        """Make one batch of Kafka records durable (ClickHouse or spool), then dead-letter what
        cannot be a row.

        Returns only once both are done: the caller records the batch's offsets as durable
        when this returns, so storage and dead-letter failures are retried here, and a
        cancellation (shutdown) first finishes what is in hand.
        """
        rows, origins, refused = [], [], []
        for message in records:
            value = message.value if isinstance(message.value, bytes) else b""
            try:
                rows.append(metadata_row(value))
            except MetadataInvalid as exc:
                refused.append((message, value, exc.reason, exc.detail))
                continue
            origins.append(message)
        work = asyncio.ensure_future(self._store_then_dead_letter(rows, origins, refused))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            self._stopping = True  # stop waiting for room: spool it, over the bound if need be
            await asyncio.wait([work])
            raise

    async def _store_then_dead_letter(
        self, rows: list[dict[str, Any]], origins: list[Any], refused: list[tuple[Any, ...]]
    ) -> None:
        stored = await self._until_done("storing a batch", lambda: self._store(rows))
        metrics.SINK_ROWS.labels(outcome="inserted").inc(stored.inserted)
        for index, detail in stored.rejected:
            message = origins[index]
            refused.append((message, message.value, "clickhouse_rejected", detail))
        for message, value, reason, detail in refused:
            await self._until_done(
                f"dead-lettering {message.topic}/{message.partition}@{message.offset}",
                functools.partial(self._dead_letter, message, value, reason, detail),
            )
        if stored.spooled:
            self.wake.set()
        self.last_flush = time.monotonic()

    async def _until_done(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()`` until it succeeds (a full disk, Kafka away), shown in readiness."""
        return await until_done(f"sink: {what}", call, backoff=self.backoff, retrying=self.retrying)

    async def _store(self, rows: list[dict[str, Any]]) -> Stored:
        """Wait for room in the spool (unless shutting down), then store the batch."""
        if not self._stopping:
            await self._room_in_spool()
        return await self._in_thread(self.core.store, rows)

    async def drain_forever(self) -> None:
        """Drain the spool into ClickHouse whenever it holds rows, backing off while it fails."""
        while True:
            try:
                drained = await self._in_thread(self.core.drain_one)
                if drained is not None:
                    await self._dead_letter_drained(drained)
                    await self._in_thread(self.core.done, drained)
            except ClickHouseUnavailable:
                await self._back_off()
                continue
            except Exception:
                # A spool, Kafka or programming error must not end draining: log, back off.
                log.exception("sink: draining the spool failed")
                await self._back_off()
                continue
            self.failures = 0
            if drained is None:
                metrics.SINK_PAUSED.set(0)
                await self._sleep_or_wake(1.0)

    async def _room_in_spool(self) -> None:
        """Wait while the spool is at its bound (back-pressure: stop consuming, drop nothing)."""
        if not self.core.spool.full:
            return
        metrics.SINK_PAUSED.set(1)
        log.warning(
            "sink: spool full (%d rows, %d bytes): consumption paused until it drains",
            self.core.spool.rows,
            self.core.spool.bytes,
        )
        try:
            while self.core.spool.full and not self._stopping:
                await asyncio.sleep(0.2)
        finally:
            metrics.SINK_PAUSED.set(0)
        log.info("sink: spool below its bound, consuming again")

    async def _in_thread(self, call: Callable[..., T], *args: Any) -> T:
        """Run ``call`` on the sink thread; a cancelled caller still waits for it to finish."""
        return await in_thread(self.thread, call, *args)

    async def _back_off(self) -> None:
        delay = self.backoff.delay(self.failures)
        self.failures += 1
        await self._sleep_or_wake(delay)

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)
        self.wake.clear()

    async def _dead_letter_drained(self, drained: Drained) -> None:
        topic = self.flow.settings.kafka.topic_metadata
        for index, detail in drained.rejected:
            row = drained.rows[index]
            value = json.dumps(row).encode()
            origin = _Origin(topic, str(row.get("source_id", "")).encode())
            await self._dead_letter(origin, value, "clickhouse_rejected", detail)

    async def _dead_letter(self, message: Any, value: bytes, reason: str, detail: str) -> None:
        headers = header_map(getattr(message, "headers", None))
        await dead_letter(
            self.flow, message, value, headers, stage="sink", reason=reason, detail=detail
        )
        metrics.SINK_ROWS.labels(outcome="dead_lettered").inc()

    def readiness(self) -> tuple[bool, str]:
        """Degraded (not ready) while ClickHouse fails or the spool is at its bound."""
        spool = self.core.spool
        failing = self.retrying.describe()
        if failing is not None:
            return False, f"degraded: {failing}"
        if spool.full:
            return False, f"degraded: sink spool full ({spool.rows} rows), consumption paused"
        since = self.core.unavailable_since
        if since is not None:
            down = time.monotonic() - since
            return False, (
                f"degraded: ClickHouse unavailable for {down:.0f}s, {spool.rows} rows spooled "
                f"({self.core.last_error[:120]})"
            )
        return True, f"sink spool {spool.rows} rows"

    def close(self) -> None:
        """Once the agent has stopped: finish the thread's work, close the spool and the
        ClickHouse client."""
        self.thread.shutdown(wait=True)
        self.core.spool.close()
        with contextlib.suppress(Exception):  # closing must not stop the shutdown
            self.client.close()
        log.info("sink: stopped; spool and ClickHouse client closed")


def register(flow: FlowForgeApp, client: Any) -> tuple[SinkConsumer, SinkAgent]:
    """Add the sink's consumer of images.metadata to the worker (started with the app, stopped
    before its producer, which dead letters need) and the spool's drain task; the consumer and
    its SinkAgent."""
    sink_agent = SinkAgent(flow, client)
    consumer = SinkConsumer(flow, sink_agent, sink_group(flow.settings), loop=flow.app.loop)
    flow.app.service(consumer)  # type: ignore[arg-type]  # Faust starts an instance as given
    flow.app.task(sink_agent.drain_forever)
    return consumer, sink_agent
