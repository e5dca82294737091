"""The RTSP bridge against the real GStreamer RTSP simulator and the real Kafka, as a process."""

from __future__ import annotations

import json
import re
import signal
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from flowforge.core.envelope import frame_image_id
from flowforge.stack import Stack
from tests.support.bridges import (
    Record,
    RtspBridgeProcess,
    bridge_env,
    read_records,
    read_written,
    rtsp_bridge_vars,
    wait_until,
)
from tests.support.simulator import PrivateSim, Sim, start_sim, stop_sim
from tests.support.stack import stack_env
from tests.support.unique import free_port, unique_name

FPS = 5
STALL_S = 2
RATE_WINDOW_S = 12.0  # fps counted over this long: a busy machine's hiccups even out
API_TOKEN = "bridge-test-token"
PASSWORD = "Pa55-w0rd-never-shown"
# The restart test: a private simulator's two paths and the bound on the reconnect time.
RESTART_STREAMS = ("a", "b")
BACKOFF_MAX_S = 2.0
OPEN_TIMEOUT_S = 3.0
RECONNECT_SLACK_S = 2.0  # 2 shared cores: polling, the API round trip, the first key frame
# The memory test: run length, warm-up, RSS sampling period and the allowed growth.
MEMORY_RUN_S = 120.0
MEMORY_WARMUP_S = 15.0
MEMORY_SAMPLE_S = 3.0
MEMORY_GROWTH_MB = 4.0


@pytest.fixture(scope="module")
def rtsp_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """The RTSP simulator on free ports with no streams: each test adds its own paths."""
    home = tmp_path_factory.mktemp("rtsp-bridge-sim")
    sim = start_sim(home, free_port(), free_port(), "--streams", "0")
    try:
        yield sim
    finally:
        stop_sim(sim.process)


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


