"""A one-shot batch run with Kafka down ends with one line instead of waiting without end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.unique import free_port

REPO = Path(__file__).resolve().parents[3]


def test_a_one_shot_batch_run_with_kafka_down_exits_1_in_one_line(tmp_path: Path) -> None:
    """`bridge batch DIR` with nothing listening at the bootstrap address exits 1 within a
    minute with one line naming Kafka's address, saying nothing was published and what to do;
    no library log lines."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes((REPO / "data" / "sample.jpg").read_bytes())
    port = free_port()
    env = {
        **os.environ,
        "FLOWFORGE_HOME": str(tmp_path / "home"),
        "FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", "bridge", "batch", str(photos)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"Kafka at 127.0.0.1:{port} does not answer" in lines[0]
    assert "nothing published" in lines[0]
    assert "flowforge stack up" in lines[0]
