"""Soak: a steady rate through the whole local stack for a long time, watching for leaks and
growing backlogs, and checking that no image is lost.

    python -m bench.soak [--minutes 30] [--rate 12] [--resolution 720p]

MQTT (QoS 1) -> `flowforge bridge mqtt` -> Kafka -> `flowforge worker --agents process` ->
`flowforge worker --agents sink` -> the embedded ClickHouse, on a private stack (bench/load.py:
the same load generator and process sampler as bench.e2e). Every 10 s: RSS (and its anonymous
part apart), open file descriptors and threads of the three FlowForge processes, the Kafka
consumer lag of the worker's group (images.raw) and of the sink's group (images.metadata), and
the sink's spool depth.

Pass: no series trends upward beyond noise (bench/trend.py states the rule), the per-thread
/proc stat descriptors (bench/load.py:thread_stat_fds) stay within three per thread, and every
published image is a row in ClickHouse exactly once (FINAL count = published, no id missing or
extra).
Writes bench/results/soak.json (figures and verdicts), soak_samples.csv and soak.png; exits 1
on a failure. Not a test (`make soak`).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.load import THREAD_STAT_FILES, Frames, LoadedPipeline, Sampler, loaded_pipeline
from bench.results import RESULTS_DIR, Figure, description, write
from bench.trend import Trend, trend
from flowforge.cli.topics import inspect_topics

INTERVAL_S = 10.0
PROCESSES = ("bridge", "worker", "sink")
# Absolute rises that are no growth for the series at hand (see bench/trend.py).
FLOORS = {"rss_mb": 8.0, "rss_anon_mb": 8.0, "fds": 8.0, "threads": 3.0, "spool_rows": 50.0}


def lag_floor(rate: float) -> float:
    """Consumer lag swings with the commit interval (Faust commits every few seconds): the
    messages of 10 s at the soak's rate are no growth."""
    return 10.0 * rate


def kafka_sampler(lp: LoadedPipeline) -> Any:
    """Returns a function giving the two groups' lag and the sink's spool depth."""
    kafka = lp.e2e.pipeline.settings.kafka
    group = lp.e2e.pipeline.settings.worker.app_id

    async def lags() -> tuple[int, int]:
        [raw] = await inspect_topics(kafka, [kafka.topic_raw], group=group)
        [metadata] = await inspect_topics(kafka, [kafka.topic_metadata], group=f"{group}-sink")
        return raw.lag or 0, metadata.lag or 0

    def sample() -> dict[str, float]:
        worker_lag, sink_lag = asyncio.run(lags())
        return {
            "lag_worker": float(worker_lag),
            "lag_sink": float(sink_lag),
            "spool_rows": lp.metric("flowforge_sink_spool_rows"),
        }

    return sample


def verdicts(rows: list[dict[str, float]], rate: float) -> dict[str, Trend]:
    """The trend rule on every sampled series (CPU seconds excepted: they grow by nature; and
    the per-thread /proc stat descriptors: bounded by the threads, see :func:`unbounded`)."""
    times = [r["t"] for r in rows]
    out = {}
    for key in rows[0]:
        if key == "t" or key.endswith(("_cpu_s", "_thread_stat_fds")):
            continue
        kind = key.split("_", 1)[1] if key.split("_", 1)[0] in PROCESSES else key
        floor = lag_floor(rate) if kind.startswith("lag") else FLOORS.get(kind, 0.0)
        out[key] = trend(times, [r[key] for r in rows], floor=floor)
    return out


def unbounded(rows: list[dict[str, float]]) -> list[str]:
    """Processes whose per-thread /proc stat descriptors ever exceeded three per thread (the
    engine's per-thread metrics open three files per thread and no more: beyond that it is a
    leak, whatever the trend). The threads themselves are judged by the trend rule."""
    out = []
    for proc in PROCESSES:
        per_thread = len(THREAD_STAT_FILES)
        worst = max(r[f"{proc}_thread_stat_fds"] - per_thread * r[f"{proc}_threads"] for r in rows)
        if worst > 0:
            out.append(f"{proc}: {worst:.0f} per-thread /proc descriptors beyond 3 per thread")
    return out


