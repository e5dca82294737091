"""The sink agent on the real broker and real ClickHouse: rows, crashes, outages, refusals.

The suite (every test taking ``backend``) runs twice: with the sink owning the embedded engine
(``chdb://``), and with the sink a client of ClickHouse's HTTP interface (``http://``, as in a
compose deployment) served over the session's engine by this process.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from flowforge.core.clickhouse import OWNER_FILE
from flowforge.core.clickhouse_http import ClickHouseHttpServer
from flowforge.core.faults import write_fault
from flowforge.core.settings import Settings
from tests.integration.conftest import SERVER_USER
from tests.support.images import jpeg, mixed_set, scene
from tests.support.pipeline import Pipeline, metadata_record
from tests.support.unique import free_port

PIPELINE_ENV = {"FLOWFORGE_SINK_FLUSH_S": "0.2"}  # the conftest pipeline adds it


@pytest.fixture(params=["chdb", "http"])
def backend(request: pytest.FixtureRequest, pipeline: Pipeline) -> Iterator[str]:
    """The pipeline's ClickHouse: ``chdb`` (its sink owns the embedded engine) or ``http`` (its
    sink logs in to ClickHouse's HTTP interface at http://127.0.0.1:PORT, served over the
    session's engine, its rows in a database of their own)."""
    if request.param == "http":
        server: ClickHouseHttpServer = request.getfixturevalue("clickhouse_server")
        pipeline.env.update(
            {
                "FLOWFORGE_CLICKHOUSE_URL": server.url,
                "FLOWFORGE_CLICKHOUSE_DATABASE": server.database,
                "FLOWFORGE_CLICKHOUSE_USERNAME": SERVER_USER.name,
                "FLOWFORGE_CLICKHOUSE_PASSWORD": SERVER_USER.password,
            }
        )
    yield request.param
    pipeline.stop_all()  # before the server and its database go


def _stop(pipeline: Pipeline, port: int) -> None:
    pipeline.kill_worker(port, signal.SIGTERM)


