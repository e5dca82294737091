"""Real `flowforge worker` processes on the real broker: produce images, collect outcomes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from clickhouse_connect.driver.exceptions import ClickHouseError

from flowforge.core.clickhouse import connect, through_owner
from flowforge.core.envelope import Envelope, content_image_id, header_map
from flowforge.core.errors import EngineLocked, FlowForgeError
from flowforge.core.kafka_admin import admin_client, ensure_topics, topic_spec
from flowforge.core.partitioning import partition_of
from flowforge.core.settings import ClickHouseSettings, Settings
from streams.records import ImageMetadata
from tests.support.processes import FlowForgeProcess, start_flowforge
from tests.support.unique import free_port


@dataclass
class Outcomes:
    """What the worker(s) wrote: metadata records (an image's outcome), duplicate records (a
    delivery of an image already seen), processed images and dead letters."""

    metadata: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    processed: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    dlq: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    # image id -> the partitions of images.metadata and images.processed its records are on
    partitions: dict[str, set[tuple[str, int]]] = field(default_factory=dict)

    def ids(self) -> list[str]:
        """Image ids of every outcome, with repeats: every image, rejects included, gets one
        metadata record (a reject's also goes to the dead-letter topic, see :meth:`dlq_ids`)."""
        return [m["image_id"] for m in self.metadata]

    def dlq_ids(self) -> list[str]:
        """Image ids of the dead letters, with repeats."""
        return [h["ff-image-id"] for h, _ in self.dlq]


@dataclass
class Pipeline:
    """A private set of topics, an app id and worker processes for one test."""

    settings: Settings
    env: dict[str, str]
    workdir: Path
    workers: dict[int, FlowForgeProcess] = field(default_factory=dict)

    @property
    def kafka(self) -> Any:
        return Settings.from_env(self.env).kafka

    def start_worker(self, web_port: int | None = None, agents: str = "process") -> int:
        """Start `flowforge worker --agents AGENTS` on ``web_port`` (fresh by default).

        Returns the port. Only the process agent by default: the sink's tests ask for it.
        """
        port = web_port or free_port()
        args = ["worker", "-l", "info", "--web-port", str(port), "--agents", agents]
        log = self.workdir / f"worker-{port}.log"
        self.workers[port] = start_flowforge(args, env=self.env, log=log, cwd=self.workdir)
        return port

    def kill_worker(self, port: int, sig: signal.Signals = signal.SIGKILL) -> None:
        self.workers.pop(port).signal(sig, timeout=60)

    def stop_all(self) -> None:
        for port in list(self.workers):
            self.workers[port].stop(timeout=30)
            del self.workers[port]

    def delete_topics(self) -> None:
        """Delete this pipeline's topics, its own and the workers' changelogs (all named after
        its app id), so that a broker shared by many tests holds only what runs now."""
        asyncio.run(self._delete_topics())

    async def _delete_topics(self) -> None:
        admin = admin_client(self.settings.kafka)
        await admin.start()
        try:
            prefix = self.settings.worker.app_id
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
            # Gone from the metadata before the next test creates topics: a worker started
            # while the controller was still busy with a deletion once found its freshly
            # created changelog topic missing from the metadata and crashed (RELIABILITY.md).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if not any(t.startswith(prefix) for t in await admin.list_topics()):
                    return
                await asyncio.sleep(0.5)
            raise AssertionError(f"topics {prefix}* not deleted within 30 s")
        finally:
            await admin.close()

    def wait_group(self, members: int, timeout: float = 60.0, group: str | None = None) -> None:
        """Wait until the workers' consumer group (or ``group``) is Stable with ``members``
        members."""
        asyncio.run(self._wait_group(members, timeout, group or self.settings.worker.app_id))

    async def _wait_group(self, members: int, timeout: float, group_id: str) -> None:
        admin = admin_client(self.settings.kafka)
        await admin.start()
        state: Any = None
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    [response] = await admin.describe_consumer_groups([group_id])
                except KafkaError as exc:
                    if not exc.retriable:  # e.g. no coordinator yet on a fresh broker
                        raise
                    state = exc
                else:
                    [group] = response.to_object()["groups"]
                    state = (group["state"], len(group["members"]))
                    if state == ("Stable", members):
                        return
                await asyncio.sleep(0.5)
        finally:
            await admin.close()
        raise AssertionError(f"consumer group not Stable with {members} members: {state}")

    def changelog_keys(self, table: str) -> set[str]:
        """Keys (JSON-decoded) holding a value in table ``table``'s changelog topic now (what
        Kafka acked: what a restarted worker recovers, from its SQLite files or the changelog)."""
        return asyncio.run(self._changelog_keys(table))

    async def _changelog_keys(self, table: str) -> set[str]:
        topic = f"{self.settings.worker.app_id}-{table}-changelog"
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers, enable_auto_commit=False
        )
        await consumer.start()
        values: dict[str, bool] = {}
        try:
            # A changelog has the partitions of the app's topics (Faust's topic_partitions).
            tps = [TopicPartition(topic, p) for p in range(self.settings.kafka.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, []):
                        key = json.loads(record.key or b"null")  # Faust: JSON for str keys
                        values[str(key)] = record.value is not None
        finally:
            await consumer.stop()
        return {key for key, present in values.items() if present}

    def metric(self, port: int, name: str, **labels: str) -> float:
        """Sum of the samples of metric ``name`` on the worker's /metrics matching ``labels``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + "{", name + " ")) and all(w in line for w in wanted)
        )

    def get_json(self, port: int, path: str, timeout: float = 60.0) -> Any:
        """GET a JSON page of the worker, retrying until its web server answers."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def status(self, port: int, path: str) -> tuple[int, str]:
        """GET ``path`` on the worker's web port: the HTTP status and the body."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def worker_log(self, port: int) -> str:
        return (self.workdir / f"worker-{port}.log").read_text(errors="replace")

    def alive(self, port: int) -> bool:
        return self.workers[port].poll() is None

    def produce(self, items: Iterable[tuple[str, bytes]], source: str = "cam-01") -> list[str]:
        """Publish (name, payload) pairs to images.raw with bridge-style envelopes, each on the
        partition of its image id as the bridges send them; return ids."""
        return asyncio.run(self._produce(list(items), source))

    async def _produce(self, items: list[tuple[str, bytes]], source: str) -> list[str]:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            max_request_size=self.settings.kafka.request_bytes,
        )
        await producer.start()
        ids = []
        try:
            for name, payload in items:
                image_id = content_image_id(source, payload)
                envelope = Envelope(
                    image_id=image_id,
                    source_type="batch",
                    source_id=source,
                    captured_at_ms=int(time.time() * 1000),
                    content_type="application/octet-stream",
                    origin=name,
                    ingested_at_ms=int(time.time() * 1000),
                )
                await producer.send_and_wait(
                    self.kafka.topic_raw,
                    payload,
                    key=source.encode(),
                    headers=envelope.headers(),
                    partition=partition_of(image_id, range(self.settings.kafka.partitions)),
                )
                ids.append(image_id)
        finally:
            await producer.stop()
        return ids

    def sources_on_every_partition(self) -> list[str]:
        """Source ids whose keys land on every partition, one each (Kafka's default
        partitioner, which the worker's producer uses): records of these sources reach every
        consumer of a topic, whatever partitions it was assigned."""
        count = self.settings.kafka.partitions
        partitions = list(range(count))
        found: dict[int, str] = {}
        for i in range(10_000):
            name = f"cam-{i:02d}"
            found.setdefault(DefaultPartitioner()(name.encode(), partitions, partitions), name)
            if len(found) == count:
                return [found[p] for p in partitions]
        raise AssertionError(f"no source names cover {count} partitions")

    def produce_metadata(self, values: Iterable[bytes], source: str = "cam-01") -> None:
        """Publish raw values to images.metadata (records as a worker would send, or junk)."""
        asyncio.run(self._produce_metadata(list(values), source))

    async def _produce_metadata(self, values: list[bytes], source: str) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers, acks="all", linger_ms=5
        )
        await producer.start()
        try:
            sent = [
                await producer.send(self.kafka.topic_metadata, value, key=source.encode())
                for value in values
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    @property
    def engine_path(self) -> Path:
        """The embedded ClickHouse directory of this pipeline's sink."""
        return Path(self.env["FLOWFORGE_HOME"]) / "clickhouse"

    def migrate(self) -> None:
        """Create the schema in the pipeline's engine (`flowforge clickhouse migrate`) before any
        worker holds it, so a test can adjust a table first."""
        log = self.workdir / "migrate.log"
        args = ["clickhouse", "migrate"]
        process = start_flowforge(args, env=self.env, log=log, cwd=self.workdir)
        code = process.wait(timeout=120)
        assert code == 0, f"migrate failed ({code}): {log.read_text(errors='replace')[-2000:]}"

    def _clickhouse_over_http(self) -> ClickHouseSettings | None:
        """Where this pipeline's ClickHouse answers over HTTP now: its server
        (FLOWFORGE_CLICKHOUSE_URL=http://...) or the HTTP interface of the live worker owning its
        embedded engine; None while neither is there (nothing is opened to find out)."""
        try:
            ch = through_owner(Settings.from_env(self.env).clickhouse)
        except EngineLocked:
            return None
        return ch if ch.url.startswith(("http://", "https://")) else None

    def query_engine(self, sql: str) -> list[list[Any]]:
        """Run ``sql`` on the pipeline's ClickHouse; return the rows as JSON gives them (times as
        strings). Over HTTP when it is a server or a worker owns its embedded engine, as any
        other client does; else from a fresh process that opens the engine (this one may own
        another engine), so only once no worker is starting on it."""
        http = self._clickhouse_over_http()
        if http is not None:
            client = connect(http)
            try:
                rows = client.query(sql).result_rows
            finally:
                client.close()
            return list(json.loads(json.dumps(rows, default=str)))
        script = (
            "import json, sys, clickhouse_connect\n"
            "client = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1])\n"
            "print(json.dumps(client.query(sys.argv[2]).result_rows, default=str))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(self.engine_path.resolve()), sql],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"query failed: {result.stderr[-2000:]}")
        return list(json.loads(result.stdout.strip().splitlines()[-1]))

    def http_client(self) -> Any:
        """A clickhouse-connect client over HTTP (see :meth:`_clickhouse_over_http`), or None
        while nothing answers there."""
        http = self._clickhouse_over_http()
        if http is None:
            return None
        try:
            return connect(http)
        except FlowForgeError:
            return None

    def serving(self) -> bool:
        """ClickHouse answers over HTTP now (its server, or the engine owner's interface)."""
        client = self.http_client()
        if client is not None:
            client.close()
        return client is not None

    def rows(self) -> int:
        """Distinct images in ClickHouse (count FINAL), asked over HTTP (its server, or the
        interface of the worker owning the engine); -1 while nothing answers. Never opens the
        engine, so polling it cannot lock out a worker that is starting."""
        client = self.http_client()
        if client is None:
            return -1
        try:
            return int(client.command("SELECT count() FROM images_metadata FINAL"))
        except (ClickHouseError, OSError):
            return -1
        finally:
            client.close()

    def wait_until(
        self, condition: Any, what: str, timeout: float = 90.0, interval: float = 0.3
    ) -> Any:
        """Poll ``condition()`` until it returns a truthy value (returned); fail naming ``what``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = condition()
            except OSError as exc:  # a worker's web server not up yet
                last = exc
            else:
                if last:
                    return last
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})")

    def collect(self, expected: int, timeout: float = 90.0, settle: float = 0.0) -> Outcomes:
        """Read the output topics from the start until ``expected`` distinct images have an
        outcome, then ``settle`` seconds more (to catch any extra outcome)."""
        return asyncio.run(self._collect(expected, timeout, settle))

    def collect_written(self, timeout: float = 60.0) -> Outcomes:
        """Read the output topics from the start up to their end offsets now: every outcome
        written so far (with no worker running, every outcome there will be)."""
        return asyncio.run(self._collect(None, timeout, 0.0))

    async def _collect(self, expected: int | None, timeout: float, settle: float) -> Outcomes:
        kafka = self.kafka
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            enable_auto_commit=False,
            max_partition_fetch_bytes=self.settings.kafka.request_bytes,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        await consumer.start()
        outcomes = Outcomes()
        try:
            topics = (kafka.topic_metadata, kafka.topic_processed, kafka.topic_dlq)
            tps = [
                TopicPartition(t, p) for t in topics for p in range(self.settings.kafka.partitions)
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps) if expected is None else {}
            deadline = time.monotonic() + timeout
            settle_until: float | None = None
            while time.monotonic() < deadline:
                if expected is None:
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    if all(positions[tp] >= end for tp, end in ends.items()):
                        break
                elif self.workers and all(p.poll() is not None for p in self.workers.values()):
                    break  # every worker died: the test fails on the counts, with the logs
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    for r in records:
                        headers = header_map(r.headers)
                        if tp.topic == kafka.topic_metadata:
                            try:
                                value = json.loads(r.value)
                            except ValueError:
                                value = None
                            if isinstance(value, dict) and value.get("status") == "duplicate":
                                outcomes.duplicates.append(value)
                            elif isinstance(value, dict) and "image_id" in value:
                                outcomes.metadata.append(value)
                                where = outcomes.partitions.setdefault(value["image_id"], set())
                                where.add((tp.topic, tp.partition))
                            # else: junk a test put there for the sink to refuse
                        elif tp.topic == kafka.topic_processed:
                            outcomes.processed.append((headers, r.value))
                            where = outcomes.partitions.setdefault(headers["ff-image-id"], set())
                            where.add((tp.topic, tp.partition))
                        else:
                            outcomes.dlq.append((headers, r.value))
                if expected is None:
                    continue
                done = len(set(outcomes.ids())) >= expected  # distinct: replays do not count
                if done and settle_until is None:
                    settle_until = time.monotonic() + settle
                if settle_until is not None and time.monotonic() >= settle_until:
                    break
            else:
                if expected is None:
                    raise AssertionError(f"output topics not read to their end in {timeout:.0f}s")
        finally:
            await consumer.stop()
        return outcomes


def metadata_record(i: int, source: str = "cam-01") -> bytes:
    """Metadata record number ``i`` as a worker sends it (the same Faust record class)."""
    now = datetime.now(tz=UTC)
    record = ImageMetadata(
        image_id=f"{source}-{i:06d}", source_type="batch", source_id=source,
        captured_at=now, ingested_at=now, processed_at=now, status="processed", reason="",
        width=1280, height=720, out_width=640, out_height=360, bytes=120_000, format="jpeg",
        brightness=100.0 + i % 50, contrast=40.0, sharpness=300.0, processing_ms=4.2,
        kafka_partition=i % 6, kafka_offset=i, worker="test:0",
    )  # fmt: skip
    return bytes(record.dumps())


def make_pipeline(
    name: str, settings: Settings, base_env: dict[str, str], workdir: Path
) -> Pipeline:
    """Create private topics and an app id named after the test, and the env for its workers."""
    env = dict(os.environ)
    env.update(base_env)
    env.update(
        {
            "FLOWFORGE_KAFKA_TOPIC_RAW": f"{name}.raw",
            "FLOWFORGE_KAFKA_TOPIC_PROCESSED": f"{name}.processed",
            "FLOWFORGE_KAFKA_TOPIC_METADATA": f"{name}.metadata",
            "FLOWFORGE_KAFKA_TOPIC_DLQ": f"{name}.dlq",
            "FLOWFORGE_WORKER_APP_ID": name,
            "FLOWFORGE_HOME": str(workdir / "home"),
            "FLOWFORGE_WORKER_STATS_INTERVAL_S": "5",
            "FLOWFORGE_WORKER_CONCURRENCY": "2",
            # A sink worker serves the engine's HTTP interface: never on 8123, never shared.
            "FLOWFORGE_CLICKHOUSE_HTTP_PORT": str(free_port()),
        }
    )
    private = Settings.from_env(env)
    kafka = private.kafka
    names = (kafka.topic_raw, kafka.topic_processed, kafka.topic_metadata, kafka.topic_dlq)
    asyncio.run(ensure_topics(kafka, [topic_spec(kafka, n) for n in names]))
    return Pipeline(settings=private, env=env, workdir=workdir)
