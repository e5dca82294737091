"""The MQTT bridge between the real Mosquitto and the real Kafka broker, as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from flowforge.core.envelope import content_image_id, header_map
from flowforge.core.partitioning import partition_of
from flowforge.core.settings import Settings
from flowforge.stack import KafkaService, Stack
from flowforge.stack.mosquitto import MosquittoService
from tests.support.bridges import (
    BridgeProcess,
    Record,
    bridge_env,
    mosquitto_pub,
    mqtt_publish,
    payload,
    read_records,
    wait_until,
)
from tests.support.images import jpeg, scene
from tests.support.stack import running_stack, stack_env
from tests.support.unique import free_port, unique_name


@pytest.fixture
def bridge(
    request: pytest.FixtureRequest, services: Stack, tmp_path: Path
) -> Iterator[BridgeProcess]:
    """An (unstarted) `flowforge bridge mqtt` with private topics and client id; stopped after."""
    name = unique_name(request, "b")
    proc = BridgeProcess(["bridge", "mqtt"], bridge_env(name, stack_env(), tmp_path), tmp_path)
    yield proc
    proc.stop()


def test_mosquitto_pub_photo_gives_one_record_with_the_envelope(
    bridge: BridgeProcess, tmp_path: Path
) -> None:
    """`mosquitto_pub -t images/raw -f photo.jpg` gives exactly one record: key, bytes, envelope."""
    bridge.start()
    settings = bridge.settings
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg(scene(1280, 720, seed=5)))
    before = int(time.time() * 1000)
    mosquitto_pub(settings, settings.mqtt.topic, photo)
    [record] = read_records(settings, [settings.kafka.topic_raw], 1, settle=3)
    data = photo.read_bytes()
    assert record.key == "default"
    assert record.value == data
    headers = record.headers
    assert headers["ff-image-id"] == content_image_id("default", data)
    assert headers["ff-source-type"] == "mqtt"
    assert headers["ff-source-id"] == "default"
    assert headers["ff-origin"] == settings.mqtt.topic
    assert headers["ff-content-type"] == "image/jpeg"
    assert before <= int(headers["ff-captured-at"]) <= int(time.time() * 1000)
    assert bridge.metric("flowforge_bridge_published_total") == 1


def test_one_sources_images_spread_over_every_partition_by_image_id(
    bridge: BridgeProcess,
) -> None:
    """600 images of the one source `default` (the bare MQTT topic) land on every partition of
    images.raw, none under half the even share; each image on the partition of its image id,
    keyed by the source id. The same image sent again lands on the same partition."""
    bridge.start()
    settings = bridge.settings
    payloads = [payload(i, 2_000) for i in range(600)]
    mqtt_publish(settings, [(settings.mqtt.topic, data) for data in payloads])
    records = read_records(settings, [settings.kafka.topic_raw], 600, settle=1)
    assert len(records) == 600
    partitions = range(settings.kafka.partitions)
    counts = Counter(r.partition for r in records)
    assert set(counts) == set(partitions), counts
    assert min(counts.values()) >= 600 / len(partitions) / 2, counts
    for r in records:
        assert r.key == "default"
        assert r.partition == partition_of(r.headers["ff-image-id"], partitions)
    again = payloads[:20]
    mqtt_publish(settings, [(settings.mqtt.topic, data) for data in again])
    records = read_records(settings, [settings.kafka.topic_raw], 620, settle=1)
    where: dict[str, set[int]] = {}
    for r in records:
        where.setdefault(r.headers["ff-image-id"], set()).add(r.partition)
    assert len(records) == 620
    assert all(len(p) == 1 for p in where.values()), where


def assert_intact(records: list[Record], sent: dict[str, tuple[str, bytes]], base: str) -> None:
    """Every record is one of ``sent`` (image id -> (topic, bytes)): key, bytes and every
    envelope header as the bridge must have written them."""
    for r in records:
        image_id = r.headers["ff-image-id"]
        assert image_id in sent, f"unexpected record {image_id}"
        topic, data = sent[image_id]
        source = topic.rsplit("/", 1)[1]
        assert r.value == data, f"bytes of {image_id} differ"
        assert r.key == source
        assert image_id == content_image_id(source, r.value)
        assert r.headers["ff-source-type"] == "mqtt"
        assert r.headers["ff-source-id"] == source
        assert r.headers["ff-origin"] == topic == f"{base}/{source}"
        assert r.headers["ff-content-type"] == "image/jpeg"
        assert 0 < int(r.headers["ff-captured-at"]) <= int(time.time() * 1000)


def by_image_id(items: list[tuple[str, bytes]]) -> dict[str, tuple[str, bytes]]:
    """(topic, payload) pairs keyed by the image id the bridge gives them."""
    return {content_image_id(t.rsplit("/", 1)[1], d): (t, d) for t, d in items}


def test_n_messages_give_n_records_keyed_by_topic_suffix(bridge: BridgeProcess) -> None:
    """500 QoS 1 messages over several source topics give exactly 500 records, each with intact
    bytes, key and envelope, and the web pages report ready and the counts."""
    bridge.start()
    settings = bridge.settings
    base = settings.mqtt.topic
    items = [(f"{base}/cam-{i % 5:02d}", payload(i)) for i in range(500)]
    mqtt_publish(settings, items)
    records = read_records(settings, [settings.kafka.topic_raw], len(items), settle=3)
    assert len(records) == len(items)
    sent = by_image_id(items)
    assert len(sent) == len(items)
    assert {r.headers["ff-image-id"] for r in records} == set(sent)
    assert_intact(records, sent, base)
    assert bridge.get("/livez") == (200, "ok\n")
    assert bridge.get("/readyz")[0] == 200
    assert bridge.metric("flowforge_bridge_received_total") == len(items)
    assert bridge.metric("flowforge_bridge_published_total") == len(items)
    assert bridge.metric("flowforge_bridge_in_flight_bytes") == 0
    assert bridge.metric("flowforge_bridge_publish_latency_ms_count") == len(items)


def test_every_refused_payload_is_one_rejected_record_with_its_dead_letters_id(
    bridge: BridgeProcess,
) -> None:
    """An empty, an over-limit and a badly addressed message each get exactly one `rejected`
    images.metadata record, with the image id, reason and size of its dead letter."""
    bridge.env["FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES"] = "64KiB"
    bridge.start()
    settings = bridge.settings
    base = settings.mqtt.topic
    big, small = payload(2, 100_000), payload(1, 1000)
    mqtt_publish(
        settings,
        [(f"{base}/cam-01", b""), (f"{base}/cam-01", big), (f"{base}/bad id!", small)],
    )
    topics = [settings.kafka.topic_metadata, settings.kafka.topic_dlq]
    records = read_records(settings, topics, 6, settle=2)
    dead = {r.headers["ff-error-reason"]: r for r in records if r.topic == topics[1]}
    rows = [json.loads(r.value) for r in records if r.topic == topics[0]]
    assert sorted(row["reason"] for row in rows) == ["bad_source_id", "empty", "too_large"]
    sizes = {"empty": 0, "too_large": len(big), "bad_source_id": len(small)}
    for row in rows:
        assert row["status"] == "rejected"
        assert row["image_id"] == dead[row["reason"]].headers["ff-image-id"]
        assert row["source_type"] == "mqtt"
        assert row["bytes"] == sizes[row["reason"]]


def test_rejected_payloads_go_to_the_dlq_counted_and_acknowledged(bridge: BridgeProcess) -> None:
    """Empty, over-limit and badly addressed messages land in the DLQ with their reason, are
    counted by reason, and are acknowledged: a restarted bridge does not get them again."""
    bridge.env["FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES"] = "64KiB"
    bridge.start()
    settings = bridge.settings
    base = settings.mqtt.topic
    small = payload(1, 1000)
    mqtt_publish(
        settings,
        [
            (f"{base}/cam-01", b""),
            (f"{base}/cam-01", payload(2, 100_000)),
            (f"{base}/bad id!", small),
            (f"{base}/cam-01", small),
        ],
    )
    topics = [settings.kafka.topic_raw, settings.kafka.topic_dlq]
    records = read_records(settings, topics, 4, settle=2)
    [ok] = [r for r in records if r.topic == settings.kafka.topic_raw]
    assert ok.value == small
    dead = {r.headers["ff-error-reason"]: r for r in records if r.topic == settings.kafka.topic_dlq}
    assert set(dead) == {"empty", "too_large", "bad_source_id"}
    assert dead["too_large"].value == b"", "over the limit: the dead letter carries no bytes"
    assert "exceeds the topic limit" in dead["too_large"].headers["ff-error-detail"]
    assert dead["bad_source_id"].value == small
    assert dead["bad_source_id"].headers["ff-origin"] == f"{base}/bad id!"
    assert all(r.headers["ff-error-stage"] == "bridge" for r in dead.values())
    for reason in dead:
        assert bridge.metric("flowforge_bridge_rejected_total", reason=reason) == 1
    assert bridge.signal(signal.SIGTERM) == 0
    bridge.start()  # same client id: the persistent session would redeliver anything unacked
    # A message published now reaches the bridge after anything its session redelivers: once
    # it is in Kafka, the bridge has received all it ever will of the earlier ones.
    marker = payload(3, 1000)
    mqtt_publish(settings, [(f"{base}/cam-01", marker)])
    records = read_records(settings, topics, 5, settle=2)
    assert bridge.metric("flowforge_bridge_received_total") == 1
    raw = sorted(r.value for r in records if r.topic == settings.kafka.topic_raw)
    assert raw == sorted([small, marker])
    assert len(records) == 5


def test_sigkill_mid_flight_then_restart_loses_nothing(bridge: BridgeProcess) -> None:
    """500 QoS 1 images with the bridge SIGKILLed in the middle (some in flight, some queued)
    and restarted: all 500 arrive, each with intact bytes and envelope (duplicates allowed)."""
    bridge.start()
    settings = bridge.settings
    base = settings.mqtt.topic
    items = [(f"{base}/cam-{i % 3}", payload(i)) for i in range(500)]
    first, later = items[:350], items[350:]
    publishing = threading.Thread(target=mqtt_publish, args=(settings, first))
    publishing.start()  # the kill lands while these are still arriving
    try:
        read_records(settings, [settings.kafka.topic_raw], 30, timeout=60)  # some are through
        assert bridge.signal(signal.SIGKILL) == -signal.SIGKILL
    finally:
        publishing.join(timeout=120)
    assert not publishing.is_alive()
    mqtt_publish(settings, later)  # queued by the broker in the bridge's session
    bridge.start()
    sent = by_image_id(items)
    records = read_records(
        settings, [settings.kafka.topic_raw], len(sent), timeout=120, settle=2, distinct=True
    )
    got = {r.headers["ff-image-id"] for r in records}
    assert set(sent) - got == set(), f"{len(set(sent) - got)} of {len(sent)} images lost"
    assert got == set(sent)
    assert_intact(records, sent, base)
    assert bridge.metric("flowforge_bridge_rejected_total") == 0


def test_resubscribes_after_a_mosquitto_restart(
    bridge: BridgeProcess, services: Stack, settings: Settings
) -> None:
    """After Mosquitto restarts, the bridge reconnects and receives messages again."""
    bridge.start()
    mqtt_settings = bridge.settings
    base = mqtt_settings.mqtt.topic
    [mosquitto] = [s for s in services.services if s.name == "mosquitto"]
    mosquitto.down()
    asyncio.run(mosquitto.up())
    bridge.wait_ready(timeout=60)
    mqtt_publish(mqtt_settings, [(f"{base}/cam-09", payload(9))])
    [record] = read_records(mqtt_settings, [mqtt_settings.kafka.topic_raw], 1, settle=1)
    assert record.key == "cam-09"
    assert bridge.metric("flowforge_bridge_reconnects_total") >= 1


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A throw-away Kafka + Mosquitto on free ports with its own home; stopped afterwards, so
    a test may stop and kill its broker without disturbing the shared session stack."""
    with running_stack(tmp_path / "stack") as stack_and_vars:
        yield stack_and_vars


