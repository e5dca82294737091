"""FlowForge's own processes as managed services of the local stack (`stack up --pipeline`)."""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from flowforge.errors import ServiceUnhealthy
from flowforge.stack.service import LocalService


def http_ok(url: str, timeout: float = 2.0) -> None:
    """Raise ServiceUnhealthy unless GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URL
            if response.status == 200:
                return
            raise ServiceUnhealthy(f"{url} answered {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnhealthy(f"{url} does not answer: {exc}") from exc


class WorkerService(LocalService):
    """One `flowforge worker` process (agent "process"), healthy when /livez answers."""

    name = "worker"

    @property
    def port(self) -> int:
        return self.settings.worker.web_port

    @property
    def address(self) -> str:
        return f"http://{self.settings.worker.web_bind}:{self.port}"

    def prepare(self) -> Sequence[str]:
        return [sys.executable, "-m", "flowforge", "worker"]

    async def probe(self) -> None:
        await asyncio.to_thread(http_ok, f"{self.address}/livez")
