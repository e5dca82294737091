"""The whole pipeline on a private stack for fault drills: a QoS 1 feeder that retries, the MQTT
bridge, a processing worker, a sink worker, and the figures of one drill."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from flowforge.core.envelope import content_image_id
from flowforge.core.formats import sniff_format
from flowforge.core.mqtt import mqtt_client
from flowforge.core.settings import Settings
from flowforge.stack import Stack
from flowforge.stack.kafka import KafkaService
from flowforge.stack.mosquitto import MosquittoService
from tests.support.bridges import BridgeProcess, read_records
from tests.support.images import jpeg, numbered, scene
from tests.support.pipeline import Pipeline, make_pipeline

# The drills' private broker's Java heap (for ``running_stack(home, kafka_heap=...)``): at the
# stack's default 512m it ran out of heap after ~10 drills in one module (OutOfMemoryError in
# the group coordinator's writes; RELIABILITY.md).
DRILL_KAFKA_HEAP = "1g"


@dataclass(frozen=True)
class Item:
    """One image of a drill: its MQTT topic (or file), bytes, image id, whether it is rejected
    and by which stage (the worker's ``process``, or the batch bridge's ``bridge``)."""

    topic: str
    payload: bytes
    image_id: str
    reject: bool
    rejected_by: str = "process"


def drill_items(base: str, count: int, sources: int = 6, reject_every: int = 20) -> list[Item]:
    """``count`` distinct images over ``sources`` cameras; every ``reject_every``-th is bad bytes
    (alternately not an image and a truncated JPEG), which the worker must dead-letter."""
    items = []
    for i in range(count):
        source = f"cam-{i % sources:02d}"
        frame = jpeg(numbered(scene(640, 360, seed=200 + i % 5), i))
        reject = i % reject_every == reject_every // 2
        if reject:
            cut = (i // reject_every) % 2 == 0  # alternately, for every reject_every
            payload = frame[: len(frame) // 3] if cut else b"not an image %d" % i
        else:
            payload = frame
        items.append(Item(f"{base}/{source}", payload, content_image_id(source, payload), reject))
    return items


def write_batch(root: Path, items: list[Item]) -> list[Item]:
    """Write the items as files under ``root`` (a folder per camera) and return them as the
    batch bridge sees them: the source is the root's name; bytes that are not an image are
    refused by the bridge itself (a truncated JPEG gets to the worker)."""
    written = []
    for i, item in enumerate(items):
        path = root / item.topic.rsplit("/", 1)[-1] / f"img-{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.payload)
        image_id = content_image_id(root.name, item.payload)
        by = "bridge" if sniff_format(item.payload) is None else "process"
        written.append(replace(item, topic=str(path), image_id=image_id, rejected_by=by))
    return written


def published_items(settings: Settings, settle: float = 5.0) -> list[Item]:
    """The images a bridge published to images.raw (read from the start until ``settle``
    seconds bring nothing new), as drill items: the known set of a drill whose source samples."""
    records = read_records(settings, [settings.kafka.topic_raw], 1, timeout=60, settle=settle)
    ids = sorted({r.headers["ff-image-id"] for r in records})
    return [Item(settings.kafka.topic_raw, b"", image_id, reject=False) for image_id in ids]


class Feeder(threading.Thread):
    """Publishes items at QoS 1 at a steady rate (catching up at once when behind); a publish
    not acknowledged within a few seconds (Mosquitto away) is retried on a fresh connection,
    as a camera that must not lose a picture would."""

    def __init__(self, settings: Settings, items: list[Item], rate: float) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.items = items
        self.rate = rate
        self.published = 0
        self.retries = 0
        self.error: BaseException | None = None
        self._client: mqtt.Client | None = None

    def _connect(self) -> mqtt.Client:
        mqtt_settings = self.settings.mqtt
        client = mqtt_client(mqtt_settings, f"drill-pub-{os.getpid()}-{time.monotonic_ns()}")
        client.max_queued_messages_set(0)
        client.connect(mqtt_settings.host, mqtt_settings.port, keepalive=10)
        client.loop_start()
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def _publish_once(self, item: Item) -> bool:
        try:
            if self._client is None:
                self._client = self._connect()
            info = self._client.publish(item.topic, item.payload, qos=1)
            info.wait_for_publish(5)
            return info.is_published()
        except (OSError, RuntimeError, ValueError):
            return False

    def run(self) -> None:
        start = time.monotonic()
        try:
            for i, item in enumerate(self.items):
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                while not self._publish_once(item):
                    self.retries += 1
                    self._drop()
                    time.sleep(0.5)
                self.published += 1
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            self._drop()

    def finish(self, timeout: float) -> None:
        """Wait until every item is published; fail with the feeder's error if any."""
        self.join(timeout)
        assert not self.is_alive(), f"feeder stuck: {self.published}/{len(self.items)} published"
        assert self.error is None, f"feeder failed: {self.error!r}"
        assert self.published == len(self.items)


