"""Spool: batches of metadata rows kept in a local SQLite file while ClickHouse is unavailable.

Batches are kept whole and in arrival order, each with its insert deduplication token, and
``attempt``: the token of the insert that last tried it (its own, or a merged group's). A batch
that may have reached ClickHouse is always re-sent with exactly the rows and token of that
attempt, so the engine drops the repeat; only never-tried batches are merged anew. Rows are
JSON (as they came off Kafka). The file is in WAL mode with ``synchronous=FULL``: a batch is
durable when :meth:`Spool.append` returns, which is what lets the sink's Kafka offsets advance.

Not thread-safe: one thread (the sink's) uses a spool.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import SpoolUnusable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    token      TEXT    NOT NULL,
    rows       INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at REAL    NOT NULL,
    payload    BLOB    NOT NULL,
    attempt    TEXT
)
"""


@dataclass(frozen=True)
class SpooledBatch:
    """One spooled batch: its position, insert token and rows."""

    seq: int
    token: str
    rows: list[dict[str, Any]]
    created_at: float
    attempt: str | None = None


class Spool:
    """A bounded FIFO of row batches in SQLite; :attr:`full` tells the sink to stop taking more."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(batches)")}
            if "attempt" not in columns:  # a spool written before attempts were recorded
                self._db.execute("ALTER TABLE batches ADD COLUMN attempt TEXT")
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(bytes), 0), "
                "min(created_at) FROM batches"
            ).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise SpoolUnusable(
                f"the sink spool {path} cannot be used ({exc}); move it aside to start afresh "
                "(its rows are then not written to ClickHouse)"
            ) from exc
        self.batches, self.rows, self.bytes = int(row[0]), int(row[1]), int(row[2])
        self.oldest_created_at: float | None = row[3]

    @property
    def full(self) -> bool:
        """At or over the size bound: the sink must not accept more until it drains."""
        return self.bytes >= self.max_bytes

    def append(self, token: str, rows: Sequence[Mapping[str, Any]], *, tried: bool) -> None:
        """Store one batch durably, after every batch already here; ``tried``: an insert with
        its own token was attempted (and may have reached ClickHouse)."""
        payload = json.dumps(list(rows), separators=(",", ":")).encode()
        now = time.time()
        try:
            self._db.execute(
                "INSERT INTO batches (token, rows, bytes, created_at, payload, attempt) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token, len(rows), len(payload), now, payload, token if tried else None),
            )
        except sqlite3.Error as exc:
            raise SpoolUnusable(f"the sink spool {self.path} cannot be written: {exc}") from exc
        self.batches += 1
        self.rows += len(rows)
        self.bytes += len(payload)
        if self.oldest_created_at is None:
            self.oldest_created_at = now

    def peek(self, max_rows: int = 1) -> list[SpooledBatch]:
        """The oldest batches, in order, as many as fit in ``max_rows`` (at least one)."""
        found: list[SpooledBatch] = []
        total = 0
        cursor = self._db.execute(
            "SELECT seq, token, payload, created_at, attempt, rows FROM batches ORDER BY seq"
        )
        for seq, token, payload, created_at, attempt, rows in cursor:
            if found and total + int(rows) > max_rows:
                break
            found.append(_batch(seq, token, payload, created_at, attempt))
            total += int(rows)
        cursor.close()
        return found

    def attempted(self, attempt: str) -> list[SpooledBatch]:
        """Every batch last tried in the insert ``attempt``, in order (the same rows again)."""
        cursor = self._db.execute(
            "SELECT seq, token, payload, created_at, attempt FROM batches WHERE attempt = ? "
            "ORDER BY seq",
            (attempt,),
        )
        return [_batch(*row) for row in cursor]

    def mark_attempt(self, seqs: Sequence[int], attempt: str) -> None:
        """Record, durably and before the insert, that these batches go in insert ``attempt``."""
        try:
            self._db.executemany(
                "UPDATE batches SET attempt = ? WHERE seq = ?", [(attempt, seq) for seq in seqs]
            )
        except sqlite3.Error as exc:
            raise SpoolUnusable(f"the sink spool {self.path} cannot be written: {exc}") from exc

    def remove(self, through_seq: int) -> None:
        """Drop every batch up to ``through_seq`` once its rows are in ClickHouse."""
        try:
            found = self._db.execute(
                "DELETE FROM batches WHERE seq <= ? RETURNING rows, bytes", (through_seq,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise SpoolUnusable(f"the sink spool {self.path} cannot be written: {exc}") from exc
        self.batches -= len(found)
        self.rows -= sum(int(rows) for rows, _ in found)
        self.bytes -= sum(int(size) for _, size in found)
        oldest = self._db.execute("SELECT min(created_at) FROM batches").fetchone()
        self.oldest_created_at = oldest[0]

    def oldest_age_s(self, now: float | None = None) -> float:
        """Seconds the oldest spooled batch has waited (0 when empty)."""
        if self.oldest_created_at is None:
            return 0.0
        return max(0.0, (now or time.time()) - self.oldest_created_at)

    def close(self) -> None:
        """Close the file (a later Spool on the same path sees every batch not removed)."""
        self._db.close()


def _batch(seq: Any, token: Any, payload: Any, created_at: Any, attempt: Any) -> SpooledBatch:
    return SpooledBatch(
        int(seq), str(token), json.loads(payload), float(created_at), attempt and str(attempt)
    )
