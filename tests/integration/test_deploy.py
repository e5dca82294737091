"""The compose stack's SQL over ClickHouse's HTTP interface, on the real (embedded) engine.

ClickHouse's container runs infra/clickhouse/init.sh, which speaks HTTP; Grafana's ClickHouse
plugin sends each dashboard panel's SQL over HTTP as the read-only user, its macros expanded.
Neither container runs here, so both talk to the engine owner's HTTP interface with
clickhouse-db's users and passwords (the Kafka-engine DDL, which a persistent database of the
embedded engine cannot hold, is parsed; tests/integration/test_kafka_engine.py runs it for
real).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from flowforge.core.clickhouse import (
    connect,
    embedded_path,
    migrate,
    migrations,
)
from flowforge.core.clickhouse_http import ClickHouseHttpServer, HttpUser
from flowforge.core.kafka_engine import kafka_engine_drop_sql, kafka_engine_sql
from flowforge.core.settings import Settings
from streams.sink.writer import COLUMNS, ClickHouseWriter
from tests.deploy import (
    PROVISIONING,
    REPO,
    compose,
    dashboard,
    expand_macros,
    load_yaml,
    secret_values,
    service_env,
    with_secret_files,
)
from tests.support.unique import free_port

CLICKHOUSE_DIR = REPO / "infra" / "clickhouse"
INTERVAL_S = 60


def _window() -> tuple[datetime, datetime, datetime]:
    """Now (to the minute) and the dashboard's range around it, taken when the test runs: the
    offline column compares with the engine's now(), so the rows must be recent then (a time
    taken at collection is minutes old by the time a full suite reaches these tests)."""
    now = datetime.now(tz=UTC).replace(second=0, microsecond=0)
    return now, now - timedelta(hours=1), now + timedelta(minutes=5)


# Columns each panel's fields, overrides and legends use, by panel id.
PANEL_COLUMNS = {
    1: ["images", "processed", "dark", "low_quality", "rejected"],
    2: ["time", "series", "images_per_s"],
    3: ["time", "source_id", "brightness"],
    4: ["time", "dark_ratio", "low_quality_ratio"],
    5: ["time", "reason", "rejects"],
    6: ["time", "p50_ms", "p99_ms"],
    7: ["source_id", "state", "last_seen", "seconds_since", "images_in_range"],
    8: ["time", "source_id", "duplicates"],
}


def _mounted_sql_files() -> list[Path]:
    """The SQL files the clickhouse-db service mounts (its infra/clickhouse directory)."""
    mounts = [v.split(":")[0] for v in compose()["services"]["clickhouse-db"]["volumes"]]
    assert "./infra/clickhouse" in mounts
    return sorted(CLICKHOUSE_DIR.rglob("*.sql"))


def test_every_sql_file_the_container_runs_executes(database: Any) -> None:
    """Each SQL file clickhouse-db mounts runs on the embedded engine: the migrations and the
    Kafka-engine undo file execute, the Kafka-engine DDL parses."""
    files = _mounted_sql_files()
    applied = migrate(database, ttl_days=90)
    assert applied == [m.path.name for m in migrations()]
    seen = {m.path for m in migrations()}
    db = database.database
    for statement in kafka_engine_sql(
        brokers="kafka:29092", topic="images.metadata", group="g", database=db
    ):
        assert database.query(f"EXPLAIN AST {statement}").result_rows
    seen.add(CLICKHOUSE_DIR / "kafka_engine.sql")
    for statement in kafka_engine_drop_sql(queue_database=db):
        database.command(statement)
    seen.add(CLICKHOUSE_DIR / "kafka_engine_drop.sql")
    assert set(files) == seen, f"SQL files no test runs: {set(files) - seen}"


GRAFANA_DATASOURCE = load_yaml(PROVISIONING / "datasources" / "clickhouse.yaml")["datasources"][0]


@pytest.fixture
def clickhouse_db(engine_url: str, database: Any) -> Iterator[ClickHouseHttpServer]:
    """ClickHouse's HTTP interface over the session's engine with clickhouse-db's users and
    their compose passwords: the application's (read-write) and Grafana's (read-only); its
    database the test's fresh one."""
    passwords = secret_values(compose())
    app_user = service_env(compose()["services"]["clickhouse-db"])["CLICKHOUSE_USER"]
    grafana_user = GRAFANA_DATASOURCE["jsonData"]["username"]
    path = embedded_path(engine_url)
    assert path is not None
    server = ClickHouseHttpServer(
        path,
        port=free_port(),
        database=database.database,
        users=(
            HttpUser(app_user, passwords["clickhouse_password"]),
            HttpUser(grafana_user, passwords["clickhouse_grafana_password"], readonly=True),
        ),
    )
    server.start()
    yield server
    server.close()


