"""FlowForge settings: one frozen dataclass tree, loaded from an environment passed in.

Every field is declared once, with its default, a one-line doc and a parser; the environment
variable is ``FLOWFORGE_<SECTION>_<FIELD>`` (``FLOWFORGE_<FIELD>`` at the top level). The seed's
names (``MQTT_HOST``, ``MQTT_PORT``, ``RTSP_URL``, ``CLICKHOUSE_HOST``, ``CLICKHOUSE_PORT``) are
honoured when the ``FLOWFORGE_`` variable is not set. Secrets can also come from
``<VARIABLE>_FILE`` and never appear in ``repr``, logs or ``flowforge config``.

    settings = Settings.from_env(os.environ)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

from flowforge.core.errors import SettingsError
from flowforge.core.urls import REDACTED, redact_url, redact_value, split_named_url

log = logging.getLogger(__name__)

PREFIX: Final = "FLOWFORGE_"
MIB: Final = 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Secret:
    """A secret string: ``repr`` and ``str`` never show it; call :meth:`reveal` where it is used."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """Return the secret itself, for handing to a client library."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __str__(self) -> str:
        return REDACTED if self._value else ""

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"


# --- parsers: str -> value, raising ValueError("expected ...") ------------------------------


def parse_str(raw: str) -> str:
    return raw.strip()


Number = TypeVar("Number", int, float)


def _ranged(
    kind: type[Number], what: str, low: Number, high: Number | None = None
) -> Callable[[str], Number]:
    """A parser of one ``kind`` (int or float) number from ``low`` to ``high`` (inclusive; no
    upper bound when None); its error says what it expects, e.g. "expected an integer 1-100"."""
    show = (lambda v: f"{v:g}") if kind is float else str
    expected = f"expected {what} " + (
        f">= {show(low)}" if high is None else f"{show(low)}-{show(high)}"
    )

    def parse(raw: str) -> Number:
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ValueError(expected) from None
        # Written so that NaN fails both comparisons and is refused.
        if not (low <= value and (high is None or value <= high)):
            raise ValueError(expected)
        return value

    return parse


parse_port = _ranged(int, "a TCP port number", 1, 65535)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    return _ranged(int, "an integer", minimum)


def _int_in(low: int, high: int) -> Callable[[str], int]:
    return _ranged(int, "an integer", low, high)


def parse_positive_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("expected a number > 0") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("expected a number > 0")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false (also 1/0, yes/no, on/off)")


_SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "kb": 1000, "mib": MIB, "mb": 1000**2, "gib": 1024**3}


def parse_size(raw: str) -> int:
    """Bytes, with an optional unit: ``16777216``, ``16MiB``, ``512KiB``, ``1GB``."""
    text = raw.strip().lower().replace(" ", "")
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(digits) :]
    if not digits.isdigit() or unit not in _SIZE_UNITS:
        raise ValueError("expected a size in bytes, optionally with a unit (16MiB, 512KiB)")
    value = int(digits) * _SIZE_UNITS[unit]
    if value < 1:
        raise ValueError("expected a size of at least 1 byte")
    return value


def parse_hostports(raw: str) -> str:
    """``host:port[,host:port...]`` as Kafka clients take it."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ValueError("expected host:port[,host:port...]")
    for item in items:
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ValueError("expected host:port[,host:port...]")
        parse_port(port)
    return ",".join(items)


def parse_log_level(raw: str) -> str:
    text = raw.strip().lower()
    aliases = {"warn": "warning", "crit": "critical"}
    text = aliases.get(text, text)
    if text not in {"debug", "info", "warning", "error", "critical"}:
        raise ValueError("expected one of debug, info, warning, error, critical")
    return text


CLICKHOUSE_SCHEMES: Final = ("chdb", "http", "https")


def parse_clickhouse_url(raw: str) -> str:
    """``chdb://PATH`` (the embedded engine), ``chdb://memory``, or ``http(s)://host:port``."""
    text = raw.strip()
    if not text:
        return ""
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ValueError("expected chdb://PATH or http(s)://HOST:PORT") from None
    if parts.scheme not in CLICKHOUSE_SCHEMES:
        raise ValueError(
            f"unknown scheme {parts.scheme + '://' if parts.scheme else '(none)'}; "
            "expected chdb://PATH or http(s)://HOST:PORT"
        )
    if parts.scheme == "chdb" and not (parts.netloc + parts.path):
        raise ValueError("expected a data directory after chdb:// (or chdb://memory)")
    if parts.scheme != "chdb":
        if not parts.hostname:
            raise ValueError("expected http(s)://HOST:PORT")
        if "@" in parts.netloc:  # the client takes the user and password settings, not these
            raise ValueError(
                "credentials in the URL would not be used: set FLOWFORGE_CLICKHOUSE_USERNAME "
                "and FLOWFORGE_CLICKHOUSE_PASSWORD (or _PASSWORD_FILE)"
            )
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("expected http(s)://HOST:PORT with a port 1-65535") from None
    return text


