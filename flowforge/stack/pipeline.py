"""FlowForge's own processes as managed services of the local stack.

`stack up --pipeline`: the worker (process + sink) and the MQTT bridge. `stack up --demo` adds a
demo feed: the RTSP simulator with two cameras and the RTSP bridge reading them (unless
FLOWFORGE_RTSP_URLS names cameras of your own).
"""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from flowforge.core.errors import ServiceUnhealthy
from flowforge.core.urls import reachable_host
from flowforge.stack.service import LocalService

# The demo feed: two simulated cameras, sampled at 2 frames/s each by the RTSP bridge.
DEMO_CAMERAS = ("cam1", "cam2")
DEMO_FPS = "2"


def http_ok(url: str, timeout: float = 2.0) -> None:
    """Raise ServiceUnhealthy unless GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URL
            if response.status == 200:
                return
            raise ServiceUnhealthy(f"{url} answered {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnhealthy(f"{url} does not answer: {exc}") from exc


class _HttpService(LocalService):
    """A `flowforge ...` process, healthy when its /livez answers."""

    @property
    def bind(self) -> str:
        """The address the service's web server binds."""
        return "127.0.0.1"

    @property
    def address(self) -> str:
        return f"http://{reachable_host(self.bind)}:{self.port}"

    async def probe(self) -> None:
        await asyncio.to_thread(http_ok, f"{self.address}/livez")


class WorkerService(_HttpService):
    """One `flowforge worker` process (agents process and sink)."""

    name = "worker"

    @property
    def bind(self) -> str:
        return self.settings.worker.web_bind

    @property
    def port(self) -> int:
        return self.settings.worker.web_port

    def prepare(self) -> Sequence[str]:
        return [sys.executable, "-m", "flowforge", "worker"]


class MqttBridgeService(_HttpService):
    """`flowforge bridge mqtt`: images/raw on the local Mosquitto into images.raw."""

    name = "bridge-mqtt"

    @property
    def bind(self) -> str:
        return self.settings.bridge.web_bind

    @property
    def port(self) -> int:
        return self.settings.bridge.mqtt_web_port

    def prepare(self) -> Sequence[str]:
        return [sys.executable, "-m", "flowforge", "bridge", "mqtt"]


class SimulatorService(_HttpService):
    """`flowforge sim rtsp`: the demo cameras."""

    name = "rtsp-simulator"

    @property
    def bind(self) -> str:
        return self.settings.sim.bind

    @property
    def port(self) -> int:
        return self.settings.sim.api_port

    def prepare(self) -> Sequence[str]:
        streams = str(len(DEMO_CAMERAS))
        return [sys.executable, "-m", "flowforge", "sim", "rtsp", "--streams", streams]


class RtspBridgeService(_HttpService):
    """`flowforge bridge rtsp`: the configured cameras, or else the simulator's demo cameras."""

    name = "bridge-rtsp"

    @property
    def bind(self) -> str:
        return self.settings.bridge.web_bind

    @property
    def port(self) -> int:
        return self.settings.bridge.rtsp_web_port

    def prepare(self) -> Sequence[str]:
        return [sys.executable, "-m", "flowforge", "bridge", "rtsp"]

    def environment(self) -> dict[str, str]:
        rtsp = self.settings.rtsp
        if rtsp.urls or rtsp.urls_file:
            return {}
        sim = self.settings.sim
        host = reachable_host(sim.bind)
        urls = ",".join(f"rtsp://{host}:{sim.rtsp_port}/{cam}" for cam in DEMO_CAMERAS)
        return {"FLOWFORGE_RTSP_URLS": urls, "FLOWFORGE_RTSP_FPS": DEMO_FPS}
