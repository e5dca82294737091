"""MQTT bridge throughput through real Mosquitto and Kafka, against MQTT alone, one run.

    .venv/bin/python -m bench.mqtt_bridge [--images 2000] [--size 100000] [--repeat 2]

Starts the test stack (tests/stack.env) unless it is running, and stops what it started. Per
run: a fresh `flowforge bridge mqtt` with private topics and client id; the baseline is the
rate at which paho publishes the payloads at QoS 1 (broker acknowledged); the bridge rate is
first publish to the last Kafka acknowledgement (the bridge's published counter). Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.stack import running_test_stack
from tests.conftest import stack_env
from tests.integration.bridge_harness import BridgeProcess, bridge_env, mqtt_publish
from tests.integration.test_bridge_mqtt import payload


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with running_test_stack():
        results = [run(args.images, args.size) for _ in range(args.repeat)]
    mqtt_rates = [m for m, _ in results]
    bridge_rates = [b for _, b in results]
    print(f"{args.images} x {args.size} B at QoS 1, {args.repeat} runs")
    for label, rates in (
        ("MQTT publish alone", mqtt_rates),
        ("MQTT -> bridge -> Kafka", bridge_rates),
    ):
        print(
            f"{label:<24} images/s min/median/max: "
            f"{min(rates):.0f} / {statistics.median(rates):.0f} / {max(rates):.0f}"
        )
    ratio = statistics.median(bridge_rates) / statistics.median(mqtt_rates)
    print(f"bridge / MQTT alone: {ratio:.2f}")


if __name__ == "__main__":
    main()
