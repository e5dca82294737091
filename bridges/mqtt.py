"""MqttBridge: MQTT images (QoS 1, persistent session) into Kafka, acked after Kafka acked."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridges import metrics
from bridges.errors import LibraryThreadDied, PayloadRejected
from bridges.lifecycle import Bridge
from bridges.publisher import ImageMessage, KafkaPublisher
from bridges.window import Window
from flowforge.core.errors import Stopped
from flowforge.core.formats import sniff_format
from flowforge.core.mqtt import mqtt_client
from flowforge.core.settings import BridgeSettings, Settings

log = logging.getLogger(__name__)

NAME = "mqtt"
ONLINE = b"online"
OFFLINE = b"offline"
# Not ready when images wait for Kafka and none was acknowledged for this long.
STALL_SECONDS = 30.0
# How long a stopping bridge waits for the images it handed to Kafka.
DRAIN_SECONDS = 30.0
MAX_SOURCE_ID = 128
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: another client connected with our id
_LEVEL = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_SOURCE_ID = re.compile(rf"{_LEVEL}(?:/{_LEVEL}){{0,3}}")


def source_id_for(topic: str, base: str, default: str) -> str:
    """The source id of a message on ``topic``: the suffix after ``base/``, or ``default``
    for ``base`` itself. A suffix that is not 1-4 levels of ``[A-Za-z0-9][A-Za-z0-9._-]*``
    (at most 128 characters) raises PayloadRejected(``bad_source_id``)."""
    if topic == base:
        return default
    prefix = base + "/"
    suffix = topic[len(prefix) :] if topic.startswith(prefix) else ""
    if len(suffix) > MAX_SOURCE_ID or not _SOURCE_ID.fullmatch(suffix):
        raise PayloadRejected(
            "bad_source_id",
            f"topic {topic[:200]!r}: the part after {prefix!r} must be 1-4 levels of "
            "letters, digits, '.', '_' or '-' (at most 128 characters)",
        )
    return suffix


def default_client_id(settings: Settings) -> str:
    """A client id unique to this host, FlowForge home and web port, and stable across restarts
    (the persistent session is keyed by it): a second bridge on its own --web-port gets its own
    session instead of taking the first one's. The default port adds nothing to the seed, so
    the default bridge keeps the id (and session) it always had."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:32] or "host"
    seed = f"{socket.gethostname()}\0{settings.home.resolve()}\0{settings.mqtt.topic}"
    port = settings.bridge.mqtt_web_port
    if port != BridgeSettings().mqtt_web_port:
        seed += f"\0{port}"
    return f"flowforge-mqtt-{host}-{hashlib.sha256(seed.encode()).hexdigest()[:8]}"


def content_type(data: bytes) -> str:
    """The MIME type the payload's magic bytes announce (application/octet-stream if none)."""
    fmt = sniff_format(data)
    return f"image/{fmt}" if fmt else "application/octet-stream"


