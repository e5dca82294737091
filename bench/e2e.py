"""End to end: images published over MQTT at QoS 1 -> `flowforge bridge mqtt` -> Kafka ->
`flowforge worker` (process) -> `flowforge worker` (sink) -> a ClickHouse row, on a private local
stack (the real Kafka and Mosquitto on free ports, the embedded ClickHouse engine in the sink).

    python -m bench.e2e [--quick] [--steady-minutes 10]

Phases, in one pipeline (bench/load.py has the load generator, the process sampler and the
pipeline), about 13 minutes by default (--quick: about 5):

1. A rate ramp per resolution (720p from 20/s, 1080p from 10/s, x1.4 per 10 s step, each step
   after the pipeline drained) until a step is not sustained (images/s the processing workers
   finished in the step's window after a 3 s warm-up under 90 % of the offered rate, or rows in
   ClickHouse not caught up with the images published within 4 s of the step's end), then one
   step halfway back. The maximum is the highest sustained step's offered rate (which the
   images followed); its CPU of the bridge, the processing worker and the sink
   (children included; Kafka, Mosquitto and the publisher excluded), each divided by the images
   that process handled, is the CPU-ms per image. The knee is the last step before the first
   whose latency p50 exceeds twice the lowest p50 of the steps before it (or that is not
   sustained).
2. 720p at 110 % of the maximum for 12 s while py-spy samples the worker and the bridge.
3. 720p at 25 % of the maximum for 40 s: the 25 % latency.
4. A steady run at 50 % of the 720p maximum (7 min; --steady-minutes 10 for the issue's 10, --quick
   2 min): the 50 % latency, RSS of each process sampled every 5 s, and RSS growth = (median RSS of
   the last minute - median RSS of minute 2) / the latter (under 5 min: last quarter against the
   second quarter).
5. A second processing worker joins; the 720p ramp again from 80 % of the maximum (x1.3): 1 vs 2.

Latency of an image = its row's ``inserted_at`` (ClickHouse's now64(3) at insert) minus the time
the publisher handed it to paho; rows are read from the engine once the sink has stopped. Not a
test; results in bench/results/e2e.json (+ e2e_profile.txt).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter as Tally
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.load import Frames, LoadedPipeline, Sampler, cpu_seconds, loaded_pipeline
from bench.results import RESULTS_DIR, Figure, description, write

RAMP_START = {"720p": 20.0, "1080p": 10.0}
RAMP_FACTOR = 1.4
RAMP_STEPS = 10
SUSTAINED = 0.9  # images/s at least this share of the offered rate ...
DRAINED_S = 4.0  # ... and the backlog gone within this many seconds after the step
CLIMB = 2.0  # latency p50 above this multiple of the lowest step's: climbing


@dataclass
class Timing:
    step_s: float = 10.0
    warm_s: float = 3.0
    low_s: float = 40.0
    steady_s: float = 420.0
    sample_s: float = 5.0

    @classmethod
    def quick(cls) -> Timing:
        return cls(step_s=8.0, low_s=20.0, steady_s=120.0)


@dataclass
class Window:
    """One phase: what was offered, what came out, and what it cost."""

    phase: str
    offered: float
    rows_per_s: float  # images the processing worker(s) finished per second in the window
    cpu_ms: dict[str, float]  # role -> CPU ms per image that role handled
    drain_s: float = 0.0

    @property
    def cpu_ms_per_image(self) -> float:
        return sum(self.cpu_ms.values())

    @property
    def sustained(self) -> bool:
        return self.rows_per_s >= SUSTAINED * self.offered and self.drain_s <= DRAINED_S


@dataclass
class Bench:
    lp: LoadedPipeline
    timing: Timing
    notes: list[str] = field(default_factory=list)
    windows: dict[str, Window] = field(default_factory=dict)

    def procs(self) -> dict[str, psutil.Process]:
        return {name: psutil.Process(pid) for name, pid in self.lp.pids().items()}

    def measure(
        self, frames: Frames, rate: float, seconds: float, phase: str, during: Any = None
    ) -> Window:
        """Offer ``rate``/s for ``seconds``; measure rows/s and CPU after the warm-up; wait
        until the pipeline drained."""
        procs = self.procs()
        publisher = self.lp.publish(frames, rate, seconds, phase)
        time.sleep(min(self.timing.warm_s, seconds / 3))
        t0, counts0 = time.monotonic(), self.lp.counts()
        cpu0 = {name: cpu_seconds(p) for name, p in procs.items()}
        if during is not None:
            during(seconds - (time.monotonic() - publisher.started))
        publisher.finish()
        t1, counts1 = time.monotonic(), self.lp.counts()
        cpu1 = {name: cpu_seconds(p) for name, p in procs.items()}
        cpu_ms: dict[str, float] = {}
        for role in ("bridge", "worker", "sink"):
            names = [n for n in procs if n.startswith(role)]
            images = sum(counts1[n] - counts0[n] for n in names)
            cpu = sum(cpu1[n] - cpu0[n] for n in names)
            cpu_ms[role] = 1000 * cpu / images if images else float("nan")
        # The processing workers' count: it moves per image, while the sink's moves per batch
        # (every 0.5 s), too coarse for a 7 s window.
        processed = sum(counts1[n] - counts0[n] for n in procs if n.startswith("worker"))
        window = Window(phase, publisher.offered_rate, processed / (t1 - t0), cpu_ms)
        window.drain_s = self.lp.wait_drained(timeout=300)
        self.windows[phase] = window
        print(
            f"  {phase:<26} offered {window.offered:6.1f}/s  done {window.rows_per_s:6.1f}/s  "
            f"cpu {window.cpu_ms_per_image:5.2f} ms/image "
            f"({', '.join(f'{k} {v:.2f}' for k, v in cpu_ms.items())})  "
            f"drained in {window.drain_s:.1f}s{'' if window.sustained else '  NOT SUSTAINED'}",
            flush=True,
        )
        return window

    def ramp(
        self, frames: Frames, prefix: str, start: float, factor: float = RAMP_FACTOR
    ) -> tuple[list[Window], Window | None]:
        """Offered rate stepped up by ``factor`` from ``start`` until a step is not sustained,
        then once halfway between the last sustained step and that one. Returns the steps in
        increasing rate order and the highest sustained step."""
        steps: list[Window] = []
        best: Window | None = None
        rate = start
        for _ in range(RAMP_STEPS):
            window = self.measure(frames, rate, self.timing.step_s, f"{prefix}_{rate:.0f}")
            steps.append(window)
            if not window.sustained:
                break
            best = window
            rate *= factor
        else:
            self.notes.append(f"{prefix}: still sustained at the last step ({rate / factor:.0f}/s)")
            return steps, best
        if best is not None:
            middle = (best.offered + steps[-1].offered) / 2
            window = self.measure(frames, middle, self.timing.step_s, f"{prefix}_{middle:.0f}")
            steps.insert(-1, window)
            if window.sustained:
                best = window
        return steps, best


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def knee(steps: list[tuple[float, float, bool]]) -> tuple[float, bool]:
    """The highest offered rate before latency climbs, from (offered, p50, sustained) steps in
    increasing order; and whether a climb was seen at all. A step climbs when its p50 exceeds
    ``CLIMB`` times the lowest p50 of the steps before it (a cold first step does not count as
    the base), or when it is not sustained."""
    base = steps[0][1]
    last = steps[0][0]
    for offered, p50, sustained in steps:
        if p50 > CLIMB * base or not sustained:
            return last, True
        last = offered
        base = min(base, p50)
    return last, False


def profile(pids: dict[str, int], seconds: float, out: Path) -> dict[str, Path]:
    """Record py-spy raw (collapsed) stacks of ``pids`` for ``seconds``, concurrently."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    runs = {}
    for name, pid in pids.items():
        path = out / f"{name}.raw"
        cmd = [spy, "record", "--pid", str(pid), "--rate", "100", "--duration", str(int(seconds))]
        cmd += ["--format", "raw", "--output", str(path), "--nonblocking"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        runs[name] = (path, proc)
    done = {}
    for name, (path, proc) in runs.items():
        _, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode == 0 and path.exists():
            done[name] = path
        else:
            print(f"  py-spy {name} failed: {err.decode(errors='replace')[-300:]}", flush=True)
    return done


def summarise_profile(path: Path, top: int = 12) -> list[str]:
    """Self-time share of the hottest functions and of each source file, from py-spy raw."""
    own: Tally[str] = Tally()
    files: Tally[str] = Tally()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        leaf = stack.split(";")[-1]
        own[_short(leaf)] += count
        files[_file(leaf)] += count
    if not total:
        return ["no samples"]
    lines = [f"{total} samples; self time by function:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("self time by file:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in files.most_common(8)]
    return lines


def _short(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py:12)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name


def _file(frame: str) -> str:
    _, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    for package in ("/streams/", "/bridges/", "/flowforge/"):
        if package in path:
            return package.strip("/") + "/" + path.split(package, 1)[1]
    return path or "?"


def rss_growth(rows: list[dict[str, float]], key: str, duration: float) -> tuple[float, float]:
    """(steady RSS MB, growth %) of sample series ``key``: median of the last minute against
    median of minute 2; for runs under 5 minutes, last quarter against the second quarter."""
    if duration >= 300:
        early = (60.0, 120.0)
        late = (duration - 60.0, duration + 1.0)
    else:
        early = (duration / 4, duration / 2)
        late = (3 * duration / 4, duration + 1.0)
    first = statistics.median(r[key] for r in rows if early[0] <= r["t"] < early[1])
    last = statistics.median(r[key] for r in rows if late[0] <= r["t"] < late[1])
    return last, 100 * (last - first) / first


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--quick", action="store_true", help="short phases (about 4 minutes)")
    parser.add_argument("--steady-minutes", type=float, help="length of the steady 50%% run")
    parser.add_argument(
        "--flush-s", type=float, help="the sink's FLOWFORGE_SINK_FLUSH_S (default: its own)"
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=2,
        help="FLOWFORGE_WORKER_CONCURRENCY of the processing workers (default 2 = the cores)",
    )
    args = parser.parse_args(argv)
    timing = Timing.quick() if args.quick else Timing()
    if args.steady_minutes is not None:
        timing.steady_s = args.steady_minutes * 60
    started = time.monotonic()
    load_before = os.getloadavg()
    extra_env = {"FLOWFORGE_WORKER_CONCURRENCY": str(args.worker_concurrency)}
    if args.flush_s:
        extra_env["FLOWFORGE_SINK_FLUSH_S"] = str(args.flush_s)
    name = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    figures: dict[str, Figure] = {}

    def fig(key: str, label: str, unit: str, value: float) -> None:
        figures[key] = Figure(label, unit, [value])

    print(f"bench.e2e: starting a private stack and the pipeline ({name})", flush=True)
    with loaded_pipeline(name, extra_env) as lp:
        bench = Bench(lp, timing)
        notes = bench.notes
        frames = {r: Frames(r, name) for r in ("720p", "1080p")}
        for r, f in frames.items():
            notes.append(f"{r} frames: JPEG q85, mean {f.mean_bytes / 1000:.0f} kB")
        print(f"pipeline up in {time.monotonic() - started:.0f} s", flush=True)
        bench.measure(frames["720p"], 20, 15, "warmup")
        profiles: dict[str, Path] = {}
        ramps: dict[str, list[Window]] = {}
        best: dict[str, Window] = {}
        for res in ("720p", "1080p"):
            ramps[res], top = bench.ramp(frames[res], f"{res}_ramp", RAMP_START[res])
            if top is None:
                raise SystemExit(f"{res}: not even {RAMP_START[res]:.0f}/s was sustained")
            best[res] = top
        # The profile: the first 720p rate above the maximum (the pipeline saturated).
        over = 1.1 * best["720p"].offered
        profile_dir = Path(tempfile.mkdtemp(prefix="bench-e2e-profile-"))
        spy_pids = {k: v for k, v in lp.pids().items() if k in ("worker", "bridge")}

        def during(left: float) -> None:
            profiles.update(profile(spy_pids, max(left - 1, 3), profile_dir))

        bench.measure(frames["720p"], over, timing.step_s + 4, "720p_profiled_110pct", during)
        bench.measure(frames["720p"], 0.25 * best["720p"].offered, timing.low_s, "720p_at_25pct")

        # The steady run: 50 % of the 720p maximum, processes sampled throughout.
        steady_rate = 0.5 * best["720p"].offered
        sampler = Sampler(lp.pids(), timing.sample_s)
        sampler.start()
        print(f"  steady run: {steady_rate:.0f}/s for {timing.steady_s:.0f} s", flush=True)
        steady = bench.measure(frames["720p"], steady_rate, timing.steady_s, "720p_steady_50pct")
        samples = sampler.stop()

        # 1 vs 2 processing workers: a second one joins, the 720p ramp again from 70 %.
        lp.add_process_worker()
        ramps["720p_2w"], two = bench.ramp(
            frames["720p"], "720p_2_workers", 0.8 * best["720p"].offered, 1.3
        )
        published = len(lp.sent.at)
        lp.stop()
        rows = lp.rows()
        final = lp.final_count()

    # Latency per image: row inserted_at - publish time; the bridge's part: captured_at - publish.
    by_id = {image_id: (inserted, captured, n) for image_id, n, inserted, captured in rows}
    lost = [i for i in lp.sent.at if i not in by_id]
    duplicates = sum(n - 1 for _, n, _, _ in rows)
    latency: dict[str, list[float]] = {}
    bridge_gap: dict[str, list[float]] = {}
    for image_id, (at, phase) in lp.sent.at.items():
        if image_id in by_id:
            inserted, captured, _ = by_id[image_id]
            latency.setdefault(phase, []).append(inserted - at * 1000)
            bridge_gap.setdefault(phase, []).append(captured - at * 1000)

    def lat(phase: str, q: float) -> float:
        return percentile(latency.get(phase, []), q)

    for res in ("720p", "1080p"):
        top = best[res]
        fig(f"{res}_max_images_per_s", f"{res} max sustained throughput", "images/s",
            top.offered)  # fmt: skip
        overloaded = ramps[res][-1]
        if not overloaded.sustained:
            fig(f"{res}_overloaded_images_per_s", f"{res} images/s when offered above the max",
                "images/s", overloaded.rows_per_s)  # fmt: skip
        fig(f"{res}_cpu_ms_per_image", f"{res} CPU of bridge+worker+sink per image at max", "ms",
            top.cpu_ms_per_image)  # fmt: skip
        for role, value in top.cpu_ms.items():
            fig(f"{res}_cpu_ms_per_image_{role}", f"{res} CPU per image at max, {role}", "ms",
                value)  # fmt: skip
        table = [(s.offered, lat(s.phase, 50), s.sustained) for s in ramps[res]]
        rate, climbed = knee(table)
        fig(f"{res}_knee_images_per_s", f"{res} knee (last rate before latency climbs)",
            "images/s", rate)  # fmt: skip
        notes.append(
            f"{res} ramp (offered/s, processed/s, p50 ms, p99 ms): "
            + "; ".join(
                f"{s.offered:.0f}, {s.rows_per_s:.0f}, {lat(s.phase, 50):.0f}, "
                f"{lat(s.phase, 99):.0f}" + ("" if s.sustained else " (not sustained)")
                for s in ramps[res]
            )
            + ("" if climbed else " - latency did not climb up to the top step")
        )
    for pct, phase in ((25, "720p_at_25pct"), (50, "720p_steady_50pct")):
        fig(f"720p_p50_ms_at_{pct}pct", f"720p publish-to-row p50 at {pct}% of max", "ms",
            lat(phase, 50))  # fmt: skip
        fig(f"720p_p99_ms_at_{pct}pct", f"720p publish-to-row p99 at {pct}% of max", "ms",
            lat(phase, 99))  # fmt: skip
        fig(f"720p_bridge_p50_ms_at_{pct}pct", f"720p publish-to-bridge p50 at {pct}%", "ms",
            percentile(bridge_gap.get(phase, []), 50))  # fmt: skip
    fig("720p_cpu_ms_per_image_at_50pct", "720p CPU per image at 50% of max", "ms",
        steady.cpu_ms_per_image)  # fmt: skip
    duration = samples[-1]["t"] if samples else 0.0
    for role, key in (("worker", "worker"), ("engine_owner", "sink"), ("bridge", "bridge")):
        rss, growth = rss_growth(samples, f"{key}_rss_mb", duration)
        fig(f"rss_mb_{role}", f"RSS of the {role.replace('_', ' ')} (steady)", "MB", rss)
        fig(f"rss_growth_pct_{role}", f"RSS growth of the {role.replace('_', ' ')}", "%", growth)
    fig("720p_1_worker_images_per_s", "720p max throughput, 1 processing worker", "images/s",
        best["720p"].offered)  # fmt: skip
    if two is not None:
        fig("720p_2_workers_images_per_s", "720p max throughput, 2 processing workers",
            "images/s", two.offered)  # fmt: skip
    else:  # not even the first step was sustained: the best the two workers did, overloaded
        fig("720p_2_workers_images_per_s", "720p images/s, 2 processing workers (overloaded)",
            "images/s", max(s.rows_per_s for s in ramps["720p_2w"]))  # fmt: skip
        notes.append("2 workers: no ramp step was sustained; the figure is the processed rate")
    notes.append(
        "720p ramp with 2 processing workers (offered/s, processed/s): "
        + "; ".join(
            f"{s.offered:.0f}, {s.rows_per_s:.0f}" + ("" if s.sustained else " (not sustained)")
            for s in ramps["720p_2w"]
        )
    )

    notes.append(
        f"load average (1 min) {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        "the end: other work on the machine competes for its cores"
    )
    notes.append(
        "single run per figure (one pipeline, phases in sequence); min = median = max. "
        f"{psutil.cpu_count()} cores shared by Kafka, Mosquitto, the publisher and FlowForge."
    )
    notes.append(
        f"steady run: {duration:.0f} s at {steady.offered:.0f}/s"
        + (" (--quick: growth over quarters, not the 10-minute run)" if duration < 300 else "")
    )
    notes.append(
        f"delivery: {published} published, {len(rows)} distinct rows, FINAL {final}, "
        f"lost {len(lost)}, duplicate raw rows {duplicates}"
    )
    if profiles:
        summary = ["py-spy record --rate 100 --nonblocking, 720p offered at 110% of the max"]
        for who, path in profiles.items():
            summary.append(f"== {who} ==")
            summary += summarise_profile(path)
        profile_path = RESULTS_DIR / "e2e_profile.txt"
        profile_path.write_text("\n".join(summary) + "\n", encoding="utf-8")
        for who, path in profiles.items():
            notes.append(f"profile {who} (self time): " + " | ".join(
                line.strip() for line in summarise_profile(path, top=6)[1:7]
            ))  # fmt: skip
        notes.append(f"profile summary: {profile_path.relative_to(RESULTS_DIR.parent.parent)}")
    else:
        notes.append("no profile: py-spy is not installed (pip install -e '.[bench]')")

    params: dict[str, Any] = {
        "quick": args.quick,
        "timing": timing.__dict__,
        "ramp_start": RAMP_START,
        "ramp_factor": RAMP_FACTOR,
        "sustained": f"rows/s >= {SUSTAINED} x offered and drained within {DRAINED_S} s",
        "sink_flush_s": args.flush_s or "default (0.5)",
        "worker_concurrency": args.worker_concurrency,
        "sources": 8,
        "wall_s": round(time.monotonic() - started),
    }
    path = write("e2e", figures, params, notes)
    print(f"\nbench.e2e ({time.monotonic() - started:.0f} s) -> {path}")
    for figure in figures.values():
        print(figure.line())
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
