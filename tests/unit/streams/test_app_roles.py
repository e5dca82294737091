"""Worker roles: which agents a worker registers for FLOWFORGE_WORKER_AGENTS and the sink mode."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowforge.core.settings import Settings
from streams.app import consumer_group, sink_group
from streams.worker import build_worker


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"FLOWFORGE_HOME": str(tmp_path), **env})


class NoClient:
    """Stands for a ClickHouse client; registering the sink must not call it."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"the sink called ClickHouse ({name}) while being registered")


def test_default_worker_runs_process_and_sink(tmp_path: Path) -> None:
    """By default a worker registers both agents, with the tables and the sink's spool."""
    flow = build_worker(_settings(tmp_path), NoClient())
    assert set(flow.agents) == {"process", "sink"}
    assert flow.tables is not None
    assert flow.sink is not None
    assert flow.sink.core.spool.path == tmp_path / "worker-6066" / "sink-spool.sqlite"


def test_worker_web_server_binds_to_loopback_by_default(tmp_path: Path) -> None:
    """The Faust web server (/livez, /metrics, /stats) listens on 127.0.0.1."""
    flow = build_worker(_settings(tmp_path, FLOWFORGE_WORKER_AGENTS="process"))
    assert (flow.app.conf.web_bind, flow.app.conf.web_host) == ("127.0.0.1", "127.0.0.1")


def test_processing_only_worker_has_no_sink_and_needs_no_clickhouse(tmp_path: Path) -> None:
    """--agents process: no sink agent, and no ClickHouse client is needed."""
    flow = build_worker(_settings(tmp_path, FLOWFORGE_WORKER_AGENTS="process"))
    assert set(flow.agents) == {"process"}
    assert flow.sink is None


def test_sink_only_worker_has_no_tables(tmp_path: Path) -> None:
    """--agents sink: only the sink, and no tables (whose changelogs would be assigned to it)."""
    flow = build_worker(_settings(tmp_path, FLOWFORGE_WORKER_AGENTS="sink"), NoClient())
    assert set(flow.agents) == {"sink"}
    assert flow.tables is None


def test_kafka_engine_mode_runs_no_sink_agent(tmp_path: Path) -> None:
    """FLOWFORGE_SINK_MODE=kafka-engine: ClickHouse consumes the topic, so no sink agent runs."""
    flow = build_worker(_settings(tmp_path, FLOWFORGE_SINK_MODE="kafka-engine"))
    assert set(flow.agents) == {"process"}


def test_kafka_engine_owner_consumes_nothing_itself_and_holds_the_engine(tmp_path: Path) -> None:
    """--agents sink in kafka-engine mode: no agent, so Faust's Kafka consumer does not start
    (it would subscribe to no topic and end the worker); the engine's owner answers the pages."""
    mode = {"FLOWFORGE_SINK_MODE": "kafka-engine"}
    settings = _settings(tmp_path, **mode, FLOWFORGE_WORKER_AGENTS="sink")
    flow = build_worker(settings, NoClient())
    assert flow.agents == {}
    assert flow.sink is None
    assert flow.engine is not None
    assert not flow.app.boot_strategy._should_enable_kafka_consumer()
    both = build_worker(_settings(tmp_path, **mode), NoClient())
    assert both.app.boot_strategy._should_enable_kafka_consumer()  # the process agent consumes
    assert both.engine is not None


def test_sink_agent_without_a_client_is_a_programming_error(tmp_path: Path) -> None:
    """Asking for the sink agent without a ClickHouse client fails at once, not at first batch."""
    with pytest.raises(ValueError, match="needs a ClickHouse client"):
        build_worker(_settings(tmp_path, FLOWFORGE_WORKER_AGENTS="sink"))