def stop_kafka(kafka: KafkaService, how: str) -> None:
    """Stop the broker: a clean shutdown (SIGTERM) or a crash (SIGKILL of its process group)."""
    if how == "down":
        kafka.down()
        return
    pid = kafka.process.pid()
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while kafka.process.pid() is not None:
        assert time.monotonic() < deadline, "the killed broker did not go away"
        time.sleep(0.1)


def poll(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait until ``condition()`` holds; return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.2)
    return time.monotonic()


def first_seen(settings: Settings, expected: set[str], timeout: float) -> dict[str, float]:
    """Read the image topic from the start until every id in ``expected`` arrived; return each
    id's first arrival (monotonic) and check every record's bytes against its id."""
    return asyncio.run(_first_seen(settings, expected, timeout))


async def _first_seen(settings: Settings, expected: set[str], timeout: float) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.kafka.request_bytes,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    seen: dict[str, float] = {}
    try:
        topic = settings.kafka.topic_raw
        tps = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while not expected <= seen.keys() and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for items in batch.values():
                for r in items:
                    image_id = header_map(r.headers)["ff-image-id"]
                    source = (r.key or b"").decode()
                    assert content_image_id(source, r.value or b"") == image_id, "bytes changed"
                    seen.setdefault(image_id, now)
    finally:
        await consumer.stop()
    return seen


