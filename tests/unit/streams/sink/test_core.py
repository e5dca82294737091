"""MetadataSink's decisions: insert, spool when ClickHouse fails, keep order, isolate refusals.

The writer here is a stand-in for ClickHouse that records inserts and raises the sink's own
error types on demand; the real engine is exercised in tests/integration/test_sink.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from flowforge.core.errors import ClickHouseUnavailable
from streams.errors import InsertRejected
from streams.sink.core import UNKNOWN_ERROR_ATTEMPTS, MetadataSink
from streams.sink.spool import Spool


class ScriptedWriter:
    """Inserts into a list; fails while ``down``; refuses rows whose id is in ``refuse``; raises
    an error no one classified (as an engine bug would) for rows whose id is in ``explode``."""

    def __init__(self) -> None:
        self.down = False
        self.refuse: set[str] = set()
        self.explode: set[str] = set()
        self.inserts: list[tuple[list[str], str | None]] = []

    def write(self, records: Sequence[Mapping[str, Any]], token: str | None = None) -> int:
        if self.down:
            raise ClickHouseUnavailable("connection refused")
        ids = [str(r["image_id"]) for r in records]
        if self.refuse & set(ids):
            raise InsertRejected("Code: 27. Cannot parse input")
        if self.explode & set(ids):
            raise RuntimeError("std::exception: basic_string")
        self.inserts.append((ids, token))
        return len(ids)


def _rows(*ids: str) -> list[dict[str, Any]]:
    return [{"image_id": i, "kafka_partition": 0, "kafka_offset": n} for n, i in enumerate(ids)]


def _sink(tmp_path: Path) -> tuple[MetadataSink, ScriptedWriter]:
    writer = ScriptedWriter()
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20)
    return MetadataSink(writer, spool, drain_rows=100), writer  # type: ignore[arg-type]


def test_batch_is_inserted_directly_when_clickhouse_answers(tmp_path: Path) -> None:
    """With ClickHouse up and nothing spooled, a batch is one insert and nothing is spooled."""
    sink, writer = _sink(tmp_path)
    stored = sink.store(_rows("a", "b"))
    assert (stored.inserted, stored.spooled) == (2, 0)
    assert [ids for ids, _ in writer.inserts] == [["a", "b"]]


def test_outage_spools_and_later_batches_queue_behind_it(tmp_path: Path) -> None:
    """While ClickHouse fails the batch is spooled; once anything is spooled, new batches are
    appended behind it even if ClickHouse answers, so rows arrive in order."""
    sink, writer = _sink(tmp_path)
    writer.down = True
    assert sink.store(_rows("a")).spooled == 1
    assert sink.unavailable_since is not None
    writer.down = False
    assert sink.store(_rows("b")).spooled == 1
    assert writer.inserts == []
    for _ in range(2):  # "a" was tried directly, so it goes alone; then "b"
        drained = sink.drain_one()
        assert drained is not None
        assert drained.inserted == 1
        sink.done(drained)
    assert [ids for ids, _ in writer.inserts] == [["a"], ["b"]]
    assert sink.spool.batches == 0
    assert sink.unavailable_since is None
    assert sink.drain_one() is None


def test_drain_during_an_outage_raises_and_keeps_the_batches(tmp_path: Path) -> None:
    """A drain step while ClickHouse fails raises ClickHouseUnavailable; nothing is lost."""
    sink, writer = _sink(tmp_path)
    writer.down = True
    sink.store(_rows("a", "b"))
    with pytest.raises(ClickHouseUnavailable):
        sink.drain_one()
    assert sink.spool.rows == 2


def test_one_spooled_batch_is_retried_with_its_original_token(tmp_path: Path) -> None:
    """A single spooled batch drains with the token of its first attempt, so ClickHouse can
    drop it if that attempt was stored after all."""
    sink, writer = _sink(tmp_path)
    writer.down = True
    sink.store(_rows("a", "b"))
    token = sink.spool.peek()[0].token
    writer.down = False
    drained = sink.drain_one()
    assert drained is not None
    assert writer.inserts == [(["a", "b"], token)]


def test_refused_rows_are_isolated_and_the_rest_inserted(tmp_path: Path) -> None:
    """When ClickHouse refuses a batch, the rows are tried one by one: the refused one is
    reported (for the dead-letter topic) and every other row is inserted."""
    sink, writer = _sink(tmp_path)
    writer.refuse = {"bad"}
    stored = sink.store(_rows("a", "bad", "c"))
    assert stored.inserted == 2
    assert [index for index, _ in stored.rejected] == [1]
    assert sorted(i for ids, _ in writer.inserts for i in ids) == ["a", "c"]


def test_a_tried_batch_is_retried_alone_while_newer_ones_wait(tmp_path: Path) -> None:
    """The batch whose direct insert failed (it may have reached ClickHouse) is drained alone
    with its own token, even when batches spooled behind it could be merged with it."""
    sink, writer = _sink(tmp_path)
    writer.down = True
    sink.store(_rows("a", "b"))
    first_token = sink.spool.peek()[0].token
    writer.down = False
    sink.store(_rows("c"))
    sink.store(_rows("d"))
    first = sink.drain_one()
    assert first is not None
    sink.done(first)
    assert writer.inserts[0] == (["a", "b"], first_token)
    rest = sink.drain_one()
    assert rest is not None
    assert [ids for ids, _ in writer.inserts[1:]] == [["c", "d"]]


def test_a_failed_merged_drain_is_retried_with_the_same_rows_and_token(tmp_path: Path) -> None:
    """A merged drain insert that failed is retried with exactly its rows and token, even after
    more batches were spooled and the spool was reopened (a restart)."""
    writer = ScriptedWriter()
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, max_bytes=1 << 20)
    spool.append("t1", _rows("a"), tried=False)
    spool.append("t2", _rows("b"), tried=False)
    sink = MetadataSink(writer, spool, drain_rows=100)  # type: ignore[arg-type]
    writer.down = True
    with pytest.raises(ClickHouseUnavailable):
        sink.drain_one()
    spool.append("t3", _rows("c"), tried=False)
    spool.close()
    again = MetadataSink(writer, Spool(path, max_bytes=1 << 20), drain_rows=100)  # type: ignore[arg-type]
    writer.down = False
    drained = again.drain_one()
    assert drained is not None
    again.done(drained)
    [(ids, token)] = writer.inserts
    assert ids == ["a", "b"]
    assert token == hashlib.sha256(b"t1t2").hexdigest()
    assert [b.token for b in again.spool.peek(100)] == ["t3"]


def test_refused_rows_are_found_by_bisection(tmp_path: Path) -> None:
    """One bad row in a batch of 64 costs a few inserts (bisection), not one insert per row."""
    sink, writer = _sink(tmp_path)
    ids = [f"r{i}" for i in range(64)]
    writer.refuse = {"r37"}
    stored = sink.store(_rows(*ids))
    assert [index for index, _ in stored.rejected] == [37]
    assert stored.inserted == 63
    assert len(writer.inserts) <= 2 * 6  # two halves per level, six levels
    assert sorted(i for batch, _ in writer.inserts for i in batch) == sorted(set(ids) - {"r37"})


def test_an_unclassified_error_is_retried_then_the_batch_is_bisected(tmp_path: Path) -> None:
    """An error the writer cannot classify fails the batch's first attempts (the agent retries
    them, not ready); then the batch counts as refused: the row causing it is isolated for the
    dead-letter topic and every other row is inserted."""
    sink, writer = _sink(tmp_path)
    writer.explode = {"bad"}
    rows = _rows("a", "bad", "c", "d")
    for _ in range(UNKNOWN_ERROR_ATTEMPTS - 1):
        with pytest.raises(RuntimeError):
            sink.store(rows)
    stored = sink.store(rows)
    assert stored.inserted == 3
    assert [index for index, _ in stored.rejected] == [1]
    assert "unexpected RuntimeError" in stored.rejected[0][1]
    assert sorted(i for ids, _ in writer.inserts for i in ids) == ["a", "c", "d"]


def test_an_unclassified_error_while_draining_ends_the_same_way(tmp_path: Path) -> None:
    """A spooled batch whose drain keeps failing with an unclassified error is bisected on its
    last attempt: the good rows reach ClickHouse and the spool empties once done."""
    sink, writer = _sink(tmp_path)
    writer.down = True
    sink.store(_rows("a", "bad"))
    writer.down = False
    writer.explode = {"bad"}
    for _ in range(UNKNOWN_ERROR_ATTEMPTS - 1):
        with pytest.raises(RuntimeError):
            sink.drain_one()
    drained = sink.drain_one()
    assert drained is not None
    assert (drained.inserted, [i for i, _ in drained.rejected]) == (1, [1])
    sink.done(drained)
    assert sink.spool.batches == 0
