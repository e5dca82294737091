"""BatchCheckpoint: the SQLite record of the files Kafka acknowledged, per batch root."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from bridges.errors import CheckpointLocked

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,       -- relative to the root, POSIX
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,        -- of the content
    image_id TEXT NOT NULL,
    outcome TEXT NOT NULL,       -- published, or rejected:<reason> (in the DLQ)
    done_at_ms INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class Done:
    """What the checkpoint holds about one file."""

    size: int
    mtime_ns: int
    sha256: str


def checkpoint_path(home: Path, real_root: str, source_id: str, topic: str) -> Path:
    """The checkpoint of one root published as ``source_id`` to ``topic``, under
    ``home/batch/``: the root's name plus a hash of all three, so runs never mix them."""
    seed = f"{real_root}\0{source_id}\0{topic}".encode()
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(real_root).name)[:40] or "root"
    return home / "batch" / f"{name}-{hashlib.sha256(seed).hexdigest()[:16]}.sqlite"


def content_hash(data: bytes) -> str:
    """The content hash stored per file (SHA-256, hex)."""
    return hashlib.sha256(data).hexdigest()


class BatchCheckpoint:
    """Files recorded once Kafka acknowledged them (or their dead letter), so a re-run skips
    them; a file whose size or mtime changed is read again, and published again only if its
    content hash changed. One process at a time: a lock file next to the database."""

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
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._cache: dict[str, Done] = {
            rel: Done(size, mtime, sha)
            for rel, size, mtime, sha in self._db.execute(
                "SELECT path, size, mtime_ns, sha256 FROM files"
            )
        }
        log.info("checkpoint %s: %d files done", path, len(self._cache))

    def __len__(self) -> int:
        return len(self._cache)

    def unchanged(self, rel: str, signature: tuple[int, int]) -> bool:
        """Whether ``rel`` is recorded with this (size, mtime): done, no need to read it."""
        done = self._cache.get(rel)
        return done is not None and (done.size, done.mtime_ns) == signature

    def same_content(self, rel: str, sha256: str) -> bool:
        """Whether ``rel`` is recorded with this content hash (touched, not changed)."""
        done = self._cache.get(rel)
        return done is not None and done.sha256 == sha256

    def record(
        self, rel: str, signature: tuple[int, int], sha256: str, image_id: str, outcome: str
    ) -> None:
        """Record ``rel`` as done (call only after Kafka acknowledged it)."""
        size, mtime_ns = signature
        self._db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rel, size, mtime_ns, sha256, image_id, outcome, int(time.time() * 1000)),
        )
        self._cache[rel] = Done(size, mtime_ns, sha256)

    def touch(self, rel: str, signature: tuple[int, int]) -> None:
        """Record a new (size, mtime) for ``rel`` whose content is unchanged."""
        size, mtime_ns = signature
        self._db.execute(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, rel)
        )
        done = self._cache[rel]
        self._cache[rel] = Done(size, mtime_ns, done.sha256)

    def close(self) -> None:
        """Close the database and release the lock."""
        self._db.close()
        os.close(self._lock)