# Kafka stopped -> /readyz 503 at most this long after (a probe every 2 s, 5 s to answer, plus
# the broker's own shutdown), generous for a loaded 2-core machine.
UNREADY_WITHIN = 20.0


@pytest.mark.parametrize("how", ["down", "kill"])
def test_kafka_restarted_under_a_running_bridge_loses_nothing(
    how: str, private_stack: tuple[Stack, dict[str, str]], tmp_path: Path
) -> None:
    """Kafka stopped (cleanly or SIGKILLed) for 10+ s while QoS 1 images keep coming, then
    started again: the bridge stays up, /readyz goes 503 and back to 200, and every image
    arrives intact."""
    stack, stack_vars = private_stack
    [kafka] = [s for s in stack.services if isinstance(s, KafkaService)]
    bridge = BridgeProcess(
        ["bridge", "mqtt"], bridge_env(f"kr-{how}", stack_vars, tmp_path), tmp_path
    )
    try:
        bridge.start()
        settings = bridge.settings
        base = settings.mqtt.topic
        items = [(f"{base}/cam-{i % 3}", payload(i, 50_000)) for i in range(300)]
        before, during, after = items[:100], items[100:200], items[200:]
        wanted = {content_image_id(t.rsplit("/", 1)[1], d) for t, d in items}
        assert len(wanted) == len(items)

        mqtt_publish(settings, before)
        read_records(settings, [settings.kafka.topic_raw], len(before), distinct=True)
        assert bridge.get("/readyz")[0] == 200

        stopped = time.monotonic()
        stop_kafka(kafka, how)
        went_unready: float | None = None
        for start in range(0, len(during), 10):  # publishing continues through the outage
            mqtt_publish(settings, during[start : start + 10])
            if went_unready is None and bridge.get("/readyz")[0] == 503:
                went_unready = time.monotonic()
            time.sleep(0.2)
        if went_unready is None:  # the broker watch notices within seconds, not minutes
            left = stopped + UNREADY_WITHIN - time.monotonic()
            went_unready = poll(lambda: bridge.get("/readyz")[0] == 503, left, "/readyz 503")
        poll(lambda: time.monotonic() - stopped >= 10, 30, "a 10 s outage")
        assert bridge.proc is not None
        assert bridge.proc.poll() is None, f"the bridge died:\n{bridge.log()}"
        assert bridge.get("/readyz")[0] == 503

        asyncio.run(kafka.up())
        restarted = time.monotonic()
        mqtt_publish(settings, after)
        seen = first_seen(settings, wanted, timeout=120)
        assert wanted - seen.keys() == set(), f"{len(wanted - seen.keys())} images lost"
        ready_again = poll(lambda: bridge.get("/readyz")[0] == 200, 60, "/readyz 200 again")
        assert bridge.proc.poll() is None, f"the bridge died:\n{bridge.log()}"
        assert bridge.starts == 1
        assert bridge.metric("flowforge_bridge_rejected_total") == 0
        resumed = [seen[content_image_id(t.rsplit("/", 1)[1], d)] for t, d in during + after]
        print(
            f"\nkafka {how}: outage {restarted - stopped:.1f}s, /readyz 503 after "
            f"{went_unready - stopped:.1f}s; after Kafka was up again: first new record in "
            f"{min(resumed) - restarted:.1f}s, all {len(wanted)} in "
            f"{max(resumed) - restarted:.1f}s, /readyz 200 in {ready_again - restarted:.1f}s"
        )
    finally:
        bridge.stop()


