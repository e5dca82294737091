"""Worker throughput through the real broker: the fast path against the plain path, one run.

    .venv/bin/python -m bench.worker_throughput [--images 600] [--concurrency 2] [--repeat 2]
                                                [--quick]

Starts the test stack (tests/stack.env) unless it is running, and stops what it started.
Publishes the same deterministic 1280x720 q85 JPEGs to a fresh topic for each variant, starts
one `flowforge worker`, and times first outcome to last (from the records' processed_at).
Prints min/median/max images/s per variant and the ratio fast/plain, and writes
bench/results/worker_throughput.json: ``plain_images_per_s``, ``fast_images_per_s`` and their
per-round ratio ``fast_over_plain``. ``--quick``: 300 images, one round (what `make bench` runs).
Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.results import Figure, description, write
from flowforge.core.settings import Settings
from tests.support.images import jpeg, numbered, scene
from tests.support.pipeline import make_pipeline
from tests.support.stack import running_stack, stack_env


def run(variant: str, fast: bool, payloads: list[bytes], concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = stack_env()
        name = f"bench.{variant}.{uuid.uuid4().hex[:8]}"
        pipeline = make_pipeline(name, Settings.from_env(env), env, Path(tmp))
        pipeline.env["FLOWFORGE_PROCESSING_FAST_PATH"] = "true" if fast else "false"
        pipeline.env["FLOWFORGE_WORKER_CONCURRENCY"] = str(concurrency)
        pipeline.produce((f"img-{i}", p) for i, p in enumerate(payloads))
        pipeline.start_worker()
        try:
            out = pipeline.collect(len(payloads), timeout=600)
        finally:
            pipeline.stop_all()
        done = [m["processed_at"] for m in out.metadata]
        assert len(done) == len(payloads), f"{variant}: {len(done)} of {len(payloads)} outcomes"
        first, last = min(done), max(done)
        from datetime import datetime

        seconds = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
        return (len(done) - 1) / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="300 images, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeat = 300, 1
    with running_stack():
        _measure(args)


def _measure(args: argparse.Namespace) -> None:
    base = [scene(1280, 720, seed=s) for s in range(4)]
    payloads = [jpeg(numbered(base[i % 4], i)) for i in range(args.images)]  # distinct ids
    results: dict[str, list[float]] = {"plain": [], "fast": []}
    for _ in range(args.repeat):
        for variant, fast in (("plain", False), ("fast", True)):
            results[variant].append(run(variant, fast, payloads, args.concurrency))
            time.sleep(1)
    summary = {
        variant: {"min": min(v), "median": statistics.median(v), "max": max(v)}
        for variant, v in results.items()
    }
    ratio = summary["fast"]["median"] / summary["plain"]["median"]
    figures = {
        "plain_images_per_s": Figure("worker, plain path (full decode)", "images/s"),
        "fast_images_per_s": Figure("worker, fast path (reduced decode)", "images/s"),
        "fast_over_plain": Figure("worker fast / plain", "x"),
    }
    for plain, fast in zip(results["plain"], results["fast"], strict=True):
        figures["plain_images_per_s"].add(plain)
        figures["fast_images_per_s"].add(fast)
        figures["fast_over_plain"].add(fast / plain)
    params = {"images": args.images, "concurrency": args.concurrency, "repeat": args.repeat}
    write("worker_throughput", figures, params)
    print(
        json.dumps(
            {
                "images": args.images,
                "concurrency": args.concurrency,
                **summary,
                "fast_over_plain": ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
