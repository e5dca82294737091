"""A `flowforge bridge batch DIR --watch` process under churn: small files created in waves (a
directory per wave, nested), each wave waited for until published, then deleted; the bridge's
RSS after each wave and the answer time of its /livez (served by its event loop) measured all
along. Shared by the integration test and bench/batch_watch.py."""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support.bridges import BridgeProcess, payload

MIB = 1024 * 1024
# Settings that let a wave settle quickly (a file is published once unchanged across 2 scans).
QUICK_WATCH = {"FLOWFORGE_BATCH_POLL_INTERVAL_S": "0.1", "FLOWFORGE_BATCH_SETTLE_S": "0.2"}


class LivezProbe(threading.Thread):
    """GET /livez every ``every`` seconds until stopped; the slowest answer is the event loop's
    longest stall as a client sees it (plus the request's own time)."""

    def __init__(self, port: int, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/livez"
        self.every = every
        self.slowest = 0.0
        self.answers = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            with urllib.request.urlopen(self.url, timeout=30) as resp:  # noqa: S310 - loopback
                resp.read()
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.answers += 1
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)


@dataclass
class Churn:
    """What a churn run saw."""

    files: int
    wave: int
    seconds: float = 0.0
    rss_mib: list[float] = field(default_factory=list)  # after each wave
    slowest_livez_s: float = 0.0
    livez_answers: int = 0

    def growth_mib(self, warm_up: int) -> float:
        """RSS growth from the end of wave ``warm_up`` to the end of the run, in MiB."""
        return self.rss_mib[-1] - self.rss_mib[warm_up - 1]

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds else 0.0


def churn(
    bridge: BridgeProcess, root: Path, files: int, wave: int, wave_timeout: float = 120.0
) -> Churn:
    """Create ``files`` small JPEG-looking files under ``root`` in waves of ``wave``; after each
    wave, wait until the bridge's published count covers it, then delete the wave."""
    assert bridge.proc is not None
    process = psutil.Process(bridge.proc.pid)
    result = Churn(files, wave)
    probe = LivezProbe(bridge.web_port)
    probe.start()
    published = bridge.metric("flowforge_bridge_published_total")
    started = time.monotonic()
    try:
        for number in range(files // wave):
            # nested, camera-like paths: what the bridge keeps per file grows with their length
            folder = root / "camera-north-entrance-gate-07" / f"2026-12-02/wave-{number:05d}"
            folder.mkdir(parents=True)
            paths = [folder / f"frame-{number:05d}-{i:04d}-1280x720-q85.jpg" for i in range(wave)]
            for i, path in enumerate(paths):
                path.write_bytes(payload(number * wave + i, 1_000))
            published += wave
            deadline = time.monotonic() + wave_timeout
            while bridge.metric("flowforge_bridge_published_total") < published:
                assert probe.is_alive(), "/livez stopped answering"
                if time.monotonic() > deadline:
                    raise AssertionError(f"wave {number} not published:\n{bridge.log()[-3000:]}")
                time.sleep(0.05)
            for path in paths:
                path.unlink()
            folder.rmdir()
            result.rss_mib.append(process.memory_info().rss / MIB)
    finally:
        result.seconds = time.monotonic() - started
        probe.stop()
    result.slowest_livez_s = probe.slowest
    result.livez_answers = probe.answers
    return result
