"""The RTSP bridge's stream API: list, add, remove and reconnect streams at runtime."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Protocol

from aiohttp import web

from bridges.errors import ApiError
from bridges.rtsp.sources import StreamSpec, parse_entry

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


class StreamControl(Protocol):
    """What the API drives (RtspBridge)."""

    def describe_streams(self) -> list[dict[str, Any]]: ...

    def describe_stream(self, source_id: str) -> dict[str, Any]: ...

    def add_stream(self, spec: StreamSpec) -> dict[str, Any]: ...

    def remove_stream(self, source_id: str) -> None: ...

    def reconnect_stream(self, source_id: str) -> dict[str, Any]: ...


def spec_from_body(body: object) -> StreamSpec:
    """A StreamSpec from ``{"url": "rtsp://...", "name": "cam9"}`` (name optional: derived)."""
    if not isinstance(body, dict):
        raise ApiError(400, 'body must be a JSON object: {"url": "rtsp://...", "name": "..."}')
    unknown = sorted(set(body) - {"url", "name"})
    if unknown:
        raise ApiError(400, f"unknown fields {unknown}; expected url and optionally name")
    url, name = body.get("url"), body.get("name", "")
    if not isinstance(url, str) or not isinstance(name, str):
        raise ApiError(400, "url (and name) must be strings")
    try:
        return parse_entry(f"{name}={url}" if name else url)
    except ValueError as exc:  # the message never holds the URL itself
        raise ApiError(400, f"bad stream: {exc}") from None


def _json(status: int, value: object) -> web.Response:
    return web.Response(
        text=json.dumps(value) + "\n", status=status, content_type="application/json"
    )


def make_routes(control: StreamControl, token: str) -> list[web.RouteDef]:
    """The API's routes; changes need ``Authorization: Bearer <token>`` when ``token`` is set."""

    def authorize(request: web.Request) -> None:
        if not token:
            return
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "this endpoint needs 'Authorization: Bearer <token>'")

    def handled(handler: Any) -> Any:
        async def wrapper(request: web.Request) -> web.Response:
            try:
                return await handler(request)  # type: ignore[no-any-return]
            except ApiError as exc:
                return _json(exc.status, {"error": exc.message})

        return wrapper

    @handled
    async def list_streams(_request: web.Request) -> web.Response:
        return _json(200, {"streams": control.describe_streams()})

    @handled
    async def get_stream(request: web.Request) -> web.Response:
        return _json(200, control.describe_stream(request.match_info["source_id"]))

    @handled
    async def add_stream(request: web.Request) -> web.Response:
        authorize(request)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"body over {MAX_BODY} bytes")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "body must be a JSON object") from None
        return _json(201, control.add_stream(spec_from_body(body)))

    @handled
    async def delete_stream(request: web.Request) -> web.Response:
        authorize(request)
        source_id = request.match_info["source_id"]
        control.remove_stream(source_id)
        return _json(200, {"deleted": source_id})

    @handled
    async def reconnect(request: web.Request) -> web.Response:
        authorize(request)
        return _json(202, control.reconnect_stream(request.match_info["source_id"]))

    return [
        web.get("/v1/streams", list_streams),
        web.post("/v1/streams", add_stream),
        web.get("/v1/streams/{source_id}", get_stream),
        web.delete("/v1/streams/{source_id}", delete_stream),
        web.post("/v1/streams/{source_id}/reconnect", reconnect),
    ]
