"""The RTSP bridge against the real GStreamer RTSP simulator and the real Kafka, as a process."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from flowforge.envelope import frame_image_id
from flowforge.stack import Stack
from tests.conftest import stack_env, unique_name
from tests.integration.bridge_harness import BridgeProcess, bridge_env, read_records
from tests.integration.harness import free_port
from tests.integration.test_sim import FLOWFORGE, TOKEN, Sim, _cli_env, _stop, _wait_ready

FPS = 5
STALL_S = 2
API_TOKEN = "bridge-test-token"
PASSWORD = "Pa55-w0rd-never-shown"


@pytest.fixture(scope="module")
def rtsp_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """The RTSP simulator on free ports with no streams: each test adds its own paths."""
    home = tmp_path_factory.mktemp("rtsp-bridge-sim")
    rtsp_port, api_port = free_port(), free_port()
    env = _cli_env(home) | {"FLOWFORGE_SIM_TOKEN": TOKEN}
    argv = [FLOWFORGE, "sim", "rtsp", "--streams", "0"]
    argv += ["--rtsp-port", str(rtsp_port), "--api-port", str(api_port)]
    log = home / "sim.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    sim = Sim(f"rtsp://127.0.0.1:{rtsp_port}", f"http://127.0.0.1:{api_port}", process, log)
    try:
        _wait_ready(sim)
        yield sim
    finally:
        _stop(process)


@pytest.fixture
def paths(rtsp_sim: Sim) -> Iterator[Callable[[], str]]:
    """A factory of fresh 320x240 10 fps simulator paths, deleted after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"p{uuid.uuid4().hex[:8]}"
        body = {"name": name, "size": "320x240", "fps": 10, "bitrate_kbps": 300}
        status, answer = rtsp_sim.request("POST", "/v1/paths", body)
        assert status == 201, answer
        made.append(name)
        return name

    yield make
    for name in made:
        rtsp_sim.request("DELETE", f"/v1/paths/{name}")


@dataclass
class RtspBridgeProcess(BridgeProcess):
    """`flowforge bridge rtsp` as a process, with its stream API."""

    expect_ready: bool = True

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for /readyz (or, when some stream is meant to stay down, until it captures)."""
        if self.expect_ready:
            super().wait_ready(timeout)
            return
        wait_until(self._capturing, timeout, self.log)

    def _capturing(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"bridge exited {self.proc.returncode}:\n{self.log()}"
        try:
            status, body = self.api("GET", "/v1/streams")
        except OSError:
            return False
        return status == 200 and bool(body["streams"])

    def api(
        self, method: str, route: str, body: object = None, token: str | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}{route}", data=data, method=method
        )
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stream(self, source_id: str) -> dict[str, Any]:
        status, body = self.api("GET", f"/v1/streams/{source_id}")
        assert status == 200, body
        return dict(body)

    def published(self, source_id: str) -> float:
        return self.metric("flowforge_bridge_rtsp_frames_published_total", source=source_id)


def wait_until(
    condition: Callable[[], bool], timeout: float, explain: Callable[[], str] = lambda: ""
) -> float:
    """Poll ``condition`` until true; return the seconds it took (fail after ``timeout``)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if condition():
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s:\n{explain()[-3000:]}")


@pytest.fixture
def rtsp_bridge(
    request: pytest.FixtureRequest, services: Stack, tmp_path: Path
) -> Iterator[Callable[..., RtspBridgeProcess]]:
    """A factory of `flowforge bridge rtsp` processes on private topics; stopped after."""
    started: list[RtspBridgeProcess] = []

    def make(urls: list[str], expect_ready: bool = True, **extra: str) -> RtspBridgeProcess:
        env = bridge_env(unique_name(request, "r"), stack_env(), tmp_path)
        env |= {
            "FLOWFORGE_RTSP_URLS": ",".join(urls),
            "FLOWFORGE_RTSP_FPS": str(FPS),
            "FLOWFORGE_RTSP_STALL_S": str(STALL_S),
            "FLOWFORGE_RTSP_OPEN_TIMEOUT_S": "3",
            "FLOWFORGE_RTSP_BACKOFF_INITIAL_S": "0.2",
            "FLOWFORGE_RTSP_BACKOFF_MAX_S": "2",
        } | extra
        proc = RtspBridgeProcess(["bridge", "rtsp"], env, tmp_path, expect_ready=expect_ready)
        started.append(proc)
        proc.start()
        return proc

    yield make
    for proc in started:
        proc.stop()


