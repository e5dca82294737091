"""Retention and latency count from when FlowForge received an image, not from the image's own
time: a backfill of old photos stays, a clock in the future does not skew the figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.support.images import jpeg, scene
from tests.support.pipeline import Pipeline

# File modification times: years back, far back, in the future, and now.
DATES = {
    "2012.jpg": datetime(2012, 6, 1, 12, 0, tzinfo=UTC),
    "2020.jpg": datetime(2020, 1, 15, 8, 30, tzinfo=UTC),
    "2031.jpg": datetime(2031, 1, 1, 0, 0, tzinfo=UTC),
    "now.jpg": None,
}


def _flowforge(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowforge", *args],
        env=pipeline.env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_old_and_future_photos_are_kept_and_timed_from_their_ingestion(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """Files dated 2012, 2020, 2031 and now, through the batch bridge, are each exactly one row
    FINAL that stays after OPTIMIZE ... FINAL with the 90-day TTL applied; captured_at keeps each
    file's time, ingested_at is when the bridge read it, and `flowforge stats` shows a last-seen
    time and a latency measured from ingestion (recent, non-negative, under a minute)."""
    root = tmp_path / "archive"
    root.mkdir()
    for i, (name, when) in enumerate(DATES.items()):
        path = root / name
        path.write_bytes(jpeg(scene(160, 120, seed=40 + i)))
        if when is not None:
            os.utime(path, (when.timestamp(), when.timestamp()))
    started = datetime.now(tz=UTC)
    run = _flowforge(pipeline, "bridge", "batch", str(root))
    assert run.returncode == 0, run.stderr[-2000:]
    port = pipeline.start_worker(agents="process,sink")
    pipeline.wait_until(lambda: pipeline.rows() == 4, "4 rows")
    pipeline.kill_worker(port, signal.SIGTERM)

    pipeline.query_engine("OPTIMIZE TABLE images_metadata FINAL")
    rows = pipeline.query_engine(
        "SELECT toUnixTimestamp64Milli(captured_at), toUnixTimestamp64Milli(ingested_at) "
        "FROM images_metadata FINAL ORDER BY captured_at"
    )
    assert len(rows) == 4, rows
    captured = [int(r[0]) for r in rows]
    dated = sorted(int(when.timestamp() * 1000) for when in DATES.values() if when is not None)
    assert [c for c in captured if c in dated] == dated, captured
    for _, ingested_ms in rows:
        assert started.timestamp() * 1000 - 1000 <= int(ingested_ms) <= time.time() * 1000

    stats = _flowforge(pipeline, "stats", "--json")
    assert stats.returncode == 0, stats.stderr[-2000:]
    [source] = json.loads(stats.stdout)
    assert source["images"] == 4
    last_seen = datetime.fromisoformat(source["last_seen"]).replace(tzinfo=UTC)
    assert started.replace(microsecond=0) <= last_seen <= datetime.now(tz=UTC)
    assert 0 <= source["latency_p50_ms"] <= source["latency_p99_ms"] < 60_000
