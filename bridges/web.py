"""A bridge's web pages: /livez, /readyz (making progress) and /metrics (Prometheus text)."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridges import metrics
from flowforge.core.ports import port_in_use

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, str]]


def make_app(readiness: Readiness, routes: Iterable[web.RouteDef] = ()) -> web.Application:
    """The aiohttp application serving the three pages; ``readiness`` says (ready, why);
    ``routes`` are a bridge's own (the RTSP bridge's stream API)."""

    async def livez(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        ready, why = readiness()
        text = f"{'ready' if ready else 'not ready'}: {why}\n"
        return web.Response(text=text, status=200 if ready else 503)

    async def prometheus(_request: web.Request) -> web.Response:
        body = generate_latest(metrics.REGISTRY)
        # aiohttp refuses a charset inside content_type=, so the header is set directly.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    app.router.add_routes(list(routes))
    return app


async def start_web(
    readiness: Readiness, bind: str, port: int, routes: Iterable[web.RouteDef] = ()
) -> web.AppRunner:
    """Serve the pages (and ``routes``) on ``bind:port``; the caller cleans the runner up."""
    runner = web.AppRunner(make_app(readiness, routes), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, bind, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise port_in_use(
            "this bridge's web port",
            bind,
            port,
            "to run another bridge beside it, give it its own port: --web-port PORT",
        ) from exc
    bound = port
    for address in runner.addresses:  # the real port when ``port`` is 0 (any free port)
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    log.info("web pages on http://%s:%d (/livez /readyz /metrics)", bind, bound)
    return runner
