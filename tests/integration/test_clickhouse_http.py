"""ClickHouse's HTTP interface over the embedded engine: curl and clickhouse-connect from other
processes, compressed bodies, ClickHouse-style errors, the bound on concurrent queries, and a
sink worker serving it."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lz4.frame
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from flowforge.core.clickhouse import OWNER_FILE, embedded_path, migrate
from flowforge.core.clickhouse_http import ClickHouseHttpServer, HttpServeError, HttpUser
from tests.support.browser import headless_chromium
from tests.support.pipeline import Pipeline, metadata_record
from tests.support.unique import free_port

try:
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]


@pytest.fixture
def served(engine_url: str, database: Any) -> Iterator[tuple[ClickHouseHttpServer, Any]]:
    """The HTTP interface on a free port over the session's engine, its default database a
    fresh one holding the FlowForge schema and three images."""
    migrate(database, ttl_days=0)
    now = datetime.now(tz=UTC)
    database.insert(
        "images_metadata",
        [(f"img-{i}", "cam-1", now, now, "processed", 40.0 + i) for i in range(3)],
        column_names=["image_id", "source_id", "captured_at", "processed_at", "status",
                      "brightness"],
    )  # fmt: skip
    path = embedded_path(engine_url)
    assert path is not None
    server = ClickHouseHttpServer(path, port=free_port(), database=database.database)
    server.start()
    yield server, database
    server.close()


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", *args], capture_output=True, text=True, timeout=60, check=False
    )


def _shell(command: str) -> subprocess.CompletedProcess[str]:
    """Run a command line as a user types it (the seed's curl commands, verbatim)."""
    return subprocess.run(  # noqa: S602
        command, shell=True, capture_output=True, text=True, timeout=60, check=True
    )


def _post(
    server: ClickHouseHttpServer,
    body: bytes,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    url = server.url + "/" + (f"?{query}" if query else "")
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_seed_commands_work_verbatim(served: tuple[ClickHouseHttpServer, Any]) -> None:
    """The seed's two curl commands, verbatim but for the port, answer the table's rows and its
    count in TabSeparated."""
    server, _ = served
    seed_play = 'curl http://localhost:8123/play -d "SELECT * FROM images_metadata LIMIT 10"'
    seed_count = "curl 'http://localhost:8123/' -d 'SELECT COUNT(*) FROM images_metadata'"
    play = _shell(seed_play.replace(":8123/", f":{server.port}/"))
    lines = play.stdout.splitlines()
    assert len(lines) == 3
    assert sorted(line.split("\t")[0] for line in lines) == ["img-0", "img-1", "img-2"]
    count = _shell(seed_count.replace(":8123/", f":{server.port}/"))
    assert count.stdout == "3\n"


CLIENT_SCRIPT = """
import json, sys
import clickhouse_connect
port, compress = int(sys.argv[1]), sys.argv[2] == "1"
client = clickhouse_connect.get_client(host="127.0.0.1", port=port, compress=compress)
out = {}
out["query"] = client.query(
    "SELECT image_id, brightness FROM images_metadata ORDER BY image_id").result_rows
df = client.query_df("SELECT image_id, brightness FROM images_metadata ORDER BY image_id")
out["df"] = [list(df.columns), df["image_id"].tolist(), df["brightness"].tolist()]
client.command("CREATE TABLE http_t (a UInt32, s String) ENGINE = MergeTree ORDER BY a")
summary = client.insert("http_t", [(i, f"row-{i}") for i in range(1000)], column_names=["a", "s"])
out["written"] = summary.written_rows
out["command"] = client.command("SELECT count() FROM http_t")
out["bound"] = client.query(
    "SELECT s FROM http_t WHERE a = {a:UInt32}", parameters={"a": 7}).result_rows
out["bound_client_side"] = client.query(
    "SELECT count() FROM http_t WHERE s LIKE %(p)s", parameters={"p": "row-1%"}).result_rows
client.command("DROP TABLE http_t")
print(json.dumps(out))
"""


@pytest.mark.parametrize("compress", [True, False], ids=["compressed", "plain"])
def test_clickhouse_connect_from_another_process(
    served: tuple[ClickHouseHttpServer, Any], compress: bool
) -> None:
    """clickhouse-connect's get_client(host, port) in another process runs query, query_df,
    insert, command and bound parameters (server-side and client-side), compressed and not."""
    server, _ = served
    result = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, str(server.port), "1" if compress else "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["query"] == [["img-0", 40.0], ["img-1", 41.0], ["img-2", 42.0]]
    assert out["df"] == [["image_id", "brightness"], ["img-0", "img-1", "img-2"],
                         [40.0, 41.0, 42.0]]  # fmt: skip
    assert out["written"] == 1000
    assert out["command"] == 1000
    assert out["bound"] == [["row-7"]]
    assert out["bound_client_side"] == [[111]]  # row-1, row-10..19, row-100..199


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("lz4", lz4.frame.compress), ("zstd", zstd.compress), ("gzip", gzip.compress)],
)
def test_compressed_insert_body(
    served: tuple[ClickHouseHttpServer, Any], tmp_path: Path, encoding: str, compress: Any
) -> None:
    """An insert whose data comes in a body compressed per Content-Encoding (sent by curl) lands
    every row, and the answer's X-ClickHouse-Summary counts them."""
    server, database = served
    table = f"enc_{encoding}"
    database.command(f"CREATE TABLE {table} (a UInt32, s String) ENGINE = MergeTree ORDER BY a")
    body = tmp_path / "rows.bin"
    body.write_bytes(compress("".join(f"{i}\tname {i}\n" for i in range(500)).encode()))
    reply = _curl(
        "-D", "-", "--data-binary", f"@{body}", "-H", f"Content-Encoding: {encoding}",
        f"{server.url}/?query=INSERT%20INTO%20{table}%20FORMAT%20TabSeparated",
    )  # fmt: skip
    assert " 200 " in reply.stdout.splitlines()[0], reply.stdout
    summary_line = next(
        line for line in reply.stdout.splitlines() if line.startswith("X-ClickHouse-Summary:")
    )
    summary = json.loads(summary_line.split(":", 1)[1])
    assert summary["written_rows"] == "500"
    rows = database.query(f"SELECT count(), sum(a) FROM {table}").result_rows  # noqa: S608
    assert rows == [(500, sum(range(500)))]


