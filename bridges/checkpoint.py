"""BatchCheckpoint: the SQLite record of the files Kafka acknowledged, per batch root; and
CheckpointThread, the same on a thread of its own for the event loop."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from bridges.errors import CheckpointLocked

log = logging.getLogger(__name__)

T = TypeVar("T")
# What a file is recorded with: path, (size, mtime_ns), digest, image id, outcome.
Recorded = tuple[str, tuple[int, int], str, str, str]
# Paths looked up per query (SQLite allows 32,766 parameters; smaller keeps each query short).
LOOKUP_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,       -- relative to the root, POSIX
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,        -- content_digest: of the source id and content (older rows:
                                 -- of the content alone)
    image_id TEXT NOT NULL,      -- the digest's first 32 digits: what a content check compares
    outcome TEXT NOT NULL,       -- published, or rejected:<reason> (in the DLQ)
    done_at_ms INTEGER NOT NULL
)
"""


def checkpoint_path(home: Path, real_root: str, source_id: str, topic: str) -> Path:
    """The checkpoint of one root published as ``source_id`` to ``topic``, under
    ``home/batch/``: the root's name plus a hash of all three, so runs never mix them."""
    seed = f"{real_root}\0{source_id}\0{topic}".encode()
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(real_root).name)[:40] or "root"
    return home / "batch" / f"{name}-{hashlib.sha256(seed).hexdigest()[:16]}.sqlite"


class BatchCheckpoint:
    """Files recorded once Kafka acknowledged them (or their dead letter), so a re-run skips
    them; a file whose size or mtime changed is read again, and published again only if its
    content changed. Looked up per file or in chunks of paths through the primary key, never
    loaded whole. One process at a time: a lock file next to the database. A connection is
    bound to the thread that opened it: the bridge uses it through CheckpointThread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._lock, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._lock)
            raise CheckpointLocked(
                f"another batch bridge (pid {holder}) works on this root, source and topic "
                f"(checkpoint {path})"
            ) from None
        os.ftruncate(self._lock, 0)
        os.pwrite(self._lock, f"{os.getpid()}\n".encode(), 0)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        log.info("checkpoint %s: %d files done", path, len(self))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM files").fetchone()[0])

    def unchanged(self, rel: str, signature: tuple[int, int]) -> bool:
        """Whether ``rel`` is recorded with this (size, mtime): done, no need to read it."""
        row = self._db.execute("SELECT size, mtime_ns FROM files WHERE path = ?", (rel,)).fetchone()
        return row is not None and tuple(row) == signature

    def unchanged_among(self, files: Iterable[tuple[str, tuple[int, int]]]) -> set[str]:
        """The paths of ``files`` ((path, (size, mtime)) pairs) recorded with that signature."""
        wanted = dict(files)
        recorded = self.recorded_among(list(wanted))
        return {rel for rel, signature in recorded.items() if wanted[rel] == signature}

    def recorded_among(self, paths: list[str]) -> dict[str, tuple[int, int]]:
        """The (size, mtime) recorded for each of ``paths`` that has a row, looked up
        LOOKUP_CHUNK paths per query."""
        recorded: dict[str, tuple[int, int]] = {}
        for start in range(0, len(paths), LOOKUP_CHUNK):
            chunk = paths[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT path, size, mtime_ns FROM files WHERE path IN ({marks})"  # noqa: S608 - only placeholders
            for rel, size, mtime_ns in self._db.execute(query, chunk):
                recorded[rel] = (size, mtime_ns)
        return recorded

    def same_content(self, rel: str, image_id: str) -> bool:
        """Whether ``rel`` is recorded with this content (its image id, a content hash)."""
        row = self._db.execute("SELECT image_id FROM files WHERE path = ?", (rel,)).fetchone()
        return row is not None and row[0] == image_id

    def touch_if_same(self, rel: str, signature: tuple[int, int], image_id: str) -> bool:
        """If ``rel`` is recorded with this content, record its new (size, mtime) and return
        True (touched, not changed); else change nothing and return False (a read only: a new
        file takes no write lock)."""
        if not self.same_content(rel, image_id):
            return False
        size, mtime_ns = signature
        cursor = self._db.execute(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ? AND image_id = ?",
            (size, mtime_ns, rel, image_id),
        )
        return cursor.rowcount > 0

    def record(
        self, rel: str, signature: tuple[int, int], digest: str, image_id: str, outcome: str
    ) -> None:
        """Record ``rel`` as done (call only after Kafka acknowledged it)."""
        self.record_many([(rel, signature, digest, image_id, outcome)])

    def record_many(self, files: list[Recorded]) -> None:
        """Record ``files`` ((path, (size, mtime), digest, image id, outcome)) as done, in one
        transaction (call only after Kafka acknowledged them)."""
        now_ms = int(time.time() * 1000)
        rows = [(rel, size, mtime, digest, image, outcome, now_ms)
                for rel, (size, mtime), digest, image, outcome in files]  # fmt: skip
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database and release the lock."""
        self._db.close()
        os.close(self._lock)