MIB = 1024 * 1024
BIG = 8 * MIB
BURST = 32  # 256 MiB of 8 MiB images
BUDGET = 16 * MIB  # FLOWFORGE_BRIDGE_IN_FLIGHT_BYTES for the burst test
# What the bridge may hold over its idle RSS: the payloads in the budget and up to three copies
# of each in the Kafka producer (record batch, encoded request, socket write buffer): 4 x the
# budget; the message paho has read and waits with (packet buffer and payload): 2 images; and
# what glibc keeps of freed 8 MiB buffers. Measured with 24 images: +96 to +140 MiB over six
# runs; +80 twice with MALLOC_MMAP_THRESHOLD_=131072 (no such slack), so the slack was up to
# 60 MiB. A bridge that takes every message the broker sends held +308 to +310 MiB of 24 images
# (the burst alone is over the allowance).
ALLOWANCE = 4 * BUDGET + 2 * BIG + 96 * MIB


class UnboundedMosquitto(MosquittoService):
    """The local stack's Mosquitto without its in-flight byte bound (max_inflight_bytes 0, as
    Mosquitto ships and as other brokers behave): it sends the bridge as many unacknowledged
    messages as the bridge's Receive Maximum allows, whatever their size."""

    def render_config(self) -> str:
        text = super().render_config()
        bounded = re.search(r"^max_inflight_bytes \d+$", text, re.MULTILINE)
        assert bounded, "infra/mosquitto/local.conf has no max_inflight_bytes line to lift"
        return text.replace(bounded.group(0), "max_inflight_bytes 0")