def test_query_parameters_database_and_default_format(
    served: tuple[ClickHouseHttpServer, Any],
) -> None:
    """``database``, ``default_format`` and ``param_<name>`` URL parameters apply; a FORMAT
    clause wins over default_format; GET /ping answers Ok."""
    server, database = served
    status, headers, body = _post(
        server,
        b"SELECT image_id, {n:UInt8} AS n FROM images_metadata ORDER BY image_id LIMIT 1",
        f"database={database.database}&default_format=JSONEachRow&param_n=7",
    )
    assert status == 200
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert json.loads(body) == {"image_id": "img-0", "n": 7}
    status, headers, body = _post(server, b"SELECT 1 AS x FORMAT CSVWithNames",
                                  "default_format=JSONEachRow")  # fmt: skip
    assert (status, body) == (200, b'"x"\n1\n')
    assert headers["X-ClickHouse-Format"] == "CSVWithNames"
    ping = _curl("-i", f"{server.url}/ping")
    assert ping.stdout.endswith("Ok.\n")


@pytest.mark.parametrize(
    ("body", "query", "headers", "status", "code"),
    [
        (b"SELEC 1", "", {}, 400, 62),
        (b"SELECT 1", "", {"Content-Encoding": "br"}, 501, 48),
        (b"\x04\x22\x4d\x18garbage", "", {"Content-Encoding": "lz4"}, 400, 271),
        (b"\xff\xfe\x00\x81 not text", "", {}, 400, 62),
        (b"SELECT 1 FORMAT NoSuchFormat", "", {}, 400, 73),
        (b"SELECT * FROM no_such_table", "", {}, 404, 60),
        (b"", "", {}, 400, 62),
        (b"INSERT INTO images_metadata FROM INFILE '/etc/passwd' FORMAT LineAsString", "", {},
         501, 48),
        (b"SELECT 1", "max_threads=notanumber", {}, 400, 27),
        (b"SELECT 1", "bad%20name=1", {}, 400, 36),
        (b"CREATE TABLE k (a String) ENGINE = Kafka SETTINGS kafka_broker_list = '127.0.0.1:1',"
         b" kafka_topic_list = 't', kafka_group_name = 'g', kafka_format = 'JSONEachRow'", "", {},
         501, 48),
    ],
    ids=["bad-sql", "unknown-encoding", "corrupt-lz4", "not-utf8", "unknown-format",
         "unknown-table", "empty", "infile", "bad-setting-value", "bad-setting-name",
         "kafka-engine-table"],
)  # fmt: skip
def test_malformed_requests_get_clickhouse_errors(
    served: tuple[ClickHouseHttpServer, Any],
    body: bytes,
    query: str,
    headers: dict[str, str],
    status: int,
    code: int,
) -> None:
    """A malformed request (or a Kafka engine table, which would leave the embedded engine
    unable to open its directory) gets ClickHouse's error (status, X-ClickHouse-Exception-Code,
    body ``Code: N. DB::Exception: ...``) and the server keeps answering queries."""
    server, _ = served
    got_status, got_headers, got_body = _post(server, body, query, headers)
    assert (got_status, got_headers.get("X-ClickHouse-Exception-Code")) == (status, str(code)), (
        got_body
    )
    assert got_body.decode().startswith(f"Code: {code}. DB::Exception: ")
    assert _post(server, b"SELECT count() FROM images_metadata")[::2] == (200, b"3\n")


