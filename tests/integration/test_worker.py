"""The worker on the real Kafka broker: one outcome per message, dedup, scaling, crashes."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import threading
import time
import urllib.request
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from flowforge.core.envelope import content_image_id
from flowforge.core.kafka_admin import admin_client
from flowforge.core.partitioning import partition_of
from flowforge.core.settings import Settings
from flowforge.stack import Stack
from tests.support.images import jpeg, mixed_set, numbered, scene
from tests.support.pipeline import Pipeline, make_pipeline
from tests.support.stack import running_stack, stack_env
from tests.support.unique import unique_name

SEEN_TABLE = "seen-images"  # the processed-image cache (streams/tables.py)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_http(port: int, path: str, timeout: float = 60) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _get(port, path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_mixed_images_get_exactly_one_outcome_each(pipeline: Pipeline) -> None:
    """Every message (each format, dark, flat, corrupt, empty, bomb) gets its one right outcome."""
    cases = mixed_set()
    ids = pipeline.produce((name, payload) for name, (payload, _) in cases.items())
    expected = {image_id: cases[name][1] for image_id, name in zip(ids, cases, strict=True)}
    port = pipeline.start_worker()
    out = pipeline.collect(len(cases), settle=3)

    assert Counter(out.ids()) == Counter(expected.keys()), "not exactly one outcome per message"
    rejected = {m["image_id"]: m["reason"] for m in out.metadata if m["status"] == "rejected"}
    got = {m["image_id"]: m["status"] for m in out.metadata if m["status"] != "rejected"}
    got |= {h["ff-image-id"]: "dlq:" + h["ff-error-reason"] for h, _ in out.dlq}
    assert got == expected
    # A reject's metadata record carries the dead letter's reason.
    assert rejected == {h["ff-image-id"]: h["ff-error-reason"] for h, _ in out.dlq}
    processed_ids = {m["image_id"] for m in out.metadata if m["status"] == "processed"}
    assert {h["ff-image-id"] for h, _ in out.processed} == processed_ids
    for headers, data in out.processed:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (360, 640)
        assert headers["ff-content-type"] == "image/jpeg"
    for headers, data in out.dlq:
        name = headers["ff-origin"]
        assert data == cases[name][0], f"DLQ must carry the original bytes of {name}"
        assert headers["ff-original-topic"] == pipeline.kafka.topic_raw
        assert headers["ff-error-stage"] == "process"
    assert pipeline.alive(port), pipeline.worker_log(port)


def test_metadata_record_matches_the_contract(pipeline: Pipeline) -> None:
    """A metadata record has every ClickHouse column with sensible values for a 720p JPEG."""
    payload = jpeg(scene(1280, 720, seed=21))
    [image_id] = pipeline.produce([("one.jpg", payload)], source="cam-07")
    pipeline.start_worker()
    out = pipeline.collect(1)
    [record] = out.metadata
    assert set(record) == {
        "image_id", "source_type", "source_id", "captured_at", "ingested_at", "processed_at",
        "status",
        "reason", "width", "height", "out_width", "out_height", "bytes", "format",
        "brightness", "contrast", "sharpness", "processing_ms", "kafka_partition",
        "kafka_offset", "worker",
    }  # fmt: skip
    assert record["image_id"] == image_id
    assert (record["source_type"], record["source_id"]) == ("batch", "cam-07")
    assert (record["width"], record["height"]) == (1280, 720)
    assert (record["out_width"], record["out_height"]) == (640, 360)
    assert record["bytes"] == len(payload)
    assert record["format"] == "jpeg"
    assert 40 < record["brightness"] < 255
    captured = datetime.fromisoformat(record["captured_at"])
    processed = datetime.fromisoformat(record["processed_at"])
    assert captured.utcoffset() == timedelta(0)
    assert processed.utcoffset() == timedelta(0)
    assert captured <= processed


def test_same_image_twice_is_processed_once(pipeline: Pipeline) -> None:
    """A redelivered image (same image id) yields one outcome, counted as a duplicate, and the
    worker logs each duplicate naming the image and when it was first seen, and sends one
    duplicate record per duplicate delivery."""
    payload = jpeg(scene(1280, 720, seed=31))
    other = jpeg(scene(1280, 720, seed=32))
    pipeline.produce([("a", payload), ("a-again", payload), ("b", other), ("a-third", payload)])
    port = pipeline.start_worker()
    out = pipeline.collect(2, settle=4)
    assert len(out.metadata) == 2
    assert len({m["image_id"] for m in out.metadata}) == 2
    status, body = _wait_http(port, "/stats")
    assert status == 200
    assert json.loads(body)["sources"]["cam-01"]["duplicates"] == 2
    image_id = next(m["image_id"] for m in out.metadata if m["bytes"] == len(payload))
    lines = [
        line
        for line in pipeline.worker_log(port).splitlines()
        if f"duplicate image {image_id} from source cam-01" in line
    ]
    assert len(lines) == 2, pipeline.worker_log(port)[-3000:]
    assert all("first seen 20" in line or "being processed now" in line for line in lines)
    # Each duplicate delivery is also a record on images.metadata (status duplicate).
    pipeline.wait_until(lambda: len(pipeline.collect_written().duplicates) >= 2, "records")
    duplicates = pipeline.collect_written().duplicates
    assert [(d["image_id"], d["source_id"]) for d in duplicates] == [(image_id, "cam-01")] * 2
    assert len({d["kafka_offset"] for d in duplicates}) == 2


def test_worker_serves_health_metrics_and_stats(pipeline: Pipeline) -> None:
    """/livez, /readyz, /metrics (Prometheus text with the outcome counters) and /stats (this
    worker's own counts since its start, per source and per partition, labelled so) answer."""
    pipeline.produce([("x", jpeg(scene(640, 360, seed=41))), ("bad", b"")])
    port = pipeline.start_worker()
    pipeline.collect(2)
    assert _wait_http(port, "/livez") == (200, "ok\n")
    deadline = time.monotonic() + 30
    while (ready := _get(port, "/readyz"))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ready[0] == 200, ready
    status, text = _get(port, "/metrics")
    assert status == 200
    assert 'flowforge_worker_images_total{source="cam-01",status="processed"} 1.0' in text
    assert 'flowforge_worker_dlq_total{reason="empty"} 1.0' in text
    assert "flowforge_worker_decode_ms_bucket" in text
    stats = json.loads(_get(port, "/stats")[1])
    assert stats["sources"]["cam-01"]["processed"] == 1
    assert stats["sources"]["cam-01"]["rejected"] == 1
    assert stats["sources"]["cam-01"]["images"] == 2
    assert sum(stats["partitions"].values()) == 2
    assert stats["scope"].startswith("this worker since it started")
    assert stats["worker"].endswith(f":{port}")


def _camera_frames(count: int, sources: int) -> list[tuple[str, bytes, str]]:
    """(name, JPEG, source) for ``count`` distinct 640x360 frames spread over ``sources``."""
    return [
        (
            f"frame-{i}",
            jpeg(numbered(scene(640, 360, seed=100 + i % 4), i)),
            f"cam-{i % sources:02d}",
        )
        for i in range(count)
    ]


def _produce_frames(pipeline: Pipeline, frames: list[tuple[str, bytes, str]]) -> list[str]:
    ids: list[str] = []
    for source in sorted({s for _, _, s in frames}):
        ids += pipeline.produce([(n, d) for n, d, s in frames if s == source], source=source)
    return ids


def test_two_workers_split_the_partitions(pipeline: Pipeline) -> None:
    """Two workers in one group share the partitions and still give one outcome per message."""
    first = pipeline.start_worker()
    second = pipeline.start_worker()
    pipeline.wait_group(2)
    ids = _produce_frames(pipeline, _camera_frames(60, sources=12))
    out = pipeline.collect(len(ids), settle=3)
    assert Counter(out.ids()) == Counter(ids)
    for port in (first, second):
        assert pipeline.metric(port, "flowforge_worker_offset_gaps_total") == 0
    by_worker = Counter(m["worker"] for m in out.metadata)
    assert len(by_worker) == 2, f"one worker did all the work: {by_worker}"
    partitions_by_worker: dict[str, set[int]] = {}
    for m in out.metadata:
        partitions_by_worker.setdefault(m["worker"], set()).add(m["kafka_partition"])
    a, b = partitions_by_worker.values()
    assert not a & b, "a partition was processed by both workers"
    assert pipeline.alive(first)
    assert pipeline.alive(second)


def test_one_sources_images_are_spread_over_both_workers_by_image_id(pipeline: Pipeline) -> None:
    """One source's images (sent as the bridges send them, on the partition of their image id)
    are processed by both workers of a group, one outcome each; the worker sends each image's
    metadata record and resized JPEG to the partition of its image id too."""
    first = pipeline.start_worker()
    second = pipeline.start_worker()
    pipeline.wait_group(2)
    ids = pipeline.produce((f"f{i}", jpeg(scene(160, 120, seed=i))) for i in range(120))
    out = pipeline.collect(len(ids), settle=3)
    assert Counter(out.ids()) == Counter(ids)
    by_worker = Counter(m["worker"] for m in out.metadata)
    assert len(by_worker) == 2, by_worker
    assert min(by_worker.values()) >= 20, by_worker
    partitions = range(pipeline.settings.kafka.partitions)
    kafka = pipeline.kafka
    for image_id in ids:
        p = partition_of(image_id, partitions)
        assert out.partitions[image_id] <= {(kafka.topic_metadata, p), (kafka.topic_processed, p)}
    assert {p for where in out.partitions.values() for _, p in where} == set(partitions)
    assert pipeline.alive(first)
    assert pipeline.alive(second)


def test_sigkill_mid_stream_loses_nothing_and_the_cache_skips_redeliveries(
    pipeline: Pipeline,
) -> None:
    """A worker killed mid-stream and restarted gives every image an outcome, and its table
    cache skips every redelivered image whose cache entry Kafka had acked before the kill
    (commits are off, so everything is redelivered), at least every image seen done; only
    finished images whose entry was not acked yet are emitted twice."""
    pipeline.env["FLOWFORGE_WORKER_COMMIT_INTERVAL_S"] = "600"  # everything is redelivered
    frames = _camera_frames(300, sources=6)
    ids = _produce_frames(pipeline, frames)
    port = pipeline.start_worker()
    before = pipeline.collect(50, timeout=120)
    done_before = set(before.ids())
    # A finished image's cache entry reaches Kafka shortly after its outputs (the table's
    # changelog is sent in the background); wait until those of the images seen done are
    # there, so the kill lands after they are durable, whatever the machine's load.
    pipeline.wait_until(
        lambda: done_before <= pipeline.changelog_keys(SEEN_TABLE), "the seen entries", 60
    )
    pipeline.kill_worker(port, signal.SIGKILL)
    # What the dead worker had already handed to its sockets still reaches the broker after the
    # kill (the kernel sends it), and on a loaded machine the broker appends it a moment later:
    # read the changelog until two reads a second apart agree. (Read at once, a run beside a CPU
    # hog counted 125 durable entries where the restarted worker then found 163.)
    durable = pipeline.changelog_keys(SEEN_TABLE)
    for _ in range(30):
        time.sleep(1)
        again = pipeline.changelog_keys(SEEN_TABLE)
        if again == durable:
            break
        durable = again
    done_at_kill = set(pipeline.collect_written().ids())
    assert done_at_kill < set(ids), "the worker finished every image before the kill"

    pipeline.env["FLOWFORGE_WORKER_COMMIT_INTERVAL_S"] = "2.8"
    port = pipeline.start_worker(port)  # same port: same data directory and SQLite files
    out = pipeline.collect(len(ids), timeout=180, settle=3)
    counts = Counter(out.ids())
    assert set(counts) == set(ids), f"lost: {set(ids) - set(counts)}"
    assert pipeline.metric(port, "flowforge_worker_offset_gaps_total") == 0
    # Images whose outputs were acked but whose cache entry was still in the worker's producer
    # buffer at the kill are emitted twice (collapsed by ClickHouse); every durable one is
    # skipped, from the SQLite files or from the changelog's tail.
    duplicates = {i for i, n in counts.items() if n > 1}
    skipped = pipeline.metric(port, "flowforge_worker_images_total", status="duplicate")
    figures = (
        f"done at kill {len(done_at_kill)}, durable {len(durable)}, skipped {skipped}, "
        f"twice {len(duplicates)}"
    )
    assert done_before <= durable <= done_at_kill, figures
    # (More could be skipped: a rebalance of the restarted worker redelivers what it finished.)
    assert skipped >= len(durable), figures
    assert not duplicates & durable, figures
    assert done_at_kill - durable <= duplicates, figures


def test_restart_recovers_the_cache_from_sqlite_or_rebuilds_it_from_the_changelog(
    pipeline: Pipeline,
) -> None:
    """With its SQLite files a restarted worker replays almost nothing of the seen-images
    changelog; without them it rebuilds the table from the whole changelog. Either way the
    same 30 images sent again are all skipped as duplicates."""
    frames = _camera_frames(30, sources=3)
    ids = _produce_frames(pipeline, frames)
    port = pipeline.start_worker()
    pipeline.collect(len(ids))
    pipeline.kill_worker(port, signal.SIGTERM)

    port = pipeline.start_worker(port)
    pipeline.wait_group(1)
    _recovered(pipeline, port)
    replayed = pipeline.metric(port, "flowforge_worker_table_changelog_replayed")
    assert replayed <= 2 * 6, f"replayed {replayed} changelog events with the files intact"
    assert _produce_frames(pipeline, frames) == ids
    _skipped(pipeline, port, len(ids))
    pipeline.kill_worker(port, signal.SIGTERM)

    data_dir = Settings.from_env(pipeline.env).home / f"worker-{port}"
    removed = list(data_dir.rglob("*.sqlite3"))
    assert removed, f"no SQLite table files under {data_dir}"
    for path in data_dir.rglob("*.sqlite3*"):
        path.unlink()
    port = pipeline.start_worker(port)
    pipeline.wait_group(1)
    _recovered(pipeline, port)
    replayed = pipeline.metric(port, "flowforge_worker_table_changelog_replayed")
    assert replayed >= len(ids), f"only {replayed} changelog events replayed into empty files"
    assert _produce_frames(pipeline, frames) == ids
    _skipped(pipeline, port, len(ids))


def _skipped(pipeline: Pipeline, port: int, count: int, timeout: float = 180.0) -> None:
    """Wait until the worker has skipped ``count`` images as duplicates; it gave no other
    outcome (a redelivery after the restart would be skipped too, so more may be skipped)."""

    def duplicates() -> float:
        return pipeline.metric(port, "flowforge_worker_images_total", status="duplicate")

    pipeline.wait_until(lambda: duplicates() >= count, f"{count} duplicates", timeout)
    time.sleep(2)
    others = pipeline.metric(port, "flowforge_worker_images_total") - duplicates()
    assert others == 0, f"{others} images processed again after the restart"


def _recovered(pipeline: Pipeline, port: int, timeout: float = 180.0) -> None:
    """Wait until the worker holds partitions and has finished recovering its table (it
    answers ready with partitions assigned)."""

    def recovered() -> bool:
        status, why = _get(port, "/readyz")
        return status == 200 and "no partitions assigned" not in why

    pipeline.wait_until(recovered, "table recovery", timeout)


def test_a_dead_letter_over_the_topic_limit_keeps_its_headers_and_the_image_its_row(
    request: pytest.FixtureRequest, settings: Settings, services: Stack, tmp_path: Path
) -> None:
    """Non-images 350 and 450 bytes under the topic limit (their dead letters, with the error
    headers, are over it) each get a rejected record and a dead letter with the headers kept,
    an empty value and the dropped size in the detail; the worker stays up and ready. (Topics
    and worker at a 1 MiB limit: the same edge as at 16 MiB, without 16 MiB records.)"""
    base = {**stack_env(), "FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES": "1MiB"}
    pipeline = make_pipeline(unique_name(request, "w"), settings, base, tmp_path)
    request.addfinalizer(pipeline.stop_all)
    limit = pipeline.settings.kafka.max_message_bytes
    assert limit == 1024 * 1024
    payloads = {f"under-{gap}": bytes([gap % 256]) * (limit - gap) for gap in (350, 450)}
    ids = pipeline.produce(payloads.items())
    port = pipeline.start_worker()
    out = pipeline.collect(len(ids), settle=3)

    assert sorted(out.ids()) == sorted(ids), pipeline.worker_log(port)
    assert {m["status"] for m in out.metadata} == {"rejected"}
    assert {m["reason"] for m in out.metadata} == {"unknown_format"}
    assert sorted(out.dlq_ids()) == sorted(ids)
    for headers, data in out.dlq:
        assert data == b""
        assert headers["ff-error-reason"] == "unknown_format"
        size = len(payloads[headers["ff-origin"]])
        assert headers["ff-error-detail"].startswith(f"value of {size} bytes dropped")
        assert headers["ff-original-topic"] == pipeline.kafka.topic_raw
    assert pipeline.alive(port), pipeline.worker_log(port)
    status, body = _wait_http(port, "/readyz")
    assert status == 200, body
    assert "Crashed" not in pipeline.worker_log(port)


# The broker leaves a failing JoinGroup unanswered until the worker's request timeout, twice
# before the SyncGroup error comes: the test sets it to 20 s (the default 90 s took 5 minutes).
@pytest.mark.timeout(600)
def test_a_transient_group_join_error_is_survived_by_joining_again(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> None:
    """A worker whose group join fails on the real broker (SyncGroup UnknownError: the broker
    cannot write the group's metadata, here because __consumer_offsets takes 64-byte records)
    stays up, joins again, and once the broker can write gives every image its outcome."""
    with running_stack(tmp_path / "stack", kafka_heap="256m") as (_stack, env):
        pipeline = make_pipeline(unique_name(request, "w"), settings, env, tmp_path)
        pipeline.env["FLOWFORGE_WORKER_REQUEST_TIMEOUT_S"] = "20"
        # Stopped before its private broker: a worker stopping after the broker has gone waits
        # out its Kafka timeouts (30 s of teardown).
        try:
            _survive_a_group_join_error(pipeline)
        finally:
            pipeline.stop_all()


def _survive_a_group_join_error(pipeline: Pipeline) -> None:
    """The body of the test above, on the pipeline of its private broker."""
    ids = _produce_frames(pipeline, _camera_frames(12, sources=3))
    asyncio.run(_group_metadata_limit(pipeline, 64))
    port = pipeline.start_worker()
    pipeline.wait_until(
        lambda: pipeline.metric(port, "flowforge_worker_group_join_errors_total") >= 1,
        "a failed group join",
        300,
    )
    assert pipeline.alive(port), pipeline.worker_log(port)
    assert "Unexpected error from SyncGroup" in pipeline.worker_log(port)
    asyncio.run(_group_metadata_limit(pipeline, None))
    out = pipeline.collect(len(ids), timeout=300, settle=1)
    assert set(out.ids()) == set(ids), pipeline.worker_log(port)
    assert pipeline.alive(port), pipeline.worker_log(port)
    assert "Crashed" not in pipeline.worker_log(port)


async def _group_metadata_limit(pipeline: Pipeline, limit: int | None) -> None:
    """Set (or with None, reset) max.message.bytes of the broker's __consumer_offsets topic,
    which holds the groups' metadata (created by the broker at the first group join)."""
    kafka = pipeline.settings.kafka
    # AlterConfigs replaces the topic's whole configuration: keep it compacted.
    size = limit if limit is not None else kafka.max_message_bytes
    configs = {"cleanup.policy": "compact", "max.message.bytes": str(size)}
    resource = ConfigResource(ConfigResourceType.TOPIC, "__consumer_offsets", configs=configs)
    admin = admin_client(kafka)
    await admin.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            [response] = await admin.alter_configs([resource])
            [answer] = response.resources
            if answer[0] == 0:
                return
            assert time.monotonic() < deadline, f"__consumer_offsets not altered: {answer}"
            # Not there yet: a group join makes the broker create it.
            consumer = AIOKafkaConsumer(
                kafka.topic_raw, bootstrap_servers=kafka.bootstrap_servers, group_id="warm-up"
            )
            await consumer.start()
            await consumer.stop()
    finally:
        await admin.close()


def _large_jpeg() -> bytes:
    """A 7000x7000 JPEG (49 megapixels, under the 50 limit; 7.5 MB): 0.2-0.4 s to process."""
    rng = np.random.default_rng(7)
    coarse = rng.integers(60, 200, size=(875, 875, 3), dtype=np.uint8)
    return jpeg(cv2.resize(coarse, (7000, 7000), interpolation=cv2.INTER_LINEAR), 80)


class _CommitWatcher:
    """Reads the workers' committed offset on one images.raw partition every 10 ms, in a
    thread, keeping (wall time after the answer, offset) until stopped."""

    def __init__(self, pipeline: Pipeline, partition: int) -> None:
        self.pipeline = pipeline
        self.tp = TopicPartition(pipeline.kafka.topic_raw, partition)
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True)

    def __enter__(self) -> _CommitWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _watch(self) -> None:
        admin = admin_client(self.pipeline.settings.kafka)
        await admin.start()
        try:
            while not self._stop.is_set():
                group = self.pipeline.settings.worker.app_id
                offsets = await admin.list_consumer_group_offsets(group)
                if self.tp in offsets and offsets[self.tp].offset >= 0:
                    self.seen.append((time.time(), offsets[self.tp].offset))
                await asyncio.sleep(0.01)
        finally:
            await admin.close()


def test_the_commit_never_passes_an_image_still_being_processed(pipeline: Pipeline) -> None:
    """A large image at the head of its partition, processed for a few tenths of a second while
    the 40 small images after it on that partition finish: the workers' committed offset stays at
    the large image until its outcome exists (Faust committed past it while it was in flight,
    faust-streaming#606, so a crash then lost it). Commits every 50 ms here, to meet the window."""
    pipeline.env["FLOWFORGE_WORKER_COMMIT_INTERVAL_S"] = "0.05"
    source, partitions = "cam-01", range(pipeline.settings.kafka.partitions)
    big = _large_jpeg()
    head = partition_of(content_image_id(source, big), partitions)
    smalls: list[tuple[str, bytes]] = []
    for i in itertools.count():
        payload = jpeg(numbered(scene(320, 180, seed=3), i))
        if partition_of(content_image_id(source, payload), partitions) == head:
            smalls.append((f"small-{i}", payload))
            if len(smalls) == 40:
                break
    pipeline.start_worker()
    pipeline.wait_group(1)
    with _CommitWatcher(pipeline, head) as watcher:
        ids = pipeline.produce([("large", big), *smalls], source=source)
        out = pipeline.collect(len(ids), settle=1)
    commits = watcher.seen
    done = {
        m["image_id"]: datetime.fromisoformat(m["processed_at"]).timestamp() for m in out.metadata
    }
    assert sorted(done) == sorted(ids)
    large = next(m for m in out.metadata if m["image_id"] == ids[0])
    assert (large["status"], large["kafka_partition"]) == ("processed", head)
    done_at = done[ids[0]]
    earlier = sum(1 for image_id in ids[1:] if done[image_id] < done_at)
    assert earlier >= 5, f"only {earlier} small images finished while the large one was processed"
    assert commits, "no commit seen"
    past = [(t, offset) for t, offset in commits if offset > large["kafka_offset"] and t < done_at]
    assert not past, (
        f"committed past the large image (offset {large['kafka_offset']}) before it was done: "
        f"{past[:3]}"
    )
    assert commits[-1][1] == large["kafka_offset"] + 1 + len(smalls)