class CheckpointThread:
    """A BatchCheckpoint opened and used on one thread of its own, so the event loop never
    waits for SQLite (a write that waits for the disk or a lock, a lookup of many paths)."""

    def __init__(self, executor: ThreadPoolExecutor, checkpoint: BatchCheckpoint) -> None:
        self._executor = executor
        self._checkpoint = checkpoint
        self.path = checkpoint.path
        self._pending: list[tuple[Recorded, asyncio.Future[None]]] = []
        self._writer: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, path: Path) -> CheckpointThread:
        """Open (and lock) the checkpoint at ``path`` on a new thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        try:
            loop = asyncio.get_running_loop()
            checkpoint = await loop.run_in_executor(executor, BatchCheckpoint, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, checkpoint)

    async def _call(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def unchanged_among(self, files: list[tuple[str, tuple[int, int]]]) -> set[str]:
        """BatchCheckpoint.unchanged_among, on the checkpoint's thread."""
        return await self._call(lambda: self._checkpoint.unchanged_among(files))

    async def touch_if_same(self, rel: str, signature: tuple[int, int], image_id: str) -> bool:
        """BatchCheckpoint.touch_if_same, on the checkpoint's thread."""
        return await self._call(lambda: self._checkpoint.touch_if_same(rel, signature, image_id))

    async def recorded_among(self, paths: list[str]) -> dict[str, tuple[int, int]]:
        """BatchCheckpoint.recorded_among, on the checkpoint's thread."""
        return await self._call(lambda: self._checkpoint.recorded_among(paths))

    async def record(
        self, rel: str, signature: tuple[int, int], digest: str, image_id: str, outcome: str
    ) -> None:
        """BatchCheckpoint.record on the checkpoint's thread, in one transaction with the
        records handed over while the previous one was written; returns once it is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(((rel, signature, digest, image_id, outcome), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_pending())
        await done

    async def _write_pending(self) -> None:
        group: list[tuple[Recorded, asyncio.Future[None]]] = []
        try:
            while self._pending:
                group, self._pending = self._pending, []
                files = [file for file, _ in group]
                try:
                    await self._call(functools.partial(self._checkpoint.record_many, files))
                except Exception as exc:  # noqa: BLE001 - raised to each caller of the group
                    for _, done in group:
                        if not done.done():  # a caller cancelled meanwhile cancelled its own
                            done.set_exception(exc)
                else:
                    for _, done in group:
                        if not done.done():
                            done.set_result(None)
        finally:  # cancelled (the bridge stopping): the callers are told, none waits forever
            for _, done in group + self._pending:
                if not done.done():
                    done.cancel()

    async def close(self) -> None:
        """Close the checkpoint (after the calls handed over before) and end the thread."""
        try:
            await self._call(self._checkpoint.close)
        finally:
            self._executor.shutdown(wait=False)
