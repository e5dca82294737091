"""Sink throughput into the embedded ClickHouse through the real broker, and the spool's drain rate.

    .venv/bin/python -m bench.sink_throughput [--rows 200000] [--baseline-rows 1000] [--repeat 1]
                                              [--quick]

Starts the test stack (tests/stack.env) unless it is running, and stops what it started. Each
variant publishes synthetic images.metadata records (as a worker sends them) to fresh topics,
runs one `flowforge worker --agents sink` with its own embedded engine, and measures rows/s from
the rows' own ``inserted_at`` (first to last). Variants, one run:

- baseline: ``FLOWFORGE_SINK_BATCH_SIZE=1`` (one insert per record, what a naive sink does);
- default: the default batch size (1000) and flush age;
- drain: ClickHouse refused (fault drill) until every row is spooled, then answering: the rate
  at which the spool is written back;
- paced: records sent one by one at ``PACED_RATE`` rows/s (as a processing worker sends them)
  for ``--paced-s`` seconds: the sink worker's CPU per row (process CPU, the embedded engine's
  threads included) from the first paced record to the last row inserted;
- queries: the default batch while ``QUERY_CLIENTS`` clients keep querying the sink worker's
  ClickHouse HTTP interface, each in a loop of: `flowforge stats`' query, a malformed query, a
  query whose result is over the result-size limit, and a query that waits a second (the
  figure: its rows/s against the default's, and the queries answered and refused meanwhile).

Prints JSON with rows/s per variant and the ratios to the baseline, and writes
bench/results/sink_throughput.json: ``batch1_rows_per_s``, ``default_batch_rows_per_s``,
``spool_drain_rows_per_s``, ``default_over_batch1``, ``drain_over_batch1``,
``queries_rows_per_s``, ``queries_over_default``, ``queries_answered``, ``queries_refused``,
``paced_cpu_ms_per_row`` (per run).
``--quick``: 50,000 rows (five default batches), 200 baseline rows, 20 paced seconds, one run
(what `make bench` runs).
Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psutil
from aiokafka import AIOKafkaProducer

from bench.load import cpu_seconds
from bench.results import Figure, description, write
from flowforge.core import stats
from flowforge.core.faults import write_fault
from flowforge.core.settings import Settings
from tests.support.pipeline import Pipeline, make_pipeline, metadata_record
from tests.support.stack import running_stack, stack_env

_DEFAULT = Settings.from_env({}).sink


def _rows_per_s(pipeline: Pipeline, rows: int) -> float:
    """Rows/s from the rows' own ``inserted_at`` (ClickHouse's ``now64(3)``, one value per
    insert): the rows of the inserts after the first, over the time from the first insert to
    the last. (Counting the first insert's rows too credits them with no time: with batches of
    N rows that overstates the rate by one batch in the run.)"""
    [[count, first, seconds]] = pipeline.query_engine(
        "SELECT count(), countIf(inserted_at = (SELECT min(inserted_at) FROM images_metadata)), "
        "dateDiff('millisecond', min(inserted_at), max(inserted_at)) / 1000 "
        "FROM images_metadata"
    )
    assert count == rows, f"{count} of {rows} rows"
    assert first < rows, "one insert: no rate (more rows than one batch are needed)"
    return (rows - first) / max(float(seconds), 1e-3)


def _wait(condition: object, what: str, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


#: Clients querying the sink worker's HTTP interface in the ``queries`` variant: the interface's
#: default bound on queries running at once (FLOWFORGE_CLICKHOUSE_HTTP_MAX_QUERIES).
QUERY_CLIENTS = 4

#: One client's loop: what a dashboard and careless users send.
QUERY_MIX = (
    ("stats", stats.SQL.replace("{since_s:UInt64}", str(stats.ALL_TIME_S))),
    ("malformed", "SELEC count() FROM images_metadata"),
    ("huge", "SELECT repeat('x', 1000) FROM numbers(100000000)"),
    ("slow", "SELECT sleep(1)"),
)


class QueryLoad:
    """``QUERY_CLIENTS`` threads querying ``pipeline``'s ClickHouse over HTTP until stopped;
    counts the queries answered and refused (a ClickHouse error, as a user would get)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.counts: Counter[str] = Counter()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, daemon=True) for _ in range(QUERY_CLIENTS)
        ]

    def __enter__(self) -> QueryLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _loop(self) -> None:
        client = None
        while not self.stop.is_set():
            if client is None:
                client = self.pipeline.http_client()
                if client is None:  # the worker's interface is not up yet
                    time.sleep(0.2)
                    continue
            for name, sql in QUERY_MIX:
                try:
                    client.query(sql)
                    self.counts[f"{name} answered"] += 1
                except Exception:  # noqa: BLE001 - a refused query is what the load measures
                    self.counts[f"{name} refused"] += 1
        if client is not None:
            client.close()


def _pipeline(variant: str, workdir: Path) -> Pipeline:
    """Fresh topics and an app id for one variant's run, on the running stack."""
    env = stack_env()
    name = f"bench.sink.{variant}.{uuid.uuid4().hex[:8]}"
    return make_pipeline(name, Settings.from_env(env), env, workdir)


#: Rows/s of the ``paced`` variant: issue 18's rate for the sink's CPU per row.
PACED_RATE = 100.0


