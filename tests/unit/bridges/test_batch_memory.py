"""The batch bridge's memory: however many slots it has, the files it has read and not yet
finished hold at most the bridge's in-flight bytes (or one larger file alone).

Kafka is stood in for by a publisher that acknowledges each image after a pause; the bridge
on the real broker is exercised in tests/integration/test_bridge_batch.py.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from bridges.batch import BatchBridge
from bridges.publisher import ImageMessage, Outcome
from flowforge.core.envelope import content_image_id
from flowforge.core.settings import Settings


class SlowKafka:
    """Acknowledges each image 20 ms after it is handed over; records what was held then."""

    def __init__(self) -> None:
        self.bridge: BatchBridge | None = None
        self.held: list[int] = []
        self.published: list[str] = []

    async def start(self, stop: asyncio.Event) -> None:
        pass

    async def stop(self) -> None:
        pass

    def kafka_health(self, stall_s: float) -> tuple[bool, str]:
        return True, "ok"

    async def deliver(self, message: ImageMessage, stop: asyncio.Event | None = None) -> Outcome:
        assert self.bridge is not None
        self.held.append(self.bridge._reading.used)
        await asyncio.sleep(0.02)
        self.published.append(message.origin)
        return Outcome("published", content_image_id(message.source_id, message.data))


def test_files_read_and_not_done_stay_within_the_in_flight_bytes(tmp_path: Path) -> None:
    """With 256 slots and a 100 KiB in-flight budget, 40 files of 30 KiB are all published, and
    no more than 100 KiB of them are held at any time (at most 3 files, not 40)."""
    root = tmp_path / "root"
    root.mkdir()
    for i in range(40):
        (root / f"f{i:02d}.jpg").write_bytes(b"\xff\xd8\xff" + bytes([i]) * (30 * 1024 - 3))
    settings = Settings.from_env(
        {
            "FLOWFORGE_HOME": str(tmp_path / "home"),
            "FLOWFORGE_BATCH_CONCURRENCY": "256",
            "FLOWFORGE_BRIDGE_IN_FLIGHT_BYTES": str(100 * 1024),
        }
    )
    kafka = SlowKafka()
    bridge = BatchBridge(settings, root, publisher=kafka, progress_stream=io.StringIO())  # type: ignore[arg-type]
    kafka.bridge = bridge

    async def run() -> None:
        stop = asyncio.Event()
        await bridge.setup(stop)
        try:
            await bridge.run(stop)
        finally:
            await bridge.cleanup()

    asyncio.run(run())
    assert sorted(kafka.published) == sorted(f"f{i:02d}.jpg" for i in range(40))
    assert max(kafka.held) <= 100 * 1024
    assert max(kafka.held) >= 60 * 1024  # more than one file at a time: the slots are used
    assert bridge.tally.published == 40
