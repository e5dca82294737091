"""Mosquitto's memory stays bounded while the bridge is away or stalled (issue 20, item 2).

Debian's mosquitto runs the native stack's own config (infra/mosquitto/local.conf, rendered by
`flowforge stack`'s MosquittoService) on a free loopback port, and a burst of 8 MiB QoS 1
images arrives for a persistent session whose subscriber (the bridge) is gone, or connected
but acknowledging nothing (Kafka down). The broker's peak RSS stays under the configured byte
bounds plus a margin, past the bound the publisher still gets its acknowledgements while the
broker drops the excess for that session, and what it kept survives a restart.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from flowforge.core.settings import Settings
from flowforge.stack.mosquitto import MosquittoService

MIB = 1024 * 1024
MESSAGE = 8 * MIB
BURST = 40  # 320 MiB: twice what the bounds allow
TOPIC = "images/raw/cam-bound"
CLIENT_ID = "bound-test-bridge"
# Over the bounds: the message being received and its copy into the store, the receive buffers
# the allocator keeps after a dropped image is freed, and the broker's own few MiB. Measured on
# Debian's 2.0.11: 4 images of 8 MiB (3.5 of 16 MiB, 11 MiB for 1 MiB images) over the bound,
# the same for a burst of 40 or 80 images; without the bound the peak grows with the burst.
MARGIN = 4 * MESSAGE + 16 * MIB


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _options(text: str) -> dict[str, str]:
    return dict(
        line.split(None, 1) for line in text.splitlines() if line.strip() and line[0] != "#"
    )


class Broker:
    """Debian's mosquitto with the native stack's rendered config, in a temporary home."""

    def __init__(self, home: Path) -> None:
        self.port = _free_port()
        settings = Settings.from_env(
            {"FLOWFORGE_HOME": str(home), "FLOWFORGE_MQTT_PORT": str(self.port)}
        )
        self.text = MosquittoService(settings).render_config()
        self.config = home / "mosquitto.conf"
        self.config.write_text(self.text, encoding="utf-8")
        self.data = home / "mosquitto" / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = home / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def queued_bytes(self) -> int:
        return int(_options(self.text)["max_queued_bytes"])

    @property
    def inflight_bytes(self) -> int:
        return int(_options(self.text).get("max_inflight_bytes", "0"))

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["/usr/sbin/mosquitto", "-c", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 20
        while True:
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # saves the persistence file on the way out
            self.process.wait(timeout=60)

    def peak_rss(self) -> int:
        """The broker's peak resident memory so far (VmHWM), in bytes."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8")
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert match, status
        return int(match.group(1)) * 1024


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _client(client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    return mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )


def _connect(client: mqtt.Client, port: int) -> None:
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    assert connected.wait(10), "no CONNACK"


def _subscribe_then_leave(port: int) -> None:
    """The bridge's persistent session: subscribed at QoS 1, then gone (bridge down)."""
    client = _client(CLIENT_ID)
    _connect(client, port)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.subscribe("images/raw/#", qos=1)
    assert subscribed.wait(10), "no SUBACK"
    client.disconnect()
    client.loop_stop()


def _publish_burst(port: int) -> None:
    """BURST distinct 8 MiB images at QoS 1; every one must be acknowledged by the broker."""
    client = _client(f"bound-test-camera-{os.getpid()}")
    client.max_inflight_messages_set(4)
    _connect(client, port)
    try:
        for i in range(BURST):
            payload = i.to_bytes(4, "big") + os.urandom(MESSAGE - 4)
            info = client.publish(TOPIC, payload, qos=1)
            info.wait_for_publish(60)
            assert info.is_published(), f"image {i} not acknowledged"
    finally:
        client.disconnect()
        client.loop_stop()


def _collect(port: int, *, settle: float = 3.0) -> list[int]:
    """Reconnect as the bridge and take (and acknowledge) what the session kept."""
    received: list[int] = []
    client = _client(CLIENT_ID)
    client.on_message = lambda _c, _u, msg: received.append(int.from_bytes(msg.payload[:4], "big"))
    _connect(client, port)
    last, count = time.monotonic(), -1
    while time.monotonic() - last < settle:
        if len(received) != count:
            last, count = time.monotonic(), len(received)
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()
    return received