def test_get_requests_are_read_only(served: tuple[ClickHouseHttpServer, Any]) -> None:
    """A GET runs its query read-only: a SELECT answers, an INSERT is refused with READONLY."""
    server, _ = served
    ok = _curl(f"{server.url}/?query=SELECT%2040%2B2")
    assert ok.stdout == "42\n"
    refused = _curl(
        "-w", "%{http_code}",
        f"{server.url}/?query=INSERT%20INTO%20images_metadata%20(image_id)%20VALUES%20('x')",
    )  # fmt: skip
    assert refused.stdout.startswith("Code: 164. DB::Exception:")
    assert refused.stdout.endswith("403")


def test_concurrent_queries_are_bounded(engine_url: str, database: Any) -> None:
    """With one query slot and no waiting room, a query sent while another runs is refused
    with TOO_MANY_SIMULTANEOUS_QUERIES (503), and the running one completes."""
    path = embedded_path(engine_url)
    assert path is not None
    server = ClickHouseHttpServer(path, port=free_port(), max_queries=1, max_waiting=0)
    server.start()
    try:
        slow: list[tuple[int, dict[str, str], bytes]] = []
        runner = threading.Thread(
            target=lambda: slow.append(
                _post(server, b"SELECT sum(sleepEachRow(0.5)) FROM numbers(4)")
            )
        )
        runner.start()
        deadline = time.monotonic() + 10
        while server.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, headers, _body = _post(server, b"SELECT 1")  # the slow query takes 2 s
        runner.join(timeout=60)
        assert (status, headers.get("X-ClickHouse-Exception-Code")) == (503, "202")
        assert slow[0][::2] == (200, b"0\n")
    finally:
        server.close()


def test_refuses_unusable_addresses(engine_url: str, database: Any) -> None:
    """Binding off loopback (no users or passwords yet) or to a port in use fails at start with
    an error naming the setting."""
    path = embedded_path(engine_url)
    assert path is not None
    with pytest.raises(HttpServeError, match=r"FLOWFORGE_CLICKHOUSE_HTTP_BIND=0\.0\.0\.0"):
        ClickHouseHttpServer(path, bind="0.0.0.0", port=free_port()).start()  # noqa: S104
    first = ClickHouseHttpServer(path, port=free_port())
    first.start()
    try:
        with pytest.raises(HttpServeError, match="FLOWFORGE_CLICKHOUSE_HTTP_PORT"):
            ClickHouseHttpServer(path, port=first.port).start()
        assert _post(first, b"SELECT 1")[::2] == (200, b"1\n")
    finally:
        first.close()


