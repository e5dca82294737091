"""The local (no Docker) stack: Kafka and Mosquitto as processes, ClickHouse embedded; with
``pipeline=True`` FlowForge's worker and MQTT bridge too, and with ``demo=True`` a demo feed
(the RTSP simulator and the RTSP bridge).

``Stack(settings).up()`` starts what is not running and waits until each service answers a real
round trip; ``down()`` stops only processes it started (by PID file); ``status()`` reports each.
Everything lives under ``settings.home`` (data, logs in ``logs/``, PID files in ``run/``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flowforge.core.settings import Settings
from flowforge.stack.kafka import KafkaService
from flowforge.stack.mosquitto import MosquittoService
from flowforge.stack.pipeline import (
    MqttBridgeService,
    RtspBridgeService,
    SimulatorService,
    WorkerService,
)
from flowforge.stack.service import LocalService, ServiceStatus

log = logging.getLogger(__name__)

__all__ = [
    "KafkaService",
    "MosquittoService",
    "MqttBridgeService",
    "RtspBridgeService",
    "ServiceStatus",
    "SimulatorService",
    "Stack",
    "WorkerService",
]


class Stack:
    """Kafka and Mosquitto for one FlowForge home; ClickHouse runs in-process (chdb) or remotely."""

    def __init__(self, settings: Settings, *, pipeline: bool = False, demo: bool = False) -> None:
        self.settings = settings
        self.services: list[LocalService] = [KafkaService(settings), MosquittoService(settings)]
        # FlowForge's own processes; `down` and `status` always include them, so nothing
        # started by `up --pipeline` or `up --demo` is left behind.
        self.pipeline: list[LocalService] = [WorkerService(settings), MqttBridgeService(settings)]
        self.pipeline += [SimulatorService(settings), RtspBridgeService(settings)]
        wanted = {"worker", "bridge-mqtt"} if pipeline else set()
        wanted |= {"worker", "bridge-mqtt", "rtsp-simulator", "bridge-rtsp"} if demo else set()
        self.wanted = wanted

    def found(self) -> bool:
        """Whether a stack was ever started under this home (its PID directory exists)."""
        return (self.settings.home / "run").is_dir()

    async def up(self, report: Callable[[str], None] = log.info) -> None:
        """Start every service not yet running, in order, and wait for each to answer."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        for service in self.services:
            report(await service.up())
        report(self.clickhouse_status().detail)
        for service in self.pipeline:
            if service.name in self.wanted:
                report(await service.up())

    def down(self, report: Callable[[str], None] = log.info) -> None:
        """Stop the processes this home's stack started, in reverse order."""
        for service in reversed([*self.services, *self.pipeline]):
            if service in self.services or service.process.pid() is not None:
                report(service.down())

    async def status(self) -> list[ServiceStatus]:
        """Each service's state, PID, address and health."""
        statuses = [await service.status() for service in self.services]
        statuses.append(self.clickhouse_status())
        for service in self.pipeline:
            if service.name in self.wanted or service.process.pid() is not None:
                statuses.append(await service.status())
        return statuses

    def clickhouse_status(self) -> ServiceStatus:
        url = self.settings.clickhouse.url
        if url.startswith("chdb://"):
            return ServiceStatus(
                "clickhouse",
                "embedded",
                None,
                url,
                f"clickhouse: embedded engine at {url.removeprefix('chdb://')} "
                "(opened by the process that owns it; nothing to start)",
            )
        return ServiceStatus("clickhouse", "external", None, url, f"clickhouse: server at {url}")