@pytest.mark.parametrize(
    ("agents", "faust_group"),
    [("process,sink", "flowforge"), ("process", "flowforge"), ("sink", "flowforge-sink")],
)
def test_every_sink_consumes_under_its_own_group(
    tmp_path: Path, agents: str, faust_group: str
) -> None:
    """Workers with the process agent share the app id as Faust's group; every sink, whatever
    else its worker runs, consumes with its own consumer in ``<app id>-sink``."""
    settings = _settings(tmp_path, FLOWFORGE_WORKER_AGENTS=agents)
    assert consumer_group(settings) == faust_group
    flow = build_worker(settings, NoClient())
    assert flow.app.conf.id == faust_group
    if "sink" in agents:
        assert sink_group(settings) == flow.agents["sink"].group == "flowforge-sink"


def test_a_sink_only_worker_runs_no_faust_consumer_but_its_producer(tmp_path: Path) -> None:
    """--agents sink: Faust's consumer does not start (no Faust agent consumes), its producer
    does (the sink's dead letters)."""
    flow = build_worker(_settings(tmp_path, FLOWFORGE_WORKER_AGENTS="sink"), NoClient())
    assert not flow.app.boot_strategy._should_enable_kafka_consumer()
    assert flow.app.boot_strategy._should_enable_kafka_producer()


def test_the_sink_consumer_commits_itself_and_batches_its_fetches(tmp_path: Path) -> None:
    """The sink's consumer: auto-commit off (it commits durable offsets itself), from the
    earliest offset, fetches waiting for 64 KiB or FLOWFORGE_SINK_FETCH_WAIT_MS, and the
    worker's session timeout."""
    env = {"FLOWFORGE_SINK_FETCH_WAIT_MS": "80", "FLOWFORGE_WORKER_SESSION_TIMEOUT_S": "20"}
    flow = build_worker(_settings(tmp_path, **env), NoClient())

    async def built() -> Any:
        consumer = flow.agents["sink"].new_consumer()
        await consumer.stop()  # never started: closes nothing, only marks it closed
        return consumer

    consumer = asyncio.run(built())
    assert (consumer._group_id, consumer._enable_auto_commit) == ("flowforge-sink", False)
    assert consumer._auto_offset_reset == "earliest"
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (64 * 1024, 80)
    assert consumer._session_timeout_ms == 20_000


@pytest.mark.parametrize(("session", "heartbeat"), [("15", 3.0), ("6", 2.0), ("90", 3.0)])
def test_session_timeout_setting_reaches_faust_with_a_heartbeat_a_third_or_less(
    tmp_path: Path, session: str, heartbeat: float
) -> None:
    """FLOWFORGE_WORKER_SESSION_TIMEOUT_S is Faust's broker_session_timeout (default 15 s), and
    heartbeats go every third of it, at most every 3 s."""
    env = {} if session == "15" else {"FLOWFORGE_WORKER_SESSION_TIMEOUT_S": session}
    flow = build_worker(_settings(tmp_path, FLOWFORGE_WORKER_AGENTS="process", **env))
    assert flow.app.conf.broker_session_timeout == float(session)
    assert flow.app.conf.broker_heartbeat_interval == heartbeat


@pytest.mark.parametrize("raw", ["5", "91", "soon"])
def test_session_timeout_outside_what_kafka_and_faust_accept_is_refused(raw: str) -> None:
    """Below Kafka's minimum group session (6 s) or above Faust's request timeout: refused."""
    with pytest.raises(ValueError, match="SESSION_TIMEOUT_S"):
        Settings.from_env({"FLOWFORGE_WORKER_SESSION_TIMEOUT_S": raw})


def test_spool_bound_may_be_a_fraction_of_a_megabyte(tmp_path: Path) -> None:
    """FLOWFORGE_SINK_SPOOL_MAX_MB=0.25 bounds the sink's spool at a quarter of a MiB."""
    settings = _settings(
        tmp_path, FLOWFORGE_WORKER_AGENTS="sink", FLOWFORGE_SINK_SPOOL_MAX_MB="0.25"
    )
    flow = build_worker(settings, NoClient())
    assert flow.sink is not None
    assert flow.sink.core.spool.max_bytes == 256 * 1024
