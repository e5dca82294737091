"""The simulator process: GStreamer RTSP mounts, the HTTP API and /metrics (stdlib + gi only).

Runs under the system Python that has GStreamer's bindings (``python3 -m flowforge.sim.server``,
started by `flowforge sim rtsp`); reads its :class:`SimConfig` as JSON on stdin.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from flowforge.core.settings import ENCODERS
from flowforge.core.urls import reachable_host
from flowforge.sim.config import (
    SimConfig,
    StreamConfig,
    brightness_at,
    parse_stream,
)
from flowforge.sim.errors import SimConfigError, SimError, SimPortBusy, SimUnavailable

# Named for the module even when run as __main__ (python -m flowforge.sim.server).
log = logging.getLogger("flowforge.sim.server")

T = TypeVar("T")

# Set by _import_gst(): the gi modules (typed Any: mypy has no stubs for gi).
Gst: Any = None
GLib: Any = None
GstRtspServer: Any = None

BRIGHTNESS_TICK_MS = 200
MAIN_CALL_TIMEOUT_S = 10.0


def _import_gst() -> None:
    global Gst, GLib, GstRtspServer
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib as _GLib
        from gi.repository import Gst as _Gst
        from gi.repository import GstRtspServer as _GstRtspServer
    except (ImportError, ValueError) as exc:
        raise SimUnavailable(
            f"GStreamer's RTSP server is not available to {sys.executable} ({exc}); install "
            "python3-gi gir1.2-gst-rtsp-server-1.0 and the GStreamer plugins (make install)"
        ) from exc
    _Gst.init(None)
    Gst, GLib, GstRtspServer = _Gst, _GLib, _GstRtspServer


def check_elements(stream: StreamConfig) -> None:
    """Raise SimUnavailable if an element the stream needs is not installed."""
    element, package = ENCODERS[stream.encoder]
    if Gst.ElementFactory.find(element) is None:
        raise SimUnavailable(
            f"stream {stream.name!r}: encoder {stream.encoder!r} needs the GStreamer element "
            f"{element}, which is not installed (Debian package {package})"
        )


def encoder_launch(stream: StreamConfig) -> str:
    """The encoder part of the launch line (low latency, a key frame every second)."""
    if stream.encoder == "openh264":
        return (
            f"openh264enc bitrate={stream.bitrate_kbps * 1000} gop-size={stream.fps} "
            "complexity=low ! h264parse"
        )
    return (
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={stream.fps} "
        f"bitrate={stream.bitrate_kbps} threads=1"
    )


def raw_caps(stream: StreamConfig) -> str:
    return (
        f"video/x-raw,format=I420,width={stream.width},height={stream.height},"
        f"framerate={stream.fps}/1"
    )


def media_launch(stream: StreamConfig) -> str:
    """The RTSP media's launch line: source, day/night brightness, H.264, RTP payloader."""
    if stream.is_file:
        source = (
            f'appsrc name=src is-live=true format=time do-timestamp=true caps="{raw_caps(stream)}"'
        )
    else:
        source = (
            f"videotestsrc is-live=true pattern={stream.pattern} horizontal-speed=2 ! "
            f"{raw_caps(stream)}"
        )
    return (
        f"( {source} ! queue max-size-buffers=4 leaky=downstream ! videobalance name=balance ! "
        f"{encoder_launch(stream)} ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )


def player_launch(stream: StreamConfig) -> str:
    """The pipeline that decodes a video file in real time for a file-source stream."""
    location = stream.source.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'filesrc location="{location}" ! decodebin ! videoconvert ! videoscale ! videorate ! '
        f"{raw_caps(stream)} ! "
        "appsink name=sink emit-signals=true sync=true max-buffers=2 drop=true"
    )


@dataclass
class SimPath:
    """One mount: its stream config, fault switches, counters and the live GStreamer objects."""

    config: StreamConfig
    frozen: bool = False
    frames: int = 0
    drops: int = 0
    brightness: float = 0.0
    clients: set[Any] = field(default_factory=set)
    balances: list[Any] = field(default_factory=list)
    appsrcs: list[Any] = field(default_factory=list)
    factory: Any = None
    player: Any = None

    def describe(self, base_url: str) -> dict[str, Any]:
        return self.config.to_dict() | {
            "url": f"{base_url}/{self.config.name}",
            "clients": len(self.clients),
            "frames_served": self.frames,
            "frozen": self.frozen,
            "drops": self.drops,
            "brightness": round(self.brightness, 3),
        }