def test_images_become_exactly_one_row_each_with_their_outcome(
    pipeline: Pipeline, backend: str
) -> None:
    """N images in (every outcome, rejects too) give exactly N rows (FINAL) whose statuses and
    scores are those of the metadata records, and `flowforge stats` reports them per source."""
    cases = mixed_set()
    ids = pipeline.produce((name, payload) for name, (payload, _) in cases.items())
    port = pipeline.start_worker(agents="process,sink")
    out = pipeline.collect(len(ids), settle=1)
    pipeline.wait_until(lambda: pipeline.rows() == len(ids), "all rows")

    result = subprocess.run(
        [sys.executable, "-m", "flowforge", "stats", "--json"],
        env=pipeline.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [stats] = json.loads(result.stdout)
    statuses = Counter(m["status"] for m in out.metadata)
    assert (stats["source_id"], stats["images"]) == ("cam-01", len(ids))
    assert stats["processed"] == statuses["processed"]
    assert stats["dark"] == statuses["skipped_dark"]
    assert stats["low_quality"] == statuses["skipped_low_quality"]
    assert stats["rejected"] == statuses["rejected"] == len(out.dlq) > 0
    assert stats["latency_p99_ms"] is not None
    assert stats["latency_p99_ms"] >= 0

    _stop(pipeline, port)
    rows = pipeline.query_engine(
        "SELECT image_id, status, reason, brightness, width FROM images_metadata FINAL"
    )
    assert sorted(r[0] for r in rows) == sorted(ids)
    expected = {m["image_id"]: m for m in out.metadata}
    for image_id, status, reason, brightness, width in rows:
        record = expected[image_id]
        assert (status, reason, width) == (record["status"], record["reason"], record["width"])
        assert abs(brightness - record["brightness"]) < 1e-3
    rollup = pipeline.query_engine(
        "SELECT uniqExactMerge(images), uniqExactIfMerge(rejected) FROM images_per_minute"
    )
    assert rollup == [[len(ids), statuses["rejected"]]]


def _stats_cli(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """`flowforge stats --json` run as the CLI, by source."""
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", "stats", "--json"],
        env=pipeline.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {s["source_id"]: s for s in json.loads(result.stdout)}


def test_an_image_sent_twice_is_one_row_and_one_duplicate_of_its_source(
    pipeline: Pipeline,
) -> None:
    """The same photo published twice by one source is one images_metadata row (FINAL) and one
    images_duplicates row, `flowforge stats --json` reports 1 duplicate for that source and 0
    for another, and the duplicate's record delivered to the sink again does not count twice."""
    payload = jpeg(scene(1280, 720, seed=61))
    first, again = pipeline.produce([("a.jpg", payload), ("a-again.jpg", payload)], "cam-05")
    assert first == again
    pipeline.produce([("b.jpg", jpeg(scene(1280, 720, seed=62)))], "cam-06")
    port = pipeline.start_worker(agents="process,sink")

    def duplicates() -> dict[str, tuple[int, int]]:
        return {k: (s["images"], s["duplicates"]) for k, s in _stats_cli(pipeline).items()}

    want = {"cam-05": (1, 1), "cam-06": (1, 0)}
    pipeline.wait_until(lambda: pipeline.rows() == 2, "a row per image")
    pipeline.wait_until(lambda: duplicates() == want, "the duplicate in ClickHouse")

    # Kafka delivers the duplicate's record to the sink once more: a row again, not a count.
    [record] = pipeline.collect_written().duplicates
    assert (record["image_id"], record["source_id"]) == (first, "cam-05")
    inserted = pipeline.metric(port, "flowforge_sink_rows_total", outcome="inserted")
    pipeline.produce_metadata([json.dumps(record).encode()], source="cam-05")
    pipeline.wait_until(
        lambda: pipeline.metric(port, "flowforge_sink_rows_total", outcome="inserted") > inserted,
        "the redelivered record inserted",
    )
    assert duplicates() == want

    _stop(pipeline, port)
    rows = pipeline.query_engine(
        "SELECT (SELECT groupArray(image_id) FROM images_metadata FINAL "
        "WHERE source_id = 'cam-05'), "
        "(SELECT count() FROM images_duplicates FINAL WHERE source_id = 'cam-05')"
    )
    assert rows == [[[first], 1]]


def test_a_second_sink_writes_through_the_engine_owners_http_interface(pipeline: Pipeline) -> None:
    """A second `flowforge worker --agents sink` on the embedded engine a first one owns writes
    through the owner's HTTP interface instead of exiting: the two sinks share the metadata
    partitions, each inserts rows, and N images through the pipeline are exactly N rows FINAL."""
    first = pipeline.start_worker(agents="sink")
    pipeline.wait_until(pipeline.serving, "the owner's HTTP interface answers")
    second = pipeline.start_worker(agents="sink")
    pipeline.wait_group(2, group=f"{pipeline.settings.worker.app_id}-sink")
    images = [(name, payload) for name, (payload, _) in mixed_set().items()]
    sources = pipeline.sources_on_every_partition()  # metadata is keyed by source: both get some
    ids = []
    for k, source in enumerate(sources):
        ids += pipeline.produce(images[k :: len(sources)], source=source)
    pipeline.start_worker(agents="process")
    pipeline.wait_until(lambda: pipeline.rows() == len(ids), "a row per image")
    http = pipeline.env["FLOWFORGE_CLICKHOUSE_HTTP_PORT"]
    assert f"through its HTTP interface http://127.0.0.1:{http}" in pipeline.worker_log(second)
    for port in (first, second):
        assert pipeline.metric(port, "flowforge_sink_rows_total", outcome="inserted") > 0, port
    pipeline.stop_all()
    [[final, distinct]] = pipeline.query_engine(
        "SELECT (SELECT count() FROM images_metadata FINAL), uniqExact(image_id) "
        "FROM images_metadata"
    )
    assert (final, distinct) == (len(ids), len(ids))


def test_a_second_sink_exits_naming_an_owner_that_serves_no_http(pipeline: Pipeline) -> None:
    """With the owner's HTTP interface off (FLOWFORGE_CLICKHOUSE_HTTP_PORT=0), a second sink on
    the same embedded engine exits 1 with one line naming the owning PID and what to do instead,
    and the first sink keeps running."""
    pipeline.env["FLOWFORGE_CLICKHOUSE_HTTP_PORT"] = "0"
    first = pipeline.start_worker(agents="sink")
    pipeline.wait_until(lambda: pipeline.status(first, "/livez")[0] == 200, "first sink up")
    pipeline.wait_until(lambda: (pipeline.engine_path / OWNER_FILE).exists(), "the owner file")
    second = pipeline.start_worker(agents="sink")
    proc = pipeline.workers[second]
    assert proc.wait(timeout=90) == 1
    last = pipeline.worker_log(second).strip().splitlines()[-1]
    assert f"is in use by pid {pipeline.workers[first].pid}" in last, last
    assert "--agents process" in last, last
    assert pipeline.alive(first)


def test_sink_killed_mid_batch_and_restarted_leaves_exactly_one_row_per_image(
    pipeline: Pipeline, backend: str
) -> None:
    """SIGKILL of the sink while it writes batches, then a restart: every record is redelivered
    (no offsets were committed) and ClickHouse still holds exactly one row per image (FINAL;
    uniqExact over every stored row): the replays collapse."""
    count = 3000
    pipeline.env.update(
        {"FLOWFORGE_SINK_BATCH_SIZE": "100", "FLOWFORGE_WORKER_COMMIT_INTERVAL_S": "600"}
    )
    pipeline.produce_metadata(metadata_record(i) for i in range(count))
    port = pipeline.start_worker(agents="sink")
    inserted = pipeline.wait_until(
        lambda: pipeline.metric(port, "flowforge_sink_rows_total", outcome="inserted") >= 300,
        "the first batches inserted",
    )
    assert inserted
    pipeline.kill_worker(port, signal.SIGKILL)
    port = pipeline.start_worker(port, agents="sink")
    pipeline.wait_until(lambda: pipeline.rows() == count, "all rows", 120)

    def replayed() -> float:
        return pipeline.metric(port, "flowforge_sink_rows_total", outcome="inserted")

    # Every image has a row as soon as the replay covers what the killed sink had not
    # inserted: the replay of what it had may still be on its way. Had an offset been
    # committed, the replay would stop short of ``count`` and this wait fail.
    pipeline.wait_until(lambda: replayed() >= count, "every record given again", 60)
    assert replayed() == count, "the restarted sink should have been given every record once"
    _stop(pipeline, port)
    [[final, distinct]] = pipeline.query_engine(
        "SELECT (SELECT count() FROM images_metadata FINAL), uniqExact(image_id) "
        "FROM images_metadata"
    )
    assert (final, distinct) == (count, count)


def test_clickhouse_outage_spools_rows_and_drains_them_when_it_returns(
    pipeline: Pipeline, backend: str, tmp_path: Path
) -> None:
    """With ClickHouse refusing, timing out, then answering TOO_MANY_PARTS, processing goes on,
    rows go to the spool, /readyz says degraded; once it answers, the spool drains in full."""
    faults = tmp_path / "faults.json"
    write_fault(faults, "refused")
    pipeline.env["FLOWFORGE_SINK_FAULT_FILE"] = str(faults)
    pipeline.env["FLOWFORGE_SINK_RETRY_MAX_S"] = "1"
    cases = mixed_set()
    ids = pipeline.produce((name, payload) for name, (payload, _) in cases.items())
    port = pipeline.start_worker(agents="process,sink")
    out = pipeline.collect(len(ids))  # processing is not held up by the outage
    assert len(set(out.ids())) == len(ids)

    def spooled() -> float:
        return pipeline.metric(port, "flowforge_sink_spool_rows")

    pipeline.wait_until(lambda: spooled() == len(ids), "every row spooled")
    code, body = pipeline.status(port, "/readyz")
    assert (code, "degraded: ClickHouse unavailable" in body) == (503, True), body
    for fault in ("timeout", "too_many_parts"):
        failures = pipeline.metric(port, "flowforge_sink_insert_failures_total")
        write_fault(faults, fault)
        pipeline.wait_until(
            lambda f=failures: pipeline.metric(port, "flowforge_sink_insert_failures_total") > f,
            f"a retry failing with {fault}",
        )
        assert spooled() == len(ids)
    write_fault(faults, None)
    pipeline.wait_until(lambda: spooled() == 0, "the spool drained", 60)
    assert pipeline.metric(port, "flowforge_sink_rows_total", outcome="drained") == len(ids)
    pipeline.wait_until(lambda: pipeline.rows() == len(ids), "all rows")
    code, body = pipeline.status(port, "/readyz")
    assert code == 200, body


def test_rows_clickhouse_refuses_are_bisected_out_and_dead_lettered(
    pipeline: Pipeline, backend: str
) -> None:
    """Rows the engine itself refuses (a CHECK constraint) are found by bisecting their batch:
    each goes to the dead-letter topic as it came (reason clickhouse_rejected, the engine's
    code and words in the detail), and every other row of the batch is written."""
    pipeline.env["FLOWFORGE_SINK_BATCH_SIZE"] = "40"
    pipeline.migrate()
    pipeline.query_engine(
        "ALTER TABLE images_metadata ADD CONSTRAINT no_bad_source CHECK source_id != 'bad'"
    )
    bad = {3, 17, 18, 39}
    records = [metadata_record(i, source="bad" if i in bad else "cam-01") for i in range(40)]
    pipeline.produce_metadata(records)
    port = pipeline.start_worker(agents="sink")
    pipeline.wait_until(
        lambda: (
            pipeline.metric(port, "flowforge_sink_rows_total", outcome="dead_lettered") == len(bad)
        ),
        "the refused rows dead-lettered",
    )
    pipeline.wait_until(lambda: pipeline.rows() == len(records) - len(bad), "the other rows")
    assert pipeline.metric(port, "flowforge_sink_insert_failures_total", kind="rejected") > len(bad)
    dead = pipeline.collect_written().dlq
    assert sorted(data for _, data in dead) == sorted(records[i] for i in bad)
    for headers, _ in dead:
        assert (headers["ff-error-stage"], headers["ff-error-reason"]) == (
            "sink",
            "clickhouse_rejected",
        )
        detail = headers["ff-error-detail"]
        assert "(code 469)" in detail, detail
        assert "Constraint `no_bad_source`" in detail, detail
    stored = pipeline.query_engine("SELECT DISTINCT source_id FROM images_metadata")
    assert stored == [["cam-01"]]


def test_inserts_stored_but_their_replies_lost_are_dropped_by_their_tokens(
    pipeline: Pipeline, backend: str, tmp_path: Path
) -> None:
    """Inserts the engine stores but whose replies are lost (the fault hook raises after the
    client call returned) are re-sent with their deduplication tokens and dropped as copies:
    with merges stopped (so the table cannot collapse them), count() without FINAL is one row
    per record."""
    count = 600
    faults = tmp_path / "faults.json"
    write_fault(faults, "lost_reply")
    pipeline.env.update(
        {
            "FLOWFORGE_SINK_FAULT_FILE": str(faults),
            "FLOWFORGE_SINK_BATCH_SIZE": "50",
            "FLOWFORGE_SINK_RETRY_MAX_S": "1",
        }
    )
    pipeline.migrate()
    pipeline.query_engine(
        "ALTER TABLE images_metadata MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = 1"
    )
    pipeline.produce_metadata(metadata_record(i) for i in range(count))
    port = pipeline.start_worker(agents="sink")

    def lost() -> float:
        return pipeline.metric(port, "flowforge_sink_insert_failures_total", kind="unavailable")

    pipeline.wait_until(lambda: lost() >= 3, "three inserts stored with their replies lost")
    write_fault(faults, None)
    pipeline.wait_until(lambda: pipeline.rows() == count, "all rows")
    pipeline.wait_until(
        lambda: pipeline.metric(port, "flowforge_sink_spool_rows") == 0, "the spool drained"
    )
    [[raw, distinct, parts]] = pipeline.query_engine(
        "SELECT count(), uniqExact(image_id), (SELECT count() FROM system.parts WHERE "
        "database = currentDatabase() AND table = 'images_metadata' AND active) "
        "FROM images_metadata"
    )
    assert parts > 1, "the table's parts were merged: a token cannot be told from a merge"
    assert (raw, distinct) == (count, count), "a stored insert was written twice"


def test_spool_at_its_bound_pauses_consumption_and_drops_nothing(
    pipeline: Pipeline, backend: str, tmp_path: Path
) -> None:
    """At the spool's size bound the sink stops consuming (paused, spool no longer grows) and,
    once ClickHouse answers, every record still arrives."""
    count = 8000
    faults = tmp_path / "faults.json"
    write_fault(faults, "refused")
    pipeline.env.update(
        {
            "FLOWFORGE_SINK_FAULT_FILE": str(faults),
            "FLOWFORGE_SINK_SPOOL_MAX_MB": "1",
            "FLOWFORGE_SINK_BATCH_SIZE": "200",
            "FLOWFORGE_SINK_RETRY_MAX_S": "1",
        }
    )
    pipeline.produce_metadata(metadata_record(i) for i in range(count))
    port = pipeline.start_worker(agents="sink")
    pipeline.wait_until(
        lambda: pipeline.metric(port, "flowforge_sink_paused") == 1, "back-pressure", 120
    )
    held = pipeline.metric(port, "flowforge_sink_spool_rows")
    size = pipeline.metric(port, "flowforge_sink_spool_bytes")
    # Three more failed inserts (retried at most 1 s apart) show the sink kept running paused.
    failures = pipeline.metric(port, "flowforge_sink_insert_failures_total")
    pipeline.wait_until(
        lambda: pipeline.metric(port, "flowforge_sink_insert_failures_total") >= failures + 3,
        "three more failed inserts",
        60,
    )
    assert pipeline.metric(port, "flowforge_sink_spool_rows") == held, "spool grew while paused"
    assert 0 < held < count
    assert 1024 * 1024 <= size < 1024 * 1024 + 200 * 1024, size  # the bound, plus one batch
    code, body = pipeline.status(port, "/readyz")
    assert (code, "spool full" in body) == (503, True), body

    write_fault(faults, None)
    pipeline.wait_until(lambda: pipeline.rows() == count, "all rows", 120)
    assert pipeline.metric(port, "flowforge_sink_paused") == 0


def test_records_that_are_not_metadata_go_to_the_dead_letter_topic(
    pipeline: Pipeline, backend: str
) -> None:
    """Junk on images.metadata is dead-lettered with the sink's reason; good records around it
    are written, and the sink goes on."""
    junk = [b"not json", b'{"image_id": "x"}', b"[1, 2]"]
    pipeline.produce_metadata([metadata_record(1), *junk, metadata_record(2)])
    port = pipeline.start_worker(agents="sink")
    pipeline.wait_until(lambda: pipeline.rows() == 2, "the two good rows")
    out = pipeline.collect(2, settle=2)
    assert sorted(data for _, data in out.dlq) == sorted(junk)
    for headers, _ in out.dlq:
        assert (headers["ff-error-stage"], headers["ff-error-reason"]) == ("sink", "bad_metadata")
        assert headers["ff-original-topic"] == pipeline.kafka.topic_metadata
    assert pipeline.alive(port)
    assert pipeline.metric(port, "flowforge_sink_rows_total", outcome="dead_lettered") == 3


def test_stats_without_a_running_worker_reads_the_engine_itself(pipeline: Pipeline) -> None:
    """`flowforge stats` with no worker owning the engine opens it directly and prints a table."""
    pipeline.produce_metadata([metadata_record(i, source="cam-09") for i in range(5)])
    port = pipeline.start_worker(agents="sink")
    pipeline.wait_until(lambda: pipeline.rows() == 5, "rows")
    _stop(pipeline, port)
    env = dict(pipeline.env, COLUMNS="200")
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", "stats"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()
    assert header.split()[:2] == ["source", "images"]
    assert row.split()[:3] == ["cam-09", "5", "5"]


def test_a_stopped_sink_closes_its_spool_and_its_clickhouse_client(
    pipeline: Pipeline, backend: str
) -> None:
    """SIGTERM of a sink worker ends with its spool closed (SQLite's last connection removes the
    -wal file) and its ClickHouse client closed, said in its log; the exit is clean."""
    pipeline.produce_metadata(metadata_record(i) for i in range(20))
    port = pipeline.start_worker(agents="sink")
    pipeline.wait_until(lambda: pipeline.rows() == 20, "all rows")
    spool = Settings.from_env(pipeline.env).with_worker_port(port, derive_data_dir=True)
    wal = spool.sink.spool_path.with_name(spool.sink.spool_path.name + "-wal")
    assert wal.exists(), "the running sink's spool should be open in WAL mode"
    assert pipeline.workers[port].signal(signal.SIGTERM, timeout=60) == 0
    log = pipeline.worker_log(port)
    assert "sink: stopped; spool and ClickHouse client closed" in log, log[-3000:]
    assert not wal.exists(), "the spool was not closed"


def test_a_clickhouse_server_down_at_start_does_not_stop_processing(pipeline: Pipeline) -> None:
    """A worker started while its ClickHouse server is down keeps processing: every image gets
    its outcome on Kafka, the rows wait in the spool, and /readyz says ClickHouse is
    unavailable (the server's clients connect once it answers)."""
    pipeline.env["FLOWFORGE_CLICKHOUSE_URL"] = f"http://127.0.0.1:{free_port()}"
    pipeline.env["FLOWFORGE_SINK_RETRY_MAX_S"] = "1"
    cases = mixed_set()
    ids = pipeline.produce((name, payload) for name, (payload, _) in cases.items())
    port = pipeline.start_worker(agents="process,sink")
    out = pipeline.collect(len(ids))
    assert set(out.ids()) == set(ids)
    pipeline.wait_until(
        lambda: pipeline.metric(port, "flowforge_sink_spool_rows") == len(ids), "rows spooled"
    )
    code, body = pipeline.status(port, "/readyz")
    assert (code, "degraded: ClickHouse unavailable" in body) == (503, True), body
    assert pipeline.alive(port)


def _commit_metadata_ends(pipeline: Pipeline, group: str) -> int:
    """Commit, for ``group``, the end offset of every images.metadata partition (as a worker
    that had read everything there would have); the records that were there."""

    async def commit() -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=pipeline.settings.kafka.bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            topic = pipeline.kafka.topic_metadata
            tps = [TopicPartition(topic, p) for p in range(pipeline.settings.kafka.partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await consumer.commit(dict(ends))
            return sum(ends.values())
        finally:
            await consumer.stop()

    return asyncio.run(commit())


def test_a_sink_upgraded_from_faust_starts_where_the_workers_group_left_off(
    pipeline: Pipeline,
) -> None:
    """Before the sink had its own consumer, a worker running both roles consumed
    images.metadata in its Faust group (``<app id>``). On partitions its own group
    (``<app id>-sink``) never committed, the sink starts at that group's commit, not at the
    earliest record: an upgrade does not write every retained record again."""
    pipeline.produce_metadata(metadata_record(i) for i in range(300))
    assert _commit_metadata_ends(pipeline, pipeline.settings.worker.app_id) == 300
    pipeline.produce_metadata(metadata_record(i) for i in range(300, 340))
    port = pipeline.start_worker(agents="process,sink")
    pipeline.wait_until(lambda: pipeline.rows() == 40, "the records after the commit")
    pipeline.produce_metadata(metadata_record(i) for i in range(340, 350))
    pipeline.wait_until(lambda: pipeline.rows() == 50, "a record sent later")
    assert pipeline.metric(port, "flowforge_sink_rows_total", outcome="inserted") == 50
    [[lowest]] = pipeline.query_engine("SELECT min(image_id) FROM images_metadata")
    assert lowest == "cam-01-000300"


def test_a_worker_running_both_roles_processes_while_its_sink_is_paused(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """The sink's consumer is its own: while its spool is full (ClickHouse refusing) and it
    waits for room, the same worker's process agent goes on giving images their outcomes."""
    faults = tmp_path / "faults.json"
    write_fault(faults, "refused")
    pipeline.env.update(
        {
            "FLOWFORGE_SINK_FAULT_FILE": str(faults),
            "FLOWFORGE_SINK_SPOOL_MAX_MB": "0.25",
            "FLOWFORGE_SINK_BATCH_SIZE": "200",
        }
    )
    pipeline.produce_metadata(metadata_record(i) for i in range(4000))
    port = pipeline.start_worker(agents="process,sink")
    pipeline.wait_until(
        lambda: pipeline.metric(port, "flowforge_sink_paused") == 1, "back-pressure", 120
    )
    ids = pipeline.produce((f"img-{i}", jpeg(scene(320, 240, seed=i))) for i in range(20))
    out = pipeline.collect(4000 + len(ids))  # the metadata records there are outcomes too
    assert set(ids) <= set(out.ids())
    assert pipeline.metric(port, "flowforge_sink_paused") == 1, "the sink was not paused"
    write_fault(faults, None)
    pipeline.wait_until(lambda: pipeline.rows() == 4000 + len(ids), "every row", 120)
