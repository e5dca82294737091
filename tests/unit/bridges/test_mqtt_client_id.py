"""The MQTT bridge's client id on a shared machine, and a taken-over session said in one line."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from bridges.mqtt import MqttBridge, default_client_id
from flowforge.core.settings import Settings


def on_port(settings: Settings, port: int) -> Settings:
    return dataclasses.replace(
        settings, bridge=dataclasses.replace(settings.bridge, mqtt_web_port=port)
    )


def test_a_second_bridge_on_its_own_web_port_gets_its_own_client_id(tmp_path: Path) -> None:
    """Two bridges of one home on different web ports (bridge --help's "a second MQTT bridge
    on this machine") derive different client ids, so neither takes the other's session; the
    default port's id is the one the bridge always had (host, home, topic)."""
    settings = Settings.from_env({"FLOWFORGE_HOME": str(tmp_path)})
    first = default_client_id(on_port(settings, 6067))
    second = default_client_id(on_port(settings, 6070))
    assert first != second
    assert default_client_id(settings) == first
    assert default_client_id(on_port(settings, 6070)) == second


def test_a_taken_over_session_is_one_error_line_naming_the_client_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A disconnect because another client took the session (MQTT 5 reason 142) logs one error
    naming the client id and what to change; repeated takeovers add no more error lines."""
    bridge = MqttBridge(Settings.from_env({"FLOWFORGE_HOME": str(tmp_path)}))
    taken = ReasonCode(PacketTypes.DISCONNECT, identifier=142)
    with caplog.at_level(logging.DEBUG, logger="bridges.mqtt"):
        for _ in range(3):
            bridge.connected = True
            bridge._on_disconnect(None, None, None, taken, None)  # type: ignore[arg-type]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "session taken over" in message
    assert bridge.client_id in message
    assert "FLOWFORGE_MQTT_CLIENT_ID" in message
