"""ClickHouse's HTTP interface over the embedded engine, served by the process that owns it.

The embedded engine cannot listen itself, and only one process may open its directory; so the
owner serves ClickHouse's HTTP protocol over it, and every other client (curl,
clickhouse-connect's ``get_client(host=, port=)``, SQL tools) talks to it as to a server:

- ``POST /`` (and ``POST /play``): the SQL in the body, or in ``?query=`` with the body appended
  (for an ``INSERT ... FORMAT f`` the rest of the body is the data, fed through
  ``FROM INFILE`` since the engine takes no input stream); ``GET /?query=`` runs read-only.
- URL parameters: ``database``, ``default_format`` (TabSeparated when the SQL has no
  ``FORMAT``), ``param_<name>`` for ``{name:Type}`` bindings, ``query_id``, and ClickHouse
  settings (``max_threads=2``); the transport's own parameters are accepted and ignored.
- Request bodies compressed per ``Content-Encoding``: lz4 (frame), zstd, gzip, deflate.
- ``GET /ping`` and a bare ``GET /`` answer ``Ok.``.
- ``GET /play``: a query page (play.html: SQL box, result table, error line, the tables of
  the database), self-contained and under a Content-Security-Policy that allows only its own
  script and requests back to this server; its script queries ``POST /`` like any client.
- Errors as ClickHouse words them: a non-2xx status, ``X-ClickHouse-Exception-Code`` and the
  body ``Code: N. DB::Exception: ...``; ``X-ClickHouse-Summary`` (JSON) on every answer.

- Users as ClickHouse takes them (basic auth, ``X-ClickHouse-User`` / ``X-ClickHouse-Key``,
  ``user`` / ``password``): the first is the application's (read-write; a request without
  credentials is it, with an empty password), others may be read-only (``readonly=2``, so the
  engine refuses their writes with its own READONLY error). Off loopback every user needs a
  password, or the server does not start.

Every request runs on its own engine connection (settings and ``USE`` never leak between
requests) in a thread of a bounded pool, apart from the event loop and the sink's thread; at
most ``max_queries`` run at once, and a few more wait before the server answers "too many
simultaneous queries". ``max_execution_time`` and ``max_result_bytes`` are set over the
request's own settings, and so, for queries (not inserts), are ``max_threads`` (at most
``query_threads``) and ``os_thread_priority`` (``query_nice``): on a small machine the sink's
inserts keep their cores. Request bodies are bounded before and after decompression.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import chdb
import lz4.frame
from aiohttp import web
from multidict import CIMultiDict

try:  # Python 3.14 has it in the standard library; clickhouse-connect brings the backport.
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - Python < 3.14
    from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]

from flowforge.core.errors import FlowForgeError

log = logging.getLogger(__name__)

# ClickHouse's error codes for what the HTTP layer itself refuses (ErrorCodes.cpp).
BAD_ARGUMENTS = 36
NOT_IMPLEMENTED = 48
SYNTAX_ERROR = 62
UNKNOWN_FORMAT = 73
TOO_MANY_SIMULTANEOUS_QUERIES = 202
TOO_MANY_ROWS_OR_BYTES = 396

#: Output formats whose streamed chunks concatenate into the whole result (no header, footer
#: or per-document framing), lower-cased.
CONCATENABLE_FORMATS = frozenset(
    name.lower()
    for name in (
        "Native", "RowBinary", "TabSeparated", "TSV", "TabSeparatedRaw", "TSVRaw", "CSV",
        "JSONEachRow", "JSONCompactEachRow", "JSONStringsEachRow", "JSONCompactStringsEachRow",
        "NDJSON", "JSONLines", "Values", "LineAsString", "RawBLOB", "Null",
    )
)  # fmt: skip
AUTHENTICATION_FAILED = 516
STD_EXCEPTION = 1001
CANNOT_DECOMPRESS = 271

# Parameters of ClickHouse's HTTP transport (and clickhouse-connect's) that are not engine
# settings: read here or ignored, never SET on the engine.
TRANSPORT_PARAMETERS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "quota_key",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_wait_end_of_query",
        "role",
        "user",
        "password",
    }
)

# Exception code -> HTTP status, as ClickHouse's HTTPHandler maps the common ones.
_STATUS_BY_CODE = {
    BAD_ARGUMENTS: 400,
    SYNTAX_ERROR: 400,
    UNKNOWN_FORMAT: 400,
    27: 400,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    26: 400,  # CANNOT_PARSE_QUOTED_STRING
    6: 400,  # CANNOT_PARSE_TEXT
    33: 400,  # CANNOT_READ_ALL_DATA
    38: 400,  # CANNOT_PARSE_DATE
    41: 400,  # CANNOT_PARSE_DATETIME
    53: 400,  # TYPE_MISMATCH
    70: 400,  # CANNOT_CONVERT_TYPE
    72: 400,  # CANNOT_PARSE_NUMBER
    115: 400,  # UNKNOWN_SETTING
    117: 400,  # INCORRECT_DATA
    456: 400,  # UNKNOWN_QUERY_PARAMETER
    457: 400,  # BAD_QUERY_PARAMETER
    CANNOT_DECOMPRESS: 400,
    46: 404,  # UNKNOWN_FUNCTION
    47: 404,  # UNKNOWN_IDENTIFIER
    50: 404,  # UNKNOWN_TYPE
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
    16: 404,  # NO_SUCH_COLUMN_IN_TABLE
    AUTHENTICATION_FAILED: 401,
    164: 403,  # READONLY
    497: 403,  # ACCESS_DENIED
    NOT_IMPLEMENTED: 501,
    TOO_MANY_SIMULTANEOUS_QUERIES: 503,
}

_CODE = re.compile(r"Code: (\d+)\.")
_PREFIX = re.compile(r"\s*Code: \d+\. DB::Exception: ")
_VERSION_TAIL = re.compile(r" \(version [0-9.]+\)(?=\.|$)")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMAT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    "lz4": lz4.frame.LZ4FrameDecompressor,
    "zstd": zstd.ZstdDecompressor,
    "gzip": lambda: zlib.decompressobj(wbits=31),
    "x-gzip": lambda: zlib.decompressobj(wbits=31),
    "deflate": zlib.decompressobj,
}
_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
}


def _play_page() -> tuple[bytes, str]:
    """play.html and its Content-Security-Policy: nothing loads from elsewhere, only the page's
    own inline script (by its hash) runs, and it may only send requests back to this server."""
    html = resources.files("flowforge.core").joinpath("play.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    )
    policy = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode(), policy


PLAY_PAGE, PLAY_POLICY = _play_page()


class QueryError(Exception):
    """A request the server refuses, with ClickHouse's error code (and so its HTTP status)."""

    def __init__(self, code: int, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or status_of(code)

    @property
    def body(self) -> str:
        return f"Code: {self.code}. DB::Exception: {self}"


class HttpServeError(FlowForgeError):
    """The HTTP interface cannot start (address taken, non-loopback bind without users)."""


@dataclass(frozen=True)
class HttpUser:
    """A user of the HTTP interface: read-write (the application) or read-only (Grafana)."""

    name: str
    password: str = field(repr=False)
    readonly: bool = False


APPLICATION_DEFAULT: Final = HttpUser("default", "")


@dataclass
class _Statement:
    """One request's statement, split for the engine."""

    sql: str  # what the engine runs
    output_format: str  # what it answers in (for the headers)
    is_insert: bool = False
    data: bytes | None = None  # the rows of INSERT ... FORMAT f, fed through FROM INFILE
    settings: str = ""  # an INSERT's SETTINGS clause, which goes after FROM INFILE


@dataclass
class _Request:
    """What a query thread needs of one HTTP request (decoded there, off the event loop)."""

    text_head: bytes  # ?query=, the body follows it
    body: bytes
    encoding: str
    default_format: str
    database: str
    settings: dict[str, str]
    bindings: dict[str, str]


@dataclass
class _Result:
    body: bytes
    output_format: str
    summary: dict[str, str]


def status_of(code: int) -> int:
    """The HTTP status ClickHouse answers an exception code with (500 for the rest)."""
    return _STATUS_BY_CODE.get(code, 500)


def top_level_words(sql: str) -> Iterator[tuple[str, int, int]]:
    """The bare words of ``sql`` outside quotes, comments and parentheses: (upper-cased word,
    start, end). Enough to find an INSERT's FORMAT and SETTINGS clauses and where its data
    starts, whatever its column list or string literals hold."""
    i, depth, n = 0, 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            i += 1
            while i < n and sql[i] != ch:
                i += 2 if sql[i] == "\\" else 1
            i += 1
        elif sql.startswith("--", i) or ch == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == "(":
            depth += 1
            i += 1
        elif ch == ")":
            depth = max(0, depth - 1)
            i += 1
        elif ch.isalpha() or ch == "_":
            start = i
            while i < n and (sql[i].isalnum() or sql[i] == "_"):
                i += 1
            if depth == 0:
                yield sql[start:i].upper(), start, i
        else:
            i += 1


def split_statement(text: bytes, default_format: str) -> _Statement:
    """Split a request's query text (``?query=`` + body) into the engine's statement: for
    ``INSERT ... FORMAT f`` the data after the format name is cut off, to be read from a file.
    Refuses ``INFILE``/``OUTFILE``, which would read or write the server's own files, and Kafka
    engine tables, after which the embedded engine cannot reopen its directory (the worker
    creates them, with a workaround, in kafka-engine sink mode)."""
    head = text[:1_048_576].decode("utf-8", errors="replace")
    words = list(top_level_words(head))
    names = [w for w, _, _ in words]
    if not names:
        raise QueryError(SYNTAX_ERROR, "Empty query. (SYNTAX_ERROR)")
    for banned in ("INFILE", "OUTFILE"):
        if banned in names:
            raise QueryError(
                NOT_IMPLEMENTED,
                f"{banned} reads or writes the server's files; send data in the request body "
                "(INSERT INTO t FORMAT f, then the rows) and read results from the response. "
                "(NOT_IMPLEMENTED)",
            )
    if names[0] in ("CREATE", "ATTACH", "REPLACE") and any(
        a == "ENGINE" and b == "KAFKA" for a, b in itertools.pairwise(names)
    ):
        raise QueryError(
            NOT_IMPLEMENTED,
            "Kafka engine tables are not created over the embedded engine's HTTP interface: "
            "the engine could not open its directory again after one; with "
            "FLOWFORGE_SINK_MODE=kafka-engine the worker creates them itself. (NOT_IMPLEMENTED)",
        )
    is_insert = names[0] == "INSERT"
    format_at = next((k for k, w in enumerate(names) if w == "FORMAT"), None)
    if format_at is not None and format_at + 1 < len(words):
        _, fmt_start, fmt_end = words[format_at + 1]
        output = head[fmt_start:fmt_end]
    else:
        output, fmt_end = default_format, -1
    if not is_insert or format_at is None or fmt_end < 0:
        try:
            sql = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise QueryError(
                SYNTAX_ERROR, f"the query is not valid UTF-8 (byte {exc.start}). (SYNTAX_ERROR)"
            ) from None
        if "\x00" in sql:
            raise QueryError(SYNTAX_ERROR, "the query holds a NUL byte. (SYNTAX_ERROR)")
        return _Statement(sql, output if not is_insert else "TabSeparated", is_insert)
    # INSERT INTO t [(cols)] [SETTINGS ...] FORMAT f <data>: the data starts after one
    # whitespace character following the format name (ClickHouse's own rule).
    head_bytes_len = len(head[:fmt_end].encode("utf-8"))
    data = text[head_bytes_len:]
    if data[:1] in (b" ", b"\t", b"\r"):
        data = data[1:]
    if data[:1] == b"\n":
        data = data[1:]
    settings_at = next((s for w, s, _ in words if w == "SETTINGS"), None)
    fmt_keyword_start = words[format_at][1]
    if settings_at is not None and settings_at < fmt_keyword_start:
        target, settings = head[:settings_at], head[settings_at:fmt_keyword_start]
    else:
        target, settings = head[:fmt_keyword_start], ""
    if not _FORMAT_NAME.match(output):
        raise QueryError(UNKNOWN_FORMAT, f"Unknown input format {output!r}. (UNKNOWN_FORMAT)")
    return _Statement(target.rstrip(), output, True, data, settings.strip())


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """A request body decoded per its Content-Encoding (identity, lz4, zstd, gzip, deflate), at
    most ``limit`` bytes once decoded (a small body can expand without bound)."""
    names = [e.strip().lower() for e in encoding.split(",") if e.strip()]
    for name in reversed(names):
        if name == "identity":
            continue
        make = _DECOMPRESSORS.get(name)
        if make is None:
            raise QueryError(
                NOT_IMPLEMENTED,
                f"Unknown compression method '{name}' in Content-Encoding; supported: "
                "identity, lz4, zstd, gzip, deflate. (NOT_IMPLEMENTED)",
            )
        decoder = make()
        try:
            body = decoder.decompress(body, limit + 1)
        except Exception as exc:  # noqa: BLE001 - each codec raises its own error type
            raise QueryError(
                CANNOT_DECOMPRESS,
                f"cannot decompress the request body as {name}: {exc}. (CANNOT_DECOMPRESS)",
            ) from None
        if len(body) > limit:
            raise QueryError(
                BAD_ARGUMENTS,
                f"the request body exceeds {limit} bytes once decompressed. (BAD_ARGUMENTS)",
                status=413,
            )
        if not decoder.eof:
            raise QueryError(
                CANNOT_DECOMPRESS,
                f"the request body ends inside its {name} stream. (CANNOT_DECOMPRESS)",
            )
    return body


class ClickHouseHttpServer:
    """ClickHouse's HTTP interface over an embedded engine directory, on its own thread.

    ``start()`` binds (raising HttpServeError if it cannot) and serves until ``close()``.
    """

    def __init__(
        self,
        path: Path,
        *,
        bind: str = "127.0.0.1",
        port: int = 8123,
        database: str = "default",
        users: tuple[HttpUser, ...] = (APPLICATION_DEFAULT,),
        max_queries: int = 4,
        max_waiting: int = 16,
        max_execution_s: int = 60,
        max_result_bytes: int = 256 * 1024 * 1024,
        max_body_bytes: int = 64 * 1024 * 1024,
        query_threads: int | None = None,
        query_nice: int = 0,
    ) -> None:
        if not users:
            raise ValueError("the HTTP interface needs at least its application user")
        self.path = Path(path)
        self.bind = bind
        self.port = port
        self.database = database
        self.users = {user.name: user for user in users}
        self.application = users[0]  # a request without credentials is this user
        self.max_execution_s = max_execution_s
        self.max_result_bytes = max_result_bytes
        self.max_queries = max_queries
        self.max_waiting = max_waiting
        self.max_body_bytes = max_body_bytes
        self.query_threads = query_threads
        self.query_nice = query_nice
        self._pool = ThreadPoolExecutor(max_queries, thread_name_prefix="clickhouse-http")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None
        self._in_flight = 0
        self._tmp = Path(tempfile.mkdtemp(prefix="flowforge-clickhouse-http-"))
        self._version = ""
        self._timezone = "UTC"

    @property
    def url(self) -> str:
        host = self.bind if self.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    @property
    def in_flight(self) -> int:
        """Queries running or waiting for a slot now."""
        return self._in_flight

    def start(self) -> None:
        """Bind and serve on a thread of its own; HttpServeError if the address is unusable."""
        open_users = sorted(user.name for user in self.users.values() if not user.password)
        if open_users and not _is_loopback(self.bind):
            raise HttpServeError(
                f"FLOWFORGE_CLICKHOUSE_HTTP_BIND={self.bind}: off loopback every user of the "
                f"HTTP interface needs a password, and {', '.join(open_users)} has none (set "
                "FLOWFORGE_CLICKHOUSE_PASSWORD_FILE and FLOWFORGE_CLICKHOUSE_HTTP_READONLY_"
                "PASSWORD_FILE, or bind to 127.0.0.1)"
            )
        version = self._run_on_engine("SELECT version(), timezone()", "TabSeparated", {}, {})
        self._version, _, tz = version.body.decode().strip().partition("\t")
        self._timezone = tz or "UTC"
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, failure), name="clickhouse-http", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self.close()
            exc = failure[0]
            raise HttpServeError(
                f"cannot serve ClickHouse's HTTP interface on {self.bind}:{self.port}: {exc}; "
                "set FLOWFORGE_CLICKHOUSE_HTTP_PORT to a free port (0 turns it off)"
            ) from exc
        log.info("clickhouse: HTTP interface on %s (engine %s)", self.url, self.path)

    def close(self) -> None:
        """Stop serving, wait for running queries, remove the temporary files."""
        loop, runner = self._loop, self._runner
        if loop is not None and runner is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self._tmp, ignore_errors=True)

    # --- the event loop's thread --------------------------------------------------------

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._slots = asyncio.Semaphore(self.max_queries)
            app = web.Application(client_max_size=self.max_body_bytes)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.bind, self.port, reuse_address=True)
            loop.run_until_complete(site.start())
            if self.port == 0:
                self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        except (OSError, RuntimeError) as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        headers = CIMultiDict(
            {
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Server-Display-Name": "flowforge",
                "X-ClickHouse-Timezone": self._timezone,
            }
        )
        if request.path.rstrip("/") == "/play" and request.method in ("GET", "HEAD"):
            headers["Content-Type"] = "text/html; charset=UTF-8"
            headers["Content-Security-Policy"] = PLAY_POLICY
            headers["X-Content-Type-Options"] = "nosniff"
            return web.Response(status=200, body=PLAY_PAGE, headers=headers)
        try:
            result = await self._answer(request)
        except Exception as exc:  # noqa: BLE001 - whatever a request does, the server answers
            error = _as_query_error(exc)
            headers["X-ClickHouse-Exception-Code"] = str(error.code)
            headers["Content-Type"] = "text/plain; charset=UTF-8"
            body = (error.body + "\n").encode()
            return web.Response(status=error.status, body=body, headers=headers)
        headers["X-ClickHouse-Format"] = result.output_format
        headers["X-ClickHouse-Summary"] = json.dumps(result.summary)
        headers["Content-Type"] = _CONTENT_TYPES.get(
            result.output_format, "application/octet-stream"
        )
        return web.Response(status=200, body=result.body, headers=headers)

    async def _answer(self, request: web.Request) -> _Result:
        path = request.path.rstrip("/") or "/"
        if path == "/ping" and request.method in ("GET", "HEAD"):
            return _Result(b"Ok.\n", "TabSeparated", {})
        if path not in ("/", "/play"):
            raise QueryError(
                BAD_ARGUMENTS, f"There is no handle {request.path}: use / or /play. (BAD_ARGUMENTS)"
            )
        if request.method not in ("GET", "POST", "HEAD"):
            raise QueryError(
                BAD_ARGUMENTS,
                f"method {request.method} is not served: use GET or POST. (BAD_ARGUMENTS)",
            )
        params = request.query
        user = self._authenticate(request)
        body = await request.read() if request.method == "POST" else b""
        query = params.get("query", "")
        if request.method != "POST" and not query:
            return _Result(b"Ok.\n", "TabSeparated", {})
        settings = {
            k: v
            for k, v in params.items()
            if k not in TRANSPORT_PARAMETERS and not k.startswith("param_")
        }
        for name in settings:
            if not _SETTING_NAME.match(name):
                raise QueryError(BAD_ARGUMENTS, f"{name!r} is not a setting name. (BAD_ARGUMENTS)")
        # The limits and read-only mode go last, over the request's own settings.
        wanted_readonly = settings.pop("readonly", "0")
        settings["max_execution_time"] = str(self.max_execution_s)
        settings["max_result_bytes"] = str(self.max_result_bytes)
        settings["result_overflow_mode"] = "throw"
        if user.readonly or request.method == "GET":  # ClickHouse: GET requests only read
            settings["readonly"] = "1" if wanted_readonly.strip() == "1" else "2"
        elif wanted_readonly.strip() != "0":
            settings["readonly"] = wanted_readonly
        request_ = _Request(
            text_head=query.encode(),
            body=body,
            encoding=request.headers.get("Content-Encoding", ""),
            default_format=params.get("default_format", "TabSeparated"),
            database=params.get("database") or self.database,
            settings=settings,
            bindings={k[6:]: v for k, v in params.items() if k.startswith("param_")},
        )
        if self._in_flight >= self.max_queries + self.max_waiting:
            raise QueryError(
                TOO_MANY_SIMULTANEOUS_QUERIES,
                f"Too many simultaneous queries. Maximum: {self.max_queries} running and "
                f"{self.max_waiting} waiting. (TOO_MANY_SIMULTANEOUS_QUERIES)",
            )
        assert self._slots is not None
        self._in_flight += 1
        try:
            async with self._slots:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._pool, self._execute, request_)
        finally:
            self._in_flight -= 1

    # --- the query threads --------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> HttpUser:
        """The request's user, by ClickHouse's means: HTTP basic auth, X-ClickHouse-User /
        X-ClickHouse-Key, or ``user`` / ``password`` parameters; none: the application user
        with an empty password."""
        name, key = self.application.name, ""
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise QueryError(
                    AUTHENTICATION_FAILED,
                    "the Authorization header is not valid basic auth. (AUTHENTICATION_FAILED)",
                ) from None
            name, _, key = decoded.partition(":")
        elif "X-ClickHouse-User" in request.headers:
            name = request.headers["X-ClickHouse-User"]
            key = request.headers.get("X-ClickHouse-Key", "")
        elif "user" in request.query:
            name, key = request.query["user"], request.query.get("password", "")
        user = self.users.get(name)
        if user is None or not hmac.compare_digest(user.password.encode(), key.encode()):
            shown = name if len(name) <= 64 and name.isprintable() else "(unprintable)"
            raise QueryError(
                AUTHENTICATION_FAILED,
                f"{shown}: Authentication failed: password is incorrect, or there is no user "
                "with such name. (AUTHENTICATION_FAILED)",
            )
        return user

    def _execute(self, request: _Request) -> _Result:
        body = decompress(request.body, request.encoding, self.max_body_bytes)
        head = request.text_head
        text = head + (b"\n" + body if head and body else body)
        statement = split_statement(text, request.default_format)
        database, settings, bindings = request.database, request.settings, request.bindings
        if not statement.is_insert:
            settings = self._bounded_query(settings)
        if statement.data is None:
            return self._run_on_engine(
                statement.sql, statement.output_format, settings, bindings, database=database
            )
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".rows")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(statement.data)
            quoted = "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
            sql = (
                f"{statement.sql} FROM INFILE {quoted} {statement.settings} "
                f"FORMAT {statement.output_format}"
            )
            result = self._run_on_engine(sql, "TabSeparated", settings, {}, database=database)
        finally:
            Path(name).unlink(missing_ok=True)
        return _Result(b"", "TabSeparated", result.summary)

    def _bounded_query(self, settings: Mapping[str, str]) -> dict[str, str]:
        """A query's settings (an insert's stay as sent) with the interface's bounds over them:
        at most ``query_threads`` threads (``max_threads``), at nice ``query_nice``
        (``os_thread_priority``), so the sink's inserts, at nice 0, get the cores first."""
        bounded = dict(settings)
        if self.query_threads is not None:
            wanted = bounded.get("max_threads", "").strip()
            fits = wanted.isdigit() and 0 < int(wanted) <= self.query_threads
            bounded["max_threads"] = wanted if fits else str(self.query_threads)
        if self.query_nice:
            bounded["os_thread_priority"] = str(self.query_nice)
        return bounded

    def _run_on_engine(
        self,
        sql: str,
        output_format: str,
        settings: Mapping[str, str],
        bindings: Mapping[str, str],
        *,
        database: str | None = None,
    ) -> _Result:
        started = time.perf_counter()
        conn = chdb.connect(str(self.path))  # type: ignore[no-untyped-call]
        try:
            if database and database != "default":
                _engine_call(conn, f"USE `{database.replace('`', '``')}`", "TabSeparated")
            for name, value in settings.items():
                quoted = value.replace("\\", "\\\\").replace("'", "\\'")
                _engine_call(conn, f"SET {name} = '{quoted}'", "TabSeparated")
            chunks = self._stream(conn, sql, output_format, dict(bindings))
            if chunks is not None and (
                len(chunks) <= 1 or output_format.lower() in CONCATENABLE_FORMATS
            ):
                body = b"".join(chunk.get_memview().view() for chunk in chunks)
                summary = {"result_bytes": str(len(body))}
            else:  # not streamed (INSERT, DDL, SET, ...), or streamed as several documents
                result = _engine_call(conn, sql, output_format, dict(bindings))
                body = bytes(result.bytes() or b"")
                summary = {
                    "read_rows": str(result.rows_read()),
                    "read_bytes": str(result.bytes_read()),
                    "written_rows": str(result.rows_written()),
                    "written_bytes": str(result.bytes_written()),
                    "result_bytes": str(len(body)),
                }
            summary["elapsed_ns"] = str(int((time.perf_counter() - started) * 1e9))
            return _Result(body, output_format, summary)
        finally:
            conn.close()

    def _stream(
        self, conn: Any, sql: str, output_format: str, bindings: dict[str, str]
    ) -> list[Any] | None:
        """The result of ``sql`` read chunk by chunk (the engine's result blocks, not copied),
        refused (TOO_MANY_ROWS_OR_BYTES) once it grows past ``max_result_bytes``; None for a
        statement the engine does not stream.

        Each chunk is a whole document of the format: chunks of a format with a header or a
        footer (JSON, CSVWithNames, Parquet, ...) do not concatenate, so for a result of several
        chunks in such a format the caller runs the query again, whole, knowing its size.

        The engine's own max_result_bytes misses results computed per row: a query of 1,000-byte
        strings over a million rows returned 1.27 GB under a 256 MiB limit, and such queries
        grew the owning worker until the kernel killed it. Counting what is sent bounds it.
        The blocks are counted by their size and stay in the engine's memory until the answer
        is joined: copying each into Python held the interpreter's lock, and the sink sharing
        this process slowed to half its speed while a client asked for an over-limit result.
        """
        try:
            stream = conn.send_query(sql, output_format, params=bindings)
        except Exception as exc:  # noqa: BLE001 - chdb raises RuntimeError/ChdbError
            if "Streaming query is not supported" in str(exc):
                return None
            raise _query_error(exc) from None
        chunks: list[Any] = []
        size = 0
        try:
            for chunk in stream:
                size += chunk.size()
                if size > self.max_result_bytes:
                    stream.cancel()
                    raise QueryError(
                        TOO_MANY_ROWS_OR_BYTES,
                        f"Limit for result exceeded, max bytes: {self.max_result_bytes}, "
                        f"current bytes: {size}. (TOO_MANY_ROWS_OR_BYTES)",
                    )
                chunks.append(chunk)
        except QueryError:
            raise
        except Exception as exc:  # noqa: BLE001 - an error while the query runs (a timeout, ...)
            raise _query_error(exc) from None
        finally:
            stream.close()
        return chunks


