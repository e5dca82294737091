"""The MQTT bridge's on_message, in paho's thread: room in the byte window before a payload."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as paho

from bridges import metrics
from bridges.mqtt import NAME, MqttBridge, Received
from bridges.publisher import KafkaPublisher
from flowforge.core.settings import Settings


class Loop:
    """Stands in for the event loop: records what paho's thread hands over."""

    def __init__(self) -> None:
        self.handed: list[Received] = []

    def call_soon_threadsafe(self, callback: Callable[..., Any], item: Received) -> None:
        self.handed.append(item)


def bridge_with_budget(tmp_path: Path, budget: int) -> tuple[MqttBridge, Loop]:
    settings = Settings.from_env(
        {"FLOWFORGE_HOME": str(tmp_path), "FLOWFORGE_BRIDGE_IN_FLIGHT_BYTES": str(budget)}
    )
    bridge = MqttBridge(settings, publisher=cast(KafkaPublisher, object()))
    loop = Loop()
    bridge._loop = cast(Any, loop)
    return bridge, loop


def message(size: int, qos: int = 1, mid: int = 1) -> paho.MQTTMessage:
    msg = paho.MQTTMessage(mid=mid, topic=b"images/raw/cam-01")
    msg.payload = bytes(size)
    msg.qos = qos
    return msg


def gauge(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, {"bridge": NAME}) or 0.0


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_qos1_message_over_the_budget_waits_in_pahos_thread_until_room_is_given_back(
    tmp_path: Path,
) -> None:
    """With 60 of 100 bytes held, a 50-byte QoS 1 message is not handed on (paho's thread waits,
    held back) until the first message's room is given back; the held bytes follow."""
    bridge, loop = bridge_with_budget(tmp_path, 100)
    bridge._on_message(cast(paho.Client, None), None, message(60, mid=1))
    assert [item.mid for item in loop.handed] == [1]
    assert gauge("flowforge_bridge_held_bytes") == 60
    paho_thread = threading.Thread(
        target=bridge._on_message, args=(None, None, message(50, mid=2)), daemon=True
    )
    paho_thread.start()
    wait_for(lambda: gauge("flowforge_bridge_source_held_back") == 1)
    assert [item.mid for item in loop.handed] == [1]
    bridge.window.give(60)  # Kafka acknowledged the first one
    paho_thread.join(10)
    assert not paho_thread.is_alive()
    assert [item.mid for item in loop.handed] == [1, 2]
    assert gauge("flowforge_bridge_source_held_back") == 0
    assert gauge("flowforge_bridge_held_bytes") == 50


def test_a_qos0_message_finding_no_room_is_dropped_and_counted(tmp_path: Path) -> None:
    """QoS 0 never waits: without room the message is dropped as queue_full."""
    bridge, loop = bridge_with_budget(tmp_path, 100)
    before = metrics.REGISTRY.get_sample_value(
        "flowforge_bridge_dropped_total", {"bridge": NAME, "reason": "queue_full"}
    )
    bridge._on_message(cast(paho.Client, None), None, message(60, qos=0, mid=1))
    bridge._on_message(cast(paho.Client, None), None, message(50, qos=0, mid=2))
    after = metrics.REGISTRY.get_sample_value(
        "flowforge_bridge_dropped_total", {"bridge": NAME, "reason": "queue_full"}
    )
    assert [item.mid for item in loop.handed] == [1]
    assert (after or 0) - (before or 0) == 1


def test_a_waiting_message_is_left_unacknowledged_when_the_bridge_stops(tmp_path: Path) -> None:
    """A QoS 1 message waiting for room when the bridge closes is not handed on (the broker
    redelivers it to the next session), and paho's thread is free to disconnect."""
    bridge, loop = bridge_with_budget(tmp_path, 100)
    bridge._on_message(cast(paho.Client, None), None, message(100, mid=1))
    paho_thread = threading.Thread(
        target=bridge._on_message, args=(None, None, message(1, mid=2)), daemon=True
    )
    paho_thread.start()
    wait_for(lambda: gauge("flowforge_bridge_source_held_back") == 1)
    bridge._closing = True
    paho_thread.join(10)
    assert not paho_thread.is_alive()
    assert [item.mid for item in loop.handed] == [1]
    assert bridge.window.items == 1
