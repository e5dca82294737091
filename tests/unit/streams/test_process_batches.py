"""The process agent's batches: one outcome per event, acked only once that outcome is.

The Faust app is stood in for as in test_process_duplicates.py (tables as dicts, topics that
record what is sent); the real worker on the real broker, with every reliability drill, is
exercised in tests/integration/test_worker.py and test_reliability.py.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from faust.streams import current_event

from flowforge.core.settings import Settings
from streams import metrics
from streams.agents import process
from streams.app import processing_config
from streams.records import ImageDuplicate, ImageMetadata
from streams.tables import Tables
from tests.support.images import jpeg, scene
from tests.unit.streams.test_process_duplicates import Sent, _event, _first_partition


class Held(Sent):
    """A topic whose sends Kafka acknowledges only once ``release()`` is called."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[None]] = []

    async def send(
        self, *, key: bytes, value: Any, headers: Any = None, partition: int | None = None
    ) -> asyncio.Future[None]:
        self.values.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    def release(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)


class PartitionedSeen(dict[str, int]):
    """``seen-images`` that records the partition of Faust's current event at each write."""

    def __init__(self) -> None:
        super().__init__()
        self.written_on: dict[str, int] = {}

    def __setitem__(self, key: str, value: int) -> None:
        event = current_event()
        assert event is not None, "a table write outside of its event: Faust refuses it"
        self.written_on[key] = event.message.partition
        super().__setitem__(key, value)


def _flow(pool: ThreadPoolExecutor, metadata: Sent, seen: dict[str, int]) -> Any:
    settings = Settings.from_env({})
    metrics.reset_source_labels()
    return SimpleNamespace(
        settings=settings, tables=Tables(seen=seen), pool=pool, concurrency=2,
        config=processing_config(settings), worker_name="test:0",
        topics=SimpleNamespace(metadata=metadata, processed=Sent(), dlq=Sent()),
        partition_of=_first_partition,
    )  # fmt: skip


def _handled(processor: process.ImageProcessor, events: list[Any], pool: Any) -> list[int]:
    """Run one batch to its end (then shut ``pool`` down): the offsets acked, in order."""
    acked: list[int] = []

    async def ack(event: Any) -> None:
        acked.append(event.message.offset)

    try:
        asyncio.run(processor.handle_batch(events, ack))
    finally:
        pool.shutdown(wait=True)
    return acked


def _on_partition(event: Any, partition: int) -> Any:
    event.message.partition = partition
    return event


def test_each_event_is_acked_only_once_its_outcome_is_acknowledged() -> None:
    """Until Kafka acknowledges the batch's records no event is acked and nothing is written to
    seen-images; then every event is acked, in the batch's order, each image written to
    seen-images under its own event's partition."""
    metadata = Held()
    seen = PartitionedSeen()
    pool = ThreadPoolExecutor(max_workers=2)
    processor = process.ImageProcessor(_flow(pool, metadata, seen))
    payloads = [jpeg(scene(640, 360, seed=s)) for s in range(4)]
    events = [_on_partition(_event(p, i, 1_000_000), i % 3) for i, p in enumerate(payloads)]
    acked: list[int] = []

    async def ack(event: Any) -> None:
        acked.append(event.message.offset)

    async def scenario() -> None:
        batch = asyncio.ensure_future(processor.handle_batch(events, ack))
        while len(metadata.pending) < len(events):  # every outcome sent, none acknowledged
            assert not batch.done()
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert acked == []
        assert seen == {}
        metadata.release()
        await batch

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown(wait=True)
    assert acked == [0, 1, 2, 3]
    records = [v for v in metadata.values if isinstance(v, ImageMetadata)]
    assert sorted(r.kafka_offset for r in records) == [0, 1, 2, 3]
    assert seen.written_on == {r.image_id: r.kafka_offset % 3 for r in records}


