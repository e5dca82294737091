"""Clashes with a running worker explain themselves in one line: a taken web port (worker,
bridge) names its holder and what to run instead; `clickhouse migrate`, `stats` and `validate`
are clients of the HTTP interface of the worker owning the embedded engine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

from flowforge.core.clickhouse import MIGRATIONS_TABLE, migrations
from tests.support.pipeline import Pipeline, metadata_record


def flowforge(pipeline: Pipeline, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run `flowforge ARGS` with the pipeline's settings (plus ``extra``); the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "flowforge", *args],
        env={**pipeline.env, **extra}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def wait_live(port: int, timeout: float = 60.0) -> None:
    """Wait until the web server on ``port`` answers /livez."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_a_second_worker_on_a_taken_web_port_is_one_line_naming_the_holder(
    pipeline: Pipeline,
) -> None:
    """A second `flowforge worker --agents process` on the running worker's web port exits 1
    with one line naming that port, the holder's pid and the --web-port to use instead."""
    port = pipeline.start_worker(agents="process")
    wait_live(port)
    holder = pipeline.workers[port].pid
    second = flowforge(
        pipeline, "worker", "--agents", "process", FLOWFORGE_WORKER_WEB_PORT=str(port)
    )
    assert second.returncode == 1, second.stdout + second.stderr
    assert second.stderr.count("\n") == 1, second.stderr
    assert f"the worker's web port 127.0.0.1:{port} is in use by pid {holder}" in second.stderr
    assert "flowforge worker --web-port 6070" in second.stderr
    assert "Traceback" not in second.stdout + second.stderr


def test_a_bridge_on_a_taken_web_port_is_one_line_naming_the_holder(pipeline: Pipeline) -> None:
    """`flowforge bridge mqtt` on a web port a running process holds exits 1 with one line
    naming the port, the holder's pid and --web-port (not "unexpected error: OSError")."""
    port = pipeline.start_worker(agents="process")
    wait_live(port)
    holder = pipeline.workers[port].pid
    bridge = flowforge(pipeline, "bridge", "mqtt", "--web-port", str(port))
    assert bridge.returncode == 1, bridge.stdout + bridge.stderr
    lines = [line for line in bridge.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, bridge.stderr
    assert f"this bridge's web port 127.0.0.1:{port} is in use by pid {holder}" in lines[0]
    assert "--web-port PORT" in lines[0]
    assert "OSError" not in bridge.stderr


def test_migrate_on_a_running_stack_applies_the_schema_through_the_owners_http_interface(
    pipeline: Pipeline,
) -> None:
    """`clickhouse migrate` while a sink worker owns the embedded engine (started without
    applying the schema) applies every schema file through that worker's HTTP interface, says
    so, and leaves the latest version; run again it applies nothing. No engine error."""
    pipeline.env["FLOWFORGE_SINK_MIGRATE_ON_START"] = "false"
    pipeline.start_worker(agents="sink")
    pipeline.wait_until(pipeline.serving, "the owner's HTTP interface answers")
    http = f"http://127.0.0.1:{pipeline.env['FLOWFORGE_CLICKHOUSE_HTTP_PORT']}"
    latest = migrations()[-1].version
    first = flowforge(pipeline, "clickhouse", "migrate")
    assert first.returncode == 0, first.stdout + first.stderr
    applied = [line.split()[1] for line in first.stdout.splitlines() if line.startswith("applied")]
    assert applied == [m.path.name for m in migrations()]
    assert f"through the HTTP interface of the worker owning it ({http})" in first.stdout
    assert f"schema version {latest}" in first.stdout
    again = flowforge(pipeline, "clickhouse", "migrate")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "applied" not in again.stdout
    assert f"schema version {latest}" in again.stdout
    version = f"SELECT max(version) FROM {MIGRATIONS_TABLE}"  # noqa: S608 - a constant
    assert pipeline.query_engine(version) == [[latest]]
    for result in (first, again):
        assert "Cannot lock" not in result.stdout + result.stderr


def test_stats_and_validate_on_a_running_stack_are_clients_of_the_owners_http_interface(
    pipeline: Pipeline,
) -> None:
    """While a sink worker owns the embedded engine, `flowforge stats` and `validate` answer as
    clients of its ClickHouse HTTP interface (validate names that address), and the worker
    serves no private ClickHouse pages on its web port."""
    pipeline.produce_metadata((metadata_record(i, source="cam-07") for i in range(5)), "cam-07")
    port = pipeline.start_worker(agents="sink")
    pipeline.wait_until(lambda: pipeline.rows() == 5, "the rows")
    http = f"http://127.0.0.1:{pipeline.env['FLOWFORGE_CLICKHOUSE_HTTP_PORT']}"
    stats = flowforge(pipeline, "stats", "--json")
    assert stats.returncode == 0, stats.stdout + stats.stderr
    [row] = json.loads(stats.stdout)
    assert (row["source_id"], row["images"], row["processed"]) == ("cam-07", 5, 5)
    validate = flowforge(pipeline, "validate")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    lines = {line.split()[0]: line for line in validate.stdout.splitlines() if line.strip()}
    assert "PASS" in lines["clickhouse"], validate.stdout
    assert f"through its HTTP interface {http}" in lines["clickhouse"], validate.stdout
    assert "PASS" in lines["schema"], validate.stdout
    assert "(latest)" in lines["schema"], validate.stdout
    for page in ("/clickhouse/stats", "/clickhouse/schema"):
        assert pipeline.status(port, page)[0] == 404, page