class Simulator:
    """The RTSP server and its paths; mutated only on the GLib main loop's thread."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.paths: dict[str, SimPath] = {}
        self.started = time.monotonic()
        self.loop = GLib.MainLoop()
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(config.bind)
        self.server.set_service(str(config.rtsp_port))
        self.server.connect("client-connected", self._on_client_connected)
        self.ticks = 0

    @property
    def base_url(self) -> str:
        return f"rtsp://{reachable_host(self.config.bind)}:{self.config.rtsp_port}"

    # -- start / stop -----------------------------------------------------------------

    def attach(self) -> None:
        if self.server.attach(None) == 0:
            raise SimPortBusy(
                f"RTSP port {self.config.rtsp_port} on {self.config.bind} is in use "
                "(or the address is not local); stop the other server or choose another port"
            )
        for stream in self.config.streams:
            self.add_path(stream)
        GLib.timeout_add(BRIGHTNESS_TICK_MS, self._tick)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the main loop's thread and return its result (or raise its error)."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> bool:
            try:
                box["value"] = fn()
            except Exception as exc:  # noqa: BLE001 - handed back to the calling thread
                box["error"] = exc
            done.set()
            return False

        GLib.idle_add(run)
        if not done.wait(MAIN_CALL_TIMEOUT_S):
            raise SimError("the simulator's main loop did not answer in time")
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    def shutdown(self) -> None:
        for name in list(self.paths):
            self.delete_path(name)

    # -- paths ------------------------------------------------------------------------

    def add_path(self, stream: StreamConfig) -> SimPath:
        if stream.name in self.paths:
            raise SimConfigError(f"path {stream.name!r} exists; DELETE it first")
        check_elements(stream)
        path = SimPath(config=stream)
        factory = _factory_class()(self, path)
        factory.set_shared(True)
        path.factory = factory
        if stream.is_file:
            path.player = self._start_player(path)
        with self.lock:
            self.paths[stream.name] = path
        self.server.get_mount_points().add_factory(f"/{stream.name}", factory)
        log.info(
            "path /%s added: %dx%d %d fps %d kbit/s source=%s encoder=%s",
            stream.name,
            stream.width,
            stream.height,
            stream.fps,
            stream.bitrate_kbps,
            stream.source if stream.is_file else f"pattern:{stream.pattern}",
            stream.encoder,
        )
        return path

    def delete_path(self, name: str) -> None:
        path = self.paths.get(name)
        if path is None:
            raise KeyError(name)
        self.server.get_mount_points().remove_factory(f"/{name}")
        self.drop_clients(path, fault=False)
        if path.player is not None:
            path.player.set_state(Gst.State.NULL)
            path.player.get_bus().remove_signal_watch()
        with self.lock:
            del self.paths[name]
        log.info("path /%s deleted", name)

    def drop_clients(self, path: SimPath, *, fault: bool = True) -> int:
        """Close the client connections of ``path`` (the drop switch when ``fault``)."""
        clients = list(path.clients)
        for client in clients:
            client.close()
        with self.lock:
            path.clients.clear()
            path.drops += int(fault)
        log.info("path /%s: dropped %d client connection(s)", path.config.name, len(clients))
        return len(clients)

    def set_frozen(self, path: SimPath, frozen: bool) -> None:
        path.frozen = frozen
        log.info("path /%s %s", path.config.name, "frozen" if frozen else "unfrozen")

    # -- GStreamer callbacks ----------------------------------------------------------

    def media_element(self, path: SimPath) -> Any:
        """Build one media pipeline for ``path`` (the factory's create_element)."""
        element = Gst.parse_launch(media_launch(path.config))
        pay = element.get_by_name("pay0")
        pay.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, self._on_frame, path)
        balance = element.get_by_name("balance")
        balance.set_property("brightness", path.brightness)
        with self.lock:
            path.balances.append(balance)
            appsrc = element.get_by_name("src")
            if appsrc is not None:
                path.appsrcs.append(appsrc)
        return element

    def _on_frame(self, _pad: Any, _info: Any, path: SimPath) -> Any:
        if path.frozen:
            return Gst.PadProbeReturn.DROP
        path.frames += 1
        return Gst.PadProbeReturn.OK

    def _on_media_unprepared(self, _media: Any, path: SimPath, element: Any) -> None:
        with self.lock:
            balance = element.get_by_name("balance")
            if balance in path.balances:
                path.balances.remove(balance)
            appsrc = element.get_by_name("src")
            if appsrc in path.appsrcs:
                path.appsrcs.remove(appsrc)

    def _start_player(self, path: SimPath) -> Any:
        player = Gst.parse_launch(player_launch(path.config))
        sink = player.get_by_name("sink")
        sink.connect("new-sample", self._on_sample, path)
        bus = player.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_player_message, path, player)
        player.set_state(Gst.State.PLAYING)
        return player

    def _on_sample(self, sink: Any, path: SimPath) -> Any:
        sample = sink.emit("pull-sample")
        with self.lock:
            appsrcs = list(path.appsrcs)
        if not appsrcs:
            return Gst.FlowReturn.OK
        buffer = sample.get_buffer().copy()
        # The media's appsrc stamps buffers with its own clock (do-timestamp); the file's
        # timestamps restart at every loop.
        buffer.pts = buffer.dts = Gst.CLOCK_TIME_NONE
        for appsrc in appsrcs:
            appsrc.emit("push-buffer", buffer)
        return Gst.FlowReturn.OK

    def _on_player_message(self, _bus: Any, message: Any, path: SimPath, player: Any) -> None:
        if message.type == Gst.MessageType.EOS:
            player.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif message.type == Gst.MessageType.ERROR:
            error, _debug = message.parse_error()
            log.error("path /%s: video file %s: %s", path.config.name, path.config.source, error)

    def _on_client_connected(self, _server: Any, client: Any) -> None:
        client.connect("setup-request", self._on_setup)
        client.connect("closed", self._on_client_closed)

    def _on_setup(self, client: Any, context: Any) -> None:
        name = context.uri.abspath.strip("/").split("/", 1)[0]
        with self.lock:
            path = self.paths.get(name)
            if path is not None:
                path.clients.add(client)
        log.debug("client set up /%s", name)

    def _on_client_closed(self, client: Any) -> None:
        with self.lock:
            for path in self.paths.values():
                path.clients.discard(client)

    def _tick(self) -> bool:
        now = time.monotonic() - self.started
        with self.lock:
            paths = list(self.paths.values())
        for path in paths:
            value = brightness_at(path.config, now)
            path.brightness = value
            for balance in list(path.balances):
                balance.set_property("brightness", value)
        self.ticks += 1
        return True

    # -- reports ----------------------------------------------------------------------

    def describe_paths(self) -> list[dict[str, Any]]:
        with self.lock:
            return [p.describe(self.base_url) for p in self.paths.values()]

    def metrics(self) -> str:
        """Prometheus text exposition (hand-written: the system Python has no client library)."""
        with self.lock:
            paths = list(self.paths.values())
        lines = [
            "# HELP flowforge_sim_paths Paths (mounts) served.",
            "# TYPE flowforge_sim_paths gauge",
            f"flowforge_sim_paths {len(paths)}",
            "# HELP flowforge_sim_uptime_seconds Seconds since the simulator started.",
            "# TYPE flowforge_sim_uptime_seconds gauge",
            f"flowforge_sim_uptime_seconds {time.monotonic() - self.started:.3f}",
        ]
        per_path: list[tuple[str, str, str, Callable[[SimPath], float]]] = [
            ("clients", "gauge", "RTSP clients set up on the path.", lambda p: len(p.clients)),
            ("frames_served_total", "counter", "Frames sent on the path.", lambda p: p.frames),
            ("frozen", "gauge", "1 while the path's freeze switch is on.", lambda p: p.frozen),
            ("drops_total", "counter", "Times the drop switch closed clients.", lambda p: p.drops),
            ("brightness", "gauge", "Day/night brightness offset (-1..0).", lambda p: p.brightness),
        ]
        for name, kind, doc, get in per_path:
            lines += [
                f"# HELP flowforge_sim_path_{name} {doc}",
                f"# TYPE flowforge_sim_path_{name} {kind}",
            ]
            for p in paths:
                lines.append(
                    f'flowforge_sim_path_{name}{{path="{p.config.name}"}} {float(get(p)):g}'
                )
        return "\n".join(lines) + "\n"