def plot(rows: list[dict[str, float]], marks: dict[str, Trend], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("RSS (MB)\n(dashed: anonymous part)", "rss_mb"),
        ("open file descriptors\n(dashed: per-thread /proc)", "fds"),
        ("threads", "threads"),
    ]
    fig, axes = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    minutes = [r["t"] / 60 for r in rows]
    for ax, (label, kind) in zip(axes, panels, strict=False):
        for proc in PROCESSES:
            key = f"{proc}_{kind}"
            flag = " (TRENDS UP)" if marks[key].upward else ""
            line = ax.plot(minutes, [r[key] for r in rows], label=f"{proc}{flag}")
            if kind == "rss_mb":
                ax.plot(
                    minutes,
                    [r[f"{proc}_rss_anon_mb"] for r in rows],
                    linestyle="--",
                    color=line[0].get_color(),
                )
            if kind == "fds" and any(r[f"{proc}_thread_stat_fds"] for r in rows):
                ax.plot(
                    minutes,
                    [r[f"{proc}_thread_stat_fds"] for r in rows],
                    linestyle="--",
                    color=line[0].get_color(),
                    label=f"{proc}: per-thread /proc stat files (bounded: 3 x threads)",
                )
        ax.set_ylabel(label)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    ax = axes[3]
    for key, label in (
        ("lag_worker", "lag, worker group"),
        ("lag_sink", "lag, sink group"),
        ("spool_rows", "sink spool rows"),
    ):
        flag = " (TRENDS UP)" if marks[key].upward else ""
        ax.plot(minutes, [r[key] for r in rows], label=label + flag)
    ax.set_ylabel("messages / rows")
    ax.set_xlabel("minutes")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=12.0, help="images/s offered")
    parser.add_argument("--resolution", choices=("720p", "1080p"), default="720p")
    parser.add_argument(
        "--kafka-heap",
        default="1g",
        help="Java heap of the soak's private Kafka broker (default 1g, as in the tests; the "
        "local stack's own default is 512m)",
    )
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    name = f"bench-soak-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    print(f"bench.soak: {args.rate}/s of {args.resolution} for {args.minutes} min ({name})")
    with loaded_pipeline(name, kafka_heap=args.kafka_heap) as lp:
        frames = Frames(args.resolution, name)
        sampler = Sampler(lp.pids(), INTERVAL_S, extra=kafka_sampler(lp))
        sampler.start()
        publisher = lp.publish(frames, args.rate, seconds, "soak")
        while publisher.is_alive():
            publisher.join(60)
            if sampler.rows:
                last = sampler.rows[-1]
                print(
                    f"  {last['t'] / 60:5.1f} min: {publisher.published} published; RSS MB "
                    + ", ".join(f"{p} {last[f'{p}_rss_mb']:.0f}" for p in PROCESSES)
                    + f"; lag {last['lag_worker']:.0f}/{last['lag_sink']:.0f}; "
                    f"spool {last['spool_rows']:.0f}",
                    flush=True,
                )
        publisher.finish()
        rows = sampler.stop()
        drain_s = lp.wait_drained(timeout=300)
        published = set(lp.sent.at)
        lp.stop()
        found = lp.rows()
        final = lp.final_count()
    ids = {image_id for image_id, *_ in found}
    lost, extra = published - ids, ids - published
    repeated = sum(1 for _, n, *_ in found if n > 1)
    marks = verdicts(rows, publisher.offered_rate)
    trending = sorted(k for k, v in marks.items() if v.upward)
    beyond = unbounded(rows)
    delivered = not lost and not extra and final == len(published)
    passed = delivered and not trending and not beyond

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    csv_path = RESULTS_DIR / "soak_samples.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    png_path = RESULTS_DIR / "soak.png"
    title = (
        f"FlowForge soak: {publisher.offered_rate:.1f}/s {args.resolution}, "
        f"{args.minutes:g} min - {'PASS' if passed else 'FAIL'}"
    )
    plot(rows, marks, png_path, title)
    figures = {
        f"{p}_{kind}": Figure(
            f"{p} {kind} (max over the run)", unit, [max(r[f"{p}_{kind}"] for r in rows)]
        )
        for p in PROCESSES
        for kind, unit in (
            ("rss_mb", "MB"),
            ("rss_anon_mb", "MB"),
            ("fds", "fds"),
            ("thread_stat_fds", "fds"),
            ("threads", "threads"),
        )
    }
    figures["images_published"] = Figure("images published", "images", [len(published)])
    figures["images_lost"] = Figure("images lost", "images", [len(lost)])
    notes = [f"{'PASS' if passed else 'FAIL'}: {len(published)} published, {final} rows FINAL, "
             f"{len(lost)} lost, {len(extra)} unexpected, {repeated} ids with replayed raw rows; "
             f"drained {drain_s:.1f} s after the last publish"]  # fmt: skip
    notes += [f"{key}: {mark.describe()}" for key, mark in marks.items()]
    notes.append(
        "fds: open descriptors but the per-thread /proc stat files, which are judged against "
        "their bound instead (at most 3 per thread): "
        + ("; ".join(beyond) if beyond else "within it in every sample")
        + "; peak per-thread /proc descriptors: "
        + ", ".join(f"{p} {max(r[f'{p}_thread_stat_fds'] for r in rows):.0f}" for p in PROCESSES)
    )
    notes.append("trend rule: bench/trend.py (second half, least squares, projected over the run)")
    if args.minutes < 10:
        notes.append(
            "a run under 10 minutes is mostly warm-up: one-off steps (the embedded engine starts "
            "its background thread pools after a few minutes) land in the judged second half"
        )
    notes.append(f"samples: {csv_path.name}, plot: {png_path.name}")
    params = {
        "minutes": args.minutes,
        "rate": args.rate,
        "resolution": args.resolution,
        "kafka_heap": args.kafka_heap,
        "interval_s": INTERVAL_S,
        "floors": {**FLOORS, "lag": lag_floor(args.rate)},
    }
    path = write("soak", figures, params, notes)
    print(f"\nbench.soak ({time.monotonic() - started:.0f} s) -> {path}, {png_path}")
    for note in notes:
        print(f"  {note}")
    if trending:
        print(f"FAIL: trending upward: {', '.join(trending)}")
    if beyond:
        print(f"FAIL: {'; '.join(beyond)}")
    if not delivered:
        print(f"FAIL: {len(lost)} images lost, {len(extra)} unexpected, FINAL {final}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