def _as_query_error(exc: Exception) -> QueryError:
    if isinstance(exc, QueryError):
        return exc
    if isinstance(exc, web.HTTPException):  # aiohttp's own refusals (a body over the limit)
        return QueryError(BAD_ARGUMENTS, f"{exc.reason}. (BAD_ARGUMENTS)", status=exc.status)
    log.error("clickhouse http: request failed", exc_info=exc)
    return QueryError(STD_EXCEPTION, f"{type(exc).__name__}: {exc}. (STD_EXCEPTION)", status=500)


def _engine_call(conn: Any, sql: str, fmt: str, params: dict[str, str] | None = None) -> Any:
    try:
        return conn.query(sql, fmt, params=params or {})
    except Exception as exc:  # noqa: BLE001 - chdb raises RuntimeError/ChdbError with the text
        raise _query_error(exc) from None


def _query_error(exc: Exception) -> QueryError:
    """The engine's exception as ClickHouse's error (its code and message)."""
    text = str(exc)
    start = text.find("Code: ")
    message = text[start:].strip() if start >= 0 else text.strip()
    match = _CODE.match(message)
    if match is None:
        return QueryError(BAD_ARGUMENTS, message or type(exc).__name__)
    detail = message
    while (prefix := _PREFIX.match(detail)) is not None:  # chdb nests "Code: N. ..." thrice
        detail = detail[prefix.end() :]
    detail = _VERSION_TAIL.sub("", detail)
    return QueryError(int(match.group(1)), detail.strip())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