@functools.cache
def _factory_class() -> type:
    class Factory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc]
        """A shared media factory whose pipelines count, freeze and darken frames."""

        def __init__(self, sim: Simulator, path: SimPath) -> None:
            super().__init__()
            self.sim = sim
            self.path = path
            self.connect("media-configure", self._on_configure)

        def do_create_element(self, _url: Any) -> Any:
            return self.sim.media_element(self.path)

        def _on_configure(self, _factory: Any, media: Any) -> None:
            media.connect(
                "unprepared", self.sim._on_media_unprepared, self.path, media.get_element()
            )

    return Factory


# --- HTTP API -----------------------------------------------------------------------------

_PATH_ACTION = re.compile(r"^/v1/paths/([A-Za-z0-9_-]+)(?:/(freeze|unfreeze|drop))?$")


class ApiHandler(BaseHTTPRequestHandler):
    """GET /v1/config, /v1/paths, /metrics, /livez, /readyz; POST/DELETE with the token."""

    sim: Simulator
    server_version = "flowforge-sim"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api %s", format % args)

    def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, value: object) -> None:
        self._send(status, json.dumps(value, indent=2) + "\n")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self) -> None:
        sim = self.sim
        route = self.path.split("?", 1)[0]
        if route == "/v1/config":
            data = json.loads(sim.config.to_json(with_token=False))
            data["rtsp_url"] = sim.base_url
            self._json(200, data)
        elif route == "/v1/paths":
            self._json(200, {"paths": sim.describe_paths()})
        elif (match := _PATH_ACTION.match(route)) and not match.group(2):
            found = [p for p in sim.describe_paths() if p["name"] == match.group(1)]
            if found:
                self._json(200, found[0])
            else:
                self._error(404, f"no path {match.group(1)!r}")
        elif route == "/metrics":
            self._send(200, sim.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        elif route == "/livez":
            self._json(200, {"status": "ok"})
        elif route == "/readyz":
            ready = sim.ticks > 0
            self._json(200 if ready else 503, {"ready": ready, "paths": len(sim.paths)})
        else:
            self._error(404, f"no route GET {route}")

    def _authorized(self) -> bool:
        token = self.sim.config.token
        if not token:
            return True
        given = self.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if hmac.compare_digest(given.encode(), expected.encode()):
            return True
        self._error(401, "this endpoint needs 'Authorization: Bearer <FLOWFORGE_SIM_TOKEN>'")
        return False

    def do_POST(self) -> None:
        if not self._authorized():
            return
        route = self.path.split("?", 1)[0]
        sim = self.sim
        if route == "/v1/paths":
            self._create()
            return
        match = _PATH_ACTION.match(route)
        if not match or not match.group(2):
            self._error(404, f"no route POST {route}")
            return
        name, action = match.groups()
        path = sim.paths.get(name)
        if path is None:
            self._error(404, f"no path {name!r}")
            return
        if action == "drop":
            dropped = sim.call(lambda: sim.drop_clients(path))
            self._json(200, {"name": name, "dropped": dropped})
        else:
            sim.call(lambda: sim.set_frozen(path, action == "freeze"))
            self._json(200, {"name": name, "frozen": path.frozen})

    def _create(self) -> None:
        sim = self.sim
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, json.JSONDecodeError) as exc:
            self._error(400, f"body must be a JSON object: {exc}")
            return
        if not isinstance(body, dict):
            self._error(400, "body must be a JSON object of stream parameters")
            return
        try:
            stream = parse_stream(body)
            if stream.name in sim.paths:
                self._error(409, f"path {stream.name!r} exists; DELETE it first")
                return
            sim.call(lambda: sim.add_path(stream))
        except SimError as exc:
            self._error(400, str(exc))
            return
        found = [p for p in sim.describe_paths() if p["name"] == stream.name]
        self._json(201, found[0])

    def do_DELETE(self) -> None:
        if not self._authorized():
            return
        route = self.path.split("?", 1)[0]
        match = _PATH_ACTION.match(route)
        if not match or match.group(2):
            self._error(404, f"no route DELETE {route}")
            return
        name = match.group(1)
        try:
            self.sim.call(lambda: self.sim.delete_path(name))
        except KeyError:
            self._error(404, f"no path {name!r}")
            return
        self._json(200, {"deleted": name})


