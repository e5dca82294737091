"""The sink's SQLite spool: order, durability across reopen, size bound, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import SpoolUnusable
from streams.sink.spool import Spool


def _rows(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"image_id": f"img-{i}", "brightness": 1.5 * i} for i in range(start, start + n)]


def test_batches_come_back_in_order_with_their_tokens(tmp_path: Path) -> None:
    """Batches are returned oldest first, whole, with the token each was appended with."""
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20)
    spool.append("t1", _rows(3), tried=False)
    spool.append("t2", _rows(2, start=3), tried=False)
    [first] = spool.peek(max_rows=1)
    assert (first.token, first.rows) == ("t1", _rows(3))
    both = spool.peek(max_rows=5)
    assert [b.token for b in both] == ["t1", "t2"]
    assert (spool.batches, spool.rows) == (2, 5)


def test_peek_returns_at_least_one_batch_even_if_larger_than_asked(tmp_path: Path) -> None:
    """A batch bigger than max_rows is still returned alone, so draining always progresses."""
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20)
    spool.append("big", _rows(10), tried=False)
    spool.append("next", _rows(1, start=10), tried=False)
    assert [b.token for b in spool.peek(max_rows=4)] == ["big"]


def test_remove_drops_batches_through_a_sequence_number(tmp_path: Path) -> None:
    """remove(seq) deletes that batch and every older one, and the counters follow."""
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20)
    for i in range(3):
        spool.append(f"t{i}", _rows(2, start=2 * i), tried=False)
    second = spool.peek(max_rows=4)[-1]
    spool.remove(second.seq)
    assert [b.token for b in spool.peek(max_rows=100)] == ["t2"]
    assert (spool.batches, spool.rows) == (1, 2)
    spool.remove(spool.peek()[0].seq)
    assert (spool.batches, spool.rows, spool.bytes) == (0, 0, 0)
    assert spool.oldest_age_s() == 0.0


def test_spooled_batches_survive_a_reopen(tmp_path: Path) -> None:
    """A spool opened again on the same file has every batch not removed, and its counters."""
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, max_bytes=1 << 20)
    spool.append("t1", _rows(4), tried=False)
    size = spool.bytes
    spool.close()
    again = Spool(path, max_bytes=1 << 20)
    assert (again.batches, again.rows, again.bytes) == (1, 4, size)
    assert again.peek()[0].rows == _rows(4)
    assert again.oldest_age_s() >= 0.0


def test_full_at_the_size_bound(tmp_path: Path) -> None:
    """The spool reports full once its payload bytes reach the bound, and not before."""
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=400)
    spool.append("t1", _rows(3), tried=False)
    assert not spool.full
    while not spool.full:
        spool.append("more", _rows(3), tried=False)
    assert spool.bytes >= 400


def test_a_corrupt_spool_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """A file that is not SQLite gives SpoolUnusable naming the file and the way out."""
    path = tmp_path / "spool.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SpoolUnusable, match="move it aside") as info:
        Spool(path, max_bytes=1 << 20)
    assert str(path) in str(info.value)