def test_streams_publish_keyed_jpeg_frames_at_the_target_fps(
    rtsp_sim: Sim, paths: Callable[[], str], rtsp_bridge: Callable[..., RtspBridgeProcess]
) -> None:
    """Two streams captured in parallel publish 320x240 JPEGs keyed by source id, with the RTSP
    envelope, at the target fps (within 25%), and the bridge stops cleanly on SIGTERM."""
    cam_a, cam_b = paths(), paths()
    bridge = rtsp_bridge([rtsp_sim.url(cam_a), f"yard={rtsp_sim.url(cam_b)}"])
    before = {sid: bridge.published(sid) for sid in (cam_a, "yard")}
    began = time.monotonic()
    time.sleep(4.0)
    elapsed = time.monotonic() - began
    for sid in (cam_a, "yard"):
        rate = (bridge.published(sid) - before[sid]) / elapsed
        assert rate == pytest.approx(FPS, rel=0.25), sid
        assert bridge.metric("flowforge_bridge_rtsp_frames_dropped_total", source=sid,
                             reason="fps_cap") > 0  # fmt: skip
    total = int(bridge.metric("flowforge_bridge_rtsp_frames_published_total"))
    assert bridge.signal(signal.SIGTERM) == 0
    records = read_records(bridge.settings, [bridge.settings.kafka.topic_raw], total, settle=1)
    assert len(records) >= total
    origins = {cam_a: rtsp_sim.url(cam_a), "yard": rtsp_sim.url(cam_b)}
    assert {r.key for r in records} == set(origins)
    for record in records:
        headers = record.headers
        assert headers["ff-source-type"] == "rtsp"
        assert headers["ff-source-id"] == record.key
        assert headers["ff-origin"] == origins[record.key]
        assert headers["ff-content-type"] == "image/jpeg"
        captured = int(headers["ff-captured-at"])
        assert headers["ff-image-id"] == frame_image_id(record.key, captured)
        image = cv2.imdecode(np.frombuffer(record.value, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        assert image.shape[:2] == (240, 320)
    assert len({r.headers["ff-image-id"] for r in records}) == len(records)


def test_frozen_stream_is_stalled_reconnected_and_resumes(
    rtsp_sim: Sim, paths: Callable[[], str], rtsp_bridge: Callable[..., RtspBridgeProcess]
) -> None:
    """A frozen path (session kept, no frames) is marked stalled by the watchdog and
    reconnected (reconnects grow, /readyz 503); after unfreeze its frames resume."""
    cam = paths()
    bridge = rtsp_bridge([rtsp_sim.url(cam)])
    assert rtsp_sim.request("POST", f"/v1/paths/{cam}/freeze")[0] == 200
    took = wait_until(lambda: bridge.stream(cam)["reconnects"] >= 1, 10, bridge.log)
    assert took < STALL_S + 2
    assert "stalled (no frame for" in bridge.log()
    assert bridge.stream(cam)["state"] in ("connecting", "backoff")
    status, why = bridge.get("/readyz")
    assert status == 503
    assert cam in why
    frozen_count = bridge.published(cam)
    time.sleep(1.0)
    assert bridge.published(cam) == frozen_count
    assert rtsp_sim.request("POST", f"/v1/paths/{cam}/unfreeze")[0] == 200
    wait_until(lambda: bridge.published(cam) > frozen_count + 2, 15, bridge.log)
    assert bridge.stream(cam)["state"] == "streaming"
    assert bridge.metric("flowforge_bridge_rtsp_reconnects_total", source=cam) >= 1
    assert bridge.metric("flowforge_bridge_rtsp_state", source=cam, state="streaming") == 1


def test_dropped_connection_is_reconnected(
    rtsp_sim: Sim, paths: Callable[[], str], rtsp_bridge: Callable[..., RtspBridgeProcess]
) -> None:
    """The simulator closing the bridge's connection leads to a reconnect and frames again."""
    cam = paths()
    bridge = rtsp_bridge([rtsp_sim.url(cam)])
    status, body = rtsp_sim.request("POST", f"/v1/paths/{cam}/drop")
    assert (status, body["dropped"]) == (200, 1)
    dropped_at = bridge.published(cam)
    wait_until(lambda: bridge.stream(cam)["reconnects"] >= 1, 10, bridge.log)
    wait_until(lambda: bridge.published(cam) > dropped_at + 2, 10, bridge.log)
    assert bridge.stream(cam)["state"] == "streaming"


def test_streams_are_added_reconnected_and_removed_through_the_api(
    rtsp_sim: Sim, paths: Callable[[], str], rtsp_bridge: Callable[..., RtspBridgeProcess]
) -> None:
    """With a token set, changes need it (401 without); an added stream publishes within 5 s,
    a reconnect request reconnects, and a removed stream stops publishing and disappears."""
    cam, extra = paths(), paths()
    bridge = rtsp_bridge([rtsp_sim.url(cam)], FLOWFORGE_RTSP_API_TOKEN=API_TOKEN)
    body = {"url": rtsp_sim.url(extra), "name": "added"}
    assert bridge.api("POST", "/v1/streams", body)[0] == 401
    assert bridge.api("POST", "/v1/streams", body, token="wrong")[0] == 401
    began = time.monotonic()
    status, answer = bridge.api("POST", "/v1/streams", body, token=API_TOKEN)
    assert (status, answer["source_id"]) == (201, "added")
    assert bridge.api("POST", "/v1/streams", body, token=API_TOKEN)[0] == 409
    wait_until(lambda: bridge.published("added") > 0, 5, bridge.log)
    assert time.monotonic() - began < 5
    bridge.wait_ready(10)

    status, _ = bridge.api("POST", f"/v1/streams/{cam}/reconnect", token=API_TOKEN)
    assert status == 202
    wait_until(lambda: bridge.stream(cam)["reconnects"] >= 1, 10, bridge.log)

    assert bridge.api("DELETE", "/v1/streams/added")[0] == 401
    assert bridge.api("DELETE", "/v1/streams/added", token=API_TOKEN)[0] == 200
    assert bridge.api("GET", "/v1/streams/added")[0] == 404
    assert [s["source_id"] for s in bridge.api("GET", "/v1/streams")[1]["streams"]] == [cam]
    time.sleep(1.0)  # the last frame handed over before the removal may still be published
    topic = bridge.settings.kafka.topic_raw
    count = len([r for r in read_records(bridge.settings, [topic], 1) if r.key == "added"])
    time.sleep(2.0)
    records = read_records(bridge.settings, [topic], 1, settle=1)
    assert len([r for r in records if r.key == "added"]) == count
    assert 'source="added"' not in bridge.get("/metrics")[1]
    assert rtsp_sim.path(extra)["clients"] == 0


def test_credentials_never_appear_in_logs_metrics_headers_or_api(
    rtsp_sim: Sim, paths: Callable[[], str], rtsp_bridge: Callable[..., RtspBridgeProcess]
) -> None:
    """A user:password@ URL captures normally, but the password is in no log line, metric,
    API answer or Kafka header (ff-origin has the user-info removed)."""
    cam = paths()
    url = rtsp_sim.url(cam).replace("rtsp://", f"rtsp://viewer:{PASSWORD}@")
    dead = f"door=rtsp://viewer:{PASSWORD}@127.0.0.1:{free_port()}/x"
    bridge = rtsp_bridge([url, dead], expect_ready=False)
    wait_until(lambda: bridge.published(cam) >= 3, 15, bridge.log)
    wait_until(lambda: bridge.stream("door")["last_error"] != "", 10, bridge.log)
    assert bridge.stream(cam)["url"] == rtsp_sim.url(cam).replace("rtsp://", "rtsp://***@")
    texts = [bridge.get("/metrics")[1], json.dumps(bridge.api("GET", "/v1/streams")[1])]
    texts.append(bridge.get("/readyz")[1])
    assert bridge.signal(signal.SIGTERM) == 0
    records = read_records(bridge.settings, [bridge.settings.kafka.topic_raw], 3, settle=1)
    assert {r.headers["ff-origin"] for r in records} == {rtsp_sim.url(cam)}
    texts += [json.dumps(r.headers) for r in records]
    texts.append(bridge.log())
    assert "viewer:" in json.dumps(bridge.env)  # the secret was really configured
    for text in texts:
        assert PASSWORD not in text
    assert "rtsp://***@" in bridge.log()


def test_dead_url_backs_off_without_crashing_the_bridge(
    rtsp_sim: Sim, paths: Callable[[], str], rtsp_bridge: Callable[..., RtspBridgeProcess]
) -> None:
    """A stream on a closed port goes to backoff and retries (reconnects grow) while the other
    stream publishes; /livez stays 200, /readyz is 503 naming it, SIGTERM exits 0."""
    cam = paths()
    dead = f"dead=rtsp://127.0.0.1:{free_port()}/cam"
    bridge = rtsp_bridge([rtsp_sim.url(cam), dead], expect_ready=False)
    wait_until(lambda: bridge.stream("dead")["reconnects"] >= 3, 15, bridge.log)
    state = bridge.stream("dead")
    assert state["state"] in ("backoff", "connecting")
    assert "Connection refused" in state["last_error"]
    wait_until(lambda: bridge.published(cam) >= 5, 15, bridge.log)
    assert bridge.get("/livez")[0] == 200
    status, why = bridge.get("/readyz")
    assert (status, "dead (" in why) == (503, True)
    assert bridge.log().count("dead: backing off") == 1  # later attempts log at debug
    assert bridge.signal(signal.SIGTERM) == 0
