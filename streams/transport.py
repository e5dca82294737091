"""Faust's Kafka transport with a consumer that survives a transient error joining its group.

aiokafka hands an unexpected JoinGroup or SyncGroup error code to the consumer's user (a plain
``KafkaError``, such as ``UnknownError()`` from SyncGroup when a loaded broker failed to write
the group's metadata) and its coordinator then waits, without joining again, until the user
has seen the error. Faust never looks: a worker waiting for its first assignment hung there
for good, and a fetch failed by the error crashed the worker. Here the consumer thread hands
such an error back as soon as it is pending (the coordinator then joins again), logs and
counts it, and a fetch it failed returns nothing for that round. The consumer also never
commits past an image still in flight, and fetches again as soon as a full stream buffer has
room (see :class:`Consumer`). Its producer tells a topic's partitions, so the worker can send
an image to the partition of its image id.

Selected by the broker URL scheme ``flowforge://`` (entry point ``faust.transports``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka.errors import KafkaError
from faust.transport.drivers import aiokafka as driver

from streams import metrics

log = logging.getLogger(__name__)

#: Seconds between two looks for a group-join error waiting to be seen.
WATCH_INTERVAL_S = 0.5


def is_transient_join_error(exc: BaseException) -> bool:
    """Whether a group-join error is worth a new join: a retriable error, or an unexpected
    error code, which aiokafka wraps in a plain ``KafkaError`` (the fatal ones, such as
    ``GroupAuthorizationFailedError`` or ``InconsistentGroupProtocolError``, have their type)."""
    return isinstance(exc, KafkaError) and (type(exc) is KafkaError or bool(exc.retriable))


def _coordinating(consumer: Any) -> Any:
    """The consumer's group coordinator while its routine runs (it can join again), else None."""
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_coordination_task", None)
    return coordinator if task is not None and not task.done() else None


def hand_back_join_error(consumer: Any) -> bool:
    """If the consumer's coordinator waits for a transient group-join error to be seen, see
    it (the coordinator then joins again), log and count it; return whether it did."""
    coordinator = _coordinating(consumer)
    pending = getattr(coordinator, "_pending_exception", None)
    if pending is None or not is_transient_join_error(pending):
        return False
    with contextlib.suppress(KafkaError):
        coordinator.check_errors()
    note_join_error(pending)
    return True


def note_join_error(exc: BaseException) -> None:
    """Log and count a transient group-join error that was seen (the coordinator joins again)."""
    metrics.GROUP_JOIN_ERRORS.inc()
    log.warning("joining the consumer group failed (%r); joining again", exc)


class ConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, handing transient group-join errors back to the
    coordinator (a watcher in the thread's loop) instead of hanging or crashing on them."""

    _join_watcher: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        await super().on_start()
        self._join_watcher = asyncio.ensure_future(self._watch_join_errors())

    async def on_thread_stop(self) -> None:
        if self._join_watcher is not None:
            self._join_watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._join_watcher
        await super().on_thread_stop()

    async def _watch_join_errors(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if self._consumer is not None:
                hand_back_join_error(self._consumer)

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        try:
            records = await super()._fetch_records(
                consumer, active_partitions, timeout=timeout, max_records=max_records
            )
        except KafkaError as exc:
            # The error failed this fetch too: seen here or by the watcher, it is not fatal.
            if not is_transient_join_error(exc) or _coordinating(consumer) is None:
                raise
            hand_back_join_error(consumer)
            await asyncio.sleep(WATCH_INTERVAL_S)
            return {}
        return records


class Consumer(driver.Consumer):
    """Faust's aiokafka consumer, on :class:`ConsumerThread`, never committing past an image
    still in flight, and fetching again as soon as a full stream buffer has room."""

    _buffer_room: asyncio.Event | None = None

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def on_buffer_drop(self, tp: Any) -> None:
        super().on_buffer_drop(tp)
        if self._buffer_room is not None:
            self._buffer_room.set()

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        """Faust's, except when every assigned partition is paused because the agent's stream
        buffer is full: Faust then sleeps a whole second before it looks again, so a worker
        with images waiting in Kafka sat idle (0 in flight, the cores a third busy) for up to
        a second after each buffer's worth; here it fetches again once a buffer has room (or
        after that second)."""
        if self.flow_active and not self.app.client_only and not self._get_active_partitions():
            if self._buffer_room is None:
                self._buffer_room = asyncio.Event()
            self._buffer_room.clear()
            self.not_waiting_next_records.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._buffer_room.wait(), timeout=1.0)
            return {}, self._get_active_partitions()
        return await super()._wait_next_records(timeout)

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit for ``tp``: Faust's (the end of the first consecutive run of
        acked offsets), but never past the lowest offset handed to an agent and not acked.

        The process agent's actors finish images out of order. Faust withholds a commit only
        when the acked run starts more than one past the committed offset, or not at all with
        no commit yet: an image still in flight at the committed head, with the next ones
        done, was committed over, and a crash then lost it (faust-streaming#606, open in
        0.15.3). Offsets acked above that image wait in Faust's list until it is done. A message
        below the committed offset (one left from before a rebalance) holds nothing back.
        """
        committed = self._committed_offset[tp] or 0
        in_flight = [
            m.offset
            for m in self._unacked_messages
            if m.tp == tp and not m.acked and m.offset >= committed
        ]
        if not in_flight:
            return super()._new_offset(tp)
        lowest = min(in_flight)
        acked = self._acked[tp]
        waiting = [offset for offset in acked if offset >= lowest]
        acked[:] = [offset for offset in acked if offset < lowest]
        try:
            offset = super()._new_offset(tp) if acked else None
        finally:
            acked.extend(waiting)
        return None if offset is None else min(offset, lowest)


class Producer(driver.Producer):
    """Faust's aiokafka producer, which also tells a topic's partitions."""

    async def partitions_for(self, topic: str) -> set[int]:
        """The partition ids of ``topic`` (from the producer's metadata, fetched if unknown)."""
        return set(await self._ensure_producer().partitions_for(topic))


class Transport(driver.Transport):
    """Faust's aiokafka transport, with :class:`Consumer` and :class:`Producer`."""

    Consumer = Consumer
    Producer = Producer