def memory(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of process ``pid`` (VmRSS, VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    found = {k: re.search(rf"^{k}:\s+(\d+) kB", status, re.MULTILINE) for k in ("VmRSS", "VmHWM")}
    rss, hwm = (int(m.group(1)) * 1024 if m else None for m in found.values())
    assert rss is not None, status
    assert hwm is not None, status
    return rss, hwm


def test_a_burst_of_large_images_while_kafka_stalls_stays_in_the_byte_budget(
    private_stack: tuple[Stack, dict[str, str]], tmp_path: Path
) -> None:
    """A broker that bounds nothing in flight sends 32 images of 8 MiB at QoS 1 while Kafka is
    stopped (SIGSTOP): the bridge's peak RSS stays under its idle RSS + 4 x the 16 MiB byte
    budget + 2 images + 96 MiB (it takes room in the budget for at most 2 images before it
    holds a payload, and stops reading the broker until there is room), and once Kafka runs
    again every image arrives exactly once with its bytes intact and acknowledged to the broker."""
    stack, stack_vars = private_stack
    [kafka] = [s for s in stack.services if isinstance(s, KafkaService)]
    broker_vars = {
        **stack_vars,
        "FLOWFORGE_HOME": str(tmp_path / "unbounded"),
        "FLOWFORGE_MQTT_PORT": str(free_port()),
    }
    broker = UnboundedMosquitto(Settings.from_env(broker_vars))
    asyncio.run(broker.up())
    env = bridge_env("budget", broker_vars, tmp_path)
    env["FLOWFORGE_HOME"] = str(tmp_path / "home")
    env["FLOWFORGE_BRIDGE_IN_FLIGHT_BYTES"] = str(BUDGET)
    bridge = BridgeProcess(["bridge", "mqtt"], env, tmp_path)
    kafka_pid = kafka.process.pid()
    assert kafka_pid is not None
    stopped = False
    try:
        bridge.start()
        assert bridge.proc is not None
        settings = bridge.settings
        assert settings.bridge.in_flight_bytes == BUDGET
        idle, _ = memory(bridge.proc.pid)
        items = [(f"{settings.mqtt.topic}/cam-{i % 3}", payload(i, BIG)) for i in range(BURST)]
        sent = by_image_id(items)
        assert len(sent) == BURST

        os.killpg(kafka_pid, signal.SIGSTOP)  # Kafka stalls: nothing is acknowledged
        stopped = True
        mqtt_publish(settings, items)  # the broker has every image
        # The bridge took all it will take while Kafka stalls: every image, or it holds back.
        wait_until(
            lambda: (
                bridge.metric("flowforge_bridge_received_total") == BURST
                or bridge.metric("flowforge_bridge_source_held_back") == 1
            ),
            60,
            bridge.log,
        )
        taken = bridge.metric("flowforge_bridge_received_total")
        os.killpg(kafka_pid, signal.SIGCONT)
        stopped = False

        records = read_records(
            settings, [settings.kafka.topic_raw], BURST, timeout=120, settle=2, distinct=True
        )
        _, peak = memory(bridge.proc.pid)
        print(
            f"\nburst of {BURST} x {BIG // MIB} MiB, budget {BUDGET // MIB} MiB: idle RSS "
            f"{idle / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB (+{(peak - idle) / MIB:.0f} MiB, "
            f"allowed +{ALLOWANCE // MIB} MiB); {taken:.0f} taken while Kafka stalled"
        )
        assert peak - idle < ALLOWANCE, (
            f"peak RSS {peak / MIB:.0f} MiB is {(peak - idle) / MIB:.0f} MiB over the idle "
            f"{idle / MIB:.0f} MiB; allowed {ALLOWANCE // MIB} MiB"
        )
        assert taken <= BUDGET // BIG, f"{taken:.0f} images taken while Kafka stalled"
        assert len(records) == BURST, f"{len(records)} records for {BURST} images"
        assert {r.headers["ff-image-id"] for r in records} == set(sent)
        for r in records:
            assert r.value == sent[r.headers["ff-image-id"]][1]
        assert bridge.metric("flowforge_bridge_received_total") == BURST
        assert bridge.metric("flowforge_bridge_reconnects_total") == 0
        assert bridge.metric("flowforge_bridge_held_bytes") == 0

        # Every image was acknowledged to the broker (paho wrote the PUBACKs queued while its
        # thread waited): a restarted bridge on the same session gets only a new marker, which
        # the broker sends after any redelivery.
        assert bridge.signal(signal.SIGTERM) == 0
        bridge.start()
        mqtt_publish(settings, [(f"{settings.mqtt.topic}/marker", payload(BURST, 1000))])
        read_records(settings, [settings.kafka.topic_raw], BURST + 1, timeout=60, distinct=True)
        wait_until(lambda: bridge.metric("flowforge_bridge_published_total") >= 1, 30, bridge.log)
        assert bridge.metric("flowforge_bridge_received_total") == 1
    finally:
        if stopped:
            os.killpg(kafka_pid, signal.SIGCONT)
        bridge.stop()
        broker.down()


def test_an_mqtt_client_in_a_process_with_over_1024_descriptors_still_talks_to_mosquitto(
    settings: Settings, services: Stack, request: pytest.FixtureRequest
) -> None:
    """A process holding more than 1024 descriptors (the embedded engine keeps three per thread
    open, so a test process or a worker can) still completes an MQTT round trip through the real
    Mosquitto: paho's loop watches its socket with select(), which cannot take a descriptor past
    FD_SETSIZE and failed silently (no CONNACK, no error) until FlowForge gave it poll()."""
    import paho.mqtt.client as paho

    from flowforge.core.mqtt import mqtt_client, mqtt_round_trip

    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        mqtt_round_trip(settings.mqtt, timeout=10.0)
        # A plain paho client (as the bridge and the tests make them) works the same way.
        client = mqtt_client(settings.mqtt, unique_name(request, "fd-high"), protocol=paho.MQTTv311)
        connected = threading.Event()
        client.on_connect = lambda *_args: connected.set()
        client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=10)
        assert client.socket().fileno() >= 1024
        client.loop_start()
        try:
            assert connected.wait(10), "no CONNACK"
        finally:
            client.disconnect()
            client.loop_stop()
    finally:
        for fd in held:
            os.close(fd)
