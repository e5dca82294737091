"""The process agent's duplicates: one acknowledged ``duplicate`` record per duplicate delivery.

The Faust app is stood in for by the few attributes ImageProcessor uses (tables as dicts, a
metadata topic that records what is sent); the real worker on the real broker is exercised in
tests/integration/test_worker.py and test_sink.py.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from flowforge.core.envelope import Envelope, content_image_id
from flowforge.core.settings import Settings
from streams import metrics
from streams.agents import process
from streams.app import processing_config
from streams.records import ImageDuplicate, ImageMetadata
from streams.tables import Tables
from tests.support.images import jpeg, scene


class Sent:
    """images.metadata as the agent sees it: each send is recorded and acknowledged at once."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    async def send(
        self, *, key: bytes, value: Any, headers: Any = None, partition: int | None = None
    ) -> asyncio.Future[None]:
        self.values.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def _first_partition(topic: Any, image_id: str) -> int:
    return 0


class _Event:
    """A Faust event as the agent sees it: its message (and a weak reference to it)."""

    def __init__(self, message: Any) -> None:
        self.message = message


def _event(payload: bytes, offset: int, ingested_at_ms: int) -> Any:
    envelope = Envelope(
        image_id=content_image_id("cam-1", payload), source_type="mqtt", source_id="cam-1",
        captured_at_ms=ingested_at_ms, content_type="image/jpeg", origin="images/raw/cam-1",
        ingested_at_ms=ingested_at_ms,
    )  # fmt: skip
    message = SimpleNamespace(
        topic="images.raw", partition=0, offset=offset, key=b"cam-1", value=payload,
        headers=envelope.headers(), timestamp=ingested_at_ms / 1000,
    )  # fmt: skip
    return _Event(message)


def test_a_duplicate_in_flight_and_one_seen_before_each_send_one_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An image delivered again while its first delivery is still being processed, and again
    once it is done, gives one outcome record and one duplicate record per duplicate delivery:
    first_seen_at null while in flight, the time it was done after; both counted per source."""
    settings = Settings.from_env({})
    metrics.reset_source_labels()  # other tests may have used up the per-source labels
    pool = ThreadPoolExecutor(max_workers=1)
    metadata = Sent()
    flow = SimpleNamespace(
        settings=settings, tables=Tables(seen={}), pool=pool,
        config=processing_config(settings), worker_name="test:0", concurrency=1,
        topics=SimpleNamespace(metadata=metadata, processed=Sent()),
        partition_of=_first_partition,
    )  # fmt: skip
    release = threading.Event()
    real = process.process_image

    def held(data: bytes, config: Any) -> Any:
        release.wait(timeout=30)
        return real(data, config)

    monkeypatch.setattr(process, "process_image", held)
    processor = process.ImageProcessor(flow)  # type: ignore[arg-type]
    payload = jpeg(scene(640, 360, seed=5))

    acked: list[int] = []

    async def ack(event: Any) -> None:
        acked.append(event.message.offset)

    async def scenario() -> None:
        first = asyncio.ensure_future(processor.handle_batch([_event(payload, 0, 1_000_000)], ack))
        await asyncio.sleep(0)  # the first delivery is in the pool now, held
        await processor.handle_batch([_event(payload, 1, 2_000_000)], ack)  # in flight: duplicate
        release.set()
        await first
        await processor.handle_batch([_event(payload, 2, 3_000_000)], ack)  # seen: a duplicate

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown(wait=True)
    outcomes = [v for v in metadata.values if isinstance(v, ImageMetadata)]
    duplicates = [v for v in metadata.values if isinstance(v, ImageDuplicate)]
    assert [o.status for o in outcomes] == ["processed"]
    assert [(d.kafka_offset, d.status) for d in duplicates] == [(1, "duplicate"), (2, "duplicate")]
    in_flight, seen = duplicates
    assert in_flight.first_seen_at is None
    assert seen.first_seen_at is not None
    assert seen.first_seen_at.timestamp() * 1000 == flow.tables.seen[outcomes[0].image_id]
    assert (in_flight.ingested_at.timestamp(), seen.ingested_at.timestamp()) == (2000, 3000)
    counted = processor.counts.as_json("test:0")
    assert counted["sources"]["cam-1"]["duplicates"] == 2
    assert counted["sources"]["cam-1"]["images"] == 1
    assert counted["partitions"] == {"0": 3}
    assert sorted(acked) == [0, 1, 2]
