"""Operator commands against the real broker: topics, tail, dlq replay and validate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.support.images import jpeg, numbered, scene
from tests.support.pipeline import Pipeline, metadata_record
from tests.support.unique import free_port


def flowforge(
    pipeline: Pipeline, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `flowforge ARGS` with the pipeline's settings; return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "flowforge", *args],
        env=env or pipeline.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _images(n: int, seed: int = 3) -> list[tuple[str, bytes]]:
    base = scene(320, 240, seed=seed)
    return [(f"img-{i}.jpg", jpeg(numbered(base, i))) for i in range(n)]


def _topics(pipeline: Pipeline, *args: str) -> dict[str, Any]:
    result = flowforge(pipeline, "topics", "--json", *args)
    assert result.returncode == 0, result.stderr
    return {t["name"]: t for t in json.loads(result.stdout)}


def test_topics_shows_partitions_counts_and_the_groups_lag(pipeline: Pipeline) -> None:
    """`topics` lists the four topics with partitions, configs and message counts; `--group`
    shows no lag before the group committed, and lag 0 once a worker processed and committed."""
    pipeline.produce(_images(7))
    kafka = pipeline.kafka
    group = pipeline.settings.worker.app_id
    before = _topics(pipeline, "--group", group)
    raw = before[kafka.topic_raw]
    assert set(before) == {
        kafka.topic_raw,
        kafka.topic_processed,
        kafka.topic_metadata,
        kafka.topic_dlq,
    }
    assert (len(raw["partitions"]), raw["replication"], raw["messages"]) == (6, 1, 7)
    assert raw["configs"]["max.message.bytes"] == str(kafka.max_message_bytes)
    assert raw["lag"] is None, "no committed offsets yet: no lag figure (as Kafka's tools)"
    assert all(p["committed"] is None and p["lag"] is None for p in raw["partitions"])

    pipeline.start_worker()
    pipeline.collect(7)
    after = pipeline.wait_until(
        lambda: (t := _topics(pipeline, "--group", group))[kafka.topic_raw]["lag"] == 0 and t,
        "the worker's commit",
        timeout=60,
    )
    assert after[kafka.topic_metadata]["messages"] == 7
    text = flowforge(pipeline, "topics", "--group", group).stdout
    assert f"{kafka.topic_raw}: 6 partitions, replication 1" in text
    assert f"group {group} lag 0" in text


def test_tail_n_prints_the_last_records_as_compact_json(pipeline: Pipeline) -> None:
    """`tail -n 5 images.metadata` prints exactly the last 5 records, one JSON line each."""
    pipeline.produce_metadata(metadata_record(i) for i in range(8))
    result = flowforge(pipeline, "tail", pipeline.kafka.topic_metadata, "-n", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5
    ids = [json.loads(line[line.index("{") :])["image_id"] for line in lines]
    assert sorted(ids) == [f"cam-01-{i:06d}" for i in range(3, 8)]
    assert all("key=cam-01" in line for line in lines)


def test_tail_save_writes_decodable_images_named_by_id(pipeline: Pipeline, tmp_path: Path) -> None:
    """`tail --save DIR` on an image topic writes each image, decodable, as <image id>.jpg, and
    its lines show the envelope, byte size and dimensions."""
    ids = pipeline.produce(_images(3))
    out = tmp_path / "saved"
    result = flowforge(pipeline, "tail", pipeline.kafka.topic_raw, "-n", "3", "--save", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.stem for p in out.iterdir()) == sorted(ids)
    for path in out.iterdir():
        image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (240, 320)
    for line in result.stdout.strip().splitlines():
        assert "source-type=batch" in line
        assert "jpeg 320x240" in line


def test_dlq_replay_counts_dry_and_republishes_for_real(pipeline: Pipeline) -> None:
    """`dlq replay --dry-run` counts the dead letters without publishing; a real replay puts
    them back on images.raw with their original envelope, and --reason filters."""
    good = _images(1)
    cut = _images(1, seed=4)[0][1][:400]  # a JPEG cut short: its header is complete
    bad = [("text.jpg", b"hello, not an image"), ("cut.jpg", cut)]
    pipeline.produce(good + bad)
    pipeline.start_worker()
    out = pipeline.collect(3, settle=1)
    assert len(out.dlq) == 2
    pipeline.stop_all()
    raw = pipeline.kafka.topic_raw

    dry = flowforge(pipeline, "dlq", "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would replay 2 of 2 dead letters")
    assert _topics(pipeline, raw)[raw]["messages"] == 3

    one = flowforge(pipeline, "dlq", "replay", "--reason", "unknown_format")
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("replayed 1 of 2 dead letters")
    both = flowforge(pipeline, "dlq", "replay")
    assert both.stdout.startswith("replayed 2 of 2")
    assert _topics(pipeline, raw)[raw]["messages"] == 6
    tail = flowforge(pipeline, "tail", raw, "-n", "3").stdout
    assert "error" not in tail
    assert tail.count("origin=text.jpg") == 2


def test_validate_passes_on_the_stack_and_names_kafka_when_it_is_down(pipeline: Pipeline) -> None:
    """`validate` passes with every check on the running stack (after migrate); with Kafka
    unreachable it exits 1 and names Kafka with what to do."""
    migrate = flowforge(pipeline, "clickhouse", "migrate")
    assert migrate.returncode == 0, migrate.stderr
    ok = flowforge(pipeline, "validate")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    names = [line.split()[0] for line in ok.stdout.splitlines() if "PASS" in line]
    assert names[:3] == ["settings", "kafka", "topic"]
    assert {"mqtt", "clickhouse", "schema"} <= set(names)
    assert "FAIL" not in ok.stdout

    env = dict(pipeline.env, FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    down = flowforge(pipeline, "validate", env=env)
    assert down.returncode == 1
    kafka_line = next(line for line in down.stdout.splitlines() if line.startswith("kafka"))
    assert "FAIL" in kafka_line
    assert "flowforge stack up" in down.stdout
