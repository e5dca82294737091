"""MQTT client helpers: a paho client with our credentials and TLS, and a round-trip probe."""

from __future__ import annotations

import select
import threading
import types
import uuid
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from flowforge.core.errors import ServiceUnhealthy
from flowforge.core.settings import MqttSettings


def _fileno(item: Any) -> int:
    if not isinstance(item, int) and not hasattr(item, "fileno"):
        raise TypeError("argument must be an int, or have a fileno() method")  # as select()
    fd = item if isinstance(item, int) else item.fileno()
    if fd < 0:
        raise ValueError("file descriptor cannot be a negative integer")
    return int(fd)


def poll_select(
    rlist: Sequence[Any], wlist: Sequence[Any], xlist: Sequence[Any], timeout: float | None = None
) -> tuple[list[Any], list[Any], list[Any]]:
    """select.select()'s contract over poll(2), which has no FD_SETSIZE (1024) limit.

    paho-mqtt's loop watches its socket with select.select(); in a process holding more than
    1024 descriptors (the embedded engine keeps three open per thread) the socket's number is
    past the limit, select() raises ValueError, paho takes it for a lost connection and retries
    forever: no CONNACK, no error. Errors keep select()'s types (TypeError for a closed socket
    object, ValueError for -1), which paho handles.
    """
    wanted: dict[int, int] = {}
    items: dict[int, Any] = {}
    for flag, group in ((select.POLLIN, rlist), (select.POLLOUT, wlist), (select.POLLPRI, xlist)):
        for item in group:
            fd = _fileno(item)
            wanted[fd] = wanted.get(fd, 0) | flag
            items[fd] = item
    poller = select.poll()
    for fd, flags in wanted.items():
        poller.register(fd, flags)
    events = poller.poll(None if timeout is None else max(0.0, timeout) * 1000)
    failed = select.POLLERR | select.POLLHUP | select.POLLNVAL
    ready: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    for fd, happened in events:
        item, asked = items[fd], wanted[fd]
        if asked & select.POLLIN and happened & (select.POLLIN | failed):
            ready[0].append(item)
        if asked & select.POLLOUT and happened & (select.POLLOUT | failed):
            ready[1].append(item)
        if asked & select.POLLPRI and happened & select.POLLPRI:
            ready[2].append(item)
    return ready


# paho-mqtt (2.x) calls `select.select` through its module's `select` name, once per loop turn;
# give it poll() there. Every FlowForge process that talks MQTT imports this module.
mqtt.select = types.SimpleNamespace(select=poll_select, error=OSError)  # type: ignore[attr-defined,assignment]


def mqtt_client(mqtt_settings: MqttSettings, client_id: str, **kwargs: object) -> mqtt.Client:
    """A paho v2 client with FlowForge's credentials and TLS settings applied (not connected)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)  # type: ignore[arg-type]
    if mqtt_settings.username:
        client.username_pw_set(mqtt_settings.username, mqtt_settings.password.reveal() or None)
    if mqtt_settings.tls:
        client.tls_set(ca_certs=mqtt_settings.ca_file or None)
    return client


def mqtt_round_trip(mqtt_settings: MqttSettings, timeout: float) -> None:
    """Publish a message to a unique topic and receive it back; raise ServiceUnhealthy if not."""
    token = uuid.uuid4().hex
    topic = f"flowforge/health/{token}"
    received = threading.Event()
    subscribed = threading.Event()

    def on_subscribe(*_: object) -> None:
        subscribed.set()

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.payload == token.encode():
            received.set()

    client = mqtt_client(mqtt_settings, f"flowforge-health-{token[:12]}")
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    address = f"{mqtt_settings.host}:{mqtt_settings.port}"
    try:
        client.connect(mqtt_settings.host, mqtt_settings.port, keepalive=10)
    except OSError as exc:
        raise ServiceUnhealthy(f"MQTT broker at {address} refuses connections: {exc}") from exc
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        if not subscribed.wait(timeout):
            raise ServiceUnhealthy(f"MQTT broker at {address} did not confirm a subscription")
        client.publish(topic, token.encode(), qos=1)
        if not received.wait(timeout):
            raise ServiceUnhealthy(f"MQTT broker at {address} did not deliver a test message")
    finally:
        client.disconnect()
        client.loop_stop()