def test_sink_worker_serves_its_engine(pipeline: Pipeline) -> None:
    """A sink worker on the embedded engine serves ClickHouse's HTTP interface on
    FLOWFORGE_CLICKHOUSE_HTTP_PORT, records it in the owner file, and answers the seed's count
    with the rows it wrote."""
    port = int(pipeline.env["FLOWFORGE_CLICKHOUSE_HTTP_PORT"])
    web_port = pipeline.start_worker(agents="sink")
    pipeline.wait_until(
        lambda: _curl(f"http://127.0.0.1:{port}/ping").stdout == "Ok.\n",
        "the worker's HTTP interface answers /ping",
    )
    owner = json.loads((pipeline.engine_path / OWNER_FILE).read_text())
    assert owner["http"] == f"http://127.0.0.1:{port}"
    pipeline.produce_metadata(metadata_record(i) for i in range(20))
    pipeline.wait_until(
        lambda: _curl(
            f"http://localhost:{port}/", "-d", "SELECT COUNT(*) FROM images_metadata"
        ).stdout == "20\n",
        "20 rows counted over HTTP",
    )  # fmt: skip
    assert pipeline.alive(web_port)


@pytest.fixture
def guarded(engine_url: str, database: Any) -> Iterator[ClickHouseHttpServer]:
    """The HTTP interface with a read-write user `flowforge` and a read-only user `grafana`,
    both with passwords, small limits (2 s, 100 kB results, 1 MiB bodies), over a fresh
    database holding a table t."""
    database.command("CREATE TABLE t (a UInt32) ENGINE = MergeTree ORDER BY a")
    path = embedded_path(engine_url)
    assert path is not None
    server = ClickHouseHttpServer(
        path,
        port=free_port(),
        database=database.database,
        users=(HttpUser("flowforge", "app-secret"), HttpUser("grafana", "ro-secret", True)),
        max_execution_s=2,
        max_result_bytes=100_000,
        max_body_bytes=1024 * 1024,
    )
    server.start()
    yield server
    server.close()


def _code(reply: tuple[int, dict[str, str], bytes]) -> tuple[int, str | None]:
    return reply[0], reply[1].get("X-ClickHouse-Exception-Code")


def test_users_and_passwords(guarded: ClickHouseHttpServer) -> None:
    """Without or with wrong credentials a request is refused (401, AUTHENTICATION_FAILED);
    the application user (basic auth) reads and writes; the read-only user (X-ClickHouse-User /
    Key) reads, and its INSERT or DDL gets ClickHouse's READONLY error even if it asks for
    readonly=0."""
    server = guarded
    assert _code(_post(server, b"SELECT 1")) == (401, "516")
    wrong = {"X-ClickHouse-User": "grafana", "X-ClickHouse-Key": "nope"}
    assert _code(_post(server, b"SELECT 1", headers=wrong)) == (401, "516")
    app = _curl("-u", "flowforge:app-secret", f"{server.url}/", "-d", "INSERT INTO t VALUES (1)")
    assert app.stdout == ""
    app = _curl("-u", "flowforge:app-secret", f"{server.url}/", "-d", "SELECT count() FROM t")
    assert app.stdout == "1\n"
    ro = {"X-ClickHouse-User": "grafana", "X-ClickHouse-Key": "ro-secret"}
    assert _post(server, b"SELECT count() FROM t", headers=ro)[::2] == (200, b"1\n")
    for sql, query in [
        (b"INSERT INTO t VALUES (2)", ""),
        (b"INSERT INTO t VALUES (2)", "readonly=0"),
        (b"CREATE TABLE t2 (a UInt8) ENGINE = Memory", ""),
        (b"DROP TABLE t", ""),
    ]:
        reply = _post(server, sql, query, headers=ro)
        assert _code(reply) == (403, "164"), reply
        assert b"Cannot execute query in readonly mode" in reply[2]
    assert _post(server, b"SELECT count() FROM t", headers=ro)[::2] == (200, b"1\n")


