"""The lifecycle every bridge shares: setup -> run(stop event) -> cleanup, signals, exit code."""

from __future__ import annotations

import abc
import asyncio
import logging
import signal
from typing import ClassVar

from aiohttp import web

from bridges.errors import LibraryThreadDied
from bridges.web import start_web
from flowforge.core.errors import Stopped

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1


class Bridge(abc.ABC):
    """A source of images that republishes them into Kafka."""

    name: ClassVar[str]

    @abc.abstractmethod
    async def setup(self, stop: asyncio.Event) -> None:
        """Connect to Kafka and the source (waiting, with backoff, until ``stop`` is set)."""

    @abc.abstractmethod
    async def run(self, stop: asyncio.Event) -> None:
        """Move images until ``stop`` is set (or the source is exhausted); finish what was
        accepted before returning. Raise LibraryThreadDied if a library thread failed."""

    @abc.abstractmethod
    async def cleanup(self) -> None:
        """Release the source and flush and close the publisher; safe after a failed setup."""

    @abc.abstractmethod
    def readiness(self) -> tuple[bool, str]:
        """(ready, why): ready means connected and delivering, not merely running."""

    def routes(self) -> list[web.RouteDef]:
        """Extra routes on the bridge's web server (none by default)."""
        return []


def run_bridge(bridge: Bridge, *, bind: str, port: int) -> int:
    """Run ``bridge`` to completion in a new event loop; return the process exit code.

    SIGTERM and SIGINT set the stop event: the bridge stops taking new images, finishes the ones
    it accepted and exits 0. A dead library thread exits 1 with one clear log line.
    """
    return asyncio.run(_main(bridge, bind, port))


async def _main(bridge: Bridge, bind: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s bridge stopping on %s", bridge.name, sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    runner = await start_web(bridge.readiness, bind, port, bridge.routes())
    try:
        log.info("%s bridge starting", bridge.name)
        await bridge.setup(stop)
        await bridge.run(stop)
    except Stopped:
        log.info("%s bridge stopped during start-up", bridge.name)
    except LibraryThreadDied as exc:
        log.critical("%s bridge failed: %s", bridge.name, exc)
        return EXIT_FAILURE
    finally:
        try:
            await bridge.cleanup()
        finally:
            await runner.cleanup()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info("%s bridge stopped", bridge.name)
    return EXIT_OK
