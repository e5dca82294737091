"""The whole pipeline under load, shared by ``bench.e2e`` and ``bench.soak``: camera-like JPEGs,
a QoS 1 MQTT publisher at a steady rate that remembers each image's publish time, a sampler of
FlowForge's processes (CPU, RSS, file descriptors, threads), and the pipeline on a private stack.

Images: a few 1280x720 or 1920x1080 camera scenes (tests/support/images.py), JPEG q85, made
distinct per message by a JPEG comment segment (COM, 0xFFFE) after SOI holding a counter: the
pixels (and so the decode cost) are those of a real-looking frame, the bytes (and so the image id)
are new, and making one costs a byte copy, so the publisher can offer hundreds per second for
minutes.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil

from flowforge.core.envelope import content_image_id
from flowforge.core.mqtt import mqtt_client
from flowforge.core.settings import Settings
from tests.support.end_to_end import EndToEnd
from tests.support.images import jpeg, numbered, scene
from tests.support.stack import running_stack

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
SOURCES = 8
BASE_FRAMES = 8


class Frames:
    """Distinct camera-like JPEGs (q85) of one resolution, made on demand and deterministic."""

    def __init__(self, resolution: str, tag: str = "bench") -> None:
        width, height = RESOLUTIONS[resolution]
        self.resolution = resolution
        self.tag = tag.encode()
        self.bases = [
            jpeg(numbered(scene(width, height, seed=300 + i), i), 85) for i in range(BASE_FRAMES)
        ]

    @property
    def mean_bytes(self) -> float:
        return sum(len(b) for b in self.bases) / len(self.bases)

    def payload(self, number: int) -> bytes:
        """Frame ``number``: a base scene with a COM segment naming the frame after SOI."""
        base = self.bases[number % len(self.bases)]
        text = b"%s %s %d" % (self.tag, self.resolution.encode(), number)
        return base[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + base[2:]


class Counter:
    """Frame numbers unique over one benchmark, shared by its publishers."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            self._next += 1
            return self._next


@dataclass
class Sent:
    """Every image published: id -> (publish time, epoch s; phase name)."""

    at: dict[str, tuple[float, str]] = field(default_factory=dict)

    def ids(self, phase: str | None = None) -> set[str]:
        return {i for i, (_, p) in self.at.items() if phase is None or p == phase}


