"""Faust table store on SQLite: one WAL-mode database file per table partition.

Layout: ``<dir>/<table name>-<partition>.sqlite3`` (with SQLite's ``-wal`` and ``-shm`` files
beside it while open), where ``<dir>`` is the store URL's path (``sqlite:///var/lib/ff/tables``)
or, for ``sqlite://`` and ``sqlite:///``, the app's ``tabledir``. Each file holds ``kv`` (the
table's serialized keys and values) and ``meta`` (the changelog offset its data reflects).

Durability: the changelog in Kafka is the source of truth and each file a cache of it, so a file
holds exactly a prefix of its changelog: never a write Kafka has not acknowledged, and never an
offset whose data it lacks.

- Agent writes are *write-behind*: a write waits in memory (reads see the newest pending value
  of a key at once) until its own changelog message is acked, then it and that offset are
  committed together. Writing earlier would break at-least-once: a worker killed after
  recording "image X done" locally but before X's outputs and changelog entry reached Kafka
  would, on restart, skip the redelivered X for good. With write-behind, anything not acked is
  simply gone after a crash and is redone from the redelivered input.
- Each write is paired with its changelog message's future, which :class:`SQLiteTable` reports
  to the store when it is sent and again when Kafka acks it (Faust's own
  ``set_persisted_offset(tp, offset)`` says which offset was acked, not which write it carried):
  an ack commits the write whose future it resolved, found by that future, so a send that
  failed (dropped with its future's error; reads fall back to the previous value) or that is
  never acked cannot shift later acks onto the wrong writes.
- Group commit: the writes acked within one turn of the event loop are committed together, one
  transaction per partition with the highest acked offset, at the end of that turn (a worker
  handling a batch of events gets a batch of acks); a revocation or a close commits them first.
- Revoking a partition drops its pending writes: re-assigned, it shows what recovery read from
  the changelog, and an ack arriving after the revocation is ignored (it neither reopens the
  file nor writes to it; the changelog holds that write, recovery reads it back).
- :meth:`SQLiteStore.apply_changelog_batch` (recovery, standbys) writes a batch's data and offset
  in one transaction.
- WAL with ``synchronous=NORMAL``: a commit appends to the WAL without fsync; a power loss can
  drop the newest commits but leaves a consistent prefix, and recovery, which starts from
  :meth:`SQLiteStore.persisted_offset`, replays the rest from the changelog.

Event loop: Faust calls stores on its event loop, so nothing here may block it for long. WAL
checkpoints (which fsync) run in a thread of the store on a connection of their own, every
``CHECKPOINT_INTERVAL_S`` (SQLite's automatic checkpoint on commit is off); the TTL purge
deletes through an index on ``written_at`` in chunks of ``PURGE_CHUNK_ROWS``, yielding to the
loop between chunks.

Not for ``processing_guarantee="exactly_once"``, where Faust reports one offset per commit for
many writes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from faust.exceptions import ImproperlyConfigured
from faust.stores import base
from faust.streams import current_event
from faust.types import TP, AppT, CodecArg, CollectionT, EventT, FutureMessage
from yarl import URL

__all__ = ["SQLiteStore", "SQLiteTable"]

logger = logging.getLogger(__name__)

SUFFIX = ".sqlite3"
SCHEMA_VERSION = 3  # 3: index on kv.written_at (added to version 2 files when opened)
#: Seconds between purges of expired rows, for tables with a ``ttl_s`` (see SQLiteStore).
PURGE_INTERVAL_S = 60.0
#: Rows deleted per statement by the purge (each takes a few ms), yielding to the loop between.
PURGE_CHUNK_ROWS = 32
#: Rows the purge deletes before it waits for a checkpoint, so its WAL stays bounded.
PURGE_CHECKPOINT_ROWS = 20_000
#: Seconds between WAL checkpoints (in the store's thread).
CHECKPOINT_INTERVAL_S = 1.0
#: Rows fetched per query while iterating, so no statement stays open between yields.
PAGE_ROWS = 1000

_CREATE_KV = (
    "CREATE TABLE IF NOT EXISTS kv"
    " (key BLOB PRIMARY KEY, value BLOB NOT NULL, written_at REAL NOT NULL) WITHOUT ROWID"
)
_CREATE_META = (
    "CREATE TABLE IF NOT EXISTS meta ("
    " changelog_topic TEXT NOT NULL,"
    " changelog_partition INTEGER NOT NULL,"
    " applied_offset INTEGER NOT NULL,"
    " PRIMARY KEY (changelog_topic, changelog_partition)"
    ") WITHOUT ROWID"
)
_GET = "SELECT value FROM kv WHERE key = ?"
_CONTAINS = "SELECT 1 FROM kv WHERE key = ?"
_PUT = (
    "INSERT INTO kv (key, value, written_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, written_at = excluded.written_at"
)
_CREATE_KV_WRITTEN_AT = "CREATE INDEX IF NOT EXISTS kv_written_at ON kv (written_at)"
_PURGE = (
    "DELETE FROM kv WHERE key IN"
    " (SELECT key FROM kv WHERE written_at < ? ORDER BY written_at LIMIT ?)"
)
_DELETE = "DELETE FROM kv WHERE key = ?"
_COUNT = "SELECT count(*) FROM kv"
_KEYS_FIRST = "SELECT key FROM kv ORDER BY key LIMIT ?"
_KEYS_AFTER = "SELECT key FROM kv WHERE key > ? ORDER BY key LIMIT ?"
_ITEMS_FIRST = "SELECT key, value FROM kv ORDER BY key LIMIT ?"
_ITEMS_AFTER = "SELECT key, value FROM kv WHERE key > ? ORDER BY key LIMIT ?"
_GET_OFFSET = (
    "SELECT applied_offset FROM meta WHERE changelog_topic = ? AND changelog_partition = ?"
)
_SET_OFFSET = (
    "INSERT INTO meta (changelog_topic, changelog_partition, applied_offset) VALUES (?, ?, ?)"
    " ON CONFLICT (changelog_topic, changelog_partition)"
    " DO UPDATE SET applied_offset = excluded.applied_offset"
)
#: An ack's offset never moves the recorded one back (acks of failed-and-retried batches may
#: arrive out of offset order).
_SET_ACKED_OFFSET = (
    "INSERT INTO meta (changelog_topic, changelog_partition, applied_offset) VALUES (?, ?, ?)"
    " ON CONFLICT (changelog_topic, changelog_partition)"
    " DO UPDATE SET applied_offset = max(applied_offset, excluded.applied_offset)"
)


class _PartitionDB:
    """One partition's database file and its connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: every statement commits on its own unless we BEGIN explicitly.
        # check_same_thread stays on: Faust calls stores from the event loop thread only, and a
        # call from any other thread is a bug that should fail loudly.
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn
        # Used only in the store's checkpoint thread (see checkpoint()).
        self._checkpointer: sqlite3.Connection | None = None

    def _configure(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise ImproperlyConfigured(
                f"{self.path}: SQLite cannot use WAL mode here (journal_mode={mode}); "
                "put the table directory on a local file system"
            )
        # NORMAL in WAL mode fsyncs only at checkpoints, not per commit: a power loss may drop
        # the last commits, but the file stays a consistent prefix of its transactions (offset
        # never ahead of data), and Kafka's changelog has the rest. FULL would fsync every
        # agent write (about 15x slower here) to protect data we can re-read anyway.
        conn.execute("PRAGMA synchronous=NORMAL")
        # A checkpoint fsyncs: 50-370 ms on the event loop here. They run in the store's thread.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 2, SCHEMA_VERSION):
            raise ImproperlyConfigured(
                f"{self.path}: schema version {version}, this store knows {SCHEMA_VERSION}; "
                "remove the file (the table is rebuilt from its changelog)"
            )
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_CREATE_KV)
        conn.execute(_CREATE_META)
        conn.execute(_CREATE_KV_WRITTEN_AT)  # a version 2 file gets it once (seconds for millions)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        conn.execute("COMMIT")

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError(f"{self.path} is closed")
        return self._conn

    def get(self, key: bytes) -> bytes | None:
        row = self.conn.execute(_GET, (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def contains(self, key: bytes) -> bool:
        return self.conn.execute(_CONTAINS, (key,)).fetchone() is not None

    def purge(self, written_before: float, limit: int) -> int:
        """Delete up to ``limit`` of the oldest rows written before ``written_before`` (epoch
        seconds); return how many."""
        return self.conn.execute(_PURGE, (written_before, limit)).rowcount

    def delete(self, key: bytes) -> None:
        self.conn.execute(_DELETE, (key,))

    def size(self) -> int:
        return int(self.conn.execute(_COUNT).fetchone()[0])

    def keys(self) -> Iterator[bytes]:
        for row in self._pages(_KEYS_FIRST, _KEYS_AFTER):
            yield bytes(row[0])

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for row in self._pages(_ITEMS_FIRST, _ITEMS_AFTER):
            yield bytes(row[0]), bytes(row[1])

    def _pages(self, first: str, after: str) -> Iterator[Any]:
        # Keyset pagination: each page is a finished query, so writes between yields are safe,
        # and a partition closed (revoked) mid-iteration simply ends its part of the iteration.
        rows = self.conn.execute(first, (PAGE_ROWS,)).fetchall()
        while rows:
            yield from rows
            if len(rows) < PAGE_ROWS or self._conn is None:
                return
            rows = self._conn.execute(after, (rows[-1][0], PAGE_ROWS)).fetchall()

    def offset(self, topic: str, partition: int) -> int | None:
        row = self.conn.execute(_GET_OFFSET, (topic, partition)).fetchone()
        return None if row is None else int(row[0])

    def apply(
        self,
        rows: Mapping[bytes, tuple[bytes | None, float]],
        offsets: Mapping[Any, int],
        set_offset: str = _SET_OFFSET,
    ) -> None:
        """Write ``rows`` (key -> (value, written_at); a None value deletes) and the changelog
        ``offsets`` in one transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_DELETE, ((key,) for key, (value, _) in rows.items() if value is None))
            conn.executemany(
                _PUT,
                ((key, value, at) for key, (value, at) in rows.items() if value is not None),
            )
            conn.executemany(
                set_offset, ((tp.topic, tp.partition, offset) for tp, offset in offsets.items())
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # some errors (disk full, I/O) already rolled back
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the loop's connection (then :meth:`close_checkpointer` in the thread)."""
        if self._conn is not None:
            self._conn.close()  # the last connection checkpoints and removes the -wal file
            self._conn = None

    def checkpoint(self) -> None:
        """Copy the WAL into the database file: in the store's checkpoint thread only.

        PASSIVE: it never waits for, nor blocks, the loop's connection.
        """
        if self._conn is None:
            return  # closed meanwhile: close_checkpointer follows
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close_checkpointer(self) -> None:
        """Close the checkpoint thread's connection (the last one checkpoints fully)."""
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None


class _Write:
    """One agent write waiting for the ack of its changelog message."""

    __slots__ = ("key", "sent", "stale", "value")

    def __init__(self, key: bytes, value: bytes | None, sent: FutureMessage) -> None:
        self.key = key
        self.value = value
        self.sent = sent
        self.stale = False  # a later write of the key is in the file: commit only the offset


class _PendingWrites:
    """A partition's writes awaiting their acks, in send order, and the newest value per key."""

    def __init__(self) -> None:
        self.writes: dict[FutureMessage, _Write] = {}
        self.by_key: dict[bytes, list[_Write]] = {}
        self.acked: list[_Write] = []  # acked, to be committed at the end of the loop's turn

    def __len__(self) -> int:
        return len(self.writes)

    def add(self, write: _Write) -> None:
        self.writes[write.sent] = write
        self.by_key.setdefault(write.key, []).append(write)

    def newest(self, key: bytes) -> tuple[bool, bytes | None]:
        """Whether ``key`` has a pending value, and that value (None: deleted)."""
        writes = self.by_key.get(key)
        return (False, None) if not writes else (True, writes[-1].value)

    def overlay(self) -> dict[bytes, bytes | None]:
        return {key: writes[-1].value for key, writes in self.by_key.items() if writes}

    def commit_batch(
        self, acked: list[_Write], now: float
    ) -> tuple[dict[bytes, tuple[bytes | None, float]], dict[TP, int]]:
        """The rows and offsets that committing ``acked`` (in ack order) writes: per key the
        value of its newest write (by send order) among them, unless a newer one is already
        in the file; the highest offset per changelog partition."""
        rows: dict[bytes, tuple[bytes | None, float]] = {}
        newest: dict[bytes, int] = {}
        offsets: dict[TP, int] = {}
        for write in acked:
            result = write.sent.result()
            tp = result.topic_partition
            offsets[tp] = max(offsets.get(tp, -1), result.offset)
            if write.stale:
                continue
            position = self.by_key[write.key].index(write)
            if position >= newest.get(write.key, -1):
                newest[write.key] = position
                rows[write.key] = (write.value, now)
        return rows, offsets

    def remove(self, write: _Write, *, committed: bool) -> None:
        """Forget ``write``; once committed, older writes of its key become stale."""
        del self.writes[write.sent]
        writes = self.by_key.get(write.key)
        if writes is None or write not in writes:
            return  # stale: a newer write of its key was committed and dropped it already
        index = writes.index(write)
        if committed:
            for older in writes[:index]:
                older.stale = True
            del writes[: index + 1]
        else:
            del writes[index]
        if not writes:
            del self.by_key[write.key]


def _ttl_from(url: URL) -> float | None:
    raw = url.query.get("ttl_s")
    if raw is None:
        return None
    try:
        ttl = float(raw)
    except ValueError:
        ttl = 0.0
    if not ttl > 0:
        raise ImproperlyConfigured(f"store URL {str(url)!r}: ttl_s must be a number of seconds > 0")
    return ttl


class SQLiteStore(base.SerializedStore[Any, Any]):
    """Faust table store keeping each table partition in its own SQLite file.

    Registered under the ``faust.stores`` entry-point group as ``sqlite``, it is selected with
    ``App(store="sqlite://")`` (files in ``app.conf.tabledir``) or ``store="sqlite:///abs/dir"``.
    On a single table use ``Table(store="sqlite:///")`` for the tabledir: Faust drops a bare
    ``"sqlite://"`` there (``URL("sqlite://")`` is falsy) and uses the app's store instead.
    Modelled on Faust's RocksDB store: writes go to the current event's partition, reads too for
    partitioned tables (global and ``use_partitioner`` tables search every open partition), and
    iteration covers the actively assigned partitions (every open one for global tables).

    ``?ttl_s=SECONDS`` in the URL (``Table(store="sqlite://?ttl_s=21600")``) makes the table a
    bounded cache: rows older than that are purged every ``PURGE_INTERVAL_S`` seconds.
    """

    def __init__(self, url: str | URL, app: AppT, table: CollectionT, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        if self.url.host:
            raise ImproperlyConfigured(
                f"store URL {str(self.url)!r}: use 'sqlite://' (the app's tabledir) or "
                "'sqlite:///absolute/directory'"
            )
        self._dbs: dict[int, _PartitionDB] = {}
        self.ttl_s = _ttl_from(self.url)
        # Write-behind state per partition: writes awaiting their changelog ack.
        self._pending: dict[int, _PendingWrites] = {}
        # The changelog future of the write being made (SQLiteTable.send_changelog -> _set).
        self._sent: FutureMessage | None = None
        self._commit_scheduled = False
        #: Transactions that committed acked writes (one per partition per loop turn at most).
        self.group_commits = 0
        self._checkpoints: ThreadPoolExecutor | None = None
        #: Changelog events applied by recovery or standby since start (a restart with intact
        #: files replays only the tail; with files deleted, the whole changelog).
        self.changelog_events_applied = 0

    @property
    def path(self) -> Path:
        """Directory of this table's files: the store URL's path, else ``app.conf.tabledir``."""
        if self.url.path not in ("", "/"):
            return Path(self.url.path)
        return Path(self.app.conf.tabledir)

    def partition_path(self, partition: int) -> Path:
        """Database file of one partition of this table."""
        return self.path / f"{self.table_name}-{partition}{SUFFIX}"

    @property
    def open_partitions(self) -> frozenset[int]:
        """Partitions whose database file is open."""
        return frozenset(self._dbs)

    def _db_for_partition(self, partition: int) -> _PartitionDB:
        db = self._dbs.get(partition)
        if db is None:
            db = self._dbs[partition] = _PartitionDB(self.partition_path(partition))
            logger.info("Opened table %s partition %d: %s", self.table_name, partition, db.path)
        return db

    def _read_partition(self) -> int | None:
        """Partition that reads are confined to: the current event's, for partitioned tables."""
        event = current_event()
        if event is None or self.table.is_global or self.table.use_partitioner:
            return None
        return int(event.message.partition)

    def _write_partition(self) -> int:
        event = current_event()
        if event is None:
            # Faust itself refuses table writes outside of stream iteration (partition_for_key).
            raise TypeError(
                f"Cannot write to table {self.table_name!r} outside of stream iteration: "
                "the partition comes from the current event"
            )
        return int(event.message.partition)

    def _get_in(self, partition: int, key: bytes) -> bytes | None:
        pending = self._pending.get(partition)
        if pending is not None:
            found, value = pending.newest(key)
            if found:
                return value
        return self._db_for_partition(partition).get(key)

    def _searched_partitions(self) -> list[int]:
        return sorted(set(self._dbs) | set(self._pending))

    def _get(self, key: bytes) -> bytes | None:
        partition = self._read_partition()
        if partition is not None:
            return self._get_in(partition, key)
        for p in self._searched_partitions():
            value = self._get_in(p, key)
            if value is not None:
                return value
        return None

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def changelog_sent(self, fut: FutureMessage) -> None:
        """The table sent the changelog message of the write that follows (see SQLiteTable)."""
        self._sent = fut

    def _set(self, key: bytes, value: bytes | None) -> None:
        # A None value is a tombstone in the changelog: stored as the delete recovery rebuilds.
        self._write_partition()  # refuses writes outside of stream iteration
        sent, self._sent = self._sent, None
        if sent is None:
            raise TypeError(
                f"table {self.table_name!r}: a write to SQLiteStore needs its changelog message: "
                "declare the table as an SQLiteTable (faust.App(Table=SQLiteTable))"
            )
        partition = sent.message.partition
        if partition is None:
            raise TypeError(f"table {self.table_name!r}: changelog message without a partition")
        self._db_for_partition(partition)  # open (and create) the file it will be written to
        pending = self._pending.setdefault(partition, _PendingWrites())
        write = _Write(key, value, sent)
        pending.add(write)
        sent.add_done_callback(lambda fut: self._on_sent_done(partition, pending, write))

    def _on_sent_done(self, partition: int, pending: _PendingWrites, write: _Write) -> None:
        """A changelog send that failed (or was cancelled) drops its write: no changelog has it."""
        sent = write.sent
        failed = sent.cancelled() or sent.exception() is not None
        if failed and self._pending.get(partition) is pending and sent in pending.writes:
            pending.remove(write, committed=False)
            logger.warning(
                "Table %s partition %d: changelog write of key %r failed (%s); dropped",
                self.table_name,
                partition,
                write.key,
                "cancelled" if sent.cancelled() else repr(sent.exception()),
            )

    def _del(self, key: bytes) -> None:
        self._set(key, None)

    @property
    def pending_writes(self) -> int:
        """Writes waiting for their changelog ack (not yet in the files)."""
        return sum(len(pending) for pending in self._pending.values())

    def _active_dbs(self) -> list[tuple[int, _PartitionDB]]:
        if self.table.is_global:
            return sorted(self._dbs.items())
        topics = self.table.changelog_topic.topics
        actives = {
            tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic in topics
        }
        return [(p, db) for p, db in sorted(self._dbs.items()) if p in actives]

    def _iterkeys(self) -> Iterator[bytes]:
        for key, _ in self._iteritems():
            yield key

    def _itervalues(self) -> Iterator[bytes]:
        for _, value in self._iteritems():
            yield value

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        for partition, db in self._active_dbs():
            writes = self._pending.get(partition)
            overlay = {} if writes is None else writes.overlay()
            for key, value in db.items():
                if key not in overlay:
                    yield key, value
            for key, pending in overlay.items():
                if pending is not None:
                    yield key, pending

    def _size(self) -> int:
        return sum(1 for _ in self._iteritems())

    def _clear(self) -> None:
        # Like RocksDB: emptying the local copy without changelog tombstones would diverge from
        # the changelog. Delete keys through the table, or reset_state() to rebuild.
        raise NotImplementedError("SQLiteStore cannot clear a changelogged table locally")

    def persisted_offset(self, tp: TP) -> int | None:
        """Return the changelog offset this partition's file holds the data up to, if any."""
        return self._db_for_partition(tp.partition).offset(tp.topic, tp.partition)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Not how acks reach this store: an offset does not say which write it carried.

        :class:`SQLiteTable` reports each ack with its message's future
        (:meth:`changelog_acked`) instead of calling this, and a table of another class cannot
        write to this store at all.
        """
        logger.debug(
            "Table %s: ack of %s@%d reported without its write", self.table_name, tp, offset
        )

    def changelog_acked(self, fut: FutureMessage) -> None:
        """Kafka acked the changelog message ``fut``: its write is committed, with the other
        writes acked in this turn of the event loop, at the end of the turn (one transaction
        per partition). An ack with no pending write (its partition was revoked meanwhile)
        changes nothing."""
        partition = fut.message.partition
        pending = None if partition is None else self._pending.get(partition)
        write = None if pending is None else pending.writes.get(fut)
        if pending is None or write is None:
            logger.debug("Table %s: ignored an ack with no pending write", self.table_name)
            return
        pending.acked.append(write)
        if not self._commit_scheduled:
            self._commit_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.commit_acked)
            except RuntimeError:  # no loop running (a synchronous caller): commit now
                self.commit_acked()

    def commit_acked(self) -> None:
        """Commit every acked write now: per partition, its rows and its highest acked offset in
        one transaction. A write whose commit fails stays pending (still readable)."""
        self._commit_scheduled = False
        now = time.time()
        for partition, pending in list(self._pending.items()):
            db = self._dbs.get(partition)
            if not pending.acked or db is None:
                continue
            acked, pending.acked = pending.acked, []
            rows, offsets = pending.commit_batch(acked, now)
            try:
                db.apply(rows, offsets, _SET_ACKED_OFFSET)
            except (sqlite3.Error, OSError):
                logger.exception(
                    "Table %s partition %d: could not commit %d acked writes; they stay in "
                    "memory (the changelog has them)",
                    self.table_name,
                    partition,
                    len(acked),
                )
                continue
            self.group_commits += 1
            for write in acked:
                pending.remove(write, committed=True)

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT[Any]],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        """Write changelog events and their highest offset, one transaction per partition.

        Keys and values are stored as they arrive (already serialized); a None value deletes.
        Within a partition the last event for a key wins. A failure leaves that partition's
        data and offset as they were (partitions committed before it keep their progress).
        """
        rows: dict[int, dict[bytes, tuple[bytes | None, float]]] = {}
        offsets: dict[int, dict[TP, int]] = {}
        for event in batch:
            self.changelog_events_applied += 1
            message = event.message
            if message.key is None:
                raise TypeError(f"Changelog entry is missing key: {message}")
            # A row's age counts from when its changelog message was written, not from recovery.
            written_at = float(message.timestamp or time.time())
            rows.setdefault(message.partition, {})[message.key] = (message.value, written_at)
            tp_offsets = offsets.setdefault(message.partition, {})
            tp_offsets[message.tp] = max(message.offset, tp_offsets.get(message.tp, -1))
        for partition, partition_rows in rows.items():
            self._db_for_partition(partition).apply(partition_rows, offsets[partition])

    async def purge_expired(self, now: float | None = None) -> int:
        """Delete rows older than the table's ``ttl_s`` from every open file; return how many.

        Local eviction only, without changelog tombstones: give the changelog topic the same
        retention (``cleanup.policy=compact,delete``), so Kafka drops the same records and a
        rebuild does not bring them back for longer than a segment. Deletes in chunks of
        ``PURGE_CHUNK_ROWS``, yielding to the event loop between them, and waits for a
        checkpoint every ``PURGE_CHECKPOINT_ROWS``.
        """
        if self.ttl_s is None:
            return 0
        cutoff = (time.time() if now is None else now) - self.ttl_s
        removed = 0
        for partition in sorted(self._dbs):
            since_checkpoint = 0
            while (db := self._dbs.get(partition)) is not None:  # revoked meanwhile: done
                n = db.purge(cutoff, PURGE_CHUNK_ROWS)
                removed += n
                since_checkpoint += n
                if n < PURGE_CHUNK_ROWS:
                    break
                if since_checkpoint >= PURGE_CHECKPOINT_ROWS:
                    await self._checkpoint(db)
                    since_checkpoint = 0
                else:
                    await asyncio.sleep(0)
        if removed:
            logger.info(
                "Expired %d rows older than %.0fs from table %s",
                removed,
                self.ttl_s,
                self.table_name,
            )
        return removed

    @base.Store.timer(PURGE_INTERVAL_S)
    async def _purge_expired_periodically(self) -> None:
        await self.purge_expired()

    async def _checkpoint(self, db: _PartitionDB) -> None:
        if self._checkpoints is None:
            self._checkpoints = ThreadPoolExecutor(
                1, thread_name_prefix=f"ff-sqlite-{self.table_name}"
            )
        await asyncio.get_running_loop().run_in_executor(self._checkpoints, db.checkpoint)

    async def checkpoint(self) -> None:
        """Checkpoint every open file's WAL, in the store's thread."""
        for db in list(self._dbs.values()):
            await self._checkpoint(db)

    @base.Store.timer(CHECKPOINT_INTERVAL_S)
    async def _checkpoint_periodically(self) -> None:
        await self.checkpoint()

    def _close_db(self, db: _PartitionDB) -> None:
        db.close()
        if self._checkpoints is not None:
            self._checkpoints.submit(db.close_checkpointer)  # after a checkpoint in progress
        else:
            db.close_checkpointer()

    def reset_state(self) -> None:
        """Close this table's files and delete them, so the table is rebuilt from its changelog."""
        self.close()  # waits for the checkpoint thread: nothing touches the files after this
        pattern = re.compile(
            rf"{re.escape(self.table_name)}-\d+{re.escape(SUFFIX)}(?:-wal|-shm|-journal)?"
        )
        try:
            entries = list(self.path.iterdir())
        except FileNotFoundError:
            entries = []
        removed = 0
        for entry in entries:
            if pattern.fullmatch(entry.name):
                entry.unlink(missing_ok=True)
                removed += 1
        logger.info("Reset table %s: removed %d files from %s", self.table_name, removed, self.path)

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        """Close the revoked partitions' files, then open the newly assigned active ones."""
        self.revoke_partitions(self.table, revoked)
        await self.assign_partitions(self.table, newly_assigned, generation_id)

    def revoke_partitions(self, table: CollectionT, tps: set[TP]) -> None:
        """Close and forget the files of this table's revoked changelog partitions (acked
        writes are committed first; those still awaiting their ack are dropped)."""
        self.commit_acked()
        topics = table.changelog_topic.topics
        for tp in tps:
            if tp.topic in topics:
                # Its unacked writes go too: re-assigned, it shows what recovery read from the
                # changelog, and their late acks find nothing to commit.
                dropped = self._pending.pop(tp.partition, None)
                db = self._dbs.pop(tp.partition, None)
                if db is not None:
                    self._close_db(db)
                    logger.info(
                        "Closed table %s partition %d (%d unacked writes dropped)",
                        self.table_name,
                        tp.partition,
                        0 if dropped is None else len(dropped),
                    )

    async def assign_partitions(
        self, table: CollectionT, tps: set[TP], generation_id: int = 0
    ) -> None:
        """Open the files of this table's newly assigned active partitions.

        Standby partitions open on their first changelog batch, as with RocksDB.
        """
        standbys = self.app.assignor.assigned_standbys()
        topics = table.changelog_topic.topics
        for tp in tps:
            if tp.topic in topics and tp not in standbys:
                self._db_for_partition(tp.partition)

    async def backup_partition(
        self, tp: TP | int, flush: bool = True, purge: bool = False, keep: int = 1
    ) -> None:
        """Not supported: the changelog topic is the backup (Faust never calls this itself)."""
        raise NotImplementedError("SQLiteStore has no backups; tables rebuild from the changelog")

    def restore_backup(self, tp: TP | int, latest: bool = True, backup_id: int = 0) -> None:
        """Not supported: see :meth:`backup_partition`."""
        raise NotImplementedError("SQLiteStore has no backups; tables rebuild from the changelog")

    def close(self) -> None:
        """Close every open partition file and drop the writes not yet acked (a later access
        reopens a file); waits for the checkpoint thread to finish with them."""
        self.commit_acked()
        dbs, self._dbs = self._dbs, {}
        self._pending.clear()
        for db in dbs.values():
            self._close_db(db)
        if self._checkpoints is not None:
            self._checkpoints.shutdown(wait=True)
            self._checkpoints = None

    async def on_stop(self) -> None:
        """Close the files when the table's service stops."""
        self.close()


class SQLiteTable(faust.Table[Any, Any]):
    """A Faust table that reports each changelog message it sends to its store.

    :class:`SQLiteStore` pairs every write with its own changelog message this way; declare the
    tables of an app on this store with ``faust.App(Table=SQLiteTable)``.
    """

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg = None,
        value_serializer: CodecArg = None,
    ) -> FutureMessage:
        fut: FutureMessage = super().send_changelog(
            partition, key, value, key_serializer, value_serializer
        )
        report = getattr(self.data, "changelog_sent", None)
        if report is not None:
            report(fut)
        return fut

    def _on_changelog_sent(self, fut: FutureMessage) -> None:
        """Kafka acked a changelog message: the store commits the write it carried (found by
        its future, not by its offset); Faust's own path reports the offset alone."""
        acked = getattr(self.data, "changelog_acked", None)
        if acked is None or self.app.in_transaction:
            super()._on_changelog_sent(fut)
            return
        acked(fut)
