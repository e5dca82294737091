"""Real `flowforge bridge ...` processes on the real broker and Mosquitto: start, kill, read."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from flowforge.core.envelope import header_map
from flowforge.core.mqtt import mqtt_client
from flowforge.core.settings import Settings
from tests.support.processes import FlowForgeProcess, listening_addresses, start_flowforge
from tests.support.unique import free_port


@dataclass(frozen=True)
class Record:
    """One Kafka record as the tests look at it."""

    topic: str
    key: str
    value: bytes
    headers: dict[str, str]
    timestamp_ms: int = 0  # the record's Kafka timestamp (the producer's create time)
    partition: int = -1


@dataclass
class BridgeProcess:
    """One bridge command run as a subprocess with its own env, web port and log file."""

    command: list[str]
    env: dict[str, str]
    workdir: Path
    web_port: int = field(default_factory=free_port)
    proc: FlowForgeProcess | None = None
    starts: int = 0

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"bridge-{self.web_port}.log"

    def start(self) -> None:
        """Start the bridge and wait until /readyz says ready."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the bridge process without waiting (a one-shot run may end before it is ready)."""
        self.starts += 1
        args = [*self.command, "--web-port", str(self.web_port)]
        self.proc = start_flowforge(args, env=self.env, log=self.log_path, cwd=self.workdir)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last: tuple[int, str] | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited {self.proc.returncode}:\n{self.log()}")
            try:
                last = self.get("/readyz")
                # only our bridge's answer counts, not another process's on a reused port
                if last[0] == 200 and self.listens():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"bridge not ready in {timeout}s ({last}):\n{self.log()}")

    def listens(self) -> bool:
        """Whether the bridge process itself holds the listening socket on its web port."""
        assert self.proc is not None
        try:
            return ("127.0.0.1", self.web_port) in listening_addresses(self.proc.pid)
        except psutil.NoSuchProcess:
            return False

    def signal(self, sig: signal.Signals, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit; return the exit code."""
        assert self.proc is not None
        return self.proc.signal(sig, timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=30)

    def get(self, path: str) -> tuple[int, str]:
        try:
            url = f"http://127.0.0.1:{self.web_port}{path}"
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` on /metrics that carry ``labels``."""
        _, text = self.get("/metrics")
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + "{", name + " ")) and all(w in line for w in wanted)
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def bridge_env(name: str, base_env: dict[str, str], workdir: Path) -> dict[str, str]:
    """The environment of a bridge with private Kafka topics, MQTT topic and client id."""
    env = dict(os.environ)
    env.update(base_env)
    env.update(
        {
            "FLOWFORGE_HOME": str(workdir / "home"),
            "FLOWFORGE_KAFKA_TOPIC_RAW": f"{name}.raw",
            "FLOWFORGE_KAFKA_TOPIC_DLQ": f"{name}.dlq",
            "FLOWFORGE_KAFKA_TOPIC_METADATA": f"{name}.metadata",
            "FLOWFORGE_MQTT_TOPIC": f"{name}/images/raw",
            "FLOWFORGE_MQTT_CLIENT_ID": name,
        }
    )
    return env


def payload(i: int, size: int = 100_000) -> bytes:
    """A distinct JPEG-looking payload (the bridge never decodes, so random bytes will do)."""
    return b"\xff\xd8\xff\xe0" + i.to_bytes(4, "big") + os.urandom(size - 8)


def mqtt_publish(settings: Settings, items: list[tuple[str, bytes]], qos: int = 1) -> None:
    """Publish (topic, payload) pairs with paho at ``qos`` and wait until the broker has each."""
    client = mqtt_client(settings.mqtt, f"test-pub-{os.getpid()}-{time.monotonic_ns()}")
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in items]
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def mosquitto_pub(settings: Settings, topic: str, path: Path) -> None:
    """Publish a file with Debian's mosquitto_pub at QoS 1, as a user would."""
    subprocess.run(
        ["mosquitto_pub", "-h", settings.mqtt.host, "-p", str(settings.mqtt.port),
         "-q", "1", "-t", topic, "-f", str(path)],
        check=True, timeout=30,
    )  # fmt: skip


def read_records(
    settings: Settings,
    topics: list[str],
    expected: int,
    *,
    timeout: float = 60.0,
    settle: float = 0.0,
    distinct: bool = False,
) -> list[Record]:
    """Read ``topics`` from the start until ``expected`` records (distinct image ids when
    ``distinct``) arrived, then ``settle`` seconds more to catch any extra."""
    return asyncio.run(_read(settings, topics, expected, timeout, settle, distinct))


async def _read(
    settings: Settings,
    topics: list[str],
    expected: int,
    timeout: float,
    settle: float,
    distinct: bool,
) -> list[Record]:
    consumer, _ = await _from_the_start(settings, topics)
    records: list[Record] = []
    try:
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, items in batch.items():
                records += [_record(tp.topic, r) for r in items]
            count = (
                len({r.headers.get("ff-image-id") for r in records}) if distinct else len(records)
            )
            if count >= expected and settle_until is None:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
    finally:
        await consumer.stop()
    return records


async def _from_the_start(
    settings: Settings, topics: list[str]
) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    """A started consumer assigned every partition of ``topics``, at their beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.kafka.request_bytes,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    tps = [TopicPartition(t, p) for t in topics for p in range(settings.kafka.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, tps


def _record(topic: str, message: Any) -> Record:
    return Record(
        topic,
        (message.key or b"").decode(),
        message.value or b"",
        header_map(message.headers),
        message.timestamp,
        message.partition,
    )


def read_written(settings: Settings, topics: list[str], timeout: float = 60.0) -> list[Record]:
    """Every record of ``topics`` up to their end offsets when called (all written so far)."""
    return asyncio.run(_read_written(settings, topics, timeout))


async def _read_written(settings: Settings, topics: list[str], timeout: float) -> list[Record]:
    consumer, tps = await _from_the_start(settings, topics)
    records: list[Record] = []
    try:
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topics} not read to their end in {timeout:.0f}s")
                batch = await consumer.getmany(tp, timeout_ms=500)
                records += [_record(tp.topic, r) for r in batch.get(tp, [])]
    finally:
        await consumer.stop()
    return records


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


def checkpointed(home: Path) -> int:
    """Rows in the (single) checkpoint under ``home``, read while a bridge may write it."""
    paths = list((home / "batch").glob("*.sqlite"))
    if not paths:
        return 0
    [path] = paths
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        try:
            return int(db.execute("SELECT count(*) FROM files").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not created yet
            return 0


def rtsp_bridge_vars(urls: list[str], fps: float, stall_s: float) -> dict[str, str]:
    """Settings of an RTSP bridge under test: its streams, quick stall detection and backoff."""
    return {
        "FLOWFORGE_RTSP_URLS": ",".join(urls),
        "FLOWFORGE_RTSP_FPS": str(fps),
        "FLOWFORGE_RTSP_STALL_S": str(stall_s),
        "FLOWFORGE_RTSP_OPEN_TIMEOUT_S": "3",
        "FLOWFORGE_RTSP_BACKOFF_INITIAL_S": "0.2",
        "FLOWFORGE_RTSP_BACKOFF_MAX_S": "2",
    }