@dataclass
class Figures:
    """What a drill measured (printed with -s; RELIABILITY.md records them)."""

    scenario: str
    sent: int = 0
    rejects_sent: int = 0
    mqtt_retries: int = 0
    rows_final: int = 0
    distinct: int = 0
    rows_raw: int = 0
    metadata_records: int = 0
    dlq_records: int = 0
    dlq_distinct: int = 0
    fault_s: float = 0.0
    recovery_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        """Replays ClickHouse collapsed: raw rows minus FINAL rows."""
        return self.rows_raw - self.rows_final

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        return (
            f"RELIABILITY {self.scenario}: sent={self.sent} (rejects {self.rejects_sent}, "
            f"mqtt retries {self.mqtt_retries}) rows={self.rows_final} distinct={self.distinct} "
            f"raw={self.rows_raw} duplicates={self.duplicates} "
            f"metadata_records={self.metadata_records} dlq={self.dlq_records} "
            f"(distinct {self.dlq_distinct}) fault={self.fault_s:.1f}s "
            f"recovery={self.recovery_s:.1f}s {extra}"
        )


@dataclass
class EndToEnd:
    """One drill's pipeline on the private stack: bridge, processing worker(s), sink worker."""

    stack: Stack
    pipeline: Pipeline
    bridge: BridgeProcess
    sink_port: int = 0
    bridge_started: float = 0.0
    process_ports: list[int] = field(default_factory=list)

    @classmethod
    def create(cls, name: str, stack: Stack, stack_vars: dict[str, str], workdir: Path) -> EndToEnd:
        asyncio.run(stack.up(report=lambda _line: None))  # an earlier drill may have left it down
        pipeline = make_pipeline(name, stack.settings, stack_vars, workdir)
        env = dict(pipeline.env)
        env.update({"FLOWFORGE_MQTT_TOPIC": f"{name}/images/raw", "FLOWFORGE_MQTT_CLIENT_ID": name})
        return cls(stack, pipeline, BridgeProcess(["bridge", "mqtt"], env, workdir))

    @property
    def kafka(self) -> KafkaService:
        [kafka] = [s for s in self.stack.services if isinstance(s, KafkaService)]
        return kafka

    @property
    def mosquitto(self) -> MosquittoService:
        [mosquitto] = [s for s in self.stack.services if isinstance(s, MosquittoService)]
        return mosquitto

    @property
    def base_topic(self) -> str:
        return self.bridge.settings.mqtt.topic

    def use_bridge(
        self, command: list[str], kind: type[BridgeProcess] = BridgeProcess, **env: str
    ) -> BridgeProcess:
        """Feed the pipeline from another bridge command (on its topics) instead of MQTT."""
        self.bridge = kind(command, self.pipeline.env | env, self.pipeline.workdir)
        return self.bridge

    def start(self, bridge: bool = True) -> None:
        """Sink worker (its own group, see streams.app.consumer_group), one processing worker
        (group Stable), then the bridge (ready) unless ``bridge`` is false."""
        self.sink_port = self.pipeline.start_worker(agents="sink")
        self.process_ports.append(self.pipeline.start_worker(agents="process"))
        self.pipeline.wait_group(1, timeout=120)
        if bridge:
            self.bridge.start()
        self.bridge_started = time.time()

    def mosquitto_saved_after(self, moment: float, timeout: float = 30.0) -> float:
        """Wait until Mosquitto's persistence file was written after ``moment`` (wall clock),
        i.e. it holds the bridge's session; return the seconds waited."""
        db = self.mosquitto.settings.home / "mosquitto" / "data" / "mosquitto.db"
        began = time.monotonic()
        self.pipeline.wait_until(
            lambda: db.exists() and db.stat().st_mtime > moment, "a Mosquitto autosave", timeout
        )
        return time.monotonic() - began

    def restart_sink(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill the sink worker with ``sig`` and start it again on the same port."""
        self.pipeline.kill_worker(self.sink_port, sig)
        self.pipeline.start_worker(self.sink_port, agents="sink")

    def sink_status(self, path: str) -> tuple[int, str]:
        """Status and body of a page of the sink worker (e.g. /readyz)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.sink_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def run_fault(
        self,
        figures: Figures,
        items: list[Item],
        rate: float,
        fault: Callable[[Feeder], object],
        *,
        at_rows: int = 30,
        timeout: float = 180.0,
    ) -> None:
        """Start the pipeline and publish ``items`` at ``rate``; once ``at_rows`` rows are in
        ClickHouse run ``fault`` (timed: ``figures.fault_s``), then wait for the feeder and for
        every row (``figures.recovery_s``, from the fault's end). :meth:`finish` checks."""
        self.start()
        feeder = self.feed(items, rate)
        self.wait_rows(at_rows)
        began = time.monotonic()
        fault(feeder)
        fault_end = time.monotonic()
        figures.fault_s = fault_end - began
        feeder.finish(timeout=120)
        figures.recovery_s = self.wait_rows(len(items), timeout) - fault_end
        figures.mqtt_retries = feeder.retries

    def feed(self, items: list[Item], rate: float) -> Feeder:
        feeder = Feeder(self.bridge.settings, items, rate)
        feeder.start()
        return feeder

    def rows(self) -> int:
        """Images in ClickHouse (FINAL), over the sink's HTTP interface; -1 while it cannot
        answer."""
        return self.pipeline.rows()

    def wait_rows(self, at_least: int, timeout: float = 120.0) -> float:
        """Wait until ClickHouse holds ``at_least`` images; return the monotonic time it did."""
        self.pipeline.wait_until(
            lambda: self.rows() >= at_least, f"{at_least} rows in ClickHouse", timeout, 0.25
        )
        return time.monotonic()

    def kill_process_worker(self, port: int, sig: signal.Signals = signal.SIGKILL) -> None:
        self.pipeline.kill_worker(port, sig)
        self.process_ports.remove(port)

    def finish(self, figures: Figures, items: list[Item], timeout: float = 120.0) -> None:
        """Stop everything, read ClickHouse and the topics, fill ``figures`` and check the end
        state: one row per distinct image, whoever refused it (a bridge's refusals are rows
        too), the dead letters exactly the rejects, each from the stage that refused it."""
        assert len({i.image_id for i in items}) == len(items), "the drill's images must be distinct"
        wanted = {i.image_id for i in items}
        rejects = {i.image_id: i.rejected_by for i in items if i.reject}
        self.bridge.stop()
        time.sleep(2)  # any late replay reaches the sink before it stops
        for port in list(self.process_ports):
            self.kill_process_worker(port, signal.SIGTERM)
        self.pipeline.kill_worker(self.sink_port, signal.SIGTERM)
        out = self.pipeline.collect(len(wanted), timeout=timeout, settle=1)
        [[final, distinct, raw]] = self.pipeline.query_engine(
            "SELECT (SELECT count() FROM images_metadata FINAL), uniqExact(image_id), count() "
            "FROM images_metadata"
        )
        ids = {row[0] for row in self.pipeline.query_engine("SELECT image_id FROM images_metadata")}
        figures.sent = len(items)
        figures.rejects_sent = len(rejects)
        figures.rows_final, figures.distinct, figures.rows_raw = final, distinct, raw
        figures.metadata_records = len(out.metadata)
        figures.dlq_records = len(out.dlq)
        figures.dlq_distinct = len(set(out.dlq_ids()))
        print(f"\n{figures.line()}")
        assert wanted - ids == set(), f"{len(wanted - ids)} images lost"
        assert ids - wanted == set(), f"unexpected rows: {sorted(ids - wanted)[:5]}"
        assert (final, distinct) == (len(wanted), len(wanted)), figures.line()
        assert set(out.ids()) == wanted
        assert set(out.dlq_ids()) == set(rejects), "the dead letters are not exactly the rejects"
        stages = {(h["ff-image-id"], h["ff-error-stage"]) for h, _ in out.dlq}
        assert stages == set(rejects.items()), Counter(stage for _, stage in stages)

    def finish_published(self, figures: Figures, fault_end: float) -> None:
        """For a source that samples (RTSP): stop the bridge, take the images it published to
        images.raw as the known set, wait until each is a row (``figures.recovery_s`` from
        ``fault_end``, including the topic read) and :meth:`finish`."""
        self.bridge.stop()
        items = published_items(self.bridge.settings)
        figures.recovery_s = self.wait_rows(len(items)) - fault_end
        self.finish(figures, items)

    def stop(self) -> None:
        """Stop every process and delete the drill's topics: the module's broker would
        otherwise hold every drill's partitions (with ~550 of them, a SIGKILLed broker at
        512 MB of heap ran out of memory on restart)."""
        self.bridge.stop()
        self.pipeline.stop_all()
        if self.kafka.process.pid() is not None:
            self.pipeline.delete_topics()
