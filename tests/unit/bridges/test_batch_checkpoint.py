"""The batch checkpoint: done files by (size, mtime) and content, per root, one process, looked
up without loading it, used off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from bridges.checkpoint import LOOKUP_CHUNK, BatchCheckpoint, CheckpointThread, checkpoint_path
from bridges.errors import CheckpointLocked
from flowforge.core.envelope import content_digest, content_image_id

ID_A = content_image_id("s", b"a")


def test_a_recorded_file_is_unchanged_until_its_signature_changes(tmp_path: Path) -> None:
    """A recorded file with the same size and mtime is done; a new signature is not; its
    content is recognised by its image id (the content hash)."""
    checkpoint = BatchCheckpoint(tmp_path / "c.sqlite")
    assert not checkpoint.unchanged("a.jpg", (10, 5))
    checkpoint.record("a.jpg", (10, 5), content_digest("s", b"a"), ID_A, "published")
    assert checkpoint.unchanged("a.jpg", (10, 5))
    assert not checkpoint.unchanged("a.jpg", (10, 6))
    assert checkpoint.same_content("a.jpg", ID_A)
    assert not checkpoint.same_content("a.jpg", content_image_id("s", b"b"))
    checkpoint.close()


def test_records_survive_a_reopen_and_a_touch_moves_only_the_signature(tmp_path: Path) -> None:
    """What was recorded is there after reopening; touch_if_same records the new signature of a
    file with the same content, and changes nothing for different content."""
    path = tmp_path / "c.sqlite"
    checkpoint = BatchCheckpoint(path)
    checkpoint.record("a.jpg", (10, 5), content_digest("s", b"a"), ID_A, "published")
    id_b = content_image_id("s", b"b")
    checkpoint.record("b.jpg", (3, 1), content_digest("s", b"b"), id_b, "rejected:not_an_image")
    checkpoint.close()
    checkpoint = BatchCheckpoint(path)
    assert len(checkpoint) == 2
    assert checkpoint.unchanged("b.jpg", (3, 1))
    assert checkpoint.touch_if_same("a.jpg", (10, 9), ID_A)
    assert not checkpoint.touch_if_same("b.jpg", (4, 2), ID_A)
    assert not checkpoint.touch_if_same("c.jpg", (1, 1), ID_A)
    checkpoint.close()
    checkpoint = BatchCheckpoint(path)
    assert checkpoint.unchanged("a.jpg", (10, 9))
    assert checkpoint.unchanged("b.jpg", (3, 1))
    assert checkpoint.same_content("a.jpg", ID_A)
    assert len(checkpoint) == 2
    checkpoint.close()


def test_rows_of_an_older_checkpoint_keep_their_content_check(tmp_path: Path) -> None:
    """A row written before the digest covered the source id (its sha256 column of the content
    alone) is still recognised by its image id: a touched file stays skipped."""
    path = tmp_path / "c.sqlite"
    BatchCheckpoint(path).close()
    with sqlite3.connect(path) as db:
        old = ("a.jpg", 10, 5, hashlib.sha256(b"a").hexdigest(), ID_A, "published", 0)
        db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", old)
    checkpoint = BatchCheckpoint(path)
    assert checkpoint.touch_if_same("a.jpg", (10, 7), ID_A)
    assert checkpoint.unchanged("a.jpg", (10, 7))
    checkpoint.close()


def test_many_paths_are_looked_up_in_chunks(tmp_path: Path) -> None:
    """unchanged_among answers for more paths than one query takes: exactly those recorded
    with the same signature."""
    checkpoint = BatchCheckpoint(tmp_path / "c.sqlite")
    count = LOOKUP_CHUNK * 3 + 7
    for i in range(0, count, 2):  # every other path recorded
        checkpoint.record(f"{i}.jpg", (i, i), "d", "id", "published")
    asked = [(f"{i}.jpg", (i, i if i % 3 else i + 1)) for i in range(count)]
    expected = {f"{i}.jpg" for i in range(count) if i % 2 == 0 and i % 3}
    assert checkpoint.unchanged_among(asked) == expected
    assert checkpoint.unchanged_among([]) == set()
    checkpoint.close()


async def test_the_checkpoint_thread_opens_uses_and_closes_it_off_the_loop(
    tmp_path: Path,
) -> None:
    """CheckpointThread opens, locks, answers and records on a thread of its own (not the event
    loop's), and releases the lock on close."""
    path = tmp_path / "c.sqlite"
    checkpoint = await CheckpointThread.open(path)
    with pytest.raises(CheckpointLocked):
        BatchCheckpoint(path)
    await checkpoint.record("a.jpg", (1, 2), content_digest("s", b"a"), ID_A, "published")
    assert await checkpoint.unchanged_among([("a.jpg", (1, 2)), ("b.jpg", (1, 2))]) == {"a.jpg"}
    assert await checkpoint.touch_if_same("a.jpg", (1, 3), ID_A)
    with pytest.raises(sqlite3.ProgrammingError, match="thread"):  # bound to its own thread
        checkpoint._checkpoint.unchanged("a.jpg", (1, 3))
    await checkpoint.close()
    reopened = BatchCheckpoint(path)
    assert reopened.unchanged("a.jpg", (1, 3))
    reopened.close()


def test_a_second_process_on_the_same_checkpoint_is_refused(tmp_path: Path) -> None:
    """Opening a checkpoint that is open (locked) raises CheckpointLocked naming the holder."""
    path = tmp_path / "c.sqlite"
    first = BatchCheckpoint(path)
    with pytest.raises(CheckpointLocked, match="pid"):
        BatchCheckpoint(path)
    first.close()
    BatchCheckpoint(path).close()


def test_checkpoint_paths_differ_by_root_source_and_topic(tmp_path: Path) -> None:
    """Each (root, source id, topic) has its own checkpoint under home/batch, named after
    the root."""
    base = checkpoint_path(tmp_path, "/data/photos", "photos", "images.raw")
    assert base.parent == tmp_path / "batch"
    assert base.name.startswith("photos-")
    assert base == checkpoint_path(tmp_path, "/data/photos", "photos", "images.raw")
    others = {
        checkpoint_path(tmp_path, "/other/photos", "photos", "images.raw"),
        checkpoint_path(tmp_path, "/data/photos", "cam-1", "images.raw"),
        checkpoint_path(tmp_path, "/data/photos", "photos", "t.raw"),
    }
    assert base not in others
    assert len(others) == 3


def test_opening_a_large_checkpoint_does_not_load_it(tmp_path: Path) -> None:
    """A checkpoint of 100,000 files opens and answers a lookup without holding its rows in
    memory: opening it allocates less than 1 MiB."""
    path = tmp_path / "c.sqlite"
    BatchCheckpoint(path).close()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((f"f-{i:06d}.jpg", i, i, f"{i:064x}", f"{i:032x}", "published", 0)
             for i in range(100_000)),
        )  # fmt: skip
    tracemalloc.start()
    try:
        checkpoint = BatchCheckpoint(path)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert held < 1024 * 1024, f"opening the checkpoint holds {held} bytes"
        assert checkpoint.unchanged("f-054321.jpg", (54321, 54321))
        assert not checkpoint.unchanged("f-054321.jpg", (54321, 1))
    finally:
        checkpoint.close()


