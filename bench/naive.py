"""The naive reference pipeline: one paho callback that decodes, resizes and inserts one row.

    .venv/bin/python -m bench.naive [--images 300] [--repeat 3] [--quick]

What a first attempt at FlowForge's job looks like: one MQTT subscriber (QoS 1) whose callback
fully decodes each image (cv2.IMREAD_COLOR), resizes it to 640x360 (INTER_AREA), computes the
mean brightness and inserts one row with clickhouse-connect into the embedded ClickHouse engine
(chdb:// in a temporary directory), one insert per image. Driven by the same 720p camera-like
JPEGs as the decode limit (bench/images.py), published by paho at QoS 1 to the test stack's
Mosquitto (started if needed, stopped afterwards if started here). Throughput runs from the first
publish to the last row inserted. Writes bench/results/naive.json; not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import clickhouse_connect
import cv2
import numpy as np
from paho.mqtt.client import MQTTMessage

from bench.images import camera_set
from bench.results import Figure, description, write
from flowforge.core.mqtt import mqtt_client
from flowforge.core.settings import Settings
from tests.support.bridges import mqtt_publish
from tests.support.stack import running_stack, stack_env

TABLE = """
CREATE TABLE naive_images (
    topic String,
    width UInt32,
    height UInt32,
    brightness Float64,
    inserted_at DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY inserted_at
"""


class NaivePipeline:
    """One paho client whose on_message does all the work, row by row."""

    def __init__(self, settings: Settings, prefix: str, expected: int, data_dir: str) -> None:
        self.settings = settings
        self.prefix = prefix
        self.expected = expected
        self.rows = 0
        self.last_insert = 0.0
        self.done = threading.Event()
        self.failure: BaseException | None = None
        self.db = clickhouse_connect.get_client(dsn=f"chdb://{data_dir}")
        self.db.command(TABLE)
        self.client = mqtt_client(settings.mqtt, f"bench-naive-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self.on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: self.subscribed.set()

    def on_message(self, _client: Any, _userdata: Any, message: MQTTMessage) -> None:
        try:
            pixels = cv2.imdecode(np.frombuffer(message.payload, np.uint8), cv2.IMREAD_COLOR)
            small = cv2.resize(pixels, (640, 360), interpolation=cv2.INTER_AREA)
            brightness = float(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).mean())
            self.db.insert(
                "naive_images",
                [[message.topic, pixels.shape[1], pixels.shape[0], brightness, datetime.now(UTC)]],
                column_names=["topic", "width", "height", "brightness", "inserted_at"],
            )
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.failure = exc
            self.done.set()
            return
        self.rows += 1
        self.last_insert = time.monotonic()
        if self.rows >= self.expected:
            self.done.set()

    def __enter__(self) -> NaivePipeline:
        self.client.connect(self.settings.mqtt.host, self.settings.mqtt.port, keepalive=60)
        self.client.loop_start()
        self.client.subscribe(f"{self.prefix}/images/raw/#", qos=1)
        if not self.subscribed.wait(10):
            raise SystemExit("the naive pipeline's subscription was not acknowledged in 10 s")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.db.close()

    def stored(self) -> int:
        [[count]] = self.db.query("SELECT count() FROM naive_images").result_rows
        return int(count)


def run(settings: Settings, payloads: list[bytes], timeout: float = 300.0) -> float:
    """Images/s of one run: first publish to the last row inserted."""
    prefix = f"bench-naive-{uuid.uuid4().hex[:8]}"
    items = [(f"{prefix}/images/raw/cam-{i % 8}", p) for i, p in enumerate(payloads)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        NaivePipeline(settings, prefix, len(payloads), os.path.join(tmp, "clickhouse")) as naive,
    ):
        started = time.monotonic()
        mqtt_publish(settings, items)
        if not naive.done.wait(timeout):
            raise SystemExit(f"naive pipeline: {naive.rows} of {len(payloads)} rows in {timeout} s")
        if naive.failure is not None:
            raise SystemExit(f"naive pipeline failed: {naive.failure!r}")
        assert naive.stored() == len(payloads)
        return len(payloads) / (naive.last_insert - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--images", type=int, default=300, help="720p JPEGs per run (<= 1000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="150 images, 2 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeat = 150, 2
    images = camera_set(1280, 720, args.images)
    figure = Figure("naive pipeline 720p (MQTT QoS 1 -> row)", "images/s")
    settings = Settings.from_env(stack_env())
    with running_stack():
        for _ in range(args.repeat):
            figure.add(run(settings, images.payloads))
            print(figure.line())
    params = {"images": args.images, "repeat": args.repeat, "set": images.description}
    notes = [
        "one paho callback: full decode (IMREAD_COLOR), INTER_AREA resize to 640x360, mean "
        "luma, one clickhouse-connect insert per image into the embedded engine (chdb://)"
    ]
    path = write("naive", {"720p_images_per_s": figure}, params, notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
