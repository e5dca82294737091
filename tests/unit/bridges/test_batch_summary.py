"""The batch bridge's summary line and its progress output without a terminal."""

from __future__ import annotations

import io
import logging

import pytest

from bridges import progress
from bridges.batch import Tally
from bridges.progress import Progress


def test_summary_names_counts_and_reasons_with_the_dead_lettered_marked() -> None:
    """The summary gives published, skipped as done, rejected by reason ([DLQ] marked)."""
    tally = Tally(published=3, skipped=2, published_bytes=3 * 1024 * 1024)
    tally.rejected.update({"not_an_image": 1, "outside_root": 2})
    tally.dead_lettered.add("not_an_image")
    assert tally.line(2.0) == (
        "published 3, skipped 2 (already done), rejected 3 "
        "(not_an_image 1 [DLQ], outside_root 2); 3.0 MiB in 2.0s (1.5 files/s)"
    )


def test_progress_without_a_terminal_is_periodic_log_lines(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off a terminal there is no bar: only info lines with count and rate, at most one per
    interval, and nothing written to the stream."""
    stream = io.StringIO()
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="bridges.progress")
    bar = Progress(4, stream)
    bar.advance()
    bar.advance(3)
    bar.close()
    assert stream.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[-1].startswith("progress: 4/4 files, ")
