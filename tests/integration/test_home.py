"""The default home: every `flowforge` command finds the same stack from any directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.images import jpeg, scene
from tests.support.stack import private_stack_env
from tests.support.unique import free_port

FLOWFORGE = [sys.executable, "-m", "flowforge"]


@pytest.fixture
def default_home_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A throw-away stack's environment on free ports with no FLOWFORGE_HOME: its home is the
    default, $XDG_STATE_HOME/flowforge; whatever the test started is stopped afterwards."""
    env = dict(os.environ)
    env.update(private_stack_env(tmp_path / "unused"))  # free ports, the shared jar cache
    del env["FLOWFORGE_HOME"]
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    for name in ("FLOWFORGE_WORKER_WEB_PORT", "FLOWFORGE_BRIDGE_MQTT_WEB_PORT"):
        env[name] = str(free_port())
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    yield env
    # Stop from the directory that started it (so a home that followed the current directory,
    # as it once did, is stopped too).
    subprocess.run(
        [*FLOWFORGE, "stack", "down"], env=env, cwd=tmp_path / "here", capture_output=True
    )


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLOWFORGE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_the_whole_cli_finds_the_stack_from_another_directory(
    default_home_env: dict[str, str], tmp_path: Path
) -> None:
    """With no FLOWFORGE_HOME, a stack started in one directory is the one `stack status`,
    `validate`, `bridge batch` (its checkpoint), `stats`, `topics` and `stack down` use when run
    from another directory; its files are under $XDG_STATE_HOME/flowforge."""
    env = default_home_env
    here, there = tmp_path / "here", tmp_path / "there"
    home = tmp_path / "state" / "flowforge"

    up = run(env, here, "stack", "up", "--pipeline")
    assert up.returncode == 0, up.stdout + up.stderr
    assert (home / "run" / "kafka.pid").is_file()
    assert not (here / ".flowforge").exists()

    status = run(env, there, "stack", "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    states = {s["name"]: s for s in json.loads(status.stdout)}
    for name in ("kafka", "mosquitto", "worker", "bridge-mqtt"):
        assert states[name]["state"] == "running", states[name]
    pids = [s["pid"] for s in states.values() if s["pid"]]

    validate = run(env, there, "validate")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "schema" in validate.stdout

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        (photos / f"p{i}.jpg").write_bytes(jpeg(scene(640, 360, seed=i)))
    first = run(env, here, "bridge", "batch", str(photos), "--source", "anywhere")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "published 2, skipped 0" in first.stdout
    again = run(env, there, "bridge", "batch", str(photos), "--source", "anywhere")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "published 0, skipped 2 (already done)" in again.stdout

    seen: dict[str, int] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and seen.get("anywhere") != 2:
        stats = run(env, there, "stats", "--json")
        assert stats.returncode == 0, stats.stdout + stats.stderr
        seen = {s["source_id"]: s["images"] for s in json.loads(stats.stdout)}
        time.sleep(1)
    assert seen.get("anywhere") == 2, seen

    topics = run(env, there, "topics", "images.raw")
    assert topics.returncode == 0, topics.stdout + topics.stderr

    down = run(env, there, "stack", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "worker: stopped" in down.stdout
    assert "kafka: stopped" in down.stdout
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
