"""The RTSP simulator (`flowforge sim rtsp`) as a test process: start, wait ready, call, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import FlowForgeProcess, start_flowforge

# The installed `flowforge` console script (for tests that run the command as a user would).
FLOWFORGE = str(Path(sys.executable).with_name("flowforge"))
TOKEN = "test-token"


@dataclass(frozen=True)
class Sim:
    """A running simulator started by `flowforge sim rtsp`."""

    rtsp: str
    api: str
    process: FlowForgeProcess
    log: Path

    def url(self, name: str) -> str:
        return f"{self.rtsp}/{name}"

    def request(
        self, method: str, route: str, body: object = None, *, token: str | None = TOKEN
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + route, data=data, method=method)  # noqa: S310
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - local API
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        ctype = "json" if raw.startswith((b"{", b"[")) else "text"
        return status, json.loads(raw) if ctype == "json" else raw.decode()

    def path(self, name: str) -> dict[str, Any]:
        status, body = self.request("GET", f"/v1/paths/{name}")
        assert status == 200, body
        return dict(body)


def cli_env(home: Path) -> dict[str, str]:
    """The environment of a `flowforge` command: no FLOWFORGE_* leaking in, its own home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWFORGE_")}
    env["FLOWFORGE_HOME"] = str(home)
    return env


def start_sim(home: Path, rtsp_port: int, api_port: int, *args: str) -> Sim:
    """`flowforge sim rtsp ARGS` on the given ports with TOKEN, in its own session (so it can
    be signalled alone), logging to ``home/sim.log``; returns once its API answers."""
    argv = ["sim", "rtsp", *args, "--rtsp-port", str(rtsp_port), "--api-port", str(api_port)]
    log = home / "sim.log"
    env = cli_env(home) | {"FLOWFORGE_SIM_TOKEN": TOKEN}
    process = start_flowforge(argv, env=env, log=log, own_session=True)
    sim = Sim(f"rtsp://127.0.0.1:{rtsp_port}", f"http://127.0.0.1:{api_port}", process, log)
    try:
        wait_ready(sim)
    except BaseException:
        stop_sim(process)
        raise
    return sim


def wait_ready(sim: Sim, timeout: float = 15.0) -> None:
    """Wait until the simulator's /readyz answers 200 (a test failure with its log's tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sim.process.poll() is not None:
            break
        try:
            if sim.request("GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    tail = sim.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
    pytest.fail(f"the RTSP simulator did not become ready: {' | '.join(tail)}", pytrace=False)


def stop_sim(process: FlowForgeProcess, sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig`` to the simulator's process group and wait (SIGKILL after 10 s)."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@dataclass
class PrivateSim:
    """A simulator of this test only, on fixed ports, that the test kills and restarts."""

    home: Path
    rtsp_port: int
    api_port: int
    names: tuple[str, ...]
    running: Sim | None = None

    def start(self) -> Sim:
        """Start the simulator (its ``names`` as 320x240 10 fps paths) and wait until it serves."""
        config = self.home / "sim.toml"
        lines = ["[defaults]", "bitrate_kbps = 300", "day_night_period_s = 0"]
        for name in self.names:
            lines += ["[[streams]]", f'name = "{name}"', 'size = "320x240"', "fps = 10"]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.running = start_sim(self.home, self.rtsp_port, self.api_port, "--config", str(config))
        return self.running

    def kill(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the simulator and wait until it is gone."""
        assert self.running is not None
        stop_sim(self.running.process, sig)
        assert self.running.process.returncode is not None
