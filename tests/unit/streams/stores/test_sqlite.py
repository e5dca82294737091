"""SQLiteStore: a Faust table store on per-partition SQLite files, tested without Kafka."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faust
import faust.stores
import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.assignor.client_assignment import ClientAssignment
from faust.events import Event
from faust.exceptions import ImproperlyConfigured
from faust.streams import _current_event
from faust.types import TP, Message
from faust.types.tuples import FutureMessage, PendingMessage, RecordMetadata

from streams.stores.sqlite import PAGE_ROWS, SQLiteStore

SOURCE_TOPIC = "images.raw"

MakeStore = Callable[..., SQLiteStore]


@pytest.fixture
def app(tmp_path: Path) -> faust.App:
    """A Faust app that connects to nothing, with its data directory under tmp_path."""
    return faust.App(
        "ff-store-test",
        broker="kafka://127.0.0.1:1",
        datadir=str(tmp_path / "data"),
        env={},
    )


@pytest.fixture
def table(app: faust.App) -> Any:
    """A 4-partition table; its store is built by the tests."""
    return app.Table("seen", partitions=4, default=None)


@pytest.fixture
def make_store(app: faust.App) -> Iterator[MakeStore]:
    """Build SQLiteStores with raw key/value serializers, closing them all after the test."""
    created: list[SQLiteStore] = []

    def make(table: Any, url: str = "sqlite://") -> SQLiteStore:
        store = SQLiteStore(url, app, table, key_serializer="raw", value_serializer="raw")
        created.append(store)
        return store

    yield make
    for store in created:
        store.close()


@pytest.fixture
def store(table: Any, make_store: MakeStore) -> SQLiteStore:
    """The store of the 'seen' table in the app's tabledir."""
    return make_store(table)


def _message(topic: str, partition: int, offset: int, key: Any, value: Any) -> Message:
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0.0,
        timestamp_type=0,
        headers=None,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
    )


@contextmanager
def processing(app: faust.App, partition: int) -> Iterator[None]:
    """Run the block as if an agent were handling an event from `partition` of the source topic."""
    event = Event(app, None, None, None, _message(SOURCE_TOPIC, partition, 0, None, None))
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def changelog(table: Any, partition: int, offset: int, key: bytes | None, value: Any) -> Event:
    """A changelog event of `table` as Faust's recovery hands it to apply_changelog_batch."""
    message = _message(table.changelog_topic_name, partition, offset, key, value)
    return Event(table.app, key, value, None, message)


def ctp(table: Any, partition: int) -> TP:
    """The changelog topic-partition of `table`."""
    return TP(table.changelog_topic_name, partition)


def changelog_message(
    table: Any, store: SQLiteStore, partition: int, key: bytes, value: Any
) -> FutureMessage:
    """The future of a changelog message as Table.send_changelog returns it, reported to the
    store as SQLiteTable.send_changelog does."""
    fut = FutureMessage(
        PendingMessage(
            channel=table.changelog_topic,
            key=key,
            value=value,
            partition=partition,
            timestamp=None,
            headers=None,
            key_serializer="raw",
            value_serializer="raw",
            # SQLiteTable._on_changelog_sent: the acked message's future to the store; the
            # commit at the end of the loop's turn is made at once here (see
            # test_acks_of_one_loop_turn_are_one_transaction_per_partition for the turn).
            callback=lambda f: (store.changelog_acked(f), store.commit_acked()),
        )
    )
    store.changelog_sent(fut)
    return fut


def sent(
    app: faust.App, table: Any, store: SQLiteStore, partition: int, key: bytes, value: Any
) -> FutureMessage:
    """Write ``key`` as a table does: its changelog message first, then the store's own write;
    returns the message's future to settle."""
    fut = changelog_message(table, store, partition, key, value)
    with processing(app, partition):
        if value is None:
            del store[key]
        else:
            store[key] = value
    return fut


def ack(fut: FutureMessage, offset: int) -> None:
    """Kafka acked the changelog message at ``offset``: what Topic._on_published does."""
    tp = TP(fut.message.channel.get_topic_name(), fut.message.partition)
    fut.set_result(RecordMetadata(tp.topic, tp.partition, tp, offset))
    fut.message.callback(fut)


async def fail(fut: FutureMessage, exc: BaseException) -> None:
    """The changelog send failed: Topic._on_published sets the error and calls no callback."""
    fut.set_exception(exc)
    await asyncio.sleep(0)  # let the future's done callbacks run


def written(
    app: faust.App,
    table: Any,
    store: SQLiteStore,
    partition: int,
    key: bytes,
    value: Any,
    offset: int,
) -> None:
    """Write ``key`` and ack its changelog message at ``offset`` (the write is in the file)."""
    ack(sent(app, table, store, partition, key, value), offset)


