"""Faust table store on SQLite: one WAL-mode database file per table partition.

Layout: ``<dir>/<table name>-<partition>.sqlite3`` (with SQLite's ``-wal`` and ``-shm`` files
beside it while open), where ``<dir>`` is the store URL's path (``sqlite:///var/lib/ff/tables``)
or, for ``sqlite://`` and ``sqlite:///``, the app's ``tabledir``. Each file holds ``kv`` (the
table's serialized keys and values) and ``meta`` (the changelog offset its data reflects).

Durability: the changelog in Kafka is the source of truth and each file a cache of it, so a file
holds exactly a prefix of its changelog: never a write Kafka has not acknowledged, and never an
offset whose data it lacks.

- Agent writes are *write-behind*: a write goes to an in-memory overlay (reads see it at once)
  and a per-partition queue; when Faust reports that its changelog message was acked
  (``set_persisted_offset``, called once per acked message, in send order per partition, in
  Faust's at-least-once mode), the oldest queued write and that offset are committed together.
  Writing earlier would break at-least-once: a worker killed after recording "image X done"
  locally but before X's outputs and changelog entry reached Kafka would, on restart, skip the
  redelivered X for good. With write-behind, anything not acked is simply gone after a crash
  and is redone from the redelivered input.
- :meth:`SQLiteStore.apply_changelog_batch` (recovery, standbys) writes a batch's data and offset
  in one transaction.
- WAL with ``synchronous=NORMAL``: a commit appends to the WAL without fsync; a power loss can
  drop the newest commits but leaves a consistent prefix, and recovery, which starts from
  :meth:`SQLiteStore.persisted_offset`, replays the rest from the changelog.

Not for ``processing_guarantee="exactly_once"``, where Faust reports one offset per commit for
many writes.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from faust.exceptions import ImproperlyConfigured
from faust.stores import base
from faust.streams import current_event
from faust.types import TP, AppT, CollectionT, EventT
from yarl import URL

__all__ = ["SQLiteStore"]

logger = logging.getLogger(__name__)

SUFFIX = ".sqlite3"
SCHEMA_VERSION = 2
#: Seconds between purges of expired rows, for tables with a ``ttl_s`` (see SQLiteStore).
PURGE_INTERVAL_S = 60.0
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
_PURGE = "DELETE FROM kv WHERE written_at < ?"
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
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise ImproperlyConfigured(
                f"{self.path}: schema version {version}, this store knows {SCHEMA_VERSION}; "
                "remove the file (the table is rebuilt from its changelog)"
            )
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_CREATE_KV)
        conn.execute(_CREATE_META)
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

    def purge(self, written_before: float) -> int:
        """Delete rows written before ``written_before`` (epoch seconds); return how many."""
        return self.conn.execute(_PURGE, (written_before,)).rowcount

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

    def set_offset(self, topic: str, partition: int, offset: int) -> None:
        self.conn.execute(_SET_OFFSET, (topic, partition, offset))

    def apply(
        self, rows: Mapping[bytes, tuple[bytes | None, float]], offsets: Mapping[Any, int]
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
                _SET_OFFSET, ((tp.topic, tp.partition, offset) for tp, offset in offsets.items())
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # some errors (disk full, I/O) already rolled back
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the last connection checkpoints and removes the -wal file
            self._conn = None


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
        # Write-behind state per partition: writes awaiting their changelog ack, in send order;
        # the newest pending value per key (None = deleted) and how many writes of it are queued.
        self._pending: dict[int, deque[tuple[bytes, bytes | None]]] = {}
        self._overlay: dict[int, dict[bytes, bytes | None]] = {}
        self._queued: dict[int, Counter[bytes]] = {}
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
        overlay = self._overlay.get(partition)
        if overlay is not None and key in overlay:
            return overlay[key]
        return self._db_for_partition(partition).get(key)

    def _searched_partitions(self) -> list[int]:
        return sorted(set(self._dbs) | set(self._overlay))

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

    def _set(self, key: bytes, value: bytes | None) -> None:
        # A None value is a tombstone in the changelog: stored as the delete recovery rebuilds.
        partition = self._write_partition()
        self._db_for_partition(partition)  # open (and create) the file it will be written to
        self._pending.setdefault(partition, deque()).append((key, value))
        self._overlay.setdefault(partition, {})[key] = value
        self._queued.setdefault(partition, Counter())[key] += 1

    def _del(self, key: bytes) -> None:
        self._set(key, None)

    @property
    def pending_writes(self) -> int:
        """Writes waiting for their changelog ack (not yet in the files)."""
        return sum(len(q) for q in self._pending.values())

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
            overlay = dict(self._overlay.get(partition, {}))
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
        """The changelog message at ``offset`` was acked: commit the oldest pending write with it.

        Faust calls this once per acked changelog message, in send order per partition, so the
        oldest queued write of the partition is the one this ack covers.
        """
        partition = tp.partition
        queue = self._pending.get(partition)
        db = self._db_for_partition(partition)
        if not queue:
            db.set_offset(tp.topic, partition, offset)
            return
        key, value = queue.popleft()
        db.apply({key: (value, time.time())}, {tp: offset})
        queued = self._queued[partition]
        queued[key] -= 1
        if queued[key] <= 0:
            del queued[key]
            self._overlay[partition].pop(key, None)

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

    def purge_expired(self, now: float | None = None) -> int:
        """Delete rows older than the table's ``ttl_s`` from every open file; return how many.

        Local eviction only, without changelog tombstones: give the changelog topic the same
        retention (``cleanup.policy=compact,delete``), so Kafka drops the same records and a
        rebuild does not bring them back for longer than a segment.
        """
        if self.ttl_s is None:
            return 0
        cutoff = (time.time() if now is None else now) - self.ttl_s
        removed = sum(db.purge(cutoff) for db in list(self._dbs.values()))
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
        self.purge_expired()

    def reset_state(self) -> None:
        """Close this table's files and delete them, so the table is rebuilt from its changelog."""
        self.close()
        self._pending.clear()
        self._overlay.clear()
        self._queued.clear()
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
        """Close and forget the files of this table's revoked changelog partitions."""
        topics = table.changelog_topic.topics
        for tp in tps:
            if tp.topic in topics:
                db = self._dbs.pop(tp.partition, None)
                if db is not None:
                    db.close()
                    logger.info("Closed table %s partition %d", self.table_name, tp.partition)

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
        """Close every open partition file (a later access reopens it)."""
        dbs, self._dbs = self._dbs, {}
        for db in dbs.values():
            db.close()

    async def on_stop(self) -> None:
        """Close the files when the table's service stops."""
        self.close()
