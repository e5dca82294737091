"""`flowforge stats`' text table: one aligned line per source, every figure in its column."""

from __future__ import annotations

from flowforge.core.stats import COLUMNS, format_table


def test_the_table_shows_duplicates_per_source() -> None:
    """A source's duplicates are in the `dups` column, beside its image counts; a source with
    only re-sends in the window shows 0 images and dashes for its averages."""
    rows = [
        dict(zip(COLUMNS, values, strict=True))
        for values in (
            ("cam-1", 10, 8, 1, 0, 1, 3, 92.5, "2026-12-02T10:00:00", 40.0, 120.0),
            ("cam-2", 0, 0, 0, 0, 0, 1, None, "2026-12-02T10:05:00", None, None),
        )
    ]
    header, first, second = (line.split() for line in format_table(rows).splitlines())
    assert header[:7] == ["source", "images", "processed", "dark", "low_q", "rejected", "dups"]
    assert first[:8] == ["cam-1", "10", "8", "1", "0", "1", "3", "92.5"]
    assert second[:8] == ["cam-2", "0", "0", "0", "0", "0", "1", "-"]
