"""The sink's Kafka consumer, beneath Faust: images.metadata in batches, offsets once durable.

Faust delivers each record to an agent as an event, about 0.15-0.17 ms of the event loop per
row (BENCHMARKS.md), which held the sink near 4,500 rows/s while the engine writes 50,000. The
sink therefore reads with an aiokafka consumer of its own, in the group ``<app id>-sink``
(:func:`streams.app.sink_group`): ``getmany`` until a batch is full or its first record is
``flush_s`` old, the batch to :class:`SinkAgent` (in ClickHouse or the spool, what cannot be a
row dead-lettered), and only then are its offsets recorded as durable. Durable offsets are
committed every commit interval, before partitions are revoked (a revocation first waits for
the batch in hand) and when the worker stops; nothing else commits (auto-commit is off).
A crash replays from the last commit, and the replayed rows collapse (ReplacingMergeTree).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from mode import Service

from flowforge.core.backoff import Backoff
from flowforge.core.kafka_admin import admin_client
from streams.transport import is_transient_join_error, note_join_error

if TYPE_CHECKING:
    from streams.app import FlowForgeApp

log = logging.getLogger(__name__)

#: Bytes a batched fetch waits for (or its wait): about a hundred metadata records.
FETCH_MIN_BYTES = 64 * 1024
#: An idle consumer's fetch wait: what Faust gives aiokafka (fetch_max_wait_ms).
LONG_POLL_MS = 1500
#: Seconds an idle ``getmany`` waits before the loop looks at commits and shutdown again.
IDLE_POLL_S = 1.0
#: Seconds the last commit may take when the worker stops (Kafka may be away).
FINAL_COMMIT_S = 10.0


def pace_fetches(fetcher: Any, batching: tuple[int, int], got_records: bool) -> None:
    """Set the fetch.min.bytes and fetch.max.wait.ms of ``fetcher``'s next requests (aiokafka
    reads both as it builds each request): ``batching`` after a poll that found records, a
    long poll (one byte, Faust's 1.5 s) after one that found none.

    While records flow, a fetch then waits for ``batching``'s bytes or time: each fetch costs
    about 0.4 ms of CPU, and a sink fetching each metadata record on its own (a worker sends
    them one by one) spent more on fetching than on writing its rows at 100 rows/s. Once a poll
    finds nothing, the long poll means an idle consumer does not fetch every few milliseconds
    and the first record after a pause is not held."""
    fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = (
        batching if got_records else (1, LONG_POLL_MS)
    )


class BatchSink(Protocol):
    """Where batches go (streams.agents.sink.SinkAgent)."""

    async def handle_batch(self, records: list[Any]) -> None:
        """Return once the batch is durable (never raise)."""

    def stop_waiting_for_room(self) -> None:
        """The worker stops: store a batch in hand even at the spool's bound."""


class SinkConsumer(Service):
    """Consumes images.metadata for the sink: batches in, durable offsets committed."""

    def __init__(self, flow: FlowForgeApp, sink: BatchSink, group: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flow, self.sink, self.group = flow, sink, group
        settings = flow.settings
        self.legacy_group = settings.worker.app_id  # see assigned()
        self.topic = settings.kafka.topic_metadata
        self.batch_size = settings.sink.batch_size
        self.flush_s = settings.sink.flush_s
        wait_ms = settings.sink.fetch_wait_ms
        # 0: each record as soon as it is there (one byte), as Faust's consumer fetches.
        self.batching = (FETCH_MIN_BYTES, wait_ms) if wait_ms > 0 else (1, LONG_POLL_MS)
        self.commit_interval_s = settings.worker.commit_interval_s
        self.backoff = Backoff(settings.sink.retry_initial_s, settings.sink.retry_max_s)
        # One batch (taken and stored) or a revocation's commit at a time.
        self._batch_lock = asyncio.Lock()
        self._durable: dict[TopicPartition, int] = {}  # next offset, its rows durable
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._stopping = False
        self._runner: asyncio.Future[None] | None = None
        self._crashing: asyncio.Future[None] | None = None
        self.consumer: AIOKafkaConsumer | None = None

    def new_consumer(self) -> AIOKafkaConsumer:
        """An (unstarted) aiokafka consumer in the sink's group, with the worker's timeouts."""
        settings = self.flow.settings
        worker = settings.worker
        return AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            client_id=f"{self.group}-{worker.web_port}",
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=settings.kafka.request_bytes,
            fetch_min_bytes=self.batching[0],
            fetch_max_wait_ms=self.batching[1],
            session_timeout_ms=int(worker.session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, worker.session_timeout_s / 3) * 1000),
            request_timeout_ms=int(worker.request_timeout_s * 1000),
            # The loop polls at least every second, but a batch waiting for room in a full
            # spool does not: as Faust's broker_max_poll_interval, a paused sink keeps its
            # partitions rather than leave the group (back-pressure, not a rebalance).
            max_poll_interval_ms=1_000_000,
        )

    async def on_started(self) -> None:
        self._runner = asyncio.ensure_future(self._run())
        self._runner.add_done_callback(self._ended)

    async def on_stop(self) -> None:
        """Finish the batch in hand (stored even over the spool's bound), commit, leave."""
        self._stopping = True
        self.sink.stop_waiting_for_room()
        if self._runner is not None:
            await asyncio.wait([self._runner])

    def _ended(self, runner: asyncio.Future[None]) -> None:
        if runner.cancelled() or runner.exception() is None or self._stopping:
            return
        exc = runner.exception()
        log.error("sink: the consumer ended: %r", exc)
        # The worker ends (its supervisor restarts it) rather than run without its sink.
        self._crashing = asyncio.ensure_future(self.crash(exc))  # type: ignore[arg-type]

    async def _run(self) -> None:
        consumer = await self._started_consumer()
        if consumer is None:
            return
        try:
            while not self._stopping:
                async with self._batch_lock:
                    records = await self._take(consumer)
                    if records:
                        await self.sink.handle_batch(records)
                        self._mark_durable(records)
                    if time.monotonic() - self._last_commit >= self.commit_interval_s:
                        await self._commit(consumer)
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commit(consumer), FINAL_COMMIT_S)
            await consumer.stop()
            log.info("sink: consumer stopped, durable offsets committed")

    async def _started_consumer(self) -> AIOKafkaConsumer | None:
        """The consumer, subscribed and started; retried while Kafka does not answer. None if
        the worker stops first."""
        failures = 0
        while not self._stopping:
            consumer = self.new_consumer()
            consumer.subscribe([self.topic], listener=_Rebalances(self))
            self.consumer = consumer  # its first assignment may come while it starts
            try:
                await consumer.start()
            except KafkaError as exc:
                self.consumer = None
                await consumer.stop()
                log.warning("sink: Kafka does not answer (%r); trying again", exc)
                await asyncio.sleep(self.backoff.delay(failures))
                failures += 1
                continue
            return consumer
        return None

    async def _take(self, consumer: AIOKafkaConsumer) -> list[Any]:
        """Records until ``batch_size`` or ``flush_s`` after the first; [] after an idle
        second. Fetches wait for a batch of bytes while records flow, long-poll when idle."""
        records: list[Any] = []
        deadline: float | None = None
        while len(records) < self.batch_size and not self._stopping:
            wait = IDLE_POLL_S if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                got = await consumer.getmany(
                    timeout_ms=int(wait * 1000), max_records=self.batch_size - len(records)
                )
            except KafkaError as exc:
                if not is_transient_join_error(exc):
                    raise
                # aiokafka's coordinator waits for its user to see such an error, then joins
                # again (see streams.transport): seen here.
                note_join_error(exc)
                continue
            for batch in got.values():
                records.extend(batch)
            fetcher = getattr(consumer, "_fetcher", None)
            if fetcher is not None and (records or deadline is None):
                pace_fetches(fetcher, self.batching, bool(records))
            if not records:
                return records
            if deadline is None:
                deadline = time.monotonic() + self.flush_s
        return records

    def _mark_durable(self, records: list[Any]) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._durable[tp] = max(self._durable.get(tp, 0), record.offset + 1)

    async def _commit(self, consumer: AIOKafkaConsumer, only: Any = None) -> None:
        """Commit the durable offsets not committed yet (of ``only``'s partitions if given).

        A commit the group refuses (it rebalanced away) is dropped: the partitions' new owner
        replays from the last commit. Any other failure keeps the offsets for the next try.
        """
        self._last_commit = time.monotonic()
        assigned = consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._durable.items()
            if self._committed.get(tp) != offset and tp in assigned and (only is None or tp in only)
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("sink: offsets not committed, the group rebalanced (%s)", exc)
            for tp in offsets:
                self._durable.pop(tp, None)
            return
        except KafkaError as exc:
            log.warning("sink: committing offsets failed (%r); trying again later", exc)
            return
        self._committed.update(offsets)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Before a rebalance takes ``partitions``: the batch in hand first becomes durable,
        then their offsets are committed, so their next owner starts after its rows."""
        async with self._batch_lock:
            if self.consumer is not None:
                await self._commit(self.consumer, only=partitions)
            for tp in partitions:
                self._durable.pop(tp, None)
                self._committed.pop(tp, None)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Partitions this sink has never committed start where the workers' Faust group left
        them, if it has: before the sink had a consumer of its own, a worker running both
        roles consumed images.metadata in ``<app id>``, and starting from the earliest offset
        would write every retained record again."""
        log.info("sink: assigned %s", sorted((tp.topic, tp.partition) for tp in partitions))
        consumer = self.consumer
        if consumer is None or not partitions:
            return
        # Through an admin client: the consumer's own coordinator is busy with this rebalance.
        admin = admin_client(self.flow.settings.kafka)
        try:
            await admin.start()
            ours = await admin.list_consumer_group_offsets(self.group, partitions=list(partitions))
            fresh = [tp for tp in partitions if ours.get(tp) is None or ours[tp].offset < 0]
            earlier = (
                await admin.list_consumer_group_offsets(self.legacy_group, partitions=fresh)
                if fresh
                else {}
            )
        except KafkaError as exc:
            log.warning("sink: committed offsets not read (%r); starting as Kafka says", exc)
            return
        finally:
            await admin.close()
        for tp, meta in earlier.items():
            if meta is not None and meta.offset >= 0:
                consumer.seek(tp, meta.offset)
                log.info(
                    "sink: %s[%d] starts at %d, where group %s left it",
                    tp.topic,
                    tp.partition,
                    meta.offset,
                    self.legacy_group,
                )


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: SinkConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.owner.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.owner.assigned(assigned)