@dataclass(frozen=True)
class Received:
    """A message handed from paho's thread to the event loop."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_ms: int


class MqttBridge(Bridge):
    """Subscribes ``<topic>/#`` (which matches ``<topic>`` too) at QoS 1 with a persistent
    session, publishes each image with KafkaPublisher and acknowledges it to the broker only
    after Kafka acknowledged it (or its dead letter). paho runs in its own thread."""

    name = NAME

    def __init__(self, settings: Settings, publisher: KafkaPublisher | None = None) -> None:
        self.settings = settings
        self.mqtt = settings.mqtt
        self.publisher = publisher or KafkaPublisher(
            settings.kafka, settings.bridge, bridge_name=NAME
        )
        self.client_id = self.mqtt.client_id or default_client_id(settings)
        self._taken_over = False
        self.availability_topic = (
            self.mqtt.availability_topic or f"flowforge/bridges/{self.client_id}/availability"
        )
        self.subscription = f"{self.mqtt.topic}/#"
        # At most receive_maximum messages and in_flight_bytes of payload are between paho's
        # thread and their acknowledgement. Mosquitto 2.0.11 was seen sending 800+
        # unacknowledged QoS 1 messages to a client with Receive Maximum 100, and a broker
        # without max_inflight_bytes sends them whatever their size, so the bridge bounds this
        # itself: in on_message, before the payload is handed on, a QoS 1 message waits in
        # paho's thread for room. paho then reads nothing more (TCP back-pressure; the broker
        # keeps the rest in the session), so the bridge holds at most the window plus the one
        # message paho has read. Dropping an unacknowledged message instead would only get it
        # back in the next session. A QoS 0 message finding no room is dropped and counted
        # (queue_full). The room is given back from the event loop, which never waits for
        # paho's thread (its PUBACKs are queued and written once on_message returns).
        self.window = Window(
            self.mqtt.receive_maximum, settings.bridge.in_flight_bytes, on_change=_held
        )
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        self.peak_queue = 0
        self.connected = False
        self._generation = 0  # connection count: an ack never crosses a reconnect
        self._connections = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._thread_ended = asyncio.Event()
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._overflowing = False
        self._unreachable = False  # a connection attempt failed since the last success

    # --- lifecycle ---------------------------------------------------------------------

    async def setup(self, stop: asyncio.Event) -> None:
        """Connect to Kafka first (nothing is taken from MQTT that cannot be published), then
        start paho's network loop in its own thread."""
        self._stop = stop
        self._loop = asyncio.get_running_loop()
        await self.publisher.start(stop)
        client = mqtt_client(self.mqtt, self.client_id, protocol=paho.MQTTv5, manual_ack=True)
        client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.mqtt.session_expiry_s
        properties.ReceiveMaximum = self.mqtt.receive_maximum
        client.connect_async(
            self.mqtt.host, self.mqtt.port, keepalive=30, clean_start=False, properties=properties
        )
        self._client = client
        self._thread = threading.Thread(target=self._network_loop, name="mqtt-loop", daemon=True)
        self._thread.start()
        log.info(
            "connecting to MQTT %s:%d as %s, subscribing %s",
            self.mqtt.host, self.mqtt.port, self.client_id, self.subscription,
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """Publish each queued message in its own task until ``stop``; then finish those."""
        tasks: set[asyncio.Task[None]] = set()
        failure: list[BaseException] = []

        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                failure.append(task.exception())  # type: ignore[arg-type]
                stop.set()

        stopping = asyncio.ensure_future(stop.wait())
        thread_ended = asyncio.ensure_future(self._thread_ended.wait())
        try:
            while True:
                getter = asyncio.ensure_future(self.queue.get())
                await asyncio.wait(
                    {getter, stopping, thread_ended}, return_when=asyncio.FIRST_COMPLETED
                )
                if not getter.done():
                    getter.cancel()
                    break
                metrics.QUEUE_DEPTH.labels(NAME).set(self.queue.qsize())
                task = asyncio.create_task(self._handle(getter.result(), stop))
                tasks.add(task)
                task.add_done_callback(done)
        finally:
            stopping.cancel()
            thread_ended.cancel()
        log.info("peak queue depth %d (window %d)", self.peak_queue, self.mqtt.receive_maximum)
        if tasks:
            log.info("finishing %d images handed to Kafka", len(tasks))
            await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        if self._thread_ended.is_set() and not self._closing:
            error = self._thread_error
            detail = f"{type(error).__name__}: {error}" if error else "it returned unexpectedly"
            raise LibraryThreadDied(f"the MQTT network thread (paho) died: {detail}") from error
        if failure:
            raise failure[0]

    async def cleanup(self) -> None:
        """Say offline (retained), disconnect, join paho's thread, flush and close the producer."""
        self._closing = True
        client = self._client
        if client is not None and self._thread is not None and self._thread.is_alive():
            if self.connected:
                info = client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
                await asyncio.to_thread(info.wait_for_publish, 5.0)
            client.disconnect()
            await asyncio.to_thread(self._thread.join, 10.0)
        await self.publisher.stop()

    def readiness(self) -> tuple[bool, str]:
        """Ready: connected to the broker, Kafka answering, and Kafka acknowledging what it was
        handed."""
        if not self.connected:
            return False, "not connected to the MQTT broker"
        ok, why = self.publisher.kafka_health(STALL_SECONDS)
        return ok, f"connected, {why}" if ok else why

    # --- the event loop side -------------------------------------------------------------

    async def _handle(self, item: Received, stop: asyncio.Event) -> None:
        try:
            await self._publish(item, stop)
        finally:
            self.window.give(len(item.payload))

    async def _publish(self, item: Received, stop: asyncio.Event) -> None:
        metrics.RECEIVED.labels(NAME).inc()
        try:
            source_id = source_id_for(item.topic, self.mqtt.topic, self.mqtt.default_source)
            rejected = None
        except PayloadRejected as exc:
            source_id = item.topic[len(self.mqtt.topic) + 1 :][:MAX_SOURCE_ID] or "unknown"
            rejected = exc
        message = ImageMessage(
            source_type=NAME,
            source_id=source_id,
            origin=item.topic,
            data=item.payload,
            captured_at_ms=item.received_ms,
            content_type=content_type(item.payload),
        )
        try:
            if rejected is not None:
                await self.publisher.reject(message, rejected.reason, rejected.detail, stop)
            else:
                await self.publisher.deliver(message, stop)
        except Stopped:
            return  # not acknowledged: the broker redelivers it to the next session
        self._ack(item)

    def _ack(self, item: Received) -> None:
        # An ack is only valid on the connection that delivered the message; after a reconnect
        # the broker redelivers the message and the new copy is acknowledged instead.
        if item.qos and item.generation == self._generation and self._client is not None:
            self._client.ack(item.mid, item.qos)

    def _enqueue(self, item: Received) -> None:
        self.queue.put_nowait(item)
        depth = self.queue.qsize()
        self.peak_queue = max(self.peak_queue, depth)
        metrics.QUEUE_DEPTH.labels(NAME).set(depth)

    # --- paho's thread -----------------------------------------------------------------

    def _network_loop(self) -> None:
        assert self._client is not None
        assert self._loop is not None
        try:
            self._client.loop_forever(retry_first_connection=True)
        except BaseException as exc:  # noqa: BLE001 - reported to the event loop, which exits 1
            self._thread_error = exc
        finally:
            self.connected = False
            metrics.CONNECTED.labels(NAME).set(0)
            self._loop.call_soon_threadsafe(self._thread_ended.set)

    def _on_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker refused the connection: %s", reason)
            return
        self._generation += 1
        self._connections += 1
        if self._connections > 1:
            metrics.RECONNECTS.labels(NAME).inc()
        client.subscribe(self.subscription, qos=1)
        client.publish(self.availability_topic, ONLINE, qos=1, retain=True)
        self.connected = True
        self._unreachable = False
        metrics.CONNECTED.labels(NAME).set(1)
        session = "resumed" if flags.session_present else "new"
        log.info(
            "connected to MQTT %s:%d (%s session), subscribed %s",
            self.mqtt.host, self.mqtt.port, session, self.subscription,
        )  # fmt: skip

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        """The broker could not be reached (paho retries with backoff): log the first failure
        of a streak, the retries at debug."""
        level = logging.DEBUG if self._unreachable else logging.WARNING
        self._unreachable = True
        log.log(level, "cannot reach MQTT %s:%d; retrying", self.mqtt.host, self.mqtt.port)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        was = self.connected
        self.connected = False
        metrics.CONNECTED.labels(NAME).set(0)
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER and not self._closing:
            # Said once at error level; the tug of war that follows is logged at debug.
            level = logging.DEBUG if self._taken_over else logging.ERROR
            self._taken_over = True
            log.log(
                level,
                "MQTT session taken over: another client connected to %s:%d with this bridge's "
                "client id %s (a second bridge with the same FLOWFORGE_MQTT_CLIENT_ID?); give "
                "each bridge its own FLOWFORGE_MQTT_CLIENT_ID (or its own --web-port and no "
                "client id: each then derives its own)",
                self.mqtt.host, self.mqtt.port, self.client_id,
            )  # fmt: skip
        elif was and not self._closing:
            log.warning("disconnected from MQTT (%s); reconnecting", reason)

    def _take_room(self, qos: int, size: int) -> bool:
        """Wait (QoS 1) or not (QoS 0) for room for ``size`` payload bytes in the window; False
        means drop the message."""
        if self.window.take(size):
            if self._overflowing:
                log.info("Kafka caught up: MQTT flows again")
                self._overflowing = False
            return True
        if not qos:
            metrics.DROPPED.labels(NAME, "queue_full").inc()
            return False
        if not self._overflowing:
            log.warning(
                "%d images (%.1f MiB) wait for Kafka: holding MQTT back",
                self.window.items, self.window.bytes / 2**20,
            )  # fmt: skip
            self._overflowing = True
        metrics.HELD_BACK.labels(NAME).set(1)
        try:
            while not self._closing:
                if self.window.take(size, timeout=1.0):
                    return True
        finally:
            metrics.HELD_BACK.labels(NAME).set(0)
        return False  # stopping: left unacknowledged, so the next session gets it again

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if not self._take_room(msg.qos, len(msg.payload)):
            return
        item = Received(
            topic=msg.topic,
            payload=bytes(msg.payload),
            mid=msg.mid,
            qos=msg.qos,
            generation=self._generation,
            received_ms=int(time.time() * 1000),
        )
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._enqueue, item)


def _held(_items: int, size: int) -> None:
    metrics.HELD_BYTES.labels(NAME).set(size)
