"""Operator commands on the real broker say when what they were asked about does not exist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flowforge.stack import Stack
from tests.support.stack import stack_env


def test_topics_naming_a_missing_topic_exits_1_and_names_it(services: Stack, topic: str) -> None:
    """`flowforge topics EXISTING images.bogus-...` prints what it found, then exits 1 with one
    line naming the missing topic and the broker."""
    bogus = f"{topic}.bogus"
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", "topics", topic, bogus],
        env={**os.environ, **stack_env()}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert topic in result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"no topic {bogus} on 127.0.0.1:19092" in result.stderr


def test_a_batch_run_over_a_directory_without_matching_files_says_so(
    services: Stack, topic: str, tmp_path: Path
) -> None:
    """`bridge batch DIR` over a directory with no file matching the patterns exits 0 with its
    summary line saying that no file matches, naming the patterns."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image pattern")
    env = {**os.environ, **stack_env(), "FLOWFORGE_HOME": str(tmp_path / "home")}
    env["FLOWFORGE_KAFKA_TOPIC_RAW"] = topic
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", "bridge", "batch", str(empty), "--pattern", "*.jpg"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"batch {empty}: published 0, skipped 0 (already done), rejected 0" in result.stdout
    assert "no file matches *.jpg at any depth" in result.stdout