async def test_records_handed_over_together_are_committed_in_few_transactions(
    tmp_path: Path,
) -> None:
    """Records handed to the checkpoint thread while it writes are committed together (one
    transaction per group, not per file), and each caller returns once its row is durable."""
    checkpoint = await CheckpointThread.open(tmp_path / "c.sqlite")
    groups: list[int] = []
    record_many = checkpoint._checkpoint.record_many

    def counted(files: list[Any]) -> None:
        groups.append(len(files))
        record_many(files)

    checkpoint._checkpoint.record_many = counted  # type: ignore[method-assign]
    names = [f"{i}.jpg" for i in range(200)]
    await asyncio.gather(
        *(checkpoint.record(n, (1, 2), content_digest("s", n.encode()), ID_A, "published")
          for n in names)
    )  # fmt: skip
    await checkpoint.close()
    assert sum(groups) == 200
    assert len(groups) <= 3  # the first alone, then the rest handed over while it was written
    reopened = BatchCheckpoint(tmp_path / "c.sqlite")
    assert reopened.unchanged_among([(n, (1, 2)) for n in names]) == set(names)
    reopened.close()


async def test_a_failed_group_write_fails_each_of_its_callers(tmp_path: Path) -> None:
    """When the checkpoint cannot write a group (a full disk), every caller whose record was in
    it gets the error, and nothing of the group is recorded."""
    checkpoint = await CheckpointThread.open(tmp_path / "c.sqlite")

    def full(files: list[Any]) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    checkpoint._checkpoint.record_many = full  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(checkpoint.record(f"{i}.jpg", (1, 2), "d", ID_A, "published") for i in range(5)),
        return_exceptions=True,
    )
    await checkpoint.close()
    assert [type(r) for r in results] == [sqlite3.OperationalError] * 5
    reopened = BatchCheckpoint(tmp_path / "c.sqlite")
    assert len(reopened) == 0
    reopened.close()
