"""MQTT client helpers: a paho client with our credentials and TLS, and a round-trip probe."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from flowforge.core.errors import ServiceUnhealthy
from flowforge.core.settings import MqttSettings


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