async def rebalance(
    app: faust.App,
    store: SQLiteStore,
    table: Any,
    *,
    actives: Sequence[int],
    standbys: Sequence[int] = (),
    previous: frozenset[TP] = frozenset(),
) -> frozenset[TP]:
    """Give this worker `actives`/`standbys` of the table's changelog, as a rebalance does.

    Sets what PartitionAssignor.on_assignment stores, then calls the store's on_rebalance with
    the revoked and newly assigned changelog partitions relative to `previous`; returns the new
    assignment, to pass as `previous` next time.
    """
    topic = table.changelog_topic_name
    app.assignor._assignment = ClientAssignment(
        actives={topic: sorted(actives)}, standbys={topic: sorted(standbys)}
    )
    assigned = frozenset(TP(topic, p) for p in (*actives, *standbys))
    await store.on_rebalance(set(assigned), set(previous - assigned), set(assigned - previous))
    return assigned


async def test_set_get_contains_delete_within_an_event(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """A value written while handling an event is read back and present until deleted."""
    sent(app, table, store, 1, b"img-1", b"42")
    with processing(app, 1):
        assert store[b"img-1"] == b"42"
        assert b"img-1" in store
    sent(app, table, store, 1, b"img-1", None)
    with processing(app, 1):
        assert b"img-1" not in store
        with pytest.raises(KeyError):
            store[b"img-1"]


async def test_writes_go_to_the_event_partition(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """A write lands in the current event's partition: other partitions' events do not see it."""
    sent(app, table, store, 1, b"k", b"v")
    with processing(app, 2):
        assert b"k" not in store
        assert store.get(b"k") is None
    with processing(app, 1):
        assert store[b"k"] == b"v"
    assert store.open_partitions == {1, 2}
    assert store.partition_path(1).is_file()


async def test_reads_outside_an_event_search_every_open_partition(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """Without a current event (e.g. a web view) a key is found in whichever partition holds it."""
    sent(app, table, store, 3, b"k", b"v")
    sent(app, table, store, 0, b"other", b"w")
    assert store[b"k"] == b"v"
    assert b"k" in store
    assert b"missing" not in store


async def test_global_table_reads_search_every_partition_within_an_event(
    app: faust.App, make_store: MakeStore
) -> None:
    """A global table reads a key from any partition, whatever the current event's partition."""
    table = app.GlobalTable("config", partitions=4, default=None)
    store = make_store(table)
    sent(app, table, store, 3, b"k", b"v")
    with processing(app, 0):
        assert store[b"k"] == b"v"


async def test_write_without_its_changelog_message_is_refused(
    app: faust.App, store: SQLiteStore
) -> None:
    """A write the table did not report a changelog message for (a plain faust.Table, or a
    direct write to the store) raises TypeError: no ack could ever be paired with it."""
    with processing(app, 0), pytest.raises(TypeError, match="SQLiteTable"):
        store[b"k"] = b"v"
    assert store.pending_writes == 0


def test_write_outside_an_event_is_refused(store: SQLiteStore) -> None:
    """Writing without a current event raises TypeError, as there is no partition to write to."""
    with pytest.raises(TypeError, match="outside of stream iteration"):
        store[b"k"] = b"v"
    assert store.open_partitions == frozenset()


async def test_setting_none_deletes_like_a_tombstone(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """_set with a None value removes the key, as a None changelog value would on recovery."""
    written(app, table, store, 0, b"k", b"v", 0)
    fut = changelog_message(table, store, 0, b"k", None)
    with processing(app, 0):
        store._set(b"k", None)
        assert b"k" not in store
    on_disk = make_store(table)
    ack(fut, 1)
    with processing(app, 0):
        assert b"k" not in on_disk


async def test_len_and_iteration_cover_active_partitions(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """len, keys, values and items cover the active partitions and leave out standby ones."""
    await rebalance(app, store, table, actives=[0, 1, 2], standbys=[3])
    for partition in (0, 1, 2):
        sent(app, table, store, partition, f"k{partition}".encode(), f"v{partition}".encode())
    store.apply_changelog_batch([changelog(table, 3, 0, b"standby", b"s")], bytes, bytes)

    assert len(store) == 3
    assert sorted(store.keys()) == [b"k0", b"k1", b"k2"]
    assert sorted(store.values()) == [b"v0", b"v1", b"v2"]
    assert sorted(store.items()) == [(b"k0", b"v0"), (b"k1", b"v1"), (b"k2", b"v2")]


async def test_global_table_iteration_covers_every_open_partition(
    app: faust.App, make_store: MakeStore
) -> None:
    """A global table iterates over every open partition, standbys included (as RocksDB does)."""
    table = app.GlobalTable("config", partitions=2, default=None)
    store = make_store(table)
    await rebalance(app, store, table, actives=[0], standbys=[1])
    store.apply_changelog_batch(
        [changelog(table, 0, 0, b"a", b"1"), changelog(table, 1, 0, b"b", b"2")], bytes, bytes
    )
    assert sorted(store.items()) == [(b"a", b"1"), (b"b", b"2")]
    assert len(store) == 2


async def test_iteration_spans_several_pages(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """Iteration returns every key exactly once when a partition holds more than one page."""
    await rebalance(app, store, table, actives=[0])
    n = PAGE_ROWS * 2 + 500
    store.apply_changelog_batch(
        [changelog(table, 0, i, b"k%06d" % i, b"v") for i in range(n)], bytes, bytes
    )
    keys = list(store.keys())
    assert len(keys) == n
    assert set(keys) == {b"k%06d" % i for i in range(n)}


async def test_iteration_allows_deleting_the_keys_it_yields(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """Deleting each key while iterating (as an agent might) neither skips nor repeats keys."""
    await rebalance(app, store, table, actives=[0])
    n = PAGE_ROWS + 10
    store.apply_changelog_batch(
        [changelog(table, 0, i, b"k%06d" % i, b"v") for i in range(n)], bytes, bytes
    )
    seen = []
    with processing(app, 0):
        keys = iter(store)
    for key in keys:
        seen.append(key)
        sent(app, table, store, 0, key, None)
    assert len(seen) == len(set(seen)) == n
    assert len(store) == 0


def test_changelog_batch_applies_puts_tombstones_and_offsets(
    table: Any, store: SQLiteStore
) -> None:
    """A batch writes puts, applies tombstones (last event per key wins) and each partition's
    highest offset."""
    store.apply_changelog_batch(
        [
            changelog(table, 0, 10, b"kept", b"1"),
            changelog(table, 0, 11, b"dropped", b"x"),
            changelog(table, 0, 12, b"dropped", None),
            changelog(table, 1, 5, b"revived", None),
            changelog(table, 1, 7, b"revived", b"2"),
            changelog(table, 1, 6, b"late", b"3"),
        ],
        bytes,
        bytes,
    )
    store.apply_changelog_batch([changelog(table, 0, 13, b"kept", None)], bytes, bytes)
    store.apply_changelog_batch([changelog(table, 0, 14, b"gone-anyway", None)], bytes, bytes)

    assert store.get(b"kept") is None
    assert store.get(b"dropped") is None
    assert store[b"revived"] == b"2"
    assert store[b"late"] == b"3"
    assert store.persisted_offset(ctp(table, 0)) == 14
    assert store.persisted_offset(ctp(table, 1)) == 7


def test_failed_batch_moves_neither_data_nor_offset(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """A batch that fails part-way through writing leaves the partition's data and offset as
    before, on disk too."""
    store.apply_changelog_batch([changelog(table, 0, 10, b"k0", b"v0")], bytes, bytes)
    broken = [
        changelog(table, 0, 11, b"k0", None),
        changelog(table, 0, 12, b"k1", b"v1"),
        changelog(table, 0, 13, b"k2", object()),  # fails to bind after the rows before it
    ]
    with pytest.raises(sqlite3.ProgrammingError):
        store.apply_changelog_batch(broken, bytes, bytes)

    for view in (store, make_store(table)):  # the live store, then a fresh one on the files
        with processing(app, 0):
            assert view[b"k0"] == b"v0"
            assert view.get(b"k1") is None
        assert view.persisted_offset(ctp(table, 0)) == 10


def test_partition_accepts_writes_after_a_failed_batch(table: Any, store: SQLiteStore) -> None:
    """A failed batch leaves no transaction open: the next batch commits normally."""
    with pytest.raises(sqlite3.ProgrammingError):
        store.apply_changelog_batch([changelog(table, 0, 1, b"k", object())], bytes, bytes)
    store.apply_changelog_batch([changelog(table, 0, 2, b"k", b"v")], bytes, bytes)
    assert store[b"k"] == b"v"
    assert store.persisted_offset(ctp(table, 0)) == 2


def test_changelog_entry_without_key_is_rejected_before_writing(
    table: Any, store: SQLiteStore
) -> None:
    """A keyless changelog entry raises TypeError and nothing of its batch is written."""
    with pytest.raises(TypeError, match="missing key"):
        store.apply_changelog_batch(
            [changelog(table, 0, 1, b"k", b"v"), changelog(table, 0, 2, None, b"v")],
            bytes,
            bytes,
        )
    assert store.get(b"k") is None
    assert store.persisted_offset(ctp(table, 0)) is None


def test_persisted_offset_is_none_for_a_new_partition(table: Any, store: SQLiteStore) -> None:
    """A partition with no recorded offset reports None, so recovery reads its whole changelog."""
    assert store.persisted_offset(ctp(table, 2)) is None


def test_offsets_are_kept_per_changelog_topic(table: Any, store: SQLiteStore) -> None:
    """An offset recorded for one changelog topic is not reported for another on that partition."""
    store.apply_changelog_batch([changelog(table, 0, 99, b"k", b"v")], bytes, bytes)
    assert store.persisted_offset(TP("other-changelog", 0)) is None
    assert store.persisted_offset(ctp(table, 0)) == 99


async def test_data_and_offsets_survive_a_restart(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """After close and reopen, a new store holds the agent's writes, the batches and offsets."""
    written(app, table, store, 2, b"agent", b"a", 7)
    store.apply_changelog_batch([changelog(table, 3, 40, b"recovered", b"r")], bytes, bytes)
    store.close()

    restarted = make_store(table)
    assert restarted.persisted_offset(ctp(table, 2)) == 7
    assert restarted.persisted_offset(ctp(table, 3)) == 40
    with processing(app, 2):
        assert restarted[b"agent"] == b"a"
    with processing(app, 3):
        assert restarted[b"recovered"] == b"r"


async def test_committed_writes_survive_a_crash_without_checkpoint(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore, tmp_path: Path
) -> None:
    """The files as a killed worker leaves them (WAL not checkpointed) hold its writes and
    offset."""
    written(app, table, store, 0, b"k", b"v", 3)
    path = store.partition_path(0)
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 0  # the commits are still in the WAL only
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for file in (path, wal):  # snapshot the files while the connection is still open
        shutil.copy(file, crashed / file.name)

    survivor = make_store(table, f"sqlite://{crashed}")
    assert survivor.persisted_offset(ctp(table, 0)) == 3
    with processing(app, 0):
        assert survivor[b"k"] == b"v"


async def test_stop_closes_every_partition(app: faust.App, table: Any, store: SQLiteStore) -> None:
    """Stopping the store's service closes all its partition files."""
    written(app, table, store, 0, b"k", b"v", 0)
    written(app, table, store, 1, b"k", b"v", 0)
    await store.checkpoint()  # the checkpoint thread's connection is open too
    await store.stop()
    assert store.open_partitions == frozenset()
    assert not store.partition_path(0).with_name(store.partition_path(0).name + "-wal").exists()


async def test_reset_state_removes_data_and_offsets(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """reset_state deletes the table's files, so data and offsets are gone afterwards."""
    written(app, table, store, 1, b"k", b"v", 5)
    await store.checkpoint()
    store.apply_changelog_batch([changelog(table, 2, 9, b"k2", b"v2")], bytes, bytes)
    directory = store.partition_path(1).parent

    store.reset_state()

    assert list(directory.iterdir()) == []
    assert store.open_partitions == frozenset()
    assert store.persisted_offset(ctp(table, 1)) is None
    assert store.persisted_offset(ctp(table, 2)) is None
    with processing(app, 1):
        assert b"k" not in store


def test_reset_state_without_files_is_harmless(store: SQLiteStore) -> None:
    """reset_state on a table that never wrote a file (no directory yet) does nothing."""
    assert not store.path.exists()
    store.reset_state()
    assert not store.path.exists()


async def test_revoke_closes_and_reassign_reopens_with_data_and_offset(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """A revoked partition's file is closed and kept; re-assigned, it has its data and offset."""
    assigned = await rebalance(app, store, table, actives=[0, 1])
    written(app, table, store, 1, b"k", b"v", 12)

    assigned = await rebalance(app, store, table, actives=[0], previous=assigned)
    assert store.open_partitions == {0}
    assert store.partition_path(1).is_file()
    assert len(store) == 0

    await rebalance(app, store, table, actives=[0, 1], previous=assigned)
    assert store.open_partitions == {0, 1}
    assert store.persisted_offset(ctp(table, 1)) == 12
    assert dict(store.items()) == {b"k": b"v"}


async def test_assign_opens_actives_only_of_its_own_changelog(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """Assignment opens the table's active changelog partitions, not standbys or other topics."""
    topic = table.changelog_topic_name
    app.assignor._assignment = ClientAssignment(actives={topic: [0]}, standbys={topic: [1]})
    await store.on_rebalance(
        {TP(topic, 0), TP(topic, 1), TP(SOURCE_TOPIC, 2)},
        set(),
        {TP(topic, 0), TP(topic, 1), TP(SOURCE_TOPIC, 2)},
    )
    assert store.open_partitions == {0}


async def test_revoke_ignores_other_topics(app: faust.App, table: Any, store: SQLiteStore) -> None:
    """Revoking a source-topic partition leaves the table's same-numbered partition open."""
    await rebalance(app, store, table, actives=[2])
    await store.on_rebalance(set(), {TP(SOURCE_TOPIC, 2)}, set())
    assert store.open_partitions == {2}


async def test_two_tables_in_one_directory_do_not_collide(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """Tables sharing a directory, even 'seen' and 'seen-1', keep separate data, offsets and
    files."""
    other_table = app.Table("seen-1", partitions=4, default=None)
    other = make_store(other_table)
    written(app, table, store, 1, b"k", b"seen", 1)
    written(app, other_table, other, 0, b"k", b"seen-1", 100)
    assert store.partition_path(1).parent == other.partition_path(0).parent
    assert store.partition_path(1).name == "seen-1.sqlite3"
    assert other.partition_path(0).name == "seen-1-0.sqlite3"

    store.reset_state()

    assert other.partition_path(0).is_file()
    assert other.persisted_offset(ctp(other_table, 0)) == 100
    with processing(app, 0):
        assert other[b"k"] == b"seen-1"
        assert b"k" not in store


def test_files_live_in_tabledir_by_default(app: faust.App, store: SQLiteStore) -> None:
    """With 'sqlite://' each partition's file is <tabledir>/<table>-<partition>.sqlite3."""
    assert store.partition_path(3) == Path(app.conf.tabledir) / "seen-3.sqlite3"


def test_url_path_chooses_the_directory(table: Any, make_store: MakeStore, tmp_path: Path) -> None:
    """With 'sqlite:///abs/dir' the files go to that directory, created on first use."""
    store = make_store(table, f"sqlite://{tmp_path}/elsewhere")
    store.apply_changelog_batch([changelog(table, 0, 1, b"k", b"v")], bytes, bytes)
    assert (tmp_path / "elsewhere" / "seen-0.sqlite3").is_file()


def test_url_with_a_host_is_rejected(app: faust.App, table: Any) -> None:
    """A URL such as 'sqlite://data/tables' (host 'data') is refused instead of misread."""
    with pytest.raises(ImproperlyConfigured, match="sqlite:///absolute/directory"):
        SQLiteStore("sqlite://data/tables", app, table)


def test_file_uses_wal_and_the_documented_schema(table: Any, store: SQLiteStore) -> None:
    """Each partition file is in WAL mode with a WITHOUT ROWID kv table, its written_at index
    and a meta table."""
    store.apply_changelog_batch([changelog(table, 0, 1, b"k", b"v")], bytes, bytes)
    conn = sqlite3.connect(store.partition_path(0))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'"))
        indexes = [row[2] for row in conn.execute("PRAGMA index_info(kv_written_at)")]
    finally:
        conn.close()
    assert set(tables) == {"kv", "meta"}
    assert indexes == ["written_at"]
    assert "WITHOUT ROWID" in tables["kv"]


@pytest.fixture
def sqlite_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register 'sqlite' in Faust's store registry, as the faust.stores entry point does."""
    faust.stores.STORES.get_alias("memory")  # load entry points first, so teardown restores them
    monkeypatch.setitem(faust.stores.STORES.aliases, "sqlite", "streams.stores.sqlite:SQLiteStore")


@pytest.mark.usefixtures("sqlite_registered")
def test_app_store_url_selects_this_store(tmp_path: Path) -> None:
    """With 'sqlite' registered, App(store='sqlite://') gives tables an SQLiteStore with their
    name and serializers."""
    app = faust.App(
        "ff-registry-test",
        broker="kafka://127.0.0.1:1",
        store="sqlite://",
        datadir=str(tmp_path),
        env={},
    )
    table = app.Table("registered", partitions=2, default=None, key_type=bytes)

    store = table.data
    try:
        assert faust.stores.by_url("sqlite://") is SQLiteStore
        assert isinstance(store, SQLiteStore)
        assert store.table_name == "registered"
        assert store.key_serializer == "raw"
        assert store.partition_path(0) == Path(app.conf.tabledir) / "registered-0.sqlite3"
    finally:
        store.close()


@pytest.mark.usefixtures("sqlite_registered")
def test_table_store_url_needs_a_path(app: faust.App) -> None:
    """Per table, 'sqlite:///' selects this store (in tabledir); Faust ignores a bare 'sqlite://'
    there, as yarl's URL('sqlite://') is falsy, and falls back to the app's store."""
    with_path = app.Table("explicit", partitions=2, default=None, store="sqlite:///")
    bare = app.Table("bare", partitions=2, default=None, store="sqlite://")

    store = with_path.data
    try:
        assert isinstance(store, SQLiteStore)
        assert store.partition_path(0) == Path(app.conf.tabledir) / "explicit-0.sqlite3"
        assert not isinstance(bare.data, SQLiteStore)
    finally:
        store.close()


async def test_large_changelog_batch_applies_completely(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """A 50,000-event batch lands in full with its offset (the rate is printed with -s)."""
    await rebalance(app, store, table, actives=[0])
    n = 50_000
    value = b"x" * 100
    batch = [changelog(table, 0, i, b"key-%08d" % i, value) for i in range(n)]

    started = time.perf_counter()
    store.apply_changelog_batch(batch, bytes, bytes)
    elapsed = time.perf_counter() - started

    print(f"\napply_changelog_batch: {n} events in {elapsed:.3f} s = {n / elapsed:,.0f}/s")
    assert store.persisted_offset(ctp(table, 0)) == n - 1
    assert len(store) == n


async def test_unacked_write_is_visible_but_not_in_the_file(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """Before its changelog ack a write is readable but absent after a crash (a fresh store)."""
    sent(app, table, store, 1, b"img", b"done")
    with processing(app, 1):
        assert store[b"img"] == b"done"
    assert store.pending_writes == 1
    restarted = make_store(table)  # what a worker killed now would find on disk
    with processing(app, 1):
        assert b"img" not in restarted
    assert restarted.persisted_offset(ctp(table, 1)) is None


async def test_each_ack_commits_its_own_write_with_its_offset(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """Acks commit writes in send order; a newer pending value still shadows the file's one."""
    futs = [
        sent(app, table, store, 0, b"k", b"first"),
        sent(app, table, store, 0, b"k", b"second"),
        sent(app, table, store, 0, b"gone", b"x"),
        sent(app, table, store, 0, b"gone", None),
    ]
    ack(futs[0], 10)
    on_disk = make_store(table)
    with processing(app, 0):
        assert on_disk[b"k"] == b"first"
        assert store[b"k"] == b"second"
    assert on_disk.persisted_offset(ctp(table, 0)) == 10
    on_disk.close()
    for fut, offset in zip(futs[1:], (11, 12, 13), strict=True):
        ack(fut, offset)
    assert store.pending_writes == 0
    final = make_store(table)
    with processing(app, 0):
        assert final[b"k"] == b"second"
        assert b"gone" not in final
    assert final.persisted_offset(ctp(table, 0)) == 13


async def test_iteration_merges_pending_writes_with_the_file(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """Items, keys and len reflect pending puts and deletes over the acked file contents."""
    await rebalance(app, store, table, actives=[2])
    written(app, table, store, 2, b"a", b"1", 0)
    written(app, table, store, 2, b"b", b"2", 1)
    sent(app, table, store, 2, b"b", b"changed")
    sent(app, table, store, 2, b"c", b"3")
    sent(app, table, store, 2, b"a", None)
    assert dict(store.items()) == {b"b": b"changed", b"c": b"3"}
    assert sorted(store.keys()) == [b"b", b"c"]
    assert len(store) == 2


def test_changelog_events_applied_counts_replayed_events(table: Any, store: SQLiteStore) -> None:
    """The store counts changelog events it applied (what /metrics reports as replayed)."""
    store.apply_changelog_batch(
        [changelog(table, 0, i, f"k{i}".encode(), b"v") for i in range(5)], bytes, bytes
    )
    store.apply_changelog_batch([changelog(table, 1, 0, b"x", None)], bytes, bytes)
    assert store.changelog_events_applied == 6


async def test_ttl_purges_only_rows_older_than_it(
    app: faust.App, table: Any, make_store: MakeStore
) -> None:
    """With ?ttl_s, purge_expired deletes rows written longer ago than the TTL, and no others."""
    store = make_store(table, "sqlite://?ttl_s=3600")
    now = time.time()
    store.apply_changelog_batch(
        [
            changelog(table, 0, 0, b"old", b"1"),
            changelog(table, 0, 1, b"new", b"2"),
        ],
        bytes,
        bytes,
    )
    # Rows from the changelog are as old as their messages: age "old" by rewriting its time.
    store._dbs[0].conn.execute("UPDATE kv SET written_at = ? WHERE key = ?", (now - 7200, b"old"))
    assert await store.purge_expired(now=now) == 1
    with processing(app, 0):
        assert b"old" not in store
        assert store[b"new"] == b"2"
    assert store.persisted_offset(ctp(table, 0)) == 1


async def test_changelog_rows_age_from_their_message_timestamp(
    app: faust.App, table: Any, make_store: MakeStore
) -> None:
    """Recovered rows keep the age of their changelog message, so recovery does not renew them."""
    store = make_store(table, "sqlite://?ttl_s=60")
    event = changelog(table, 0, 0, b"k", b"v")
    event.message.timestamp = time.time() - 120
    store.apply_changelog_batch([event], bytes, bytes)
    assert await store.purge_expired() == 1


async def test_store_without_ttl_never_purges(table: Any, store: SQLiteStore) -> None:
    """A table without ttl_s keeps every row (purge_expired is a no-op)."""
    store.apply_changelog_batch([changelog(table, 0, 0, b"k", b"v")], bytes, bytes)
    assert await store.purge_expired(now=time.time() + 10**9) == 0


@pytest.mark.parametrize("url", ["sqlite://?ttl_s=0", "sqlite://?ttl_s=soon"])
def test_bad_ttl_is_refused(app: faust.App, table: Any, url: str) -> None:
    """A ttl_s that is not a positive number of seconds is a configuration error."""
    with pytest.raises(ImproperlyConfigured, match="ttl_s must be a number of seconds > 0"):
        SQLiteStore(url, app, table)


async def test_a_failed_changelog_write_does_not_shift_later_acks(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """A write whose changelog send failed never reaches the file, and the acks after it commit
    their own writes with their own offsets."""
    failed = sent(app, table, store, 0, b"a", b"1")
    b = sent(app, table, store, 0, b"b", b"2")
    c = sent(app, table, store, 0, b"c", b"3")
    await fail(failed, KafkaTimeoutError())
    ack(b, 11)
    ack(c, 12)

    assert store.pending_writes == 0
    on_disk = make_store(table)
    with processing(app, 0):
        assert b"a" not in on_disk
        assert on_disk[b"b"] == b"2"
        assert on_disk[b"c"] == b"3"
        assert b"a" not in store  # the live table forgets it too: it is in no changelog
    assert on_disk.persisted_offset(ctp(table, 0)) == 12


async def test_a_changelog_write_never_acked_does_not_shift_later_acks(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """A write whose ack never comes stays pending (readable, not in the file) while later writes
    are committed with their own offsets."""
    sent(app, table, store, 0, b"k", b"first")
    later = sent(app, table, store, 0, b"other", b"x")
    ack(later, 7)

    on_disk = make_store(table)
    with processing(app, 0):
        assert b"k" not in on_disk
        assert on_disk[b"other"] == b"x"
        assert store[b"k"] == b"first"
    assert on_disk.persisted_offset(ctp(table, 0)) == 7
    assert store.pending_writes == 1


async def test_an_ack_for_a_key_written_again_keeps_the_newer_pending_value(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """A failed write between two writes of a key does not make a later ack commit the wrong
    value: each ack commits the value its message carried."""
    first = sent(app, table, store, 0, b"k", b"1")
    lost = sent(app, table, store, 0, b"k", b"2")
    third = sent(app, table, store, 0, b"k", b"3")
    ack(first, 4)
    await fail(lost, KafkaTimeoutError())
    on_disk = make_store(table)
    with processing(app, 0):
        assert on_disk[b"k"] == b"1"
        assert store[b"k"] == b"3"
    on_disk.close()
    ack(third, 5)
    final = make_store(table)
    with processing(app, 0):
        assert final[b"k"] == b"3"
    assert final.persisted_offset(ctp(table, 0)) == 5


async def test_a_revoked_partition_forgets_its_pending_writes(
    app: faust.App, table: Any, store: SQLiteStore
) -> None:
    """Revocation drops a partition's unacked writes: re-assigned, it shows what its changelog
    holds (here another worker's newer value), never the stale pending one."""
    assigned = await rebalance(app, store, table, actives=[0, 1])
    sent(app, table, store, 1, b"k", b"stale")
    sent(app, table, store, 1, b"gone", None)
    assigned = await rebalance(app, store, table, actives=[0], previous=assigned)
    assert store.pending_writes == 0

    await rebalance(app, store, table, actives=[0, 1], previous=assigned)
    # Recovery replays what the partition's other owner wrote meanwhile.
    store.apply_changelog_batch(
        [changelog(table, 1, 20, b"k", b"fresh"), changelog(table, 1, 21, b"gone", b"back")],
        bytes,
        bytes,
    )
    with processing(app, 1):
        assert store[b"k"] == b"fresh"
        assert store[b"gone"] == b"back"
    assert dict(store.items()) == {b"k": b"fresh", b"gone": b"back"}


async def test_a_late_ack_never_reopens_a_revoked_partition(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """An ack arriving after its partition was revoked neither reopens the file nor writes the
    value or the offset to it."""
    assigned = await rebalance(app, store, table, actives=[0, 1])
    late = sent(app, table, store, 1, b"k", b"v")
    await rebalance(app, store, table, actives=[0], previous=assigned)

    ack(late, 5)

    assert store.open_partitions == {0}
    on_disk = make_store(table)
    with processing(app, 1):
        assert b"k" not in on_disk
    assert on_disk.persisted_offset(ctp(table, 1)) is None


async def test_a_late_ack_after_reassignment_commits_nothing(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """An ack from before a revocation, arriving once the partition is assigned again, leaves
    the file as recovery made it."""
    assigned = await rebalance(app, store, table, actives=[0, 1])
    late = sent(app, table, store, 1, b"k", b"old")
    assigned = await rebalance(app, store, table, actives=[0], previous=assigned)
    await rebalance(app, store, table, actives=[0, 1], previous=assigned)
    store.apply_changelog_batch([changelog(table, 1, 3, b"k", b"recovered")], bytes, bytes)

    ack(late, 2)

    on_disk = make_store(table)
    with processing(app, 1):
        assert on_disk[b"k"] == b"recovered"
        assert store[b"k"] == b"recovered"
    assert on_disk.persisted_offset(ctp(table, 1)) == 3


def _waited_for_a_cpu_s() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux's schedstat)."""
    with open("/proc/thread-self/schedstat", encoding="ascii") as stats:
        return int(stats.read().split()[1]) / 1e9


async def _longest_stall(work: Awaitable[int]) -> tuple[int, float, float]:
    """Run ``work`` beside a task that yields to the loop again and again; return its result,
    the longest time (seconds) that task waited for its turn, i.e. the loop's longest stall,
    and the longest stall less the time the loop's thread spent waiting for a CPU.

    The second is the loop's own stall (work or blocking I/O on the loop), which a busy
    machine does not lengthen: on 2 cores beside a CPU hog the wall-clock stall of a few ms
    of work grew to 50 ms, nearly all of it spent in the run queue.
    """
    longest = own = 0.0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal longest, own
        last, last_waited = time.perf_counter(), _waited_for_a_cpu_s()
        while not done.is_set():
            await asyncio.sleep(0)
            now, waited = time.perf_counter(), _waited_for_a_cpu_s()
            longest = max(longest, now - last)
            own = max(own, (now - last) - (waited - last_waited))
            last, last_waited = now, waited

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    try:
        result = await work
    finally:
        done.set()
        await watcher
    return result, longest, own


async def test_purging_six_hours_of_ids_never_stalls_the_loop_20_ms(
    table: Any, make_store: MakeStore
) -> None:
    """With 2 million ids written over 6 h in one partition, the minute-by-minute purge keeps
    every event-loop stall under 20 ms, not counting time spent waiting for a CPU on a busy
    machine (both figures with -s)."""
    ttl = 6 * 3600
    n = 2_000_000
    now = time.time()
    store = make_store(table, f"sqlite://?ttl_s={ttl}")
    store.apply_changelog_batch([changelog(table, 0, 0, b"first", b"1")], bytes, bytes)
    conn = store._dbs[0].conn
    conn.execute("DROP INDEX IF EXISTS kv_written_at")  # the bulk insert is faster without it
    conn.execute("BEGIN")
    conn.execute(
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < ?)"
        " INSERT INTO kv SELECT CAST(printf('img-%012d', i) AS BLOB), CAST('1764000000000' AS"
        " BLOB), ? - ? * ((random() & 1048575) / 1048576.0) FROM s",
        (n - 1, now, ttl + 60),  # ids written at random times over 6 h and a minute
    )
    conn.execute("COMMIT")
    store.close()
    store = make_store(table, f"sqlite://?ttl_s={ttl}")  # reopened: the store's own schema
    await rebalance(table.app, store, table, actives=[0])
    await store.checkpoint()

    removed, stall, own = await _longest_stall(store.purge_expired(now=now))
    print(
        f"\npurge of {removed} of {n} rows: longest loop stall {stall * 1000:.1f} ms,"
        f" {own * 1000:.1f} ms of it not waiting for a CPU"
    )
    assert 4_000 < removed < 7_500  # about a minute of the 6 h
    assert own < 0.020


async def test_acks_of_one_loop_turn_are_one_transaction_per_partition(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """Writes acked within one turn of the event loop are committed at its end, together: one
    transaction per partition (not one per write), with the partition's highest offset; until
    then they are readable but not in the file."""
    futs = {
        p: [
            sent(
                app,
                table,
                store,
                p,
                f"k{i}".encode(),
                b"v",
            )
            for i in range(3)
        ]
        for p in (0, 1)
    }
    begins: dict[int, int] = {0: 0, 1: 0}
    for partition in (0, 1):
        conn = store._dbs[partition].conn
        conn.set_trace_callback(
            lambda sql, p=partition: begins.__setitem__(p, begins[p] + sql.startswith("BEGIN"))
        )
    for partition, partition_futs in futs.items():
        for offset, fut in enumerate(partition_futs):
            tp = TP(fut.message.channel.get_topic_name(), partition)
            fut.set_result(RecordMetadata(tp.topic, partition, tp, offset))
            store.changelog_acked(fut)  # what SQLiteTable._on_changelog_sent does
    assert store.pending_writes == 6
    assert begins == {0: 0, 1: 0}
    await asyncio.sleep(0)
    assert begins == {0: 1, 1: 1}
    assert store.pending_writes == 0
    on_disk = make_store(table)
    for partition in (0, 1):
        with processing(app, partition):
            assert on_disk[b"k2"] == b"v"
        assert on_disk.persisted_offset(ctp(table, partition)) == 2


async def test_older_write_of_a_key_acked_after_a_newer_one_keeps_the_newer_value(
    app: faust.App, table: Any, store: SQLiteStore, make_store: MakeStore
) -> None:
    """Acks may arrive out of send order: the newer value stays in the file when the older
    write's ack comes later (in a later turn or the same one), and both offsets count."""
    for same_turn in (False, True):
        key = b"same" if same_turn else b"later"
        older = changelog_message(table, store, 0, key, b"old")
        with processing(app, 0):
            store[key] = b"old"
        newer = changelog_message(table, store, 0, key, b"new")
        with processing(app, 0):
            store[key] = b"new"
        base = 10 if same_turn else 0
        for fut, offset in ((newer, base + 2), (older, base + 1)):
            tp = TP(fut.message.channel.get_topic_name(), 0)
            fut.set_result(RecordMetadata(tp.topic, 0, tp, offset))
            store.changelog_acked(fut)
            if not same_turn:
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert store.pending_writes == 0
        on_disk = make_store(table)
        with processing(app, 0):
            assert on_disk[key] == b"new"
        assert on_disk.persisted_offset(ctp(table, 0)) == base + 2
        on_disk.close()
