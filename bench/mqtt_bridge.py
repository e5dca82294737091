"""MQTT bridge throughput through real Mosquitto and Kafka, against MQTT alone, one run.

    .venv/bin/python -m bench.mqtt_bridge [--images 2000] [--size 100000] [--repeat 2] [--quick]

Starts the test stack (tests/stack.env) unless it is running, and stops what it started. Per
run: a fresh `flowforge bridge mqtt` with private topics and client id; the baseline is the
rate at which paho publishes the payloads at QoS 1 (broker acknowledged); the bridge rate is
first publish to the last Kafka acknowledgement (the bridge's published counter). Writes
bench/results/mqtt_bridge.json: ``mqtt_alone_images_per_s``, ``bridge_images_per_s`` and their
per-run ratio ``bridge_over_mqtt``. ``--quick``: 1000 images, 2 runs (what `make bench` runs).
Not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from bench.results import Figure, description, write
from tests.support.bridges import BridgeProcess, bridge_env, mqtt_publish, payload
from tests.support.stack import running_stack, stack_env


def run(count: int, size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        name = f"bench.mqtt.{uuid.uuid4().hex[:8]}"
        bridge = BridgeProcess(
            ["bridge", "mqtt"], bridge_env(name, stack_env(), Path(tmp)), Path(tmp)
        )
        bridge.start()
        try:
            settings = bridge.settings
            items = [(f"{settings.mqtt.topic}/cam-{i % 8}", payload(i, size)) for i in range(count)]
            started = time.monotonic()
            mqtt_publish(settings, items)
            mqtt_done = time.monotonic()
            while bridge.metric("flowforge_bridge_published_total") < count:
                if time.monotonic() - started > 600:
                    raise SystemExit(f"bridge did not publish {count} in 600 s:\n{bridge.log()}")
                time.sleep(0.05)
            bridge_done = time.monotonic()
        finally:
            bridge.stop()
    return count / (mqtt_done - started), count / (bridge_done - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1000 images, 2 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeat = 1000, 2
    figures = {
        "mqtt_alone_images_per_s": Figure("MQTT publish alone (QoS 1)", "images/s"),
        "bridge_images_per_s": Figure("MQTT -> bridge -> Kafka", "images/s"),
        "bridge_over_mqtt": Figure("bridge / MQTT alone", "x"),
    }
    with running_stack():
        for _ in range(args.repeat):
            mqtt_rate, bridge_rate = run(args.images, args.size)
            figures["mqtt_alone_images_per_s"].add(mqtt_rate)
            figures["bridge_images_per_s"].add(bridge_rate)
            figures["bridge_over_mqtt"].add(bridge_rate / mqtt_rate)
    print(f"{args.images} x {args.size} B at QoS 1, {args.repeat} runs")
    for figure in figures.values():
        print(figure.line())
    params = {"images": args.images, "payload_bytes": args.size, "repeat": args.repeat}
    print(f"wrote {write('mqtt_bridge', figures, params)}")


if __name__ == "__main__":
    main()
