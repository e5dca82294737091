"""The batch bridge's --watch mode stays bounded: it forgets files that are gone, hashes each file
once and off the event loop, and never waits for SQLite on the loop (real Kafka, in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridges import metrics
from bridges.batch import BatchBridge
from flowforge.core.settings import Settings
from flowforge.stack import Stack
from tests.support.bridges import bridge_env, payload
from tests.support.stack import stack_env
from tests.support.unique import unique_name

QUICK = {
    "FLOWFORGE_BATCH_POLL_INTERVAL_S": "0.1",
    "FLOWFORGE_BATCH_SETTLE_S": "0.2",
}


@pytest.fixture
def env(request: pytest.FixtureRequest, services: Stack, tmp_path: Path) -> dict[str, str]:
    """A bridge environment with private topics, its own FLOWFORGE_HOME and quick scans."""
    return {**bridge_env(unique_name(request, "bwatch"), stack_env(), tmp_path), **QUICK}


class LoopWatch:
    """The event loop's longest stall: a task that wakes every 10 ms and notes how late it is."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            self.longest = max(self.longest, time.monotonic() - before - 0.01)

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def watching(settings: Settings, root: Path) -> AsyncIterator[BatchBridge]:
    """A `--watch` BatchBridge on ``root`` running in this event loop; stopped and cleaned up
    after the block (an error it raised is raised here)."""
    bridge = BatchBridge(settings, root, watch=True)
    stop = asyncio.Event()
    await bridge.setup(stop)
    task = asyncio.create_task(bridge.run(stop))
    try:
        yield bridge
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 60)
        finally:
            await bridge.cleanup()


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait (without blocking the loop) until ``condition`` holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)


def remembered(bridge: BatchBridge) -> int:
    """Entries the bridge holds about single files (seen, decided, refused, in flight)."""
    # internal state on purpose: what must not grow with the files that came and went
    return sum(
        len(getattr(bridge, name)) for name in ("_seen", "_decided", "_refused", "_in_flight")
    )


async def test_watch_forgets_files_that_are_gone(env: dict[str, str], tmp_path: Path) -> None:
    """Files published, dead-lettered or refused (a dangling link), then deleted, leave nothing
    behind: after 4 waves of 252 such files, created and deleted, the bridge remembers only the
    one file still there."""
    settings = Settings.from_env(env)
    root = tmp_path / "inbox"
    root.mkdir()
    async with watching(settings, root) as bridge:
        published = 0
        for wave in range(4):
            names = [f"w{wave}-{i:03d}.jpg" for i in range(250)]
            for i, name in enumerate(names):
                (root / name).write_bytes(payload(wave * 1000 + i, 2_000))
            (root / f"w{wave}-notes.jpg").write_bytes(b"not an image\n")
            os.symlink(f"missing-{wave}.jpg", root / f"w{wave}-broken.jpg")
            published += 250
            await until(
                lambda n=published, w=wave: (
                    bridge.tally.published >= n and bridge.tally.rejected["not_an_image"] > w
                ),
                60,
                f"wave {wave} published",
            )
            for path in root.iterdir():
                if path.name.startswith(f"w{wave}-"):
                    path.unlink()
        # a file that must settle across scans made after the last deletion: once it is
        # published, the bridge has scanned the directory without the others
        (root / "last.jpg").write_bytes(payload(99_999, 2_000))
        await until(lambda: bridge.tally.published >= published + 1, 60, "last.jpg published")
        await until(lambda: not bridge._in_flight, 10, "nothing in flight")
        assert remembered(bridge) <= 2, f"{remembered(bridge)} entries for one file"
        assert bridge.tally.rejected["unreadable"] >= 4


