"""RtspBridge: N RTSP streams, each captured in its own thread, sampled and JPEG-encoded."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
from aiohttp import web

from bridges import metrics
from bridges.errors import (
    ApiError,
    LibraryThreadDied,
    SourceUnavailable,
    StreamExists,
    UnknownStream,
)
from bridges.lifecycle import Bridge
from bridges.publisher import ImageMessage, KafkaPublisher
from bridges.rtsp.api import make_routes
from bridges.rtsp.frames import FPS_CAP, QUEUE_FULL, TOO_OLD, FpsSampler, LatestSlot, too_old
from bridges.rtsp.sources import StreamSpec, load_specs
from bridges.rtsp.watchdog import StreamMachine, StreamState, Transition
from flowforge.core.backoff import Backoff
from flowforge.core.capture import open_capture, use_capture_options
from flowforge.core.envelope import Envelope, frame_image_id
from flowforge.core.errors import CaptureUnavailable, SettingsError, Stopped
from flowforge.core.settings import RtspSettings, Secret, Settings
from flowforge.core.urls import is_loopback

log = logging.getLogger(__name__)

NAME = "rtsp"
CONTENT_TYPE = "image/jpeg"
# How often the event loop's watchdog looks at every stream's data age.
WATCHDOG_S = 0.25
# Not ready when frames wait for Kafka and none was acknowledged for this long.
KAFKA_STALL_S = 30.0
# How long a stopping bridge waits for a capture thread (it may sit in a read or an open).
JOIN_S = 5.0
# How long a stopping bridge waits for the frames it handed to Kafka.
DRAIN_S = 30.0


@dataclass(frozen=True)
class Frame:
    """A sampled, JPEG-encoded frame handed from a capture thread to the event loop."""

    source_id: str
    data: bytes = field(repr=False)
    captured_at_ms: int  # wall clock, the envelope's ff-captured-at
    captured_mono: float  # monotonic, for the age bound
    width: int
    height: int


@dataclass(frozen=True)
class FrameMessage(ImageMessage):
    """An ImageMessage whose image id is the frame's (stream id + capture time), not its hash."""

    image_id: str = ""

    def envelope(self) -> Envelope:
        """The envelope with the frame's image id."""
        return Envelope(
            image_id=self.image_id,
            source_type=self.source_type,
            source_id=self.source_id,
            captured_at_ms=self.captured_at_ms,
            content_type=self.content_type,
            origin=self.origin,
            ingested_at_ms=self.ingested_at_ms,
        )


def frame_message(spec: StreamSpec, frame: Frame) -> FrameMessage:
    """The Kafka message of ``frame``: key = source id, ff-origin = the URL without user-info."""
    return FrameMessage(
        source_type=NAME,
        source_id=spec.source_id,
        origin=spec.origin,
        data=frame.data,
        captured_at_ms=frame.captured_at_ms,
        content_type=CONTENT_TYPE,
        image_id=frame_image_id(spec.source_id, frame.captured_at_ms),
    )


def check_api_security(bind: str, token: Secret) -> None:
    """The stream API changes streams: off loopback it must require a token (SettingsError)."""
    if not is_loopback(bind) and not token:
        raise SettingsError(
            "FLOWFORGE_RTSP_API_TOKEN",
            f"the RTSP bridge's web server binds to {bind} (not loopback): set "
            "FLOWFORGE_RTSP_API_TOKEN (or FLOWFORGE_RTSP_API_TOKEN_FILE) so its stream API "
            "requires a bearer token",
        )