def check_rtsp_entry(entry: str) -> None:
    """Raise ValueError unless ``entry`` is ``rtsp(s)://...`` or ``name=rtsp(s)://...``."""
    _name, url = split_named_url(entry)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("expected comma-separated [name=]rtsp:// or rtsps:// URLs") from None
    if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
        raise ValueError("expected comma-separated [name=]rtsp:// or rtsps:// URLs")


def parse_rtsp_urls(raw: str) -> tuple[str, ...]:
    """Comma-separated ``rtsp://`` / ``rtsps://`` URLs, each optionally ``name=URL``."""
    urls = tuple(item.strip() for item in raw.split(",") if item.strip())
    for url in urls:
        check_rtsp_entry(url)
    return urls


_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> int:
    """``90s``, ``15m``, ``2h``, ``7d`` (or plain seconds) as whole seconds."""
    text = raw.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    if not number.isdigit() or int(number) == 0:
        raise ValueError("expected a duration such as 30s, 15m, 2h or 7d")
    return int(number) * (unit or 1)


def parse_path(raw: str) -> Path:
    text = raw.strip()
    if not text:
        raise ValueError("expected a path")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~someone" with no such user
        raise ValueError("expected a path; ~USER names no known user") from None


def _float_in(low: float, high: float) -> Callable[[str], float]:
    return _ranged(float, "a number", low, high)


def parse_secret(raw: str) -> Secret:
    return Secret(raw.rstrip("\r\n"))


# --- declaration --------------------------------------------------------------------------


def setting(
    default: T,
    doc: str,
    parse: Callable[[str], T],
    *,
    aliases: tuple[str, ...] = (),
    shown_default: str | None = None,
    repr: bool = True,
) -> T:
    """Declare one setting: its default, one line of documentation, its parser, seed aliases.

    ``repr=False`` keeps a value that may hold credentials (URLs with user-info) out of repr;
    ``describe`` shows it redacted.
    """
    meta = {"doc": doc, "parse": parse, "aliases": aliases, "shown_default": shown_default}
    return field(default=default, metadata=meta, repr=repr)


# Framing and headers of a Kafka request or fetch on top of the largest image value.
REQUEST_OVERHEAD_BYTES: Final = 256 * 1024


@dataclass(frozen=True)
class KafkaSettings:
    """Kafka connection, topic names and topic sizing."""

    bootstrap_servers: str = setting(
        "127.0.0.1:9092", "Kafka bootstrap servers, host:port[,host:port...].", parse_hostports
    )
    topic_raw: str = setting("images.raw", "Topic the bridges publish images to.", parse_str)
    topic_processed: str = setting(
        "images.processed", "Topic of resized JPEGs from the worker.", parse_str
    )
    topic_metadata: str = setting(
        "images.metadata", "Topic of per-image metadata records (JSON).", parse_str
    )
    topic_dlq: str = setting("images.dlq", "Dead-letter topic for rejected images.", parse_str)
    partitions: int = setting(6, "Partitions of each FlowForge topic.", _int_at_least(1))
    replication_factor: int = setting(1, "Replication factor of each topic.", _int_at_least(1))
    retention_hours: int = setting(
        168, "Retention of each topic in hours (-1 keeps forever).", _int_at_least(-1)
    )
    max_message_bytes: int = setting(
        16 * MIB,
        "Largest image message; sets broker, topic, producer and fetch limits together.",
        parse_size,
        shown_default="16MiB",
    )

    @property
    def request_bytes(self) -> int:
        """Largest Kafka request or fetch that carries one image: the limit plus framing."""
        return self.max_message_bytes + REQUEST_OVERHEAD_BYTES


@dataclass(frozen=True)
class MqttSettings:
    """MQTT broker connection and the image topic."""

    host: str = setting("127.0.0.1", "MQTT broker host.", parse_str, aliases=("MQTT_HOST",))
    port: int = setting(1883, "MQTT broker port.", parse_port, aliases=("MQTT_PORT",))
    topic: str = setting(
        "images/raw", "Image topic; images/raw/<source> sets the source id.", parse_str
    )
    username: str = setting("", "MQTT username (empty: anonymous).", parse_str)
    password: Secret = setting(Secret(""), "MQTT password (or *_FILE).", parse_secret)
    tls: bool = setting(False, "Connect to the broker over TLS.", parse_bool)
    ca_file: str = setting("", "CA bundle for TLS (empty: system CAs).", parse_str)
    client_id: str = setting(
        "",
        "Bridge's MQTT client id (persistent session); empty: derived from host name and home.",
        parse_str,
        shown_default="(derived)",
    )
    default_source: str = setting(
        "default", "Source id of images published to the bare image topic.", parse_str
    )
    availability_topic: str = setting(
        "",
        "Retained online/offline topic (LWT); empty: flowforge/bridges/<client id>/availability.",
        parse_str,
        shown_default="(derived)",
    )
    session_expiry_s: int = setting(
        604_800,
        "Seconds the broker keeps the bridge's session and queue while it is away.",
        _int_at_least(1),
    )
    receive_maximum: int = setting(
        100,
        "Messages taken from MQTT and not yet acked by Kafka, at most (MQTT 5 Receive Maximum).",
        _int_in(1, 65535),
    )