@pytest.fixture
def rtsp_bridge(
    request: pytest.FixtureRequest, services: Stack, tmp_path: Path
) -> Iterator[Callable[..., RtspBridgeProcess]]:
    """A factory of `flowforge bridge rtsp` processes on private topics; stopped after."""
    started: list[RtspBridgeProcess] = []

    def make(urls: list[str], expect_ready: bool = True, **extra: str) -> RtspBridgeProcess:
        env = bridge_env(unique_name(request, "r"), stack_env(), tmp_path)
        env |= rtsp_bridge_vars(urls, FPS, STALL_S) | extra
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
    envelope, at the target fps (within 25%, counted over 12 s), and the bridge stops cleanly
    on SIGTERM."""
    cam_a, cam_b = paths(), paths()
    bridge = rtsp_bridge([rtsp_sim.url(cam_a), f"yard={rtsp_sim.url(cam_b)}"])
    before = {sid: bridge.published(sid) for sid in (cam_a, "yard")}
    began = time.monotonic()
    time.sleep(RATE_WINDOW_S)  # a window, not a wait for something: the rate is counted over it
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
    wait_until(lambda: bridge.stream(cam)["reconnects"] >= 1, 30, bridge.log)
    # The watchdog's own figure: how long the stream had been without a frame when it acted.
    silent = re.findall(r"stalled \(no frame for ([0-9.]+)s\)", bridge.log())[0]
    assert float(silent) < STALL_S + 2
    assert bridge.stream(cam)["state"] in ("connecting", "backoff")
    status, why = bridge.get("/readyz")
    assert status == 503
    assert cam in why
    frozen_count = bridge.published(cam)
    # A further reconnect shows the bridge kept trying the frozen path all along meanwhile.
    wait_until(lambda: bridge.stream(cam)["reconnects"] >= 2, 60, bridge.log)
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
    began_ms = time.time() * 1000
    status, answer = bridge.api("POST", "/v1/streams", body, token=API_TOKEN)
    assert (status, answer["source_id"]) == (201, "added")
    assert bridge.api("POST", "/v1/streams", body, token=API_TOKEN)[0] == 409
    wait_until(lambda: bridge.published("added") > 0, 30, bridge.log)
    added = [r for r in _all_published(bridge) if r.key == "added"]
    first = min(r.timestamp_ms for r in added)
    assert first - began_ms < 5000  # the first frame's Kafka timestamp, not the test's polling
    bridge.wait_ready(30)

    status, _ = bridge.api("POST", f"/v1/streams/{cam}/reconnect", token=API_TOKEN)
    assert status == 202
    wait_until(lambda: bridge.stream(cam)["reconnects"] >= 1, 10, bridge.log)

    assert bridge.api("DELETE", "/v1/streams/added")[0] == 401
    assert bridge.api("DELETE", "/v1/streams/added", token=API_TOKEN)[0] == 200
    assert bridge.api("GET", "/v1/streams/added")[0] == 404
    assert [s["source_id"] for s in bridge.api("GET", "/v1/streams")[1]["streams"]] == [cam]
    # The remaining stream's frames mark the bridge's progress: once it published a few more,
    # a frame of the removed stream handed over before the removal is through too; after
    # a few more again, the removed stream must have published nothing since.
    _await_frames(bridge, cam, FPS)
    count = len([r for r in _all_published(bridge) if r.key == "added"])
    _await_frames(bridge, cam, 2 * FPS)
    assert len([r for r in _all_published(bridge) if r.key == "added"]) == count
    assert 'source="added"' not in bridge.get("/metrics")[1]
    assert rtsp_sim.path(extra)["clients"] == 0


def _all_published(bridge: RtspBridgeProcess) -> list[Record]:
    """Every record the bridge had published to Kafka when called."""
    return read_written(bridge.settings, [bridge.settings.kafka.topic_raw])


def _await_frames(bridge: RtspBridgeProcess, source: str, frames: int) -> None:
    """Wait until ``source`` published ``frames`` more frames."""
    mark = bridge.published(source)
    wait_until(lambda: bridge.published(source) >= mark + frames, 30, bridge.log)


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


@pytest.fixture
def private_sim(tmp_path: Path) -> Iterator[PrivateSim]:
    """A simulator process of its own (not the module's) on free ports; stopped after."""
    home = tmp_path / "private-sim"
    home.mkdir()
    sim = PrivateSim(home, free_port(), free_port(), RESTART_STREAMS)
    yield sim
    if sim.running is not None:
        stop_sim(sim.running.process)


def test_restarted_server_is_reconnected_within_the_backoff_bound(
    private_sim: PrivateSim, rtsp_bridge: Callable[..., RtspBridgeProcess]
) -> None:
    """With the RTSP server killed (SIGTERM, then SIGKILL) the bridge stays up with its streams
    in backoff and /readyz 503; restarted on the same port, both streams stream again within
    FLOWFORGE_RTSP_BACKOFF_MAX_S + the open timeout (+ slack) and publish frames to Kafka."""
    sim = private_sim.start()
    names = RESTART_STREAMS
    bridge = rtsp_bridge(
        [f"{n}={sim.url(n)}" for n in names],
        FLOWFORGE_RTSP_BACKOFF_MAX_S=str(BACKOFF_MAX_S),
        FLOWFORGE_RTSP_OPEN_TIMEOUT_S=str(OPEN_TIMEOUT_S),
    )
    bound = BACKOFF_MAX_S + OPEN_TIMEOUT_S + RECONNECT_SLACK_S
    windows: list[tuple[int, int]] = []  # (restarted, killed again) wall-clock ms
    for sig in (signal.SIGTERM, signal.SIGKILL):
        wait_until(lambda: all(bridge.published(n) >= 3 for n in names), 15, bridge.log)
        reconnects = {n: bridge.stream(n)["reconnects"] for n in names}
        private_sim.kill(sig)
        if windows:
            windows[-1] = (windows[-1][0], time.time_ns() // 1_000_000)
        # Five failed attempts: the next backoff delay is at its cap (0.2 s doubling to 2 s).
        wait_until(
            lambda: all(bridge.stream(n)["reconnects"] >= reconnects[n] + 5 for n in names),  # noqa: B023
            30,
            bridge.log,
        )
        assert bridge.proc is not None
        assert bridge.proc.poll() is None
        assert bridge.get("/livez")[0] == 200
        status, why = bridge.get("/readyz")
        assert status == 503
        assert all(f"{n} (" in why for n in names), why
        for name in names:
            stream = bridge.stream(name)
            assert stream["state"] in ("backoff", "connecting")
            assert "Connection refused" in stream["last_error"]
        down_counts = {n: bridge.published(n) for n in names}
        time.sleep(1.0)
        assert {n: bridge.published(n) for n in names} == down_counts

        restarted_ms = time.time_ns() // 1_000_000
        private_sim.start()
        took = wait_until(
            lambda: all(bridge.stream(n)["state"] == "streaming" for n in names), bound, bridge.log
        )
        print(f"{sig.name}: both streams streaming {took:.2f}s after the restart (bound {bound}s)")
        windows.append((restarted_ms, 2**63))
        wait_until(
            lambda: all(bridge.published(n) > down_counts[n] + 3 for n in names),  # noqa: B023
            10,
            bridge.log,
        )
        bridge.wait_ready(10)
    assert bridge.log().count("a: backing off") == 2  # once per outage, later ones at debug
    total = int(bridge.metric("flowforge_bridge_rtsp_frames_published_total"))
    assert bridge.signal(signal.SIGTERM) == 0
    records = read_records(bridge.settings, [bridge.settings.kafka.topic_raw], total, settle=1)
    for began, ended in windows:
        after = {r.key for r in records if began <= int(r.headers["ff-captured-at"]) < ended}
        assert after == set(names)


def test_memory_is_flat_and_fps_on_target_over_two_minutes(
    rtsp_sim: Sim, paths: Callable[[], str], rtsp_bridge: Callable[..., RtspBridgeProcess]
) -> None:
    """Over a 2-minute run of two 320x240 10 fps streams sampled to 5 fps, the bridge's RSS does
    not trend upwards and both streams publish at the target fps (within 25%).

    RSS (psutil) is sampled every 3 s after a 15 s warm-up (imports, FFmpeg's decoder threads
    and buffers, the producer's first batches). The criterion compares the mean of the last
    quarter of samples with the mean of the first quarter (means, so one allocator step does
    not decide): growth must stay under MEMORY_GROWTH_MB. The quarters' midpoints are ~80 s
    apart, in which ~800 frames are published and ~3,200 decoded, so a leak of ~5 KB per
    published frame (a third of a JPEG) or ~1.3 KB per decoded frame would exceed it, while
    heap noise on a flat process stays well under (measured: see the printed figures).
    """
    cams = [paths(), paths()]
    bridge = rtsp_bridge([rtsp_sim.url(c) for c in cams])
    assert bridge.proc is not None
    process = psutil.Process(bridge.proc.pid)
    time.sleep(MEMORY_WARMUP_S)
    before = {c: bridge.published(c) for c in cams}
    began = time.monotonic()
    samples: list[float] = []
    while time.monotonic() - began < MEMORY_RUN_S - MEMORY_WARMUP_S:
        samples.append(process.memory_info().rss / 2**20)
        time.sleep(MEMORY_SAMPLE_S)
    elapsed = time.monotonic() - began
    rates = {c: (bridge.published(c) - before[c]) / elapsed for c in cams}
    quarter = len(samples) // 4
    first, last = statistics.mean(samples[:quarter]), statistics.mean(samples[-quarter:])
    print(
        f"RSS MiB: first quarter {first:.1f}, last quarter {last:.1f}, growth {last - first:+.2f},"
        f" min {min(samples):.1f}, max {max(samples):.1f}, n={len(samples)};"
        f" published fps {', '.join(f'{r:.2f}' for r in rates.values())}"
    )
    assert bridge.proc.poll() is None
    assert last - first < MEMORY_GROWTH_MB, samples
    for cam, rate in rates.items():
        assert rate == pytest.approx(FPS, rel=0.25), cam
    assert bridge.signal(signal.SIGTERM) == 0