class HashLog:
    """hashlib.sha256 replaced by one that notes, per hash, the bytes fed and the threads."""

    def __init__(self) -> None:
        self.hashes: list[tuple[int, set[str]]] = []
        self._lock = threading.Lock()

    def factory(self, real: Callable[..., Any]) -> Callable[..., Any]:
        log = self

        class Counted:
            def __init__(self, data: bytes = b"", **kwargs: Any) -> None:
                self._hash = real(data, **kwargs)
                self.fed = len(data)
                self.threads = {threading.current_thread().name}
                with log._lock:
                    log.hashes.append((0, set()))
                    self._index = len(log.hashes) - 1
                self._note()

            def _note(self) -> None:
                with log._lock:
                    log.hashes[self._index] = (self.fed, set(self.threads))

            def update(self, data: bytes) -> None:
                self._hash.update(data)
                self.fed += len(data)
                self.threads.add(threading.current_thread().name)
                self._note()

            def hexdigest(self) -> str:
                return str(self._hash.hexdigest())

            def digest(self) -> bytes:
                return bytes(self._hash.digest())

        return Counted


async def test_each_file_is_hashed_once_and_off_the_event_loop(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A published image, a non-image (dead-lettered) and a file over the topic limit are each
    hashed exactly once (the image id is the content hash the checkpoint keeps), in a thread
    other than the event loop's."""
    env = {**env, "FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES": "1MiB"}
    settings = Settings.from_env(env)
    root = tmp_path / "inbox"
    root.mkdir()
    files = {
        "image.jpg": payload(1, 300_000),
        "notes.jpg": b"not an image " * 20_000,
        "huge.jpg": payload(2, 1_500_000),
    }
    log = HashLog()
    monkeypatch.setattr(hashlib, "sha256", log.factory(hashlib.sha256))
    loop_thread = threading.current_thread().name
    async with watching(settings, root) as bridge:
        for name, data in files.items():
            (root / name).write_bytes(data)
        await until(
            lambda: bridge.tally.published == 1 and sum(bridge.tally.rejected.values()) == 2,
            60,
            "one published, two dead-lettered",
        )
        await until(lambda: not bridge._in_flight, 10, "nothing in flight")
    content = sorted((fed, threads) for fed, threads in log.hashes if fed >= 100_000)
    sizes = sorted(len(data) for data in files.values())
    assert [fed for fed, _ in content] == [s + len(root.name) + 1 for s in sizes], content
    for fed, threads in content:
        assert loop_thread not in threads, f"{fed} bytes hashed on the event loop"


async def test_a_checkpoint_write_that_waits_for_sqlite_does_not_stall_the_event_loop(
    env: dict[str, str], tmp_path: Path
) -> None:
    """While another connection holds the checkpoint's write lock for 2 s, the bridge's record
    of a published file waits for it off the event loop: the loop never stalls 0.5 s, and the
    file is checkpointed once the lock is released."""
    settings = Settings.from_env(env)
    root = tmp_path / "inbox"
    root.mkdir()
    watch = LoopWatch()
    async with watching(settings, root) as bridge:
        assert bridge.checkpoint is not None
        path = bridge.checkpoint.path
        locked = threading.Event()
        done = threading.Event()

        def acknowledged() -> float:
            return (
                metrics.REGISTRY.get_sample_value(
                    "flowforge_bridge_published_total", {"bridge": "batch"}
                )
                or 0.0
            )

        def hold_the_write_lock() -> None:
            db = sqlite3.connect(path, isolation_level=None, timeout=10)
            try:
                db.execute("BEGIN IMMEDIATE")
                before = acknowledged()
                locked.set()
                deadline = time.monotonic() + 60
                while acknowledged() == before and not done.is_set():
                    assert time.monotonic() < deadline, "the file was never acknowledged"
                    time.sleep(0.01)
                time.sleep(2.0)  # held while the bridge wants to record the acknowledged file
                db.execute("COMMIT")
            finally:
                db.close()

        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        try:
            await asyncio.to_thread(locked.wait, 10)
            watch.start()
            (root / "photo.jpg").write_bytes(payload(3, 50_000))
            await until(lambda: bridge.tally.published == 1, 60, "photo.jpg checkpointed")
            await watch.stop()
        finally:
            done.set()
            await asyncio.to_thread(holder.join, 30)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT path FROM files").fetchall() == [("photo.jpg",)]
    assert watch.longest < 0.5, f"the event loop stalled {watch.longest:.2f}s"