async def _send_paced(pipeline: Pipeline, first: int, count: int, rate: float) -> None:
    """Send metadata records ``first``.. one by one at ``rate``/s, as a worker sends them."""
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.settings.kafka.bootstrap_servers, acks="all"
    )
    await producer.start()
    try:
        began = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            await producer.send(
                pipeline.kafka.topic_metadata, metadata_record(first + i), key=b"cam-01"
            )
        await producer.flush()
    finally:
        await producer.stop()


def paced_cpu_ms_per_row(seconds: float) -> float:
    """The sink worker's CPU per row at PACED_RATE rows/s (see the module's docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = _pipeline("paced", Path(tmp))
        warm = 10
        pipeline.produce_metadata(metadata_record(i) for i in range(warm))
        port = pipeline.start_worker(agents="sink")

        def inserted() -> float:
            return pipeline.metric(port, "flowforge_sink_rows_total", outcome="inserted")

        try:
            _wait(lambda: inserted() >= warm, "the first rows")
            worker = psutil.Process(pipeline.workers[port].pid)
            count = int(PACED_RATE * seconds)
            before = cpu_seconds(worker)
            asyncio.run(_send_paced(pipeline, warm, count, PACED_RATE))
            _wait(lambda: inserted() >= warm + count, "every paced row written")
            used = cpu_seconds(worker) - before
        finally:
            pipeline.stop_all()
        return 1000 * used / count


def run(
    variant: str,
    rows: int,
    env_extra: dict[str, str],
    drain: bool = False,
    queries: Counter[str] | None = None,
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = _pipeline(variant, Path(tmp))
        pipeline.env.update(env_extra)
        faults = Path(tmp) / "faults.json"
        if drain:
            write_fault(faults, "refused")
            pipeline.env["FLOWFORGE_SINK_FAULT_FILE"] = str(faults)
            pipeline.env["FLOWFORGE_SINK_RETRY_MAX_S"] = "0.5"
        pipeline.produce_metadata(metadata_record(i) for i in range(rows))
        load = QueryLoad(pipeline) if queries is not None else None
        port = pipeline.start_worker(agents="sink")
        if load is not None:
            load.__enter__()
        try:
            if drain:
                _wait(
                    lambda: pipeline.metric(port, "flowforge_sink_spool_rows") == rows,
                    "every row spooled",
                )
                write_fault(faults, None)
            _wait(
                lambda: (
                    (
                        pipeline.metric(port, "flowforge_sink_rows_total", outcome="inserted")
                        + pipeline.metric(port, "flowforge_sink_rows_total", outcome="drained")
                    )
                    >= rows
                ),
                "every row written",
            )
        finally:
            if load is not None:
                load.__exit__()
                queries.update(load.counts)  # type: ignore[union-attr]
            pipeline.stop_all()
        return _rows_per_s(pipeline, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--baseline-rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--paced-s", type=float, default=60.0)
    parser.add_argument(
        "--quick", action="store_true", help="50,000 rows, 200 baseline, 20 paced s, 1 run"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.baseline_rows, args.paced_s, args.repeat = 50_000, 200, 20.0, 1
    figures = {
        "batch1_rows_per_s": Figure("sink, batch size 1", "rows/s"),
        "default_batch_rows_per_s": Figure(
            f"sink, default batch ({_DEFAULT.batch_size:,}, {_DEFAULT.flush_s} s)", "rows/s"
        ),
        "spool_drain_rows_per_s": Figure("sink spool drain", "rows/s"),
        "default_over_batch1": Figure("default batch / batch 1", "x"),
        "drain_over_batch1": Figure("spool drain / batch 1", "x"),
        "queries_rows_per_s": Figure(
            f"sink, default batch, {QUERY_CLIENTS} query clients", "rows/s"
        ),
        "queries_over_default": Figure("with query load / default", "x"),
        "queries_answered": Figure("queries answered during the load run", "queries"),
        "queries_refused": Figure("queries refused during the load run", "queries"),
        "paced_cpu_ms_per_row": Figure(f"sink worker CPU per row at {PACED_RATE:.0f} rows/s", "ms"),
    }
    with running_stack():
        for _ in range(args.repeat):
            baseline = run("batch1", args.baseline_rows, {"FLOWFORGE_SINK_BATCH_SIZE": "1"})
            default = run("default", args.rows, {})
            drain = run("drain", args.rows, {}, drain=True)
            counts: Counter[str] = Counter()
            loaded = run("queries", args.rows, {}, queries=counts)
            print(f"query load: {dict(sorted(counts.items()))}")
            figures["batch1_rows_per_s"].add(baseline)
            figures["default_batch_rows_per_s"].add(default)
            figures["spool_drain_rows_per_s"].add(drain)
            figures["default_over_batch1"].add(default / baseline)
            figures["drain_over_batch1"].add(drain / baseline)
            figures["queries_rows_per_s"].add(loaded)
            figures["queries_over_default"].add(loaded / default)
            answered = sum(n for k, n in counts.items() if k.endswith("answered"))
            figures["queries_answered"].add(answered)
            figures["queries_refused"].add(sum(counts.values()) - answered)
            figures["paced_cpu_ms_per_row"].add(paced_cpu_ms_per_row(args.paced_s))
    print(
        json.dumps(
            {
                "rows": args.rows,
                "baseline_rows": args.baseline_rows,
                **{key: round(figure.median, 3) for key, figure in figures.items()},
            },
            indent=2,
        )
    )
    params = {
        "rows": args.rows,
        "baseline_rows": args.baseline_rows,
        "paced_s": args.paced_s,
        "repeat": args.repeat,
    }
    print(f"wrote {write('sink_throughput', figures, params)}")


if __name__ == "__main__":
    main()