def test_a_cancelled_batch_acks_nothing() -> None:
    """A batch cancelled while Kafka has not acknowledged its outcomes (the worker stopping or
    killed) acks none of its events, so each is delivered again."""
    metadata = Held()
    pool = ThreadPoolExecutor(max_workers=2)
    processor = process.ImageProcessor(_flow(pool, metadata, {}))
    events = [_event(jpeg(scene(640, 360, seed=s)), s, 1_000_000) for s in range(3)]
    acked: list[int] = []

    async def ack(event: Any) -> None:
        acked.append(event.message.offset)

    async def scenario() -> None:
        batch = asyncio.ensure_future(processor.handle_batch(events, ack))
        while len(metadata.pending) < len(events):
            await asyncio.sleep(0.01)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown(wait=True)
    assert acked == []
    assert processor._in_flight == set()  # a redelivery is processed, not taken for a duplicate


def test_the_same_image_twice_in_one_batch_gets_one_outcome_and_a_duplicate_record() -> None:
    """An image delivered twice within one batch (a bridge's redelivery) is processed once;
    the second delivery gets a duplicate record saying it was in flight; both are acked."""
    metadata = Sent()
    pool = ThreadPoolExecutor(max_workers=2)
    processor = process.ImageProcessor(_flow(pool, metadata, {}))
    payload = jpeg(scene(640, 360, seed=9))
    events = [_event(payload, 0, 1_000_000), _event(payload, 1, 2_000_000)]
    acked = _handled(processor, events, pool)
    outcomes = [v for v in metadata.values if isinstance(v, ImageMetadata)]
    duplicates = [v for v in metadata.values if isinstance(v, ImageDuplicate)]
    assert [(o.kafka_offset, o.status) for o in outcomes] == [(0, "processed")]
    assert [(d.kafka_offset, d.first_seen_at) for d in duplicates] == [(1, None)]
    assert acked == [0, 1]


def test_an_image_that_breaks_processing_is_rejected_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unexpected error processing one image of a batch dead-letters that image as
    ``internal_error`` with a ``rejected`` record; the others get their outcomes."""
    metadata = Sent()
    pool = ThreadPoolExecutor(max_workers=2)
    flow = _flow(pool, metadata, {})
    processor = process.ImageProcessor(flow)
    payloads = [jpeg(scene(640, 360, seed=s)) for s in range(3)]
    real = process.process_image

    def broken_on_second(data: bytes, config: Any) -> Any:
        if data == payloads[1]:
            raise RuntimeError("a bug")
        return real(data, config)

    monkeypatch.setattr(process, "process_image", broken_on_second)
    events = [_event(p, i, 1_000_000) for i, p in enumerate(payloads)]
    acked = _handled(processor, events, pool)
    outcomes = {v.kafka_offset: (v.status, v.reason) for v in metadata.values}
    assert outcomes == {
        0: ("processed", ""),
        1: ("rejected", "internal_error"),
        2: ("processed", ""),
    }
    assert len(flow.topics.dlq.values) == 1
    assert acked == [0, 1, 2]


def test_an_offset_skipped_before_the_agent_is_counted_as_a_gap() -> None:
    """Offsets checked in delivery order: a forward jump counts the offsets skipped, an offset
    already passed (another actor's, or redelivered) counts nothing, and after a rebalance
    the expected offsets start afresh."""
    pool = ThreadPoolExecutor(max_workers=1)
    processor = process.ImageProcessor(_flow(pool, Sent(), {}))
    pool.shutdown()
    before = metrics.OFFSET_GAPS._value.get()
    for offset in (0, 1, 4, 2, 5):
        processor.check_gap(SimpleNamespace(topic="images.raw", partition=0, offset=offset))
    assert metrics.OFFSET_GAPS._value.get() - before == 2  # offsets 2 and 3 jumped over
    processor.reset_offsets()
    processor.check_gap(SimpleNamespace(topic="images.raw", partition=0, offset=100))
    assert metrics.OFFSET_GAPS._value.get() - before == 2
