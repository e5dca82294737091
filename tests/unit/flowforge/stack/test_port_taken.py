"""A port held by a process FlowForge did not start is a clear error, never silently reused."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowforge.core.errors import PortTaken
from flowforge.core.settings import Settings
from flowforge.stack import KafkaService, MosquittoService


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port with a listener owned by this test process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_mosquitto_refuses_a_foreign_listener(tmp_path: Path, held_port: int) -> None:
    """`up` fails with PortTaken naming the port and the holder's PID instead of starting."""
    settings = Settings.from_env(
        {"FLOWFORGE_HOME": str(tmp_path), "FLOWFORGE_MQTT_PORT": str(held_port)}
    )
    with pytest.raises(PortTaken) as info:
        asyncio.run(MosquittoService(settings).up())
    message = str(info.value)
    assert f"port {held_port} is taken by pid {os.getpid()}" in message
    assert "did not start" in message


def test_kafka_refuses_a_foreign_listener(tmp_path: Path, held_port: int) -> None:
    """The Kafka service also refuses a port held by another process."""
    settings = Settings.from_env(
        {
            "FLOWFORGE_HOME": str(tmp_path),
            "FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{held_port}",
        }
    )
    with pytest.raises(PortTaken, match=f"kafka: port {held_port} is taken"):
        asyncio.run(KafkaService(settings).up())


def test_mosquitto_adopts_only_an_identical_config(tmp_path: Path) -> None:
    """A mosquitto on our port is reused only if its -c file has exactly our rendered config."""
    settings = Settings.from_env({"FLOWFORGE_HOME": str(tmp_path)})
    service = MosquittoService(settings)
    same = tmp_path / "same.conf"
    same.write_text(service.render_config())
    other = tmp_path / "other.conf"
    other.write_text("listener 1883\nallow_anonymous false\n")
    assert service.adopt(["/usr/sbin/mosquitto", "-c", str(same)])
    assert not service.adopt(["/usr/sbin/mosquitto", "-c", str(other)])
    assert not service.adopt(["/usr/sbin/mosquitto"])
    assert not service.adopt(["python3", "-c", str(same)])