@dataclass(frozen=True)
class ClickHouseSettings:
    """Where image metadata is stored."""

    url: str = setting(
        "",
        "chdb://PATH (embedded engine) or http(s)://HOST:PORT (server).",
        parse_clickhouse_url,
        shown_default="chdb://$FLOWFORGE_HOME/clickhouse",
        repr=False,
    )
    username: str = setting(
        "default",
        "ClickHouse user: of the server, or the read-write user of the embedded engine's HTTP "
        "interface.",
        parse_str,
    )
    password: Secret = setting(
        Secret(""), "That user's password (or *_FILE); empty: none.", parse_secret
    )
    database: str = setting("default", "ClickHouse database.", parse_str)
    ttl_days: int = setting(
        90,
        "Days images_metadata and images_duplicates rows are kept (by ingest time, ingested_at); "
        "0 keeps them.",
        _int_at_least(0),
    )
    http_bind: str = setting(
        "127.0.0.1",
        "Address of the HTTP interface the embedded engine's owner serves (off loopback only "
        "with passwords).",
        parse_str,
    )
    http_port: int = setting(
        8123,
        "Port of that HTTP interface (ClickHouse's HTTP protocol); 0 turns it off.",
        _int_in(0, 65535),
    )
    http_max_queries: int = setting(
        4, "Queries the HTTP interface runs at once (more wait, then are refused).", _int_in(1, 64)
    )
    http_query_threads: int = setting(
        max(1, (os.cpu_count() or 2) // 2),
        "Threads one HTTP interface query may use at most (max_threads; inserts are not limited).",
        _int_in(1, 256),
        shown_default="half the cores",
    )
    http_query_nice: int = setting(
        19,
        "Nice value of an HTTP interface query's threads (os_thread_priority; inserts keep 0): "
        "the sink's inserts come first when cores are short; 0 turns it off.",
        _int_in(0, 19),
    )
    http_readonly_user: str = setting(
        "grafana", "Read-only user of the HTTP interface (for Grafana).", parse_str
    )
    http_readonly_password: Secret = setting(
        Secret(""), "Its password (or *_FILE); empty: no read-only user.", parse_secret
    )
    http_max_execution_s: int = setting(
        60, "Seconds an HTTP interface query may run (max_execution_time).", _int_at_least(1)
    )
    http_max_result_bytes: int = setting(
        256 * MIB,
        "Largest result of an HTTP interface query (max_result_bytes).",
        parse_size,
        shown_default="256MiB",
    )


SINK_MODES: Final = ("agent", "kafka-engine")
SPOOL_FILE: Final = "sink-spool.sqlite"
WORKER_AGENTS: Final = ("process", "sink")


def parse_sink_mode(raw: str) -> str:
    text = raw.strip().lower()
    if text not in SINK_MODES:
        raise ValueError("expected agent or kafka-engine")
    return text


def parse_agents(raw: str) -> tuple[str, ...]:
    """``process,sink``: the worker's roles, at least one, each known."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    if not names or any(n not in WORKER_AGENTS for n in names):
        raise ValueError("expected a comma-separated subset of process,sink")
    return names


@dataclass(frozen=True)
class SinkSettings:
    """The sink: images.metadata into ClickHouse, in batches, through a local spool."""

    mode: str = setting(
        "agent",
        "agent: the worker's sink agent writes rows; kafka-engine: ClickHouse consumes the topic.",
        parse_sink_mode,
    )
    batch_size: int = setting(
        10_000,
        "Rows per insert at most (flush on size); ClickHouse wants few, large inserts.",
        _int_at_least(1),
    )
    flush_s: float = setting(
        0.5,
        "Seconds a batch may wait to fill before it is written (flush on age).",
        parse_positive_float,
    )
    fetch_wait_ms: int = setting(
        50,
        "The sink's fetches wait up to this long for 64 KiB of records: fewer, fuller "
        "fetches at low rates (less CPU), rows at most this much later (0: fetch each record "
        "as soon as it is there).",
        _int_at_least(0),
    )
    spool_max_mb: float = setting(
        256.0,
        "Size bound of the local SQLite spool (MB, fractions allowed); at the bound the sink "
        "pauses consuming.",
        parse_positive_float,
    )
    spool_path: Path = setting(
        Path(""),
        "SQLite file holding rows while ClickHouse is unavailable.",
        parse_path,
        shown_default="<worker data dir>/sink-spool.sqlite",
    )
    retry_initial_s: float = setting(
        0.5, "First retry delay after a failed insert (doubles, jittered).", parse_positive_float
    )
    retry_max_s: float = setting(30.0, "Longest retry delay.", parse_positive_float)
    migrate_on_start: bool = setting(
        True, "Apply the ClickHouse schema when the sink starts.", parse_bool
    )
    fault_file: str = setting(
        "",
        "Fault drills: a JSON file of ClickHouse failures to inject at the client (empty: off).",
        parse_str,
    )


@dataclass(frozen=True)
class RtspSettings:
    """RTSP camera streams for the RTSP bridge."""

    urls: tuple[str, ...] = setting(
        (),
        "Comma-separated rtsp:// URLs to capture, each optionally name=URL (name = source id).",
        parse_rtsp_urls,
        aliases=("RTSP_URL",),
        repr=False,
    )
    urls_file: str = setting(
        "", "File of more streams, one [name=]URL a line, # comments (empty: none).", parse_str
    )
    fps: float = setting(
        2.0,
        "Frames per second sampled from each stream (the rest are dropped).",
        _float_in(0.01, 120),
    )
    jpeg_quality: int = setting(
        85, "JPEG quality (1-100) of the published frames.", _int_in(1, 100)
    )
    stall_s: float = setting(
        10.0,
        "Seconds without a new frame before a stream is stalled and reconnected.",
        _float_in(0.1, 3600),
    )
    open_timeout_s: float = setting(
        10.0,
        "Seconds to wait for a stream to open (RTSP handshake and first packets).",
        _float_in(0.1, 3600),
    )
    backoff_initial_s: float = setting(
        0.5,
        "First delay before reconnecting a failed stream (doubles, jittered).",
        _float_in(0.01, 3600),
    )
    backoff_max_s: float = setting(
        30.0, "Longest delay between reconnect attempts of one stream.", _float_in(0.01, 86_400)
    )
    max_frame_age_s: float = setting(
        5.0,
        "Frames older than this when Kafka can take them are dropped (too_old).",
        _float_in(0.01, 86_400),
    )
    api_token: Secret = setting(
        Secret(""),
        "Bearer token for the bridge's stream API changes (or *_FILE); required off loopback.",
        parse_secret,
    )


RESIZE_POLICIES: Final = ("stretch", "letterbox", "crop")


def parse_resize_policy(raw: str) -> str:
    text = raw.strip().lower()
    if text not in RESIZE_POLICIES:
        raise ValueError("expected one of stretch, letterbox, crop")
    return text


def parse_size_wxh(raw: str) -> tuple[int, int]:
    """``640x360``."""
    width, sep, height = raw.strip().lower().partition("x")
    try:
        value = (int(width), int(height))
    except ValueError:
        raise ValueError("expected WIDTHxHEIGHT, e.g. 640x360") from None
    if not sep or not all(16 <= v <= 8192 for v in value):
        raise ValueError("expected WIDTHxHEIGHT with each side 16-8192, e.g. 640x360")
    return value


@dataclass(frozen=True)
class ProcessingSettings:
    """What the worker does to each image."""

    max_pixels: int = setting(
        50_000_000,
        "Reject images whose header declares more pixels (bombs); a decode takes up to about "
        "5 bytes per pixel, times the worker's concurrency.",
        _int_at_least(1),
    )
    dark_threshold: float = setting(
        40.0, "Skip as dark below this mean luma (0-255).", _float_in(0, 255)
    )
    min_contrast: float = setting(
        10.0, "Skip as low quality below this luma standard deviation.", _float_in(0, 255)
    )
    min_sharpness: float = setting(
        15.0, "Skip as low quality below this Laplacian variance (fixed size).", _float_in(0, 1e9)
    )
    output_size: tuple[int, int] = setting(
        (640, 360), "Size of the resized output image.", parse_size_wxh, shown_default="640x360"
    )
    resize_policy: str = setting(
        "stretch", "Resize policy: stretch, letterbox or crop.", parse_resize_policy
    )
    jpeg_quality: int = setting(85, "JPEG quality of the resized output.", _int_in(1, 100))
    fast_path: bool = setting(
        True, "Decode large JPEGs at reduced size in the DCT domain.", parse_bool
    )


COMPRESSION_TYPES: Final = ("none", "gzip", "lz4", "zstd", "snappy")


def parse_compression(raw: str) -> str:
    text = raw.strip().lower()
    if text not in COMPRESSION_TYPES:
        raise ValueError("expected one of " + ", ".join(COMPRESSION_TYPES))
    return text


@dataclass(frozen=True)
class BridgeSettings:
    """What the bridges (`flowforge bridge mqtt|rtsp|batch`) share: publisher and web."""

    web_bind: str = setting(
        "127.0.0.1", "Address of the bridges' /livez, /readyz, /metrics.", parse_str
    )
    mqtt_web_port: int = setting(6067, "Web port of the MQTT bridge.", parse_port)
    rtsp_web_port: int = setting(6068, "Web port of the RTSP bridge.", parse_port)
    batch_web_port: int = setting(6069, "Web port of the batch bridge.", parse_port)
    in_flight_bytes: int = setting(
        64 * MIB,
        "Payload bytes handed to Kafka and not yet acknowledged, at most (then wait); for the MQTT "
        "bridge, all it holds from receipt to Kafka's ack (then it stops reading MQTT).",
        parse_size,
        shown_default="64MiB",
    )
    compression: str = setting(
        "none",
        "Kafka compression: none, gzip, lz4, zstd or snappy. JPEG/PNG do not compress (lz4 saved"
        " 1% of a 720p JPEG for 1.3 ms of CPU, a third of the MQTT bridge's cost per image).",
        parse_compression,
    )
    linger_ms: int = setting(
        5, "Milliseconds the producer waits to fill a batch.", _int_at_least(0)
    )


DEFAULT_BATCH_PATTERNS: Final = (
    "*.jpg", "*.jpeg", "*.png", "*.gif", "*.bmp", "*.tif", "*.tiff", "*.webp",
)  # fmt: skip


def parse_glob_patterns(raw: str) -> tuple[str, ...]:
    """Comma-separated glob patterns, each relative to the batch root: no absolute path, no
    ``..`` component (a pattern must never reach outside the root)."""
    patterns = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not patterns:
        raise ValueError("expected glob patterns such as *.jpg,*.png")
    for pattern in patterns:
        if pattern.startswith(("/", "\\")) or ".." in pattern.replace("\\", "/").split("/"):
            raise ValueError(f"pattern {pattern!r} leads outside the root: no '/' start, no '..'")
    return patterns


@dataclass(frozen=True)
class BatchSettings:
    """The batch-directory bridge (`flowforge bridge batch DIR`)."""

    patterns: tuple[str, ...] = setting(
        DEFAULT_BATCH_PATTERNS,
        "Glob patterns of the files to publish (comma-separated, case-insensitive; matched "
        "against the name, or the relative path if the pattern has a '/').",
        parse_glob_patterns,
    )
    recursive: bool = setting(True, "Descend into subdirectories of the batch root.", parse_bool)
    source_id: str = setting(
        "",
        "Source id (Kafka key) of the images; empty: the batch root's directory name.",
        parse_str,
        shown_default="(root name)",
    )
    concurrency: int = setting(
        256,
        "Files read and awaiting Kafka at once, at most (their bytes at most "
        "FLOWFORGE_BRIDGE_IN_FLIGHT_BYTES, or one larger file alone).",
        _int_at_least(1),
    )
    poll_interval_s: float = setting(
        0.5, "Seconds between two scans of the directory in --watch mode.", parse_positive_float
    )
    settle_s: float = setting(
        1.0,
        "In --watch mode a file is published once unchanged (size, mtime) for this many seconds.",
        parse_positive_float,
    )


@dataclass(frozen=True)
class WorkerSettings:
    """The Faust worker (`flowforge worker`)."""

    app_id: str = setting(
        "flowforge", "Faust app id: consumer group and changelog topic prefix.", parse_str
    )
    web_bind: str = setting("127.0.0.1", "Address of /livez, /readyz, /metrics, /stats.", parse_str)
    web_port: int = setting(6066, "Port of the worker's web endpoints.", parse_port)
    concurrency: int = setting(
        0,
        "Images processed in parallel (threads); 0 = the CPUs this process may use: its "
        "container's CPU quota (cgroup), else its CPU affinity.",
        _int_at_least(0),
    )
    dedup_ttl_hours: float = setting(
        6.0, "How long an image id is remembered to drop redeliveries.", parse_positive_float
    )
    commit_interval_s: float = setting(
        2.8, "Seconds between consumer offset commits (Faust's default).", parse_positive_float
    )
    stats_interval_s: float = setting(
        30.0, "Seconds between processing-statistics log lines.", parse_positive_float
    )
    session_timeout_s: float = setting(
        15.0,
        "Consumer-group session timeout: a worker silent this long (killed, frozen) loses its "
        "partitions; heartbeats go every third of it, at most every 3 s. Bounds the recovery "
        "after a SIGKILL (Faust's default, 60 s, made it a minute).",
        _float_in(6, 90),  # Kafka's group.min.session.timeout.ms; Faust's request timeout
    )
    request_timeout_s: float = setting(
        90.0,
        "Seconds a Kafka request of the worker may take (Faust's broker_request_timeout); at "
        "least the session timeout. A group join the broker leaves unanswered waits this long.",
        _float_in(6, 600),
    )
    agents: tuple[str, ...] = setting(
        ("process", "sink"),
        "Roles of this worker: process (images.raw) and/or sink (images.metadata).",
        parse_agents,
    )
    data_dir: Path = setting(
        Path(""),
        "Worker state (SQLite table files); one per worker process.",
        parse_path,
        shown_default="$FLOWFORGE_HOME/worker-<web port>",
    )


@dataclass(frozen=True)
class StackSettings:
    """The local (no Docker) service stack run by `flowforge stack`."""

    kafka_controller_port: int = setting(
        9093, "Port of the local Kafka's KRaft controller listener.", parse_port
    )
    kafka_heap: str = setting("512m", "Java heap (-Xmx) of the local Kafka broker.", parse_str)
    cache_dir: Path = setting(
        Path(""),
        "Cache of downloaded artefacts (Kafka jars), shared by stacks.",
        parse_path,
        shown_default="$FLOWFORGE_HOME/cache",
    )
    start_timeout_s: float = setting(
        90.0, "Seconds to wait for a local service to answer.", parse_positive_float
    )


# The simulator's encoder names -> GStreamer element, and the Debian package that has it.
ENCODERS: Final = {
    "x264": ("x264enc", "gstreamer1.0-plugins-ugly"),
    "openh264": ("openh264enc", "gstreamer1.0-plugins-bad"),
}


def parse_sim_encoder(raw: str) -> str:
    text = raw.strip().lower()
    if text not in ENCODERS:
        raise ValueError(f"expected one of {', '.join(ENCODERS)}")
    return text


@dataclass(frozen=True)
class SimSettings:
    """The RTSP simulator (`flowforge sim rtsp`); a config file overrides these."""

    bind: str = setting("127.0.0.1", "Address of the simulator's RTSP server and API.", parse_str)
    rtsp_port: int = setting(8554, "RTSP port of the simulator.", parse_port)
    api_port: int = setting(9997, "Port of the simulator's HTTP API and /metrics.", parse_port)
    token: Secret = setting(
        Secret(""),
        "Bearer token for the API's changes (or *_FILE); required off loopback.",
        parse_secret,
    )
    config: str = setting(
        "", "TOML/JSON file with the streams (empty: N test patterns).", parse_str
    )
    streams: int = setting(
        3, "Streams /cam1../camN served when no file names them.", _int_in(0, 64)
    )
    size: tuple[int, int] = setting(
        (640, 360), "Default resolution of a stream.", parse_size_wxh, shown_default="640x360"
    )
    fps: int = setting(15, "Default frame rate of a stream.", _int_in(1, 120))
    bitrate_kbps: int = setting(
        1000, "Default H.264 bitrate of a stream (kbit/s).", _int_in(16, 100_000)
    )
    encoder: str = setting("x264", "Default H.264 encoder: x264 or openh264.", parse_sim_encoder)
    day_night_period_s: float = setting(
        120.0,
        "Default seconds of one day/night brightness cycle (0: always day).",
        _float_in(0, 86_400),
    )
    python: str = setting(
        "/usr/bin/python3",
        "Python with GStreamer's bindings (python3-gi) for the server.",
        parse_str,
    )


@dataclass(frozen=True)
class Settings:
    """All of FlowForge's settings."""

    home: Path = setting(
        Path(""),
        "Directory for local data, logs, PIDs and caches (made absolute at start).",
        parse_path,
        shown_default="$XDG_STATE_HOME/flowforge or ~/.local/state/flowforge",
    )
    log_level: str = setting("info", "Log level: debug, info, warning, error.", parse_log_level)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    sink: SinkSettings = field(default_factory=SinkSettings)
    rtsp: RtspSettings = field(default_factory=RtspSettings)
    processing: ProcessingSettings = field(default_factory=ProcessingSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    sim: SimSettings = field(default_factory=SimSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Load from ``env`` (pass ``os.environ``); a bad value raises SettingsError naming it."""
        return _load(env)

    def with_worker_port(self, port: int, *, derive_data_dir: bool) -> Settings:
        """A copy with the worker's web port changed (and its data dir following, if derived)."""
        worker = dataclasses.replace(self.worker, web_port=port)
        sink = self.sink
        if derive_data_dir:
            worker = dataclasses.replace(worker, data_dir=self.home / f"worker-{port}")
            if sink.spool_path in (Path(""), self.worker.data_dir / SPOOL_FILE):
                sink = dataclasses.replace(sink, spool_path=worker.data_dir / SPOOL_FILE)
        return dataclasses.replace(self, worker=worker, sink=sink)

    def describe(self, *, redact: bool = True) -> Iterator[tuple[str, str]]:
        """Yield ``(VARIABLE, value)`` for every setting, secrets and URL credentials redacted."""
        for spec in SPECS:
            value = spec.get(self)
            yield spec.variable, _show(value, redact=redact)

    def to_json(self) -> str:
        """The effective settings as JSON, redacted."""
        return json.dumps(dict(self.describe()), indent=2)


# --- loading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingSpec:
    """One declared setting, with where it lives in the tree."""

    section: str | None
    name: str
    variable: str
    doc: str
    default: Any
    shown_default: str | None
    parse: Callable[[str], Any]
    aliases: tuple[str, ...]

    @property
    def is_secret(self) -> bool:
        return isinstance(self.default, Secret)

    def get(self, settings: Settings) -> Any:
        holder = getattr(settings, self.section) if self.section else settings
        return getattr(holder, self.name)


def _specs() -> tuple[SettingSpec, ...]:
    specs: list[SettingSpec] = []
    for top in dataclasses.fields(Settings):
        if "doc" in top.metadata:
            specs.append(_spec(None, top))
    for name, section_cls in _sections().items():
        for sub in dataclasses.fields(section_cls):
            specs.append(_spec(name, sub))
    return tuple(specs)


def _sections() -> dict[str, type[Any]]:
    """The section dataclasses of Settings, by field name (kafka -> KafkaSettings, ...)."""
    return {
        f.name: cast(type[Any], f.default_factory)
        for f in dataclasses.fields(Settings)
        if "doc" not in f.metadata
    }


def _spec(section: str | None, f: dataclasses.Field[Any]) -> SettingSpec:
    variable = PREFIX + (f"{section}_{f.name}" if section else f.name).upper()
    return SettingSpec(
        section=section,
        name=f.name,
        variable=variable,
        doc=f.metadata["doc"],
        default=f.default,
        shown_default=f.metadata["shown_default"],
        parse=f.metadata["parse"],
        aliases=f.metadata["aliases"],
    )


SPECS: Final = _specs()
_KNOWN: Final = frozenset(
    {s.variable for s in SPECS} | {s.variable + "_FILE" for s in SPECS if s.is_secret}
)
# FLOWFORGE_ variables that are not settings but are read by tooling (Makefile, tests).
_NOT_SETTINGS: Final = frozenset({"FLOWFORGE_PYTHON"})


MAX_SECRET_FILE_BYTES: Final = 64 * 1024


def _read_secret_file(variable: str, path_text: str) -> str:
    """The text of a ``*_FILE`` secret: a regular UTF-8 file of at most 64 KiB (so that
    ``/dev/zero`` or a FIFO cannot hang the start); world-readable is used with a warning."""
    try:
        if "\x00" in path_text:
            raise ValueError("contains a NUL byte")
        path = parse_path(path_text)
    except ValueError as exc:
        raise SettingsError(variable, str(exc)) from None
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise SettingsError(variable, f"secret file {path} is not a regular file")
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SettingsError(variable, f"cannot read secret file {path}: {exc.strerror}") from exc
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SettingsError(variable, f"secret file {path} is larger than 64 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(variable, f"secret file {path} is not UTF-8 text") from None
    if mode & stat.S_IROTH:
        log.warning("secret file %s (%s) is world-readable; chmod o-r it", path, variable)
    return text


def _raw_value(spec: SettingSpec, env: Mapping[str, str]) -> tuple[str, str] | None:
    """Return ``(variable, raw text)`` for ``spec`` from ``env``, or None for the default."""
    if spec.variable in env:
        return spec.variable, env[spec.variable]
    file_var = spec.variable + "_FILE"
    if spec.is_secret and env.get(file_var):
        return file_var, _read_secret_file(file_var, env[file_var])
    for alias in spec.aliases:
        if alias in env:
            return alias, env[alias]
    return None


def _load(env: Mapping[str, str]) -> Settings:
    values: dict[str | None, dict[str, Any]] = {}
    for spec in SPECS:
        found = _raw_value(spec, env)
        if found is None:
            continue
        variable, raw = found
        try:
            if "\x00" in raw:  # possible from a *_FILE secret or a mapping given by a caller
                raise ValueError("contains a NUL byte")
            value = spec.parse(raw)
        except ValueError as exc:
            shown = "" if spec.is_secret else f"={redact_value(raw)!r}"
            raise SettingsError(f"{variable}{shown}", str(exc)) from None
        values.setdefault(spec.section, {})[spec.name] = value
    _warn_unknown(env)
    top = values.pop(None, {})
    sections = {name: cls(**values.get(name, {})) for name, cls in _sections().items()}
    settings = Settings(**top, **sections)
    if settings.worker.session_timeout_s > settings.worker.request_timeout_s:
        raise SettingsError(
            f"FLOWFORGE_WORKER_REQUEST_TIMEOUT_S={settings.worker.request_timeout_s:g}",
            f"must be at least FLOWFORGE_WORKER_SESSION_TIMEOUT_S "
            f"({settings.worker.session_timeout_s:g}): Faust refuses a longer session",
        )
    return _resolve_derived(settings, env)


def default_home(env: Mapping[str, str]) -> Path:
    """The per-user state directory: ``$XDG_STATE_HOME/flowforge`` if that is an absolute path
    (the XDG base directory rule), else ``$HOME/.local/state/flowforge``. Absolute, so every
    command finds the same stack whatever directory it runs in."""
    xdg = env.get("XDG_STATE_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "flowforge"
    user_home = env.get("HOME", "").strip()
    base = Path(user_home) if user_home and Path(user_home).is_absolute() else Path.home()
    return base / ".local" / "state" / "flowforge"


def _resolve_derived(settings: Settings, env: Mapping[str, str]) -> Settings:
    """Fill defaults that derive from other settings: the home (absolute), the stack cache,
    the worker's data directory and the ClickHouse URL."""
    home = default_home(env) if settings.home == Path("") else settings.home
    settings = dataclasses.replace(settings, home=Path(os.path.abspath(home)))
    if settings.stack.cache_dir == Path(""):
        stack = dataclasses.replace(settings.stack, cache_dir=settings.home / "cache")
        settings = dataclasses.replace(settings, stack=stack)
    if settings.worker.data_dir == Path(""):
        settings = settings.with_worker_port(settings.worker.web_port, derive_data_dir=True)
    if settings.sink.spool_path == Path(""):
        sink = dataclasses.replace(settings.sink, spool_path=settings.worker.data_dir / SPOOL_FILE)
        settings = dataclasses.replace(settings, sink=sink)
    if settings.clickhouse.url:
        return settings
    url = f"chdb://{(settings.home / 'clickhouse').resolve()}"
    host = env.get("CLICKHOUSE_HOST", "").strip()
    if host:
        port = 8123
        if env.get("CLICKHOUSE_PORT", "").strip():
            try:
                port = parse_port(env["CLICKHOUSE_PORT"])
            except ValueError as exc:
                raise SettingsError(
                    f"CLICKHOUSE_PORT={env['CLICKHOUSE_PORT']!r}", str(exc)
                ) from None
            if port == 9000:
                raise SettingsError(
                    "CLICKHOUSE_PORT=9000",
                    "9000 is ClickHouse's native-protocol port; FlowForge talks HTTP "
                    "(8123 by default). Set CLICKHOUSE_PORT=8123 or FLOWFORGE_CLICKHOUSE_URL.",
                )
        url = f"http://{host}:{port}"
        try:
            parse_clickhouse_url(url)
        except ValueError as exc:
            raise SettingsError(f"CLICKHOUSE_HOST={redact_value(host)!r}", str(exc)) from None
    return dataclasses.replace(
        settings, clickhouse=dataclasses.replace(settings.clickhouse, url=url)
    )


def _warn_unknown(env: Mapping[str, str]) -> None:
    for name in env:
        if name.startswith(PREFIX) and name not in _KNOWN and name not in _NOT_SETTINGS:
            close = difflib.get_close_matches(name, sorted(_KNOWN), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            log.warning("unknown setting %s is ignored%s", name, hint)


def _show(value: Any, *, redact: bool) -> str:
    if isinstance(value, Secret):
        return str(value) if redact else value.reveal()
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    if isinstance(value, tuple):
        return ",".join(_show(v, redact=redact) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return redact_url(text) if redact and "://" in text else text


def settings_table_markdown() -> str:
    """The settings reference as a Markdown table (the README embeds it; a test keeps it true)."""
    lines = ["| variable | default | description |", "|---|---|---|"]
    for spec in SPECS:
        default = spec.shown_default or _show(spec.default, redact=True)
        names = f"`{spec.variable}`"
        if spec.aliases:
            names += " (or " + ", ".join(f"`{a}`" for a in spec.aliases) + ")"
        if spec.is_secret:
            names += f" / `{spec.variable}_FILE`"
        shown = f"`{default}`" if default else "(empty)"
        lines.append(f"| {names} | {shown} | {spec.doc} |")
    lines.append(
        "| `CLICKHOUSE_HOST`, `CLICKHOUSE_PORT` | (unset) | Seed names: select "
        "`http://HOST:PORT` (port 8123 by default) when `FLOWFORGE_CLICKHOUSE_URL` is unset. |"
    )
    return "\n".join(lines) + "\n"


def load() -> Settings:
    """Settings from the process environment (entry points only; library code takes Settings)."""
    return Settings.from_env(os.environ)
