"""Security pass on running components: secrets with marker values appear in nothing they emit,
and their HTTP servers listen on loopback only by default."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowforge.stack import Stack
from tests.support.bridges import bridge_env
from tests.support.images import jpeg, scene
from tests.support.pipeline import Pipeline
from tests.support.processes import (
    LOOPBACK,
    FlowForgeProcess,
    listening_addresses,
    start_flowforge,
)
from tests.support.stack import stack_env
from tests.support.unique import free_port, unique_name

MARKER = "Zq9-marker"
# Every secret setting, set to a distinctive value; the worker must emit none of them.
PIPELINE_ENV = {
    "FLOWFORGE_MQTT_USERNAME": "mqtt-user",
    "FLOWFORGE_MQTT_PASSWORD": f"mqtt-{MARKER}",
    "FLOWFORGE_CLICKHOUSE_PASSWORD": f"ch-{MARKER}",
    "FLOWFORGE_RTSP_API_TOKEN": f"rtsp-{MARKER}",
    "FLOWFORGE_SIM_TOKEN": f"sim-{MARKER}",
}


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_worker_emits_no_secret_and_listens_on_loopback_only(pipeline: Pipeline) -> None:
    """A worker given every secret setting with a marker value processes and rejects images;
    the marker is in no log line, /metrics, /stats, /readyz, output record or Kafka header,
    and the worker's only listening sockets are on 127.0.0.1."""
    pipeline.produce([("ok.jpg", jpeg(scene(640, 360, seed=90))), ("bad.jpg", b"\xff\xd8\xff")])
    port = pipeline.start_worker()
    out = pipeline.collect(2, settle=1)
    assert {m["status"] for m in out.metadata} == {"processed", "rejected"}
    pid = pipeline.workers[port].pid
    addresses = pipeline.wait_until(lambda: listening_addresses(pid), "a listening socket")
    assert port in {p for _, p in addresses}
    assert {address for address, _ in addresses} <= LOOPBACK, addresses
    texts = [_get(port, page)[1] for page in ("/metrics", "/stats", "/readyz", "/livez")]
    texts += [json.dumps(out.metadata)]
    texts += [json.dumps(headers) for headers, _ in out.processed + out.dlq]
    pipeline.kill_worker(port, signal.SIGTERM)
    texts.append(pipeline.worker_log(port))
    assert any("processed" in text for text in texts)  # the texts are the real outputs
    for text in texts:
        assert MARKER not in text


@pytest.fixture
def mqtt_bridge_down(
    request: pytest.FixtureRequest, services: Stack, tmp_path: Path
) -> Iterator[FlowForgeProcess]:
    """A `flowforge bridge mqtt` with a marker password, pointed at a closed MQTT port."""
    env = bridge_env(unique_name(request, "s"), stack_env(), tmp_path)
    env |= {
        "FLOWFORGE_MQTT_PORT": str(free_port()),
        "FLOWFORGE_MQTT_USERNAME": "cam-user",
        "FLOWFORGE_MQTT_PASSWORD": f"mqtt-{MARKER}",
        "FLOWFORGE_LOG_LEVEL": "debug",
    }
    port = free_port()
    args = ["bridge", "mqtt", "--web-port", str(port)]
    proc = start_flowforge(args, env=env, log=tmp_path / "bridge.log", cwd=tmp_path)
    proc.web_port = port  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def test_mqtt_bridge_connection_errors_show_no_password(
    mqtt_bridge_down: FlowForgeProcess, tmp_path: Path
) -> None:
    """With MQTT unreachable, the bridge logs its failed attempts (warning, then debug) and
    serves /readyz 503, without its password anywhere; its web server listens on loopback only."""
    port = mqtt_bridge_down.web_port  # type: ignore[attr-defined]
    log_path = tmp_path / "bridge.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert mqtt_bridge_down.poll() is None, log_path.read_text(errors="replace")
        try:
            status, readyz = _get(port, "/readyz")
        except OSError:
            time.sleep(0.3)
            continue
        if log_path.read_text(errors="replace").count("cannot reach MQTT") >= 2:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"no connection failure logged:\n{log_path.read_text()}")
    assert (status, "not connected" in readyz) == (503, True)
    addresses = listening_addresses(mqtt_bridge_down.pid)
    assert {address for address, _ in addresses} <= LOOPBACK, addresses
    metrics = _get(port, "/metrics")[1]
    mqtt_bridge_down.stop()
    log = log_path.read_text(errors="replace")
    assert log.count("WARNING bridges.mqtt: cannot reach MQTT") == 1  # then at debug
    for text in (readyz, metrics, log):
        assert MARKER not in text