def start_api(sim: Simulator) -> ThreadingHTTPServer:
    handler = type("Handler", (ApiHandler,), {"sim": sim})
    try:
        httpd = ThreadingHTTPServer((sim.config.bind, sim.config.api_port), handler)
    except OSError as exc:
        raise SimPortBusy(
            f"API port {sim.config.api_port} on {sim.config.bind} is not available "
            f"({exc.strerror}); stop the other server or choose another port"
        ) from exc
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="sim-api", daemon=True).start()
    return httpd


# --- entry point --------------------------------------------------------------------------


def run(config: SimConfig) -> None:
    """Serve until SIGTERM/SIGINT."""
    _import_gst()
    for stream in config.streams:
        check_elements(stream)
    sim = Simulator(config)
    httpd = start_api(sim)
    try:
        sim.attach()
        for sig in (signal.SIGTERM, signal.SIGINT):
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, _quit, sim.loop)
        log.info(
            "RTSP simulator ready: %s/{%s}, API http://%s:%d/v1/paths%s",
            sim.base_url,
            ",".join(s.name for s in config.streams),
            config.bind,
            config.api_port,
            " (token required for changes)" if config.token else "",
        )
        sim.loop.run()
    finally:
        httpd.shutdown()
        httpd.server_close()
        sim.shutdown()
    log.info("RTSP simulator stopped")


def _quit(loop: Any) -> bool:
    loop.quit()
    return False


def main() -> int:
    config_text = sys.stdin.read()
    try:
        config = SimConfig.from_json(config_text)
    except SimError as exc:
        print(f"flowforge: error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run(config)
    except SimError as exc:
        print(f"flowforge: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