class Publisher(threading.Thread):
    """Publishes distinct frames at QoS 1 at ``rate``/s for ``seconds`` (or until stopped), over
    ``sources`` camera topics (one: the bare MQTT topic, source ``default``), pipelined (paho
    keeps up to 256 unacknowledged); the publish time of each image is taken just before handing
    it to paho. When behind, it publishes at once."""

    def __init__(
        self,
        settings: Settings,
        frames: Frames,
        counter: Counter,
        sent: Sent,
        rate: float,
        seconds: float,
        phase: str,
        sources: int = SOURCES,
    ) -> None:
        super().__init__(daemon=True)
        self.settings, self.frames, self.counter, self.sent = settings, frames, counter, sent
        self.rate, self.seconds, self.phase, self.sources = rate, seconds, phase, sources
        self.published = 0
        self.started = 0.0
        self.ended = 0.0
        self.error: BaseException | None = None
        self.stop_event = threading.Event()
        self._infos: list[mqtt.MQTTMessageInfo] = []

    @property
    def offered_rate(self) -> float:
        """The rate actually offered (below ``rate`` if the publisher could not keep up)."""
        return self.published / max(self.ended - self.started, 1e-9)

    def run(self) -> None:
        mqtt_settings = self.settings.mqtt
        client = mqtt_client(mqtt_settings, f"bench-pub-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        client.max_inflight_messages_set(256)
        client.max_queued_messages_set(0)
        try:
            client.connect(mqtt_settings.host, mqtt_settings.port, keepalive=30)
            client.loop_start()
            base = mqtt_settings.topic
            self.started = time.monotonic()
            i = 0
            while not self.stop_event.is_set():
                due = self.started + i / self.rate
                if due - self.started >= self.seconds:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                number = self.counter.take()
                if self.sources == 1:  # as `mosquitto_pub -t images/raw -f photo.jpg`
                    source, topic = "default", base
                else:
                    source = f"cam-{number % self.sources:02d}"
                    topic = f"{base}/{source}"
                payload = self.frames.payload(number)
                image_id = content_image_id(source, payload)
                self.sent.at[image_id] = (time.time(), self.phase)
                info = client.publish(topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
                self._infos.append(info)
                i += 1
                self.published = i
            self.ended = time.monotonic()
            for info in self._infos:
                info.wait_for_publish(30)
                if not info.is_published():
                    raise RuntimeError("a QoS 1 publish was not acknowledged in 30 s")
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            self.ended = self.ended or time.monotonic()
            client.disconnect()
            client.loop_stop()

    def finish(self) -> None:
        self.join(self.seconds + 120)
        if self.is_alive() or self.error is not None:
            raise RuntimeError(f"publisher {self.phase} failed: {self.error!r}")


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU of the process and its reaped children."""
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


# The per-thread /proc files the embedded engine keeps open (see thread_stat_fds).
THREAD_STAT_FILES = frozenset({"stat", "schedstat", "io"})


def thread_stat_fds(pid: int) -> int:
    """Open descriptors of ``pid`` on its own threads' /proc stat files.

    The embedded ClickHouse engine opens ``/proc/<pid>/task/<tid>/{stat,schedstat,io}`` for
    each of its threads the first time that thread runs a query or a background task (its
    per-thread metrics) and keeps them while the thread lives: up to three per thread. The
    engine's global pool grows once to about 150 threads at its first parts cleanup and keeps
    them, so this count creeps up for a long time as idle threads get picked, bounded by three
    times the threads. A leak of ours would show in the other descriptors.
    """
    prefix = f"/proc/{pid}/task/"
    count = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(prefix) and target.rsplit("/", 1)[-1] in THREAD_STAT_FILES:
            count += 1
    return count


def process_sample(proc: psutil.Process) -> dict[str, float]:
    """CPU seconds, RSS (MB) and its anonymous part (``rss_anon_mb``: RSS less the pages of
    mapped files, i.e. what the process allocated; the rest is library code read in as it
    first runs), open file descriptors (``fds``: all but the per-thread /proc stat files,
    counted apart in ``thread_stat_fds``) and threads of one process."""
    with proc.oneshot():
        stat_fds = thread_stat_fds(proc.pid)
        memory = proc.memory_info()
        return {
            "cpu_s": cpu_seconds(proc),
            "rss_mb": memory.rss / 2**20,
            "rss_anon_mb": (memory.rss - memory.shared) / 2**20,  # shared: RssFile + RssShmem
            "fds": float(proc.num_fds() - stat_fds),
            "thread_stat_fds": float(stat_fds),
            "threads": float(proc.num_threads()),
        }


class Sampler(threading.Thread):
    """Samples ``processes`` (name -> PID) every ``interval`` s into ``rows``: one dict per
    sample with ``t`` (s since start) and ``<name>_<key>`` for each key of
    :func:`process_sample`, plus what ``extra()`` returns (e.g. Kafka lag)."""

    def __init__(
        self,
        processes: dict[str, int],
        interval: float,
        extra: Any = None,
    ) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in processes.items()}
        self.interval = interval
        self.extra = extra
        self.rows: list[dict[str, float]] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.t0 = time.monotonic()

    def sample(self) -> dict[str, float]:
        row = {"t": time.monotonic() - self.t0}
        for name, proc in self.procs.items():
            for key, value in process_sample(proc).items():
                row[f"{name}_{key}"] = value
        if self.extra is not None:
            row.update(self.extra())
        return row

    def run(self) -> None:
        self.t0 = time.monotonic()
        try:
            while True:
                self.rows.append(self.sample())
                if self.stop_event.wait(self.interval):
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def stop(self) -> list[dict[str, float]]:
        self.stop_event.set()
        self.join(60)
        if self.error is not None:
            raise RuntimeError(f"sampler failed: {self.error!r}")
        return self.rows


@dataclass
class LoadedPipeline:
    """The MQTT bridge, one sink worker and processing worker(s) on a private stack."""

    e2e: EndToEnd
    env: dict[str, str]
    counter: Counter = field(default_factory=Counter)
    sent: Sent = field(default_factory=Sent)
    sources: int = SOURCES  # camera topics the publisher spreads its images over

    @property
    def settings(self) -> Settings:
        return self.e2e.bridge.settings

    def pids(self) -> dict[str, int]:
        """FlowForge's processes: ``bridge``, ``sink`` (the engine owner), ``worker`` (the
        first processing worker) and ``worker2``... for more."""
        pipeline = self.e2e.pipeline
        assert self.e2e.bridge.proc is not None
        pids = {"bridge": self.e2e.bridge.proc.pid}
        pids["sink"] = pipeline.workers[self.e2e.sink_port].pid
        for n, port in enumerate(self.e2e.process_ports):
            pids["worker" if n == 0 else f"worker{n + 1}"] = pipeline.workers[port].pid
        return pids

    def counts(self) -> dict[str, float]:
        """Images each process has handled: bridge published, worker(s) processed, sink rows."""
        pipeline = self.e2e.pipeline
        counts = {
            "bridge": self.e2e.bridge.metric("flowforge_bridge_published_total"),
            "sink": pipeline.metric(
                self.e2e.sink_port, "flowforge_sink_rows_total", outcome="inserted"
            ),
        }
        for n, port in enumerate(self.e2e.process_ports):
            name = "worker" if n == 0 else f"worker{n + 1}"
            counts[name] = pipeline.metric(port, "flowforge_worker_images_total")
        return counts

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until every process answers on /metrics (a worker's web server comes up after
        it joined its group)."""
        self.e2e.pipeline.wait_until(self.counts, "every process's /metrics", timeout, 0.5)

    def metric(self, name: str, process: str = "sink") -> float:
        port = self.e2e.sink_port if process == "sink" else self.e2e.process_ports[0]
        return self.e2e.pipeline.metric(port, name)

    def publish(self, frames: Frames, rate: float, seconds: float, phase: str) -> Publisher:
        publisher = Publisher(
            self.settings, frames, self.counter, self.sent, rate, seconds, phase, self.sources
        )
        publisher.start()
        return publisher

    def wait_drained(self, timeout: float = 120.0) -> float:
        """Wait until the sink has inserted a row per image published so far; return seconds."""
        started = time.monotonic()
        want = len(self.sent.at)
        while self.counts()["sink"] < want:
            if time.monotonic() - started > timeout:
                raise RuntimeError(
                    f"pipeline not drained in {timeout:.0f} s: {self.counts()} of {want} published"
                )
            time.sleep(0.2)
        return time.monotonic() - started

    def add_process_worker(self) -> None:
        self.e2e.process_ports.append(self.e2e.pipeline.start_worker(agents="process"))
        self.e2e.pipeline.wait_group(len(self.e2e.process_ports), timeout=120)
        self.wait_ready()

    def stop(self) -> None:
        """Stop the bridge and the workers (SIGTERM), so the engine can be read."""
        self.e2e.bridge.stop()
        self.e2e.pipeline.stop_all()
        self.e2e.process_ports.clear()

    def rows(self) -> list[tuple[str, int, int, int]]:
        """(image_id, rows, first inserted_at ms, captured_at ms) of every image in ClickHouse."""
        result = self.e2e.pipeline.query_engine(
            "SELECT image_id, count(), toUnixTimestamp64Milli(min(inserted_at)), "
            "toUnixTimestamp64Milli(min(captured_at)) FROM images_metadata GROUP BY image_id"
        )
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in result]

    def final_count(self) -> int:
        [[count]] = self.e2e.pipeline.query_engine("SELECT count() FROM images_metadata FINAL")
        return int(count)


@contextlib.contextmanager
def loaded_pipeline(
    name: str, extra_env: dict[str, str] | None = None, kafka_heap: str = "1g"
) -> Iterator[LoadedPipeline]:
    """A private Kafka (Java heap ``kafka_heap``) + Mosquitto on free ports (own home, stopped
    afterwards), the MQTT bridge, a sink worker and one processing worker, all started and
    ready; ``extra_env`` is added to their environment (FLOWFORGE_* settings)."""
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        workdir = Path(tmp)
        with running_stack(workdir / "stack", kafka_heap=kafka_heap) as (stack, env):
            e2e = EndToEnd.create(name, stack, env, workdir)
            # After create: its own worker settings (concurrency 2, ...) give way to ours.
            e2e.pipeline.env.update(extra_env or {})
            e2e.bridge.env.update(extra_env or {})
            try:
                e2e.start()
                loaded = LoadedPipeline(e2e, env)
                loaded.wait_ready()
                yield loaded
            finally:
                e2e.stop()
