"""Smoke: a message through the real Mosquitto; a 10 MiB record with headers through real Kafka."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from flowforge.core.mqtt import mqtt_client
from flowforge.core.settings import MIB, Settings
from flowforge.stack import Stack


def test_mqtt_qos1_binary_message_round_trip(settings: Settings, services: Stack) -> None:
    """A binary QoS 1 payload published to the real Mosquitto arrives byte for byte."""
    topic = f"test/smoke/{uuid.uuid4().hex}"
    payload = os.urandom(256 * 1024)
    got: list[bytes] = []
    subscribed, arrived = threading.Event(), threading.Event()

    sub = mqtt_client(settings.mqtt, f"smoke-sub-{uuid.uuid4().hex[:8]}")
    sub.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: object, _u: object, message: object) -> None:
        got.append(message.payload)  # type: ignore[attr-defined]
        arrived.set()

    sub.on_message = on_message
    sub.connect(settings.mqtt.host, settings.mqtt.port)
    sub.loop_start()
    pub = mqtt_client(settings.mqtt, f"smoke-pub-{uuid.uuid4().hex[:8]}")
    pub.connect(settings.mqtt.host, settings.mqtt.port)
    pub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(5), "subscription not confirmed"
        info = pub.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert arrived.wait(5), "message not delivered"
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()
    assert got == [payload]


def test_kafka_round_trip_keeps_headers_and_a_10_mib_value(settings: Settings, topic: str) -> None:
    """A 10 MiB value with envelope headers is produced and consumed intact on the real broker."""
    value = os.urandom(10 * MIB)
    headers = [
        ("ff-image-id", b"abc123"),
        ("ff-source-type", b"mqtt"),
        ("ff-source-id", "cam-\u00e9t\u00e9".encode()),
        ("ff-captured-at", b"1795478278697"),
    ]
    limit = settings.kafka.max_message_bytes

    async def round_trip() -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            max_request_size=limit,
        )
        await producer.start()
        try:
            meta = await producer.send_and_wait(topic, value, key=b"cam-01", headers=headers)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_bytes=limit * 2,
            max_partition_fetch_bytes=limit,
        )
        await consumer.start()
        try:
            from aiokafka import TopicPartition

            tp = TopicPartition(topic, meta.partition)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        return record.key, record.value, list(record.headers)

    key, got, got_headers = asyncio.run(round_trip())
    assert key == b"cam-01"
    assert got == value
    assert got_headers == headers