def _run_init(
    server: ClickHouseHttpServer, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """init.sh with clickhouse-db's environment and secret files (as under `docker compose
    exec`), its database the test's, against ``server`` (the system's wget on PATH)."""
    service = compose()["services"]["clickhouse-db"]
    base = with_secret_files(service, tmp_path / "secrets") | {
        "CLICKHOUSE_DB": server.database,
        "FLOWFORGE_CLICKHOUSE_URL": server.url,
        "FLOWFORGE_CLICKHOUSE_SQL_DIR": str(CLICKHOUSE_DIR),
        "PATH": os.environ["PATH"],
    }
    return subprocess.run(
        ["bash", str(CLICKHOUSE_DIR / "init.sh")],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_container_init_script_applies_the_schema_over_http(
    clickhouse_db: ClickHouseHttpServer, tmp_path: Path
) -> None:
    """infra/clickhouse/init.sh, speaking HTTP to the interface as clickhouse-db's user, applies
    every migration once (recorded as `flowforge clickhouse migrate` records it, so migrate
    finds nothing left), the TTL, and the agent sink mode; run again it applies nothing; a TTL
    of 0 removes the TTL."""
    first = _run_init(clickhouse_db, tmp_path)
    assert first.returncode == 0, first.stderr
    names = [m.path.stem for m in migrations()]
    lines = first.stdout.splitlines()
    assert [line.removeprefix("init: applied ") for line in lines[:-1]] == names
    assert lines[-1].startswith("init: sink mode agent: ")
    env = {"FLOWFORGE_CLICKHOUSE_URL": f"chdb://{clickhouse_db.path}",
           "FLOWFORGE_CLICKHOUSE_DATABASE": clickhouse_db.database}  # fmt: skip
    client = connect(Settings.from_env(env).clickhouse)
    recorded = client.query("SELECT version, name FROM flowforge_schema_migrations ORDER BY 1")
    assert recorded.result_rows == [(m.version, m.path.stem) for m in migrations()]
    for table in ("images_metadata", "images_duplicates"):
        create = client.command(f"SHOW CREATE TABLE {table}")
        assert "TTL toDateTime(ingested_at) + toIntervalDay(90)" in create, table
    assert migrate(client, ttl_days=90) == []
    again = _run_init(clickhouse_db, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "applied" not in again.stdout
    no_ttl = _run_init(clickhouse_db, tmp_path, FLOWFORGE_CLICKHOUSE_TTL_DAYS="0")
    assert no_ttl.returncode == 0, no_ttl.stderr
    for table in ("images_metadata", "images_duplicates"):
        assert "TTL" not in client.command(f"SHOW CREATE TABLE {table}")


def test_container_init_script_stops_on_the_servers_errors(
    clickhouse_db: ClickHouseHttpServer, tmp_path: Path
) -> None:
    """init.sh stops with the server's error and the statement on stderr: a wrong password (401,
    named as an authentication failure, before any statement), the Kafka-engine DDL for the
    compose broker, which the embedded engine refuses (after the migrations; the server still
    serves), and a bad sink mode before any request."""
    wrong = _run_init(clickhouse_db, tmp_path, CLICKHOUSE_PASSWORD="wrong")
    assert wrong.returncode != 0
    assert "authentication failed for CLICKHOUSE_USER=flowforge" in wrong.stderr, wrong.stderr
    assert "CREATE DATABASE" in wrong.stderr
    kafka = _run_init(clickhouse_db, tmp_path, FLOWFORGE_SINK_MODE="kafka-engine")
    assert kafka.returncode != 0
    assert "Code: 48. DB::Exception: Kafka engine tables" in kafka.stderr, kafka.stderr
    queue = f"CREATE TABLE IF NOT EXISTS {clickhouse_db.database}.images_metadata_queue"
    assert queue in kafka.stderr, kafka.stderr
    assert "kafka_broker_list = 'kafka:29092'" in kafka.stderr
    assert "kafka_group_name = 'flowforge-clickhouse'" in kafka.stderr
    assert kafka.stdout.count("init: applied ") == len(migrations())
    bogus = _run_init(clickhouse_db, tmp_path, FLOWFORGE_SINK_MODE="bogus")
    assert bogus.returncode == 2
    assert "FLOWFORGE_SINK_MODE=bogus" in bogus.stderr
    reply = subprocess.run(["curl", "-sS", "-u", "grafana:" + secret_values(compose())[
        "clickhouse_grafana_password"], f"{clickhouse_db.url}/", "-d", "SELECT 1"],
        capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert reply.stdout == "1\n"


def _rows(now: datetime) -> list[tuple[object, ...]]:
    """Rows of three sources: cam-1 busy, cam-2 with rejects, cam-3 silent for 30 minutes."""
    rows: list[tuple[object, ...]] = []
    statuses = ("processed", "skipped_dark", "skipped_low_quality", "rejected")
    reasons = ("", "brightness 12.0 < 40", "contrast 3.0 < 10", "undecodable")
    for source, minutes_ago in (("cam-1", range(0, 20)), ("cam-2", range(0, 10)), ("cam-3", [30])):
        for i, ago in enumerate(minutes_ago):
            for k in range(4):
                status = statuses[(i + k) % 4]
                captured = now - timedelta(minutes=ago, seconds=k * 7)
                values = {
                    "image_id": f"{source}-{ago}-{k}",
                    "source_type": "mqtt",
                    "source_id": source,
                    "captured_at": captured,
                    "ingested_at": captured,
                    "processed_at": captured + timedelta(milliseconds=40),
                    "status": status,
                    "reason": reasons[statuses.index(status)],
                    "brightness": 0.0 if status == "rejected" else 60.0 + k,
                    "inserted_at": captured + timedelta(milliseconds=300 + 10 * k),
                    "format": "jpeg",
                    "worker": "w1",
                }
                rows.append(tuple(values.get(c, 0) for c in _cols()))
    return rows


def _cols() -> list[str]:
    return [*COLUMNS, "inserted_at"]


def _duplicate_rows(now: datetime) -> list[dict[str, object]]:
    """Duplicate records: cam-1's first image re-sent 3 times (once redelivered by Kafka) and
    its first message redelivered (not a re-send); cam-2's first image re-sent once."""
    rows = []
    for source, minutes_ago, offset in (
        ("cam-1", 5, 1), ("cam-1", 4, 2), ("cam-1", 4, 3), ("cam-1", 3, 4), ("cam-1", 0, 5),
        ("cam-2", 2, 6),
    ):  # fmt: skip
        first = now  # image f"{source}-0-0" was ingested at `now` (see _rows)
        ingested = now - timedelta(minutes=minutes_ago, seconds=30) if minutes_ago else first
        rows.append(
            {
                "image_id": f"{source}-0-0", "source_type": "mqtt", "source_id": source,
                "captured_at": first.isoformat(), "ingested_at": ingested.isoformat(),
                "first_seen_at": first.isoformat(), "processed_at": ingested.isoformat(),
                "status": "duplicate", "bytes": 1000, "kafka_partition": 0,
                "kafka_offset": offset, "worker": "w1",
            }
        )  # fmt: skip
    return rows


def _filled(database: Any) -> tuple[datetime, datetime]:
    """Fill the schema with recent test rows; return the dashboard range (start, end)."""
    now, start, end = _window()
    migrate(database, ttl_days=0)
    database.insert("images_metadata", _rows(now), column_names=_cols())
    ClickHouseWriter(database).write(_duplicate_rows(now))
    return start, end


def _grafana(server: ClickHouseHttpServer) -> Any:
    """A client of the HTTP interface as the Grafana datasource logs in: its user and password,
    its default database (the test's), over HTTP."""
    return clickhouse_connect.get_client(
        host="127.0.0.1",
        port=server.port,
        username=GRAFANA_DATASOURCE["jsonData"]["username"],
        password=secret_values(compose())["clickhouse_grafana_password"],
        database=server.database,
    )


def test_every_dashboard_panel_runs_and_returns_its_columns(
    clickhouse_db: ClickHouseHttpServer, database: Any
) -> None:
    """Every panel's SQL, with Grafana's macros expanded for the last hour, sent over HTTP as the
    read-only Grafana user, runs on the engine filled with test rows and returns the columns the
    panel uses (time first for graphs)."""
    assert GRAFANA_DATASOURCE["jsonData"]["protocol"] == "http"
    start, end = _filled(database)
    grafana = _grafana(clickhouse_db)
    board = dashboard()
    assert sorted(PANEL_COLUMNS) == sorted(p["id"] for p in board["panels"])
    results = {}
    for panel in board["panels"]:
        (target,) = panel["targets"]
        sql = expand_macros(
            target["rawSql"],
            start=start,
            end=end,
            interval_s=INTERVAL_S,
            sources=["cam-1", "cam-2", "cam-3"],
        )
        result = grafana.query(sql)
        assert list(result.column_names) == PANEL_COLUMNS[panel["id"]], panel["title"]
        assert result.result_rows, f"{panel['title']}: no rows"
        if panel["type"] == "timeseries":
            assert isinstance(result.result_rows[0][0], datetime), panel["title"]
        for override in panel["fieldConfig"]["overrides"]:
            if override["matcher"]["id"] == "byName":
                assert override["matcher"]["options"] in result.column_names, panel["title"]
        results[panel["id"]] = result
    # A few values: totals, rejects by reason, and the silent source marked offline.
    total = dict(zip(results[1].column_names, results[1].result_rows[0], strict=True))
    assert total["images"] == 4 * (20 + 10 + 1)
    assert total["rejected"] == 20 + 10 + 1
    reasons = {row[1] for row in results[5].result_rows}
    assert reasons == {"undecodable"}
    states = {row[0]: row[1] for row in results[7].result_rows}
    assert states == {"cam-1": "online", "cam-2": "online", "cam-3": "offline"}
    resent = Counter()
    for _, source, duplicates in results[8].result_rows:
        resent[source] += duplicates
    assert resent == {"cam-1": 3, "cam-2": 1}


def test_source_filter_and_variable_query(
    clickhouse_db: ClickHouseHttpServer, database: Any
) -> None:
    """Over HTTP as the Grafana user, the source variable's query lists every source, and a
    panel filtered to one source returns only that source's series."""
    start, end = _filled(database)
    grafana = _grafana(clickhouse_db)
    board = dashboard()
    (variable,) = board["templating"]["list"]
    sources = [row[0] for row in grafana.query(variable["query"]).result_rows]
    assert sources == ["cam-1", "cam-2", "cam-3"]
    brightness = next(p for p in board["panels"] if p["id"] == 3)
    sql = expand_macros(
        brightness["targets"][0]["rawSql"],
        start=start,
        end=end,
        interval_s=INTERVAL_S,
        sources=["cam-2"],
    )
    assert {row[1] for row in grafana.query(sql).result_rows} == {"cam-2"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PASSWORDS = {
    "flowforge-bridge": secret_values(compose())["mqtt_bridge_password"],
    "camera": secret_values(compose())["mqtt_publisher_password"],
}


def _mqtt(tool: str, port: int, user: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    auth = ["-u", user, "-P", PASSWORDS[user]] if user else []
    command = [tool, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", *auth, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_compose_broker_config_enforces_passwords_and_the_acl(tmp_path: Path) -> None:
    """Debian's mosquitto, started through mqtt-broker's entrypoint with its config (moved to a
    free loopback port) and its secret files, refuses anonymous clients, delivers a publisher's
    image to the bridge user, and keeps publishers from reading and the bridge from writing
    images."""
    mosquitto = REPO / "infra" / "mosquitto"
    conf = (mosquitto / "mosquitto.conf").read_text(encoding="utf-8")
    port = _free_port()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/run/", f"{tmp_path}/run/")
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/data/")
    (tmp_path / "data").mkdir()
    # Run as whoever runs the tests (as root, mosquitto would switch to its own user).
    conf += "user root\n" if os.getuid() == 0 else ""
    (tmp_path / "mosquitto.conf").write_text(conf, encoding="utf-8")
    env = with_secret_files(compose()["services"]["mqtt-broker"], tmp_path / "secrets") | {
        "MOSQUITTO_CONF": str(tmp_path / "mosquitto.conf"),
        "MOSQUITTO_RUN_DIR": str(tmp_path / "run"),
        "MOSQUITTO_ACL_TEMPLATE": str(mosquitto / "acl.template"),
        "MOSQUITTO_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"/usr/sbin:/sbin:{os.environ['PATH']}",
    }
    assert (env["MQTT_BRIDGE_USERNAME"], env["MQTT_PUBLISHER_USERNAME"]) == (
        "flowforge-bridge",
        "camera",
    )
    broker = subprocess.Popen(
        ["sh", str(mosquitto / "entrypoint.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while _mqtt("mosquitto_pub", port, "camera", "-t", "images/raw/x", "-n").returncode:
            assert broker.poll() is None, "mosquitto exited"
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.2)
        anonymous = _mqtt("mosquitto_pub", port, None, "-t", "images/raw/cam-1", "-m", "x")
        assert anonymous.returncode != 0
        bridge = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5",
             "-u", "flowforge-bridge", "-P", PASSWORDS["flowforge-bridge"], "-t", "images/raw/#",
             "-C", "1", "-W", "10", "-v"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        spy = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5",
             "-u", "camera", "-P", PASSWORDS["camera"], "-t", "images/raw/#", "-W", "4", "-v"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        # The bridge may not write images; the publisher may.
        _mqtt(
            "mosquitto_pub", port, "flowforge-bridge", "-q", "1", "-t", "images/raw/b", "-m", "no"
        )
        sent = _mqtt(
            "mosquitto_pub", port, "camera", "-q", "1", "-t", "images/raw/cam-1", "-m", "img"
        )
        assert sent.returncode == 0, sent.stderr
        received, _ = bridge.communicate(timeout=15)
        assert received.strip() == "images/raw/cam-1 img"
        spied, _ = spy.communicate(timeout=15)
        assert spied == ""
    finally:
        broker.terminate()
        broker.wait(timeout=10)