def test_burst_for_an_absent_bridge_stays_under_the_byte_bound(broker: Broker) -> None:
    """With the bridge's session subscribed and the bridge gone, 320 MiB of 8 MiB QoS 1 images
    are all acknowledged to the camera, the broker's peak RSS stays under max_queued_bytes plus
    a margin, the session keeps the oldest images up to the bound and drops the rest (logged),
    and what it kept survives a restart in the same bound."""
    bound = broker.queued_bytes
    assert bound > 0, "max_queued_bytes 0 is no bound"
    _subscribe_then_leave(broker.port)
    _publish_burst(broker.port)
    queued_at = time.time()  # every image acknowledged: the session holds what it keeps
    peak = broker.peak_rss()
    print(f"\nabsent bridge: peak RSS {peak / MIB:.1f} MiB, bound {bound / MIB:.0f} MiB")
    assert peak < bound + MARGIN, f"peak RSS {peak / MIB:.0f} MiB over {bound / MIB:.0f} MiB"
    _wait_saved_after(broker.data / "mosquitto.db", queued_at)
    saved = (broker.data / "mosquitto.db").stat().st_size
    print(f"persistence file {saved / MIB:.1f} MiB")
    assert saved < bound + MARGIN
    broker.stop()
    log = broker.log.read_text(errors="replace")
    assert f"Outgoing messages are being dropped for client {CLIENT_ID}" in log
    broker.start()  # reloads the queue from the persistence file
    reloaded = broker.peak_rss()
    print(f"after restart: peak RSS {reloaded / MIB:.1f} MiB")
    assert reloaded < bound + MARGIN
    kept = _collect(broker.port)
    assert kept == list(range(len(kept))), "the oldest images are kept, in order"
    assert bound // MESSAGE <= len(kept) <= bound // MESSAGE + 1, len(kept)


def test_burst_for_a_stalled_bridge_stays_under_the_byte_bounds(broker: Broker) -> None:
    """With the bridge connected but acknowledging nothing (Kafka down), what the broker holds
    for it (sent and unacknowledged, or queued) is capped by max_inflight_bytes +
    max_queued_bytes: the broker's peak RSS stays under both bounds plus a margin, and the
    images past them are dropped for the bridge, not kept."""
    bound = broker.queued_bytes + broker.inflight_bytes
    assert broker.inflight_bytes > 0, "max_inflight_bytes 0: in flight is bounded by count only"
    _subscribe_then_leave(broker.port)
    stalled: list[int] = []
    bridge = _client(CLIENT_ID, manual_ack=True)  # never calls ack(): Kafka is down
    bridge.on_message = lambda _c, _u, msg: stalled.append(len(msg.payload))
    _connect(bridge, broker.port)
    try:
        _publish_burst(broker.port)
        time.sleep(1.0)
        peak = broker.peak_rss()
    finally:
        bridge.disconnect()
        bridge.loop_stop()
    print(f"\nstalled bridge: peak RSS {peak / MIB:.1f} MiB, {len(stalled)} unacknowledged")
    assert peak < bound + MARGIN, f"peak RSS {peak / MIB:.0f} MiB over {bound / MIB:.0f} MiB"
    assert len(stalled) * MESSAGE <= bound + MESSAGE
    assert len(stalled) < BURST


def _wait_saved_after(db: Path, moment: float, timeout: float = 60.0) -> None:
    """Wait until the broker's persistence file was written after ``moment`` (epoch seconds):
    an autosave (autosave_interval 1) of the queue as it stood then."""
    deadline = time.monotonic() + timeout
    while not (db.exists() and db.stat().st_mtime > moment):
        assert time.monotonic() < deadline, f"{db} not saved within {timeout:.0f}s"
        time.sleep(0.2)
