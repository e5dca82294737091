"""MetadataSink: rows into ClickHouse in batches, through the local spool when it is unavailable.

Synchronous and single-threaded by design: the sink agent runs every call on one dedicated
thread, so "is the spool empty?" and "insert or spool" are never interleaved, and rows reach
ClickHouse in the order they arrived. While anything waits in the spool, new batches are
appended behind it; only the drain (with backoff, driven by the agent) talks to ClickHouse.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flowforge.core.errors import ClickHouseUnavailable
from streams import metrics
from streams.errors import InsertRejected
from streams.sink.spool import Spool
from streams.sink.writer import ClickHouseWriter, batch_token

log = logging.getLogger(__name__)

# Attempts of one batch that fail with an error the writer cannot classify (neither an outage
# nor a refusal) before the batch counts as refused: bisected, its bad rows dead-lettered, the
# rest inserted. Until then the sink retries it, not ready (see streams/retrying.py).
UNKNOWN_ERROR_ATTEMPTS = 3

Row = dict[str, Any]


@dataclass
class Stored:
    """What became of a batch: rows inserted, rows spooled, rows ClickHouse refused (by index)."""

    inserted: int = 0
    spooled: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Drained:
    """One drain step: spooled batches up to ``through_seq`` written (rejects to dead-letter)."""

    through_seq: int
    rows: list[Row]
    inserted: int
    rejected: list[tuple[int, str]]


class MetadataSink:
    """Makes batches durable: inserted into ClickHouse, or else appended to the spool."""

    def __init__(self, writer: ClickHouseWriter, spool: Spool, drain_rows: int) -> None:
        self.writer = writer
        self.spool = spool
        self.drain_rows = drain_rows
        self.unavailable_since: float | None = None
        self.last_error = ""
        self._unknown_failures: dict[str, int] = {}  # token -> failed attempts
        self._update_gauges()

    def store(self, rows: Sequence[Row]) -> Stored:
        """Durably store one batch; never raises for ClickHouse trouble (the spool takes it)."""
        if not rows:
            return Stored()
        token = batch_token(rows)
        tried = False
        if self.spool.batches == 0:
            try:
                return Stored(inserted=self._insert(rows, token))
            except ClickHouseUnavailable:
                tried = True  # it may have reached ClickHouse: retry it alone, with its token
            except InsertRejected as exc:
                return self._isolate(rows, str(exc), spill=True)
        self.spool.append(token, rows, tried=tried)
        metrics.SINK_ROWS.labels(outcome="spooled").inc(len(rows))
        self._update_gauges()
        return Stored(spooled=len(rows))

    def drain_one(self) -> Drained | None:
        """Write the oldest spooled batches (up to ``drain_rows`` rows) to ClickHouse.

        A batch already tried (directly, or in a merged drain insert that failed) is re-sent
        with exactly the rows and token of that attempt, so ClickHouse drops it if the attempt
        was stored after all; never-tried batches are merged, and the group is recorded in the
        spool before its insert. None when the spool is empty. Raises ClickHouseUnavailable
        while ClickHouse fails; the batches stay spooled. The caller dead-letters ``rejected``
        and then calls :meth:`done`.
        """
        head = self.spool.peek(self.drain_rows)
        if not head:
            return None
        if head[0].attempt is not None:
            token = head[0].attempt
            batches = self.spool.attempted(token)
        else:
            batches = list(itertools.takewhile(lambda b: b.attempt is None, head))
            token = batches[0].token
            if len(batches) > 1:
                token = hashlib.sha256("".join(b.token for b in batches).encode()).hexdigest()
            self.spool.mark_attempt([b.seq for b in batches], token)
        rows = [row for batch in batches for row in batch.rows]
        try:
            inserted, rejected = self._insert(rows, token), []
        except InsertRejected as exc:
            stored = self._isolate(rows, str(exc), spill=False)
            inserted, rejected = stored.inserted, stored.rejected
        return Drained(batches[-1].seq, rows, inserted, rejected)

    def done(self, drained: Drained) -> None:
        """Remove drained batches from the spool (after their rejects were dead-lettered)."""
        self.spool.remove(drained.through_seq)
        metrics.SINK_ROWS.labels(outcome="drained").inc(drained.inserted)
        self._update_gauges()

    def _insert(self, rows: Sequence[Row], token: str, *, isolating: bool = False) -> int:
        """Insert ``rows`` with ``token``. An error the writer cannot classify is raised as it
        is for the batch's first attempts, then as InsertRejected (at once while ``isolating``
        the rows of a batch that already failed that way)."""
        started = time.perf_counter()
        try:
            count = self.writer.write(rows, token)
        except ClickHouseUnavailable as exc:
            metrics.SINK_INSERT_FAILURES.labels(kind="unavailable").inc()
            if self.unavailable_since is None:
                self.unavailable_since = time.monotonic()
                log.warning("sink: ClickHouse unavailable, spooling rows: %s", exc)
            self.last_error = str(exc)
            metrics.SINK_CLICKHOUSE_UP.set(0)
            raise
        except InsertRejected:
            metrics.SINK_INSERT_FAILURES.labels(kind="rejected").inc()
            raise
        except Exception as exc:
            metrics.SINK_INSERT_FAILURES.labels(kind="unknown").inc()
            failures = self._unknown_failures.get(token, 0) + 1
            if not isolating and failures < UNKNOWN_ERROR_ATTEMPTS:
                self._unknown_failures[token] = failures
                raise
            self._unknown_failures.pop(token, None)
            log.warning("sink: %d attempts failed unexpectedly; refusing the batch", failures)
            reason = f"unexpected {type(exc).__name__} on insert: {exc}"[:300]
            raise InsertRejected(reason) from exc
        finally:
            metrics.SINK_INSERT_SECONDS.observe(time.perf_counter() - started)
        metrics.SINK_BATCH_ROWS.observe(count)
        self._unknown_failures.pop(token, None)
        if self.unavailable_since is not None:
            down = time.monotonic() - self.unavailable_since
            log.info("sink: ClickHouse answers again after %.1fs", down)
            self.unavailable_since = None
        metrics.SINK_CLICKHOUSE_UP.set(1)
        return count

    def _isolate(self, rows: Sequence[Row], refusal: str, *, spill: bool) -> Stored:
        """ClickHouse refused a batch: bisect it to find the rows it refuses, inserting the rest
        (a few inserts per bad row, not one per row).

        If ClickHouse becomes unavailable part-way, what is left is spooled (``spill``) or the
        error propagates (draining: the spooled batch is retried whole later).
        """
        stored = Stored()
        mid = len(rows) // 2
        pending = [(0, list(rows[:mid])), (mid, list(rows[mid:]))] if mid else []
        if not mid:  # a batch of one: that row is the refused one
            stored.rejected.append((0, refusal))
        while pending:
            offset, chunk = pending.pop(0)
            try:
                stored.inserted += self._insert(chunk, batch_token(chunk), isolating=True)
            except InsertRejected as exc:
                if len(chunk) == 1:
                    stored.rejected.append((offset, str(exc)))
                else:
                    mid = len(chunk) // 2
                    pending[:0] = [(offset, chunk[:mid]), (offset + mid, chunk[mid:])]
            except ClickHouseUnavailable:
                if not spill:
                    raise
                rest = [row for _, part in [(offset, chunk), *pending] for row in part]
                self.spool.append(batch_token(rest), rest, tried=False)
                metrics.SINK_ROWS.labels(outcome="spooled").inc(len(rest))
                stored.spooled = len(rest)
                self._update_gauges()
                break
        if stored.rejected:
            log.warning(
                "sink: ClickHouse refused %d of %d rows: %s",
                len(stored.rejected),
                len(rows),
                stored.rejected[0][1],
            )
        return stored

    def _update_gauges(self) -> None:
        metrics.SPOOL_ROWS.set(self.spool.rows)
        metrics.SPOOL_BYTES.set(self.spool.bytes)
        metrics.SPOOL_OLDEST_AGE.set(self.spool.oldest_age_s())
