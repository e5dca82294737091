"""The RTSP simulator against the real GStreamer server, read with OpenCV like the RTSP bridge."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowforge.sim.check import check_stream, mean_luma, open_capture
from flowforge.sim.errors import SimCheckFailed
from tests.support.processes import LOOPBACK, listening_addresses
from tests.support.simulator import FLOWFORGE, TOKEN, Sim, cli_env, start_sim, stop_sim
from tests.support.unique import free_port

# name, width, height, fps: cam3 is a 1 s video file, looped.
STREAMS = [("cam1", 320, 240, 10), ("cam2", 640, 360, 15), ("cam3", 320, 240, 8)]


@pytest.fixture(scope="session")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 s 320x240 H.264 MP4 at 8 fps, written by `flowforge sim video`."""
    out = tmp_path_factory.mktemp("sim-video") / "clip.mp4"
    done = subprocess.run(
        [FLOWFORGE, "sim", "video", str(out), "--duration", "1", "--size", "320x240", "--fps", "8"],
        capture_output=True,
        text=True,
        check=False,
        env=cli_env(out.parent),
    )
    assert done.returncode == 0, f"`flowforge sim video` failed: {done.stderr.strip()}"
    return out


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory, video_file: Path) -> Iterator[Sim]:
    """The simulator with three streams (one from a video file) on free ports, token set."""
    home = tmp_path_factory.mktemp("sim")
    config = home / "sim.toml"
    lines = ["[defaults]", "bitrate_kbps = 400", "day_night_period_s = 0"]
    for name, width, height, fps in STREAMS:
        lines += ["[[streams]]", f'name = "{name}"', f'size = "{width}x{height}"', f"fps = {fps}"]
    lines.append(f'source = "{video_file}"')  # the last stream loops the video file
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    running = start_sim(home, free_port(), free_port(), "--config", str(config))
    try:
        yield running
    finally:
        stop_sim(running.process)