def test_read_only_user_through_clickhouse_connect(guarded: ClickHouseHttpServer) -> None:
    """clickhouse-connect logged in as the read-only user queries, and its insert fails with
    ClickHouse's READONLY error (code 164)."""
    script = (
        "import sys, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(host='127.0.0.1', port=int(sys.argv[1]),"
        " username='grafana', password='ro-secret')\n"
        "print(c.query('SELECT count() FROM t').result_rows)\n"
        "try:\n"
        "    c.insert('t', [(5,)], column_names=['a'])\n"
        "except Exception as exc:\n"
        "    print('refused', getattr(exc, 'code', None))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(guarded.port)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-2:] == ["[(0,)]", "refused 164"]


def test_limits(guarded: ClickHouseHttpServer, tmp_path: Path) -> None:
    """A query over max_execution_time (159) or max_result_bytes (396, wide computed strings
    too), or a body decompressing past the body limit (413), is refused, even when the request
    asks for more; the server keeps serving."""
    app = {"Authorization": "Basic Zmxvd2ZvcmdlOmFwcC1zZWNyZXQ="}  # flowforge:app-secret
    slow = b"SELECT sleepEachRow(0.5) FROM numbers(8) SETTINGS max_block_size = 1"
    assert _code(_post(guarded, slow, headers=app)) == (500, "159")
    big = b"SELECT * FROM numbers(1000000)"
    assert _code(_post(guarded, big, "max_result_bytes=0", headers=app)) == (500, "396")
    # Wide strings computed per row: the engine's own max_result_bytes let 1.27 GB through
    # here (and a worker grew to 23 GB and was killed); the server counts what it sends.
    wide = b"SELECT repeat('x', 1000) FROM numbers(1000000)"
    reply = _post(guarded, wide, headers=app)
    assert _code(reply) == (500, "396"), reply[2][:200]
    assert b"Limit for result exceeded, max bytes: 100000" in reply[2], reply[2][:200]
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    reply = _post(guarded, bomb, "query=INSERT%20INTO%20t%20FORMAT%20RowBinary",
                  headers={**app, "Content-Encoding": "gzip"})  # fmt: skip
    assert _code(reply) == (413, "36")
    assert _post(guarded, b"SELECT 1", headers=app)[::2] == (200, b"1\n")


def _busy_threads_by_nice() -> dict[int, int]:
    """CPU ticks this process's threads have used, summed per nice value."""
    ticks: dict[int, int] = {}
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue  # the thread ended
        # After the command: state(0) ... utime(11) stime(12) ... nice(16)
        nice = int(fields[16])
        ticks[nice] = ticks.get(nice, 0) + int(fields[11]) + int(fields[12])
    return ticks


def test_queries_run_on_bounded_threads_at_a_lower_priority_and_inserts_do_not(
    engine_url: str, database: Any
) -> None:
    """A query runs with at most the interface's threads (max_threads, a larger request is cut
    down, a smaller one kept) at its nice value (os_thread_priority): its CPU is spent on
    threads of that nice value. An insert keeps the sink's priority (0) and its threads."""
    database.command("CREATE TABLE p (priority Int64, threads String) ENGINE = Memory")
    path = embedded_path(engine_url)
    assert path is not None
    server = ClickHouseHttpServer(
        path, port=free_port(), database=database.database, query_threads=1, query_nice=10
    )
    server.start()
    try:
        asked = b"SELECT getSetting('max_threads'), getSetting('os_thread_priority')"
        assert _post(server, asked)[::2] == (200, b"1\t10\n")
        assert _post(server, asked, "max_threads=8")[::2] == (200, b"1\t10\n")
        many = ClickHouseHttpServer(
            path, port=free_port(), database=database.database, query_threads=4, query_nice=19
        )
        many.start()
        try:
            assert _post(many, asked, "max_threads=2")[::2] == (200, b"2\t19\n")
            assert _post(many, asked)[::2] == (200, b"4\t19\n")
        finally:
            many.close()
        insert = (
            b"INSERT INTO p SELECT getSetting('os_thread_priority'), "
            b"toString(getSetting('max_threads'))"
        )
        assert _post(server, insert)[0] == 200
        stored = database.query("SELECT priority, threads FROM p").result_rows
        assert stored[0][0] == 0, stored
        assert stored[0][1] != "1", stored
        # While a busy query runs, its CPU is burnt on threads at nice 10.
        busy = b"SELECT sum(cityHash64(number)) FROM numbers(3000000000)"
        replies: list[tuple[int, dict[str, str], bytes]] = []
        running = threading.Thread(target=lambda: replies.append(_post(server, busy)))
        before = _busy_threads_by_nice()
        running.start()
        time.sleep(1.5)
        during = _busy_threads_by_nice()
        running.join(timeout=120)
        assert replies, "the busy query did not answer"
        assert replies[0][0] == 200, replies[0][2][:200]
        spent = during.get(10, 0) - before.get(10, 0)
        assert spent >= 50, f"{spent} ticks at nice 10 in 1.5 s ({before} -> {during})"
    finally:
        server.close()


def _lock_wait_share(seconds: float) -> float:
    """The share of ``seconds`` a pure-Python loop in this thread spent neither running nor
    waiting for a CPU (the kernel's schedstat): that is, waiting for the interpreter's lock."""
    stat = Path("/proc/thread-self/schedstat")
    on_cpu, queued, _ = map(int, stat.read_text().split())
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            pass
    wall = time.perf_counter() - started
    on_cpu_after, queued_after, _ = map(int, stat.read_text().split())
    return 1 - (on_cpu_after - on_cpu + queued_after - queued) / 1e9 / wall


def test_an_over_limit_result_is_refused_without_holding_the_interpreter(
    engine_url: str, database: Any
) -> None:
    """While clients keep sending a query whose result runs past the result limit (256 MiB,
    the default), the server's own process keeps its interpreter: a Python loop in it waits
    for the interpreter's lock under 10 % of the time (copying each block into Python held the
    lock: the loop waited 40 % of the time; now 1-2 %)."""
    path = embedded_path(engine_url)
    assert path is not None
    server = ClickHouseHttpServer(path, port=free_port(), database=database.database)
    server.start()
    huge = b"SELECT repeat('x', 1000) FROM numbers(100000000)"
    stop = threading.Event()
    codes: list[tuple[int, str | None]] = []

    def load() -> None:
        while not stop.is_set():
            codes.append(_code(_post(server, huge)))

    try:
        clients = [threading.Thread(target=load) for _ in range(2)]
        for client in clients:
            client.start()
        time.sleep(0.5)
        waited = _lock_wait_share(6.0)
        stop.set()
        for client in clients:
            client.join(timeout=60)
    finally:
        server.close()
    assert codes, "no over-limit query answered"
    assert set(codes) == {(500, "396")}, codes
    assert waited < 0.1, f"the loop waited for the interpreter {waited:.0%} of the time"


def test_results_of_many_blocks_are_one_document_in_every_format(
    served: tuple[ClickHouseHttpServer, Any],
) -> None:
    """A result the engine produces in several blocks (200,000 rows) answers as one document:
    one JSON object with every row, one CSV header, every TabSeparated row."""
    server, _ = served
    sql = b"SELECT number FROM numbers(200000) FORMAT "
    status, _, body = _post(server, sql + b"JSONCompact")
    assert status == 200, body[:200]
    document = json.loads(body)
    assert document["rows"] == len(document["data"]) == 200_000
    status, _, body = _post(server, sql + b"CSVWithNames")
    lines = body.decode().splitlines()
    assert (status, lines[0], lines.count('"number"'), len(lines)) == (200, '"number"', 1, 200_001)
    status, _, body = _post(server, sql + b"TabSeparated")
    assert (status, body.decode().splitlines()[-1]) == (200, "199999")


def test_off_loopback_needs_passwords(engine_url: str, database: Any) -> None:
    """Off loopback the interface starts only when every user has a password."""
    path = embedded_path(engine_url)
    assert path is not None
    users = (HttpUser("flowforge", "app-secret"), HttpUser("grafana", "", True))
    with pytest.raises(HttpServeError, match="grafana has none"):
        ClickHouseHttpServer(path, bind="0.0.0.0", port=free_port(), users=users).start()  # noqa: S104
    users = (HttpUser("flowforge", "app-secret"), HttpUser("grafana", "ro-secret", True))
    server = ClickHouseHttpServer(path, bind="0.0.0.0", port=free_port(), users=users)  # noqa: S104
    server.start()
    try:
        app = {"X-ClickHouse-User": "flowforge", "X-ClickHouse-Key": "app-secret"}
        assert _post(server, b"SELECT 1", headers=app)[::2] == (200, b"1\n")
    finally:
        server.close()


def test_play_page_is_self_contained(served: tuple[ClickHouseHttpServer, Any]) -> None:
    """GET /play answers an HTML page that loads nothing from elsewhere (no src, href, url() or
    @import) under a Content-Security-Policy that allows only its own script and requests to
    this server; POST /play still runs the SQL in its body."""
    server, _ = served
    with urllib.request.urlopen(f"{server.url}/play", timeout=60) as reply:  # noqa: S310
        status, headers, page = reply.status, reply.headers, reply.read().decode()
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "script-src 'sha256-" in policy
    assert "<textarea" in page
    for reference in ("src=", "href=", "url(", "@import", "http:", "https:"):
        assert reference not in page, reference
    posted = _curl(f"{server.url}/play", "-d", "SELECT count() FROM images_metadata")
    assert posted.stdout == "3\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for this module's page tests."""
    with headless_chromium() as driver:
        yield driver


def _texts(browser: WebDriver, selector: str) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def _run_sql(browser: WebDriver, sql: str) -> None:
    """Type ``sql`` into the page's SQL box (replacing what it held) and press Run."""
    box = browser.find_element(By.ID, "sql")
    box.clear()
    box.send_keys(sql)
    browser.find_element(By.ID, "run").click()


def test_play_page_in_a_browser(
    served: tuple[ClickHouseHttpServer, Any], browser: WebDriver, tmp_path: Path
) -> None:
    """In headless Chromium, /play lists the schema's tables; a query typed into the SQL box
    shows its rows in the result table, a source id holding HTML shown as text; a bad query
    shows ClickHouse's error in the error line, its HTML as text too, and no rows."""
    server, database = served
    hostile = '<img id="injected" src="x" onerror="document.title=1">cam-<b>2</b>'
    now = datetime.now(tz=UTC)
    database.insert("images_metadata", [("img-x", hostile, now, now, "processed", 7.5)],
                    column_names=["image_id", "source_id", "captured_at", "processed_at",
                                  "status", "brightness"])  # fmt: skip
    wait = WebDriverWait(browser, 30)
    browser.get(f"{server.url}/play")
    wait.until(lambda b: "images_metadata" in _texts(b, "#tables li"))
    tables = set(_texts(browser, "#tables li"))
    assert {"images_per_minute", "flowforge_schema_migrations"} <= tables

    _run_sql(browser, "SELECT image_id, source_id, brightness FROM images_metadata ORDER BY 1")
    wait.until(lambda b: len(_texts(b, "#result tbody tr")) == 4)
    assert [t.splitlines()[0] for t in _texts(browser, "#result thead th")] == [
        "image_id",
        "source_id",
        "brightness",
    ]
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "#result tbody tr")
    ]
    assert rows == [["img-0", "cam-1", "40"], ["img-1", "cam-1", "41"], ["img-2", "cam-1", "42"],
                    ["img-x", hostile, "7.5"]]  # fmt: skip
    assert browser.find_elements(By.ID, "injected") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#result b") == []
    assert _texts(browser, "#status")[0].startswith("4 rows in ")
    assert _texts(browser, "#error") == [""]
    browser.save_screenshot(str(tmp_path / "play-rows.png"))

    _run_sql(browser, 'SELECT * FROM `<b id="bold">nope</b>`')
    wait.until(lambda b: b.find_element(By.ID, "error").text)
    error = browser.find_element(By.ID, "error").text
    assert error.startswith("Code: 60. DB::Exception: "), error
    assert '<b id="bold">nope</b>' in error
    assert browser.find_elements(By.ID, "bold") == []
    assert _texts(browser, "#result tbody tr") == []
    assert browser.title == "FlowForge ClickHouse"
    browser.save_screenshot(str(tmp_path / "play-error.png"))


def test_play_page_sends_the_users_credentials(
    guarded: ClickHouseHttpServer, browser: WebDriver
) -> None:
    """On a server whose users have passwords, /play shows the authentication error, then runs
    queries as the user and password typed into it (the read-only user's write refused)."""
    wait = WebDriverWait(browser, 30)
    browser.get(f"{guarded.url}/play")
    wait.until(lambda b: b.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text.startswith("Code: 516. DB::Exception: ")
    browser.find_element(By.ID, "user").send_keys("grafana")
    browser.find_element(By.ID, "password").send_keys("ro-secret")
    _run_sql(browser, "SELECT count() AS n FROM t")
    wait.until(lambda b: _texts(b, "#result tbody tr") == ["0"])
    assert _texts(browser, "#error") == [""]
    wait.until(lambda b: _texts(b, "#tables li") == ["t"])
    _run_sql(browser, "INSERT INTO t VALUES (1)")
    wait.until(lambda b: b.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text.startswith("Code: 164. DB::Exception: ")