def open_stream(spec: StreamSpec, open_timeout_s: float, read_timeout_s: float) -> Any:
    """An opened cv2.VideoCapture on ``spec`` (FFmpeg over TCP, short probe), or
    SourceUnavailable with a reason that never shows the URL's credentials."""
    try:
        return open_capture(spec.url, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    except CaptureUnavailable as exc:
        raise SourceUnavailable(str(exc)) from None


def encode_jpeg(image: Any, quality: int) -> bytes:
    """``image`` (BGR array) as JPEG bytes at ``quality``."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return bytes(buffer.tobytes())


def remove_metrics(source_id: str) -> None:
    """Forget a removed stream's metric series."""
    series: list[tuple[Any, tuple[str, ...]]] = [
        (metrics.RTSP_CAPTURED, (source_id,)),
        (metrics.RTSP_PUBLISHED, (source_id,)),
        (metrics.RTSP_RECONNECTS, (source_id,)),
        (metrics.RTSP_FRAME_AGE, (source_id,)),
    ]
    series += [(metrics.RTSP_DROPPED, (source_id, r)) for r in (QUEUE_FULL, TOO_OLD, FPS_CAP)]
    series += [(metrics.RTSP_STATE, (source_id, s.value)) for s in StreamState]
    for metric, labels in series:
        with contextlib.suppress(KeyError):
            metric.remove(*labels)


class StreamCapture:
    """One stream: its capture thread (OpenCV), state machine, latest-frame slot and counts.

    The thread connects, reads every frame (decoding cannot be skipped), samples to the target
    fps, JPEG-encodes and puts the frame into the slot, replacing one the event loop has not
    taken yet (queue_full). It never blocks on the event loop. A failed open or a closed stream
    backs off; a read that waited ``stall_s`` (or the watchdog's verdict) reconnects at once.
    """

    def __init__(
        self,
        spec: StreamSpec,
        rtsp: RtspSettings,
        notify: Callable[[Callable[[], None]], None],
        on_death: Callable[[StreamCapture], None],
    ) -> None:
        self.spec = spec
        self.rtsp = rtsp
        self._notify = notify
        self._on_death = on_death
        backoff = Backoff(initial=rtsp.backoff_initial_s, maximum=rtsp.backoff_max_s)
        self.machine = StreamMachine(rtsp.stall_s, backoff, self._on_transition)
        self.slot: LatestSlot[Frame] = LatestSlot()
        self.frame_ready = asyncio.Event()
        self.finishing = False  # set by the event loop: publish what is left, then end the pump
        self.counts: collections.Counter[str] = collections.Counter()
        self.size: tuple[int, int] | None = None
        self.error: BaseException | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._reconnect = False
        self._thread = threading.Thread(
            target=self._run, name=f"rtsp-{spec.source_id}", daemon=True
        )
        sid = spec.source_id
        metrics.RTSP_FRAME_AGE.labels(sid).set(-1)
        metrics.RTSP_RECONNECTS.labels(sid)
        metrics.RTSP_CAPTURED.labels(sid)
        metrics.RTSP_PUBLISHED.labels(sid)
        for reason in (QUEUE_FULL, TOO_OLD, FPS_CAP):
            metrics.RTSP_DROPPED.labels(sid, reason)
        self._set_state_gauge(StreamState.CONNECTING)

    # --- control (event loop) -----------------------------------------------------------

    def start(self) -> None:
        """Start the capture thread."""
        log.info("%s: connecting to %s", self.spec.source_id, self.spec.shown_url)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (it may finish a read or an open first)."""
        self._stopping = True
        self._wake.set()

    def request_reconnect(self) -> None:
        """Ask the thread to drop its connection and connect again (cuts a backoff short)."""
        self._reconnect = True
        self._wake.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True if it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def watch(self, now: float) -> None:
        """The watchdog's look at this stream: stalled verdict and the frame-age gauge."""
        self.machine.check(now)
        age = self.machine.age(now)
        metrics.RTSP_FRAME_AGE.labels(self.spec.source_id).set(-1 if age is None else age)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` dropped frames."""
        self.counts[f"dropped_{reason}"] += n
        metrics.RTSP_DROPPED.labels(self.spec.source_id, reason).inc(n)
        metrics.DROPPED.labels(NAME, reason).inc(n)

    def describe(self, now: float) -> dict[str, Any]:
        """The stream for the API: never the URL's credentials."""
        age = self.machine.age(now)
        return {
            "source_id": self.spec.source_id,
            "url": self.spec.shown_url,
            "state": self.machine.state.value,
            "reconnects": self.machine.reconnects,
            "frames_captured": self.counts["captured"],
            "frames_published": self.counts["published"],
            "dropped": {r: self.counts[f"dropped_{r}"] for r in (QUEUE_FULL, TOO_OLD, FPS_CAP)},
            "frame_age_s": None if age is None else round(age, 3),
            "size": None if self.size is None else f"{self.size[0]}x{self.size[1]}",
            "last_error": self.machine.last_error,
        }

    # --- transitions: logs and the state gauge (either thread) ---------------------------

    def _set_state_gauge(self, state: StreamState) -> None:
        for each in StreamState:
            metrics.RTSP_STATE.labels(self.spec.source_id, each.value).set(int(each is state))

    def _on_transition(self, change: Transition) -> None:
        sid = self.spec.source_id
        self._set_state_gauge(change.new)
        first_failure = self.machine.attempt <= 1
        if change.new is StreamState.STREAMING:
            log.info("%s: streaming (%s)", sid, change.reason)
        elif change.new is StreamState.STALLED:
            log.warning("%s: stalled (%s); reconnecting", sid, change.reason)
        elif change.new is StreamState.BACKOFF:
            level = logging.WARNING if first_failure else logging.DEBUG
            log.log(level, "%s: backing off (attempt %d): %s", sid, self.machine.attempt,
                    change.reason)  # fmt: skip
        elif change.new is StreamState.CONNECTING:
            level = logging.DEBUG if change.old is StreamState.BACKOFF else logging.INFO
            log.log(level, "%s: reconnecting to %s (%s)", sid, self.spec.shown_url, change.reason)
        else:
            log.info("%s: %s", sid, change.new.value)

    # --- the capture thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._capture_loop()
        except BaseException as exc:  # noqa: BLE001 - reported to the event loop, which exits 1
            self.error = exc
            self._notify(lambda: self._on_death(self))
        finally:
            self.machine.stop()

    def _capture_loop(self) -> None:
        reason = "first connection"
        while not self._stopping:
            reconnects = self.machine.reconnects
            if not self.machine.connect(reason):
                return
            if self.machine.reconnects > reconnects:
                metrics.RTSP_RECONNECTS.labels(self.spec.source_id).inc()
                metrics.RECONNECTS.labels(NAME).inc()
            self._reconnect = False
            self._wake.clear()
            try:
                capture = open_stream(self.spec, self.rtsp.open_timeout_s, self.rtsp.stall_s)
            except SourceUnavailable as exc:
                self._wake.wait(self.machine.fail(str(exc)))
                reason = "retrying after backoff"
                continue
            try:
                reason, delay = self._read_frames(capture)
            finally:
                capture.release()
            if delay and not self._stopping:
                self._wake.wait(delay)

    def _read_frames(self, capture: Any) -> tuple[str, float]:
        """Read until the stream fails, stalls or a reconnect is asked for; return the next
        connection's reason and the delay before it."""
        sid = self.spec.source_id
        sampler = FpsSampler(self.rtsp.fps)
        while not self._stopping:
            if self._reconnect:
                return "reconnect requested", 0.0
            if not capture.grab():
                delay = self.machine.lost(time.monotonic(), "the stream closed or a read failed")
                return ("retrying after backoff" if delay else "stalled"), delay
            now = time.monotonic()
            captured_at_ms = time.time_ns() // 1_000_000
            # The watchdog's check at each arrival too: after a read timeout FFmpeg's threaded
            # decoder still hands out a frame or two it held, late; those mean "stalled".
            if self.machine.check(now) or not self.machine.frame(now):
                return "stalled", 0.0
            self.counts["captured"] += 1
            metrics.RTSP_CAPTURED.labels(sid).inc()
            if not sampler.take(now):
                self.drop(FPS_CAP)
                continue
            ok, image = capture.retrieve()
            if not ok or image is None:
                continue
            height, width = image.shape[:2]
            self.size = (int(width), int(height))
            frame = Frame(
                sid, encode_jpeg(image, self.rtsp.jpeg_quality), captured_at_ms, now, *self.size
            )
            metrics.RECEIVED.labels(NAME).inc()
            replaced = self.slot.put(frame)
            if replaced is frame:  # the slot is closed: the stream is being removed
                return "stopping", 0.0
            if replaced is not None:
                self.drop(QUEUE_FULL)
            self._notify(self.frame_ready.set)
        return "stopping", 0.0


class RtspBridge(Bridge):
    """Captures N RTSP streams (FLOWFORGE_RTSP_URLS, FLOWFORGE_RTSP_URLS_FILE), each in its own
    thread, and publishes sampled JPEG frames with KafkaPublisher: key = source id, one frame at
    a time per stream (in order), the newest frame winning when Kafka is slower. Streams can be
    added, removed and reconnected at runtime through the stream API (/v1/streams)."""

    name = NAME

    def __init__(self, settings: Settings, publisher: KafkaPublisher | None = None) -> None:
        self.rtsp = settings.rtsp
        check_api_security(settings.bridge.web_bind, settings.rtsp.api_token)
        self.specs = load_specs(settings.rtsp)
        self.publisher = publisher or KafkaPublisher(
            settings.kafka, settings.bridge, bridge_name=NAME
        )
        self.streams: dict[str, StreamCapture] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._dead: list[StreamCapture] = []
        self._died = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = False

    # --- lifecycle -----------------------------------------------------------------------

    async def setup(self, stop: asyncio.Event) -> None:
        """Connect to Kafka first (no frame is captured that cannot be published), then start
        one capture thread per configured stream."""
        self._stop = stop
        self._loop = asyncio.get_running_loop()
        # OpenCV warns on stderr at every read timeout and failed open; the bridge logs those
        # itself (as state transitions), so only OpenCV's errors are let through.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        use_capture_options()
        await self.publisher.start(stop)
        for spec in self.specs:
            self._start_stream(spec)
        self._started = True
        log.info(
            "capturing %d streams at %g fps (JPEG quality %d, stall after %gs)",
            len(self.streams), self.rtsp.fps, self.rtsp.jpeg_quality, self.rtsp.stall_s,
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """Watch every stream's data age until ``stop`` (or a capture thread died); then stop
        the threads and publish the frames they handed over."""
        try:
            while not stop.is_set() and not self._died.is_set():
                now = time.monotonic()
                for stream in list(self.streams.values()):
                    stream.watch(now)
                streaming = [s.machine.delivering(now) for s in self.streams.values()]
                metrics.CONNECTED.labels(NAME).set(int(bool(streaming) and all(streaming)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=WATCHDOG_S)
        finally:
            await self._stop_all()
        if self._dead:
            dead = self._dead[0]
            error = dead.error
            detail = f"{type(error).__name__}: {error}" if error else "it ended unexpectedly"
            raise LibraryThreadDied(
                f"the capture thread of stream {dead.spec.source_id} died: {detail}"
            ) from error

    async def cleanup(self) -> None:
        """Stop what is still running and flush and close the producer."""
        await self._stop_all()
        await self.publisher.stop()

    def readiness(self) -> tuple[bool, str]:
        """Ready: Kafka connected and acknowledging, and every stream delivering frames."""
        if not self._started:
            return False, "starting (connecting to Kafka)"
        if not self.streams:
            return False, "no streams to capture (add one: POST /v1/streams)"
        now = time.monotonic()
        idle = [s for s in self.streams.values() if not s.machine.delivering(now)]
        if idle:
            names = ", ".join(f"{s.spec.source_id} ({s.machine.state.value})" for s in idle[:10])
            return False, f"{len(idle)} of {len(self.streams)} streams deliver no frames: {names}"
        ok, why = self.publisher.kafka_health(KAFKA_STALL_S)
        return (True, f"{len(self.streams)} streams delivering, {why}") if ok else (False, why)

    def routes(self) -> list[web.RouteDef]:
        """The stream API: GET/POST /v1/streams, GET/DELETE /v1/streams/ID, POST .../reconnect."""
        return make_routes(self, self.rtsp.api_token.reveal())

    # --- the stream API's operations -----------------------------------------------------

    def describe_streams(self) -> list[dict[str, Any]]:
        """Every stream's state and counts."""
        now = time.monotonic()
        return [stream.describe(now) for stream in self.streams.values()]

    def describe_stream(self, source_id: str) -> dict[str, Any]:
        """One stream's state and counts (UnknownStream if there is none)."""
        return self._get(source_id).describe(time.monotonic())

    def add_stream(self, spec: StreamSpec) -> dict[str, Any]:
        """Start capturing ``spec`` (StreamExists if its source id is taken)."""
        if not self._started:
            raise ApiError(503, "the bridge is still starting (connecting to Kafka)")
        if spec.source_id in self.streams:
            raise StreamExists(spec.source_id)
        stream = self._start_stream(spec)
        log.info("%s: added through the API", spec.source_id)
        return stream.describe(time.monotonic())

    def remove_stream(self, source_id: str) -> None:
        """Stop capturing ``source_id`` (UnknownStream if there is none)."""
        stream = self._get(source_id)
        del self.streams[source_id]
        log.info("%s: removed through the API", source_id)
        task = asyncio.ensure_future(self._retire(stream))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def reconnect_stream(self, source_id: str) -> dict[str, Any]:
        """Make ``source_id`` reconnect now (UnknownStream if there is none)."""
        stream = self._get(source_id)
        stream.request_reconnect()
        return stream.describe(time.monotonic())

    # --- internals -----------------------------------------------------------------------

    def _get(self, source_id: str) -> StreamCapture:
        stream = self.streams.get(source_id)
        if stream is None:
            raise UnknownStream(f"no stream {source_id!r}")
        return stream

    def _notify(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop (from any thread; a closed loop is ignored)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: the bridge is exiting
            loop.call_soon_threadsafe(callback)

    def _on_death(self, stream: StreamCapture) -> None:
        self._dead.append(stream)
        self._died.set()

    def _start_stream(self, spec: StreamSpec) -> StreamCapture:
        stream = StreamCapture(spec, self.rtsp, self._notify, self._on_death)
        self.streams[spec.source_id] = stream
        pump = asyncio.create_task(self._pump(stream), name=f"rtsp-pump-{spec.source_id}")
        pump.add_done_callback(lambda task: self._pump_done(task, stream))
        self._pumps[spec.source_id] = pump
        stream.start()
        return stream

    def _pump_done(self, task: asyncio.Task[None], stream: StreamCapture) -> None:
        """A publish task that failed (not one that ended or was cancelled) ends the bridge,
        as a dead capture thread does: frames would otherwise be dropped unseen."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error("%s: publishing frames failed: %s", stream.spec.source_id, error)
        stream.error = error
        self._on_death(stream)

    async def _pump(self, stream: StreamCapture) -> None:
        """Publish the stream's frames one at a time (in order); end once finishing and empty."""
        sid = stream.spec.source_id
        while True:
            frame = stream.slot.take()
            if frame is None:
                if stream.finishing:
                    return
                await stream.frame_ready.wait()
                stream.frame_ready.clear()
                continue
            if too_old(frame.captured_mono, time.monotonic(), self.rtsp.max_frame_age_s):
                stream.drop(TOO_OLD)
                continue
            try:
                outcome = await self.publisher.deliver(
                    frame_message(stream.spec, frame), self._stop
                )
            except Stopped:  # stopping while Kafka is away: the frame is given up
                return
            if outcome.status == "published":
                stream.counts["published"] += 1
                metrics.RTSP_PUBLISHED.labels(sid).inc()

    async def _retire(self, stream: StreamCapture) -> None:
        """Stop a stream's thread, publish its last frame, forget it (and its metrics)."""
        sid = stream.spec.source_id
        pump = self._pumps.get(sid)  # before any await: the id may be added again meanwhile
        stream.stop()
        ended = await asyncio.to_thread(stream.join, JOIN_S)
        if not ended:
            log.warning("%s: capture thread still in a read after %gs; left to end", sid, JOIN_S)
        stream.finishing = True
        stream.frame_ready.set()
        if pump is not None:
            await asyncio.wait({pump}, timeout=DRAIN_S)
            if self._pumps.get(sid) is pump:
                del self._pumps[sid]
        stream.slot.close()
        if sid not in self.streams:  # not added again meanwhile
            remove_metrics(sid)

    async def _stop_all(self) -> None:
        streams = list(self.streams.values())
        if not streams and not self._pumps:
            return
        if streams:
            log.info("stopping %d capture threads", len(streams))
        for stream in streams:
            stream.stop()
        await asyncio.gather(*(asyncio.to_thread(stream.join, JOIN_S) for stream in streams))
        for stream in streams:
            stream.finishing = True
            stream.frame_ready.set()
        pumps = set(self._pumps.values())
        if pumps:
            _done, pending = await asyncio.wait(pumps, timeout=DRAIN_S)
            for task in pending:
                task.cancel()
        self._pumps.clear()
        if self._background:
            await asyncio.wait(set(self._background), timeout=DRAIN_S + JOIN_S)
        self.streams.clear()
