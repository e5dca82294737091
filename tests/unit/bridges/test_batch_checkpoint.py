"""The batch checkpoint: done files by (size, mtime) and content, per root, one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridges.checkpoint import BatchCheckpoint, checkpoint_path, content_hash
from bridges.errors import CheckpointLocked


def test_a_recorded_file_is_unchanged_until_its_signature_changes(tmp_path: Path) -> None:
    """A recorded file with the same size and mtime is done; a new signature is not."""
    checkpoint = BatchCheckpoint(tmp_path / "c.sqlite")
    assert not checkpoint.unchanged("a.jpg", (10, 5))
    checkpoint.record("a.jpg", (10, 5), content_hash(b"a"), "id", "published")
    assert checkpoint.unchanged("a.jpg", (10, 5))
    assert not checkpoint.unchanged("a.jpg", (10, 6))
    assert checkpoint.same_content("a.jpg", content_hash(b"a"))
    assert not checkpoint.same_content("a.jpg", content_hash(b"b"))
    checkpoint.close()


def test_records_survive_a_reopen_and_touch_updates_the_signature(tmp_path: Path) -> None:
    """What was recorded is there after reopening; touch keeps the hash, moves the signature."""
    path = tmp_path / "c.sqlite"
    checkpoint = BatchCheckpoint(path)
    checkpoint.record("a.jpg", (10, 5), content_hash(b"a"), "id", "published")
    checkpoint.record("b.jpg", (3, 1), content_hash(b"b"), "id2", "rejected:not_an_image")
    checkpoint.close()
    checkpoint = BatchCheckpoint(path)
    assert len(checkpoint) == 2
    assert checkpoint.unchanged("b.jpg", (3, 1))
    checkpoint.touch("a.jpg", (10, 9))
    checkpoint.close()
    checkpoint = BatchCheckpoint(path)
    assert checkpoint.unchanged("a.jpg", (10, 9))
    assert checkpoint.same_content("a.jpg", content_hash(b"a"))
    checkpoint.close()


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
