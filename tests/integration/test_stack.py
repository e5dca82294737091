"""The local stack via `flowforge stack`: up, status, idempotence, down, start failures."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flowforge.core.settings import Settings
from flowforge.stack import Stack
from tests.support.images import real_photo_path
from tests.support.stack import private_stack_env
from tests.support.unique import free_port

FLOWFORGE = [sys.executable, "-m", "flowforge"]


def test_status_reports_both_services_healthy(settings: Settings, services: Stack) -> None:
    """With the test stack up, status shows Kafka and Mosquitto running with a PID."""
    statuses = {s.name: s for s in asyncio.run(services.status())}
    for name in ("kafka", "mosquitto"):
        assert statuses[name].state == "running", statuses[name]
        assert statuses[name].pid
        assert psutil.pid_exists(statuses[name].pid)
    assert statuses["clickhouse"].state == "embedded"


def test_up_is_idempotent(settings: Settings, services: Stack) -> None:
    """A second `up` starts nothing new: the same PIDs keep running."""
    before = [s.process.pid() for s in services.services]
    lines: list[str] = []
    asyncio.run(Stack(settings).up(report=lines.append))
    assert [s.process.pid() for s in services.services] == before
    assert any(line.startswith("kafka: already running") for line in lines)


@pytest.fixture
def other_stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a second, throw-away stack on free ports (stopped afterwards)."""
    env = dict(os.environ)
    env.update(private_stack_env(tmp_path / "home"))
    yield env
    subprocess.run([*FLOWFORGE, "stack", "down"], env=env, capture_output=True, check=False)


def test_cli_up_status_down_leaves_nothing_behind(other_stack_env: dict[str, str]) -> None:
    """`stack up` then `status` exit 0; `stack down` stops both and frees their ports."""
    env = other_stack_env
    up = subprocess.run([*FLOWFORGE, "stack", "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    assert "kafka: started pid" in up.stdout
    assert "mosquitto: started pid" in up.stdout
    status = subprocess.run(
        [*FLOWFORGE, "stack", "status", "--json"], env=env, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stdout + status.stderr
    pids = [s["pid"] for s in json.loads(status.stdout) if s["name"] in ("kafka", "mosquitto")]
    assert len(pids) == 2
    assert all(pids)
    down = subprocess.run([*FLOWFORGE, "stack", "down"], env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    settings = Settings.from_env(env)
    kafka_port = int(settings.kafka.bootstrap_servers.rsplit(":", 1)[1])
    for port in (kafka_port, settings.mqtt.port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    after = subprocess.run([*FLOWFORGE, "stack", "status"], env=env, capture_output=True, text=True)
    assert after.returncode == 1
    assert "stopped" in after.stdout


def test_up_fails_loudly_when_a_port_is_taken(other_stack_env: dict[str, str]) -> None:
    """`stack up` with Kafka's port held by another process exits 1 naming port and holder."""
    env = other_stack_env
    port = env["FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(port)))
        blocker.listen()
        up = subprocess.run([*FLOWFORGE, "stack", "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 1, up.stdout + up.stderr
    last = up.stderr.strip().splitlines()[-1]
    expected = f"flowforge: error: kafka: port {port} is taken by pid {os.getpid()}"
    assert last.startswith(expected), up.stderr


def test_demo_stack_turns_an_mqtt_image_into_a_row_and_stops_cleanly(
    other_stack_env: dict[str, str],
) -> None:
    """`stack up --demo` (what `make run` runs) starts the worker, both bridges and the
    simulator; a `mosquitto_pub` image and the demo cameras become ClickHouse rows, and
    `stack down` stops every process it started."""
    env = other_stack_env
    for name in (
        "FLOWFORGE_WORKER_WEB_PORT",
        "FLOWFORGE_BRIDGE_MQTT_WEB_PORT",
        "FLOWFORGE_BRIDGE_RTSP_WEB_PORT",
        "FLOWFORGE_SIM_RTSP_PORT",
        "FLOWFORGE_SIM_API_PORT",
    ):
        env[name] = str(free_port())
    env["FLOWFORGE_SIM_SIZE"] = "320x240"
    up = subprocess.run(
        [*FLOWFORGE, "stack", "up", "--demo"], env=env, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stdout + up.stderr
    for name in ("worker", "bridge-mqtt", "rtsp-simulator", "bridge-rtsp"):
        assert f"{name}: started pid" in up.stdout, up.stdout
    status = subprocess.run(
        [*FLOWFORGE, "stack", "status", "--json"], env=env, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stdout
    pids = [s["pid"] for s in json.loads(status.stdout) if s["pid"]]
    assert len(pids) == 6

    photo = real_photo_path("chelsea.png")
    mqtt_port = env["FLOWFORGE_MQTT_PORT"]
    publish = ["mosquitto_pub", "-p", mqtt_port, "-q", "1", "-t", "images/raw/test-cam"]
    subprocess.run([*publish, "-f", str(photo)], check=True, timeout=30)

    def sources() -> dict[str, int]:
        stats = subprocess.run(
            [*FLOWFORGE, "stats", "--json"], env=env, capture_output=True, text=True, check=False
        )
        if stats.returncode != 0:
            return {}
        return {s["source_id"]: s["images"] for s in json.loads(stats.stdout)}

    deadline = time.monotonic() + 90
    seen: dict[str, int] = {}
    while time.monotonic() < deadline:
        seen = sources()
        if seen.get("test-cam") == 1 and seen.get("cam1", 0) > 0 and seen.get("cam2", 0) > 0:
            break
        time.sleep(1)
    assert seen.get("test-cam") == 1, seen
    assert seen.get("cam1", 0) > 0, seen
    assert seen.get("cam2", 0) > 0, seen

    down = subprocess.run([*FLOWFORGE, "stack", "down"], env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
