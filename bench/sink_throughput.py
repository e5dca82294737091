"""Sink throughput into the embedded ClickHouse through the real broker, and the spool's drain rate.

    .venv/bin/python -m bench.sink_throughput [--rows 50000] [--baseline-rows 1000]

Starts the test stack (tests/stack.env) unless it is running, and stops what it started. Each
variant publishes synthetic images.metadata records (as a worker sends them) to fresh topics,
runs one `flowforge worker --agents sink` with its own embedded engine, and measures rows/s from
the rows' own ``inserted_at`` (first to last). Variants, one run:

- baseline: ``FLOWFORGE_SINK_BATCH_SIZE=1`` (one insert per record, what a naive sink does);
- default: the default batch size (1000) and flush age;
- drain: ClickHouse refused (fault drill) until every row is spooled, then answering: the rate
  at which the spool is written back.

Prints JSON with rows/s per variant and the ratios to the baseline; not a test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

from bench.stack import running_test_stack
from flowforge.faults import write_fault
from flowforge.settings import Settings
from tests.conftest import stack_env
from tests.integration.harness import Pipeline, make_pipeline, metadata_record


def _rows_per_s(pipeline: Pipeline, rows: int) -> float:
    [[count, seconds]] = pipeline.query_engine(
        "SELECT count(), dateDiff('millisecond', min(inserted_at), max(inserted_at)) / 1000 "
        "FROM images_metadata"
    )
    assert count == rows, f"{count} of {rows} rows"
    return (rows - 1) / max(float(seconds), 1e-3)


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


def run(variant: str, rows: int, env_extra: dict[str, str], drain: bool = False) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = stack_env()
        name = f"bench.sink.{variant}.{uuid.uuid4().hex[:8]}"
        pipeline = make_pipeline(name, Settings.from_env(env), env, Path(tmp))
        pipeline.env.update(env_extra)
        faults = Path(tmp) / "faults.json"
        if drain:
            write_fault(faults, "refused")
            pipeline.env["FLOWFORGE_SINK_FAULT_FILE"] = str(faults)
            pipeline.env["FLOWFORGE_SINK_RETRY_MAX_S"] = "0.5"
        pipeline.produce_metadata(metadata_record(i) for i in range(rows))
        port = pipeline.start_worker(agents="sink")
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
            pipeline.stop_all()
        return _rows_per_s(pipeline, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--baseline-rows", type=int, default=1000)
    args = parser.parse_args()
    with running_test_stack():
        baseline = run("batch1", args.baseline_rows, {"FLOWFORGE_SINK_BATCH_SIZE": "1"})
        default = run("default", args.rows, {})
        drain = run("drain", args.rows, {}, drain=True)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "baseline_rows": args.baseline_rows,
                "batch1_rows_per_s": round(baseline),
                "default_batch_rows_per_s": round(default),
                "spool_drain_rows_per_s": round(drain),
                "default_over_batch1": round(default / baseline, 1),
                "drain_over_batch1": round(drain / baseline, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
