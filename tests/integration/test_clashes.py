"""Clashes with a running worker explain themselves in one line: a taken web port (worker,
bridge) names its holder and what to run instead; `clickhouse migrate` defers to the owner."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from tests.support.pipeline import Pipeline


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


def test_migrate_on_a_running_stack_defers_to_the_worker_that_owns_the_engine(
    pipeline: Pipeline,
) -> None:
    """`clickhouse migrate` while a sink worker owns the embedded engine exits 0 with one line
    naming that worker's pid and web address and the current schema version, and no engine
    error (`Cannot lock file`)."""
    port = pipeline.start_worker(agents="process,sink")
    version = pipeline.get_json(port, "/clickhouse/schema")["version"]
    holder = pipeline.workers[port].pid
    migrate = flowforge(pipeline, "clickhouse", "migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "Cannot lock" not in migrate.stdout + migrate.stderr
    assert "Code:" not in migrate.stdout + migrate.stderr
    assert migrate.stdout.count("\n") == 1, migrate.stdout
    assert f"the running worker (pid {holder}, http://127.0.0.1:{port})" in migrate.stdout
    assert f"schema version {version} (latest)" in migrate.stdout