@pytest.fixture
def new_path(sim: Sim, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh 320x240 10 fps path for one test, deleted afterwards."""
    name = "t-" + request.node.name.replace("_", "-")[5:40].strip("-")
    status, body = sim.request(
        "POST", "/v1/paths", {"name": name, "size": "320x240", "fps": 10, "bitrate_kbps": 300}
    )
    assert status == 201, body
    yield name
    sim.request("DELETE", f"/v1/paths/{name}")


def test_three_streams_read_in_parallel_at_configured_size_and_fps(sim: Sim) -> None:
    """Three streams (one a looped 1 s file) read at once show their size and fps within 20%
    (frames counted over 10 s, so a reader delayed by a busy machine evens out)."""
    with ThreadPoolExecutor(len(STREAMS)) as pool:
        results = list(pool.map(lambda s: check_stream(sim.url(s[0]), seconds=10.0), STREAMS))
    for (name, width, height, fps), result in zip(STREAMS, results, strict=True):
        assert (result.width, result.height) == (width, height), name
        assert result.fps == pytest.approx(fps, rel=0.2), name
    paths = {p["name"]: p for p in sim.request("GET", "/v1/paths")[1]["paths"]}
    assert all(paths[name]["frames_served"] > 10 * fps for name, _w, _h, fps in STREAMS)


def test_added_stream_is_readable_within_2s(sim: Sim) -> None:
    """A path POSTed to the API delivers its first frame to OpenCV within 2 s."""
    began = time.monotonic()
    status, body = sim.request("POST", "/v1/paths", {"name": "added", "size": "320x240", "fps": 10})
    assert status == 201, body
    try:
        capture = open_capture(sim.url("added"))
        ok, frame = capture.read()
        took = time.monotonic() - began
        capture.release()
        assert ok
        assert frame.shape[:2] == (240, 320)
        assert took < 2.0
        assert body["url"] == sim.url("added")
    finally:
        sim.request("DELETE", "/v1/paths/added")


def test_deleted_stream_is_gone(sim: Sim, new_path: str) -> None:
    """DELETE ends a path: its reader loses the stream, the API forgets it, it cannot be opened."""
    capture = open_capture(sim.url(new_path), timeout_s=2)
    assert capture.read()[0]
    status, _ = sim.request("DELETE", f"/v1/paths/{new_path}")
    assert status == 200
    assert not _reads_within(capture, 3.0)
    capture.release()
    assert sim.request("GET", f"/v1/paths/{new_path}")[0] == 404
    assert new_path not in {p["name"] for p in sim.request("GET", "/v1/paths")[1]["paths"]}
    with pytest.raises(SimCheckFailed, match=r"no H\.264 stream could be opened"):
        open_capture(sim.url(new_path), timeout_s=2)


def _reads_within(capture: Any, seconds: float) -> bool:
    """Whether the capture keeps delivering frames for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not capture.read()[0]:
            return False
    return True


def test_freeze_keeps_the_session_and_stops_frames(sim: Sim, new_path: str) -> None:
    """Freeze keeps the client's session but sends no frames; unfreeze resumes them."""
    capture = open_capture(sim.url(new_path), timeout_s=1.5)
    try:
        assert capture.read()[0]
        assert sim.request("POST", f"/v1/paths/{new_path}/freeze")[1]["frozen"] is True
        frozen_at = sim.path(new_path)["frames_served"]
        assert not _reads_within(capture, 4.0)  # the read times out: no frames arrive
        state = sim.path(new_path)
        assert state["frozen"] is True
        assert state["clients"] == 1
        assert state["frames_served"] == frozen_at
        assert sim.request("POST", f"/v1/paths/{new_path}/unfreeze")[1]["frozen"] is False
        time.sleep(0.5)
        assert sim.path(new_path)["frames_served"] > frozen_at
    finally:
        capture.release()


def test_drop_closes_client_connections(sim: Sim, new_path: str) -> None:
    """Drop closes the readers' connections at once; the path still serves new readers."""
    capture = open_capture(sim.url(new_path), timeout_s=3)
    try:
        assert capture.read()[0]
        assert sim.path(new_path)["clients"] == 1
        status, body = sim.request("POST", f"/v1/paths/{new_path}/drop")
        assert (status, body["dropped"]) == (200, 1)
        began = time.monotonic()
        assert not _reads_within(capture, 3.0)
        assert time.monotonic() - began < 2.0
        state = sim.path(new_path)
        assert (state["clients"], state["drops"]) == (0, 1)
    finally:
        capture.release()
    assert check_stream(sim.url(new_path), seconds=0.5).frames > 0


def test_day_night_cycle_makes_some_frames_dark(sim: Sim) -> None:
    """A 2 s day/night cycle gives both bright frames and frames below the dark threshold (40)."""
    body = {"name": "daynight", "size": "320x240", "fps": 10, "day_night_period_s": 2}
    body["night_brightness"] = -1
    assert sim.request("POST", "/v1/paths", body)[0] == 201
    capture = open_capture(sim.url("daynight"), timeout_s=3)
    try:
        lumas = []
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            ok, frame = capture.read()
            assert ok
            lumas.append(mean_luma(frame))
    finally:
        capture.release()
        sim.request("DELETE", "/v1/paths/daynight")
    assert min(lumas) < 40
    assert max(lumas) > 80


def test_listens_on_loopback_only_by_default(sim: Sim) -> None:
    """Started without a bind, the simulator's RTSP server and API listen on 127.0.0.1 only."""
    addresses = listening_addresses(sim.process.pid)
    ports = {int(sim.rtsp.rsplit(":", 1)[1]), int(sim.api.rsplit(":", 1)[1])}
    assert ports <= {port for _, port in addresses}, addresses
    assert {address for address, _ in addresses} <= LOOPBACK, addresses


def test_runtime_control_requires_the_token(sim: Sim) -> None:
    """With a token set, changes without or with a wrong bearer token get 401; reads do not."""
    body = {"name": "nope", "size": "320x240"}
    assert sim.request("POST", "/v1/paths", body, token=None)[0] == 401
    assert sim.request("POST", "/v1/paths", body, token="wrong")[0] == 401
    assert sim.request("DELETE", "/v1/paths/cam1", token=None)[0] == 401
    assert sim.request("POST", "/v1/paths/cam1/drop", token=None)[0] == 401
    assert sim.request("GET", "/v1/paths", token=None)[0] == 200
    config = sim.request("GET", "/v1/config", token=None)[1]
    assert config["token_required"] is True
    assert TOKEN not in json.dumps(config)


def test_api_rejects_bad_and_duplicate_paths(sim: Sim) -> None:
    """POST answers 400 with one-line reasons (unknown encoder, missing file) and 409 for a name."""
    status, body = sim.request("POST", "/v1/paths", {"name": "x", "encoder": "h265"})
    assert (status, "unknown encoder 'h265'" in body["error"]) == (400, True)
    status, body = sim.request("POST", "/v1/paths", {"name": "x", "source": "/no/clip.mp4"})
    assert (status, "does not exist" in body["error"]) == (400, True)
    assert sim.request("POST", "/v1/paths", {"name": "cam1"})[0] == 409


def test_metrics_are_prometheus_text(sim: Sim) -> None:
    """/metrics parses as Prometheus text and has per-path frames, clients and switches."""
    status, text = sim.request("GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    frames = {
        s.labels["path"]: s.value for s in families["flowforge_sim_path_frames_served"].samples
    }
    assert set(frames) >= {"cam1", "cam2", "cam3"}
    assert {"flowforge_sim_path_clients", "flowforge_sim_path_frozen"} <= set(families)


def test_check_command_prints_figures(sim: Sim, tmp_path: Path) -> None:
    """`flowforge sim check` on a running stream exits 0 and prints resolution, fps, brightness."""
    done = subprocess.run(
        [FLOWFORGE, "sim", "check", sim.url("cam1"), "--seconds", "1"],
        capture_output=True,
        text=True,
        check=False,
        env=cli_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert "resolution 320x240" in done.stdout
    assert "fps " in done.stdout
    assert "first frame brightness " in done.stdout


def test_check_command_on_closed_port_is_one_line(tmp_path: Path) -> None:
    """`flowforge sim check` against a closed port exits 1 with one clear stderr line."""
    url = f"rtsp://127.0.0.1:{free_port()}/cam1"
    done = subprocess.run(
        [FLOWFORGE, "sim", "check", url],
        capture_output=True,
        text=True,
        check=False,
        env=cli_env(tmp_path),
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("flowforge: error: cannot connect to 127.0.0.1:")
    assert "Connection refused" in lines[0]


def test_busy_port_is_one_line(sim: Sim, tmp_path: Path) -> None:
    """A second simulator on a port in use exits 1 with one line naming the port and holder."""
    rtsp_port = sim.rtsp.rsplit(":", 1)[1]
    done = subprocess.run(
        [FLOWFORGE, "sim", "rtsp", "--rtsp-port", rtsp_port, "--api-port", str(free_port())],
        capture_output=True,
        text=True,
        check=False,
        env=cli_env(tmp_path),
        timeout=30,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"RTSP port {rtsp_port} on 127.0.0.1 is in use by pid {sim.process.pid}" in lines[0]


def test_video_command_writes_a_readable_mp4(video_file: Path) -> None:
    """`flowforge sim video` writes an H.264 MP4 that OpenCV reads at the asked size and length."""
    capture = cv2.VideoCapture(str(video_file), cv2.CAP_FFMPEG)
    try:
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
        codec = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    finally:
        capture.release()
    assert len(frames) == 8
    assert frames[0].shape[:2] == (240, 320)
    assert codec in ("avc1", "h264")
