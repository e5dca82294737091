"""End to end: images published over MQTT at QoS 1 -> `flowforge bridge mqtt` -> Kafka ->
`flowforge worker` (process) -> `flowforge worker` (sink) -> a ClickHouse row, on a private local
stack (the real Kafka and Mosquitto on free ports, the embedded ClickHouse engine in the sink).

    python -m bench.e2e [--quick] [--steady-minutes 10] [--sources 1]

The publisher sends every image as one source (``--sources 1``, the default: the bare
``images/raw`` MQTT topic, as ``mosquitto_pub -t images/raw -f photo.jpg`` does), so phase 5's
1 vs 2 workers is one source scaling out over the partitions its image ids choose; ``--sources
8`` spreads the images over 8 camera topics, as runs before 2026-12-03 did.

Phases, in one pipeline (bench/load.py has the load generator, the process sampler and the
pipeline), about 15 minutes by default (--quick: about 5):

1. A rate ramp per resolution (720p from 56/s, 1080p from 39/s, halved if not sustained, x1.4
   per 10 s step, each step after the pipeline drained) until a step is not sustained (images/s
   the processing workers finished in the step's window after a 3 s warm-up under 90 % of the
   offered rate, or rows in ClickHouse not caught up with the images published within 4 s of the
   step's end), then one step halfway back. The maximum is the highest sustained step's offered
   rate. It is then held for 24 s, measured in three 7 s windows (the repeated runs of the
   maximum): images/s processed, and CPU of the bridge, the processing worker and the sink
   (children included; Kafka, Mosquitto and the publisher excluded), each divided by the images
   that process handled: the CPU-ms per image. The knee is the last ramp step before the first
   whose latency p50 exceeds twice the lowest p50 of the steps before it (or that is not
   sustained).
2. 720p at 110 % of the maximum for 14 s while py-spy samples the worker and the bridge.
3. 720p at 25 % of the maximum for 33 s, three windows: the 25 % latency.
4. A steady run at 50 % of the 720p maximum (10 min; --quick 2 min), one window per minute: the
   50 % latency, RSS of each process sampled every 5 s, and RSS growth = (median RSS of the last
   minute - median RSS of minute 2) / the latter (under 5 min: last quarter against the second
   quarter).
5. A second processing worker joins; once both take images, the 720p ramp again from the one
   worker's maximum (x1.3), and its maximum held for three windows: 1 vs 2.

Latency of an image = its row's ``inserted_at`` (ClickHouse's now64(3) at insert) minus the time
the publisher handed it to paho; rows are read from the engine once the sink has stopped. Not a
test; results in bench/results/e2e.json (+ e2e_profile.txt).
"""

from __future__ import annotations

import argparse
import itertools
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

RAMP_START = {"720p": 56.0, "1080p": 39.0}
RAMP_FACTOR = 1.4
RAMP_STEPS = 10
SUSTAINED = 0.9  # images/s at least this share of the offered rate ...
DRAINED_S = 4.0  # ... and the backlog gone within this many seconds after the step
CLIMB = 2.0  # latency p50 above this multiple of the lowest step's: climbing


@dataclass
class Timing:
    step_s: float = 10.0
    warm_s: float = 3.0
    low_s: float = 33.0
    hold_s: float = 24.0
    steady_s: float = 600.0
    sample_s: float = 5.0

    @classmethod
    def quick(cls) -> Timing:
        return cls(step_s=8.0, low_s=24.0, hold_s=18.0, steady_s=120.0)


# time, images per process, CPU s per process, the machine's CPU times (every process)
Mark = tuple[float, dict[str, float], dict[str, float], Any]


@dataclass
class Window:
    """One phase: what was offered, what came out, and what it cost."""

    phase: str
    offered: float
    rows_per_s: float  # images the processing worker(s) finished per second in the window
    cpu_ms: dict[str, float]  # role -> CPU ms per image that role handled
    machine_busy: float  # share of all the machine's cores busy (any process) in the window
    drain_s: float = 0.0
    parts: list[Window] = field(default_factory=list)  # consecutive equal parts, if split

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
        self,
        frames: Frames,
        rate: float,
        seconds: float,
        phase: str,
        during: Any = None,
        splits: int = 1,
    ) -> Window:
        """Offer ``rate``/s for ``seconds``; measure rows/s and CPU after the warm-up (in
        ``splits`` consecutive equal parts, kept in the window's ``parts``: repeated
        measurements of one steady load); wait until the pipeline drained."""
        procs = self.procs()
        publisher = self.lp.publish(frames, rate, seconds, phase)
        time.sleep(min(self.timing.warm_s, seconds / 3))
        marks = [self._mark(procs)]
        if during is not None:
            during(seconds - (time.monotonic() - publisher.started))
        else:
            end = publisher.started + seconds
            for k in range(1, splits):
                point = marks[0][0] + k * (end - marks[0][0]) / splits
                time.sleep(max(0.0, point - time.monotonic()))
                marks.append(self._mark(procs))
        publisher.finish()
        marks.append(self._mark(procs))
        window = self._window(phase, publisher.offered_rate, marks[0], marks[-1])
        if len(marks) > 2:
            window.parts = [
                self._window(phase, publisher.offered_rate, a, b)
                for a, b in itertools.pairwise(marks)
            ]
        window.drain_s = self.lp.wait_drained(timeout=300)
        self.windows[phase] = window
        print(
            f"  {phase:<26} offered {window.offered:6.1f}/s  done {window.rows_per_s:6.1f}/s  "
            f"cpu {window.cpu_ms_per_image:5.2f} ms/image "
            f"({', '.join(f'{k} {v:.2f}' for k, v in window.cpu_ms.items())})  "
            f"machine {window.machine_busy:.0%} busy  "
            f"drained in {window.drain_s:.1f}s{'' if window.sustained else '  NOT SUSTAINED'}"
            + (f"  parts {', '.join(f'{w.rows_per_s:.0f}' for w in window.parts)}/s"
               if window.parts else ""),
            flush=True,
        )  # fmt: skip
        return window

    def _mark(self, procs: dict[str, psutil.Process]) -> Mark:
        cpu = {name: cpu_seconds(p) for name, p in procs.items()}
        return time.monotonic(), self.lp.counts(), cpu, psutil.cpu_times()

    @staticmethod
    def _window(phase: str, offered: float, start: Mark, end: Mark) -> Window:
        """The window between two (time, counts, CPU seconds) marks."""
        (t0, counts0, cpu0, machine0), (t1, counts1, cpu1, machine1) = start, end
        cpu_ms: dict[str, float] = {}
        for role in ("bridge", "worker", "sink"):
            names = [n for n in cpu0 if n.startswith(role)]
            images = sum(counts1[n] - counts0[n] for n in names)
            cpu = sum(cpu1[n] - cpu0[n] for n in names)
            cpu_ms[role] = 1000 * cpu / images if images else float("nan")
        # The processing workers' count: it moves per image, while the sink's moves per batch
        # (every 0.5 s), too coarse for a 7 s window.
        processed = sum(counts1[n] - counts0[n] for n in cpu0 if n.startswith("worker"))
        spent = {k: getattr(machine1, k) - getattr(machine0, k) for k in machine0._fields}
        total = sum(v for k, v in spent.items() if k not in ("guest", "guest_nice"))
        idle = spent["idle"] + spent.get("iowait", 0.0)
        busy = 1 - idle / total if total > 0 else float("nan")
        return Window(phase, offered, processed / (t1 - t0), cpu_ms, busy)

    def ramp(
        self, frames: Frames, prefix: str, start: float, factor: float = RAMP_FACTOR
    ) -> tuple[list[Window], Window | None]:
        """Offered rate stepped up by ``factor`` from ``start`` until a step is not sustained,
        then once halfway between the last sustained step and that one (if even ``start`` is
        not sustained, halved up to twice first: a slower machine). Returns the steps in
        increasing rate order and the highest sustained step."""
        steps: list[Window] = []
        best: Window | None = None
        rate = start
        for _ in range(RAMP_STEPS):
            window = self.measure(frames, rate, self.timing.step_s, f"{prefix}_{rate:.0f}")
            steps.append(window)
            if not window.sustained:
                if best is None and rate > start / 4:
                    rate /= 2
                    continue
                break
            best = window
            rate *= factor
        else:
            self.notes.append(f"{prefix}: still sustained at the last step ({rate / factor:.0f}/s)")
            return sorted(steps, key=lambda w: w.offered), best
        steps.sort(key=lambda w: w.offered)
        if best is not None:
            top = min(w.offered for w in steps if w.offered > best.offered)
            middle = (best.offered + top) / 2
            window = self.measure(frames, middle, self.timing.step_s, f"{prefix}_{middle:.0f}")
            steps.append(window)
            steps.sort(key=lambda w: w.offered)
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


def settle(bench: Bench, frames: Frames, rate: float, timeout: float = 120.0) -> float:
    """Offer ``rate``/s in short windows until every processing worker took images in one and
    it was sustained: a newcomer first restores its partitions of the cache table and the group
    rebalances, which is no measure of two workers. Returns the seconds it took."""
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < timeout:
        before = bench.lp.counts()
        window = bench.measure(frames, rate, 6.0, f"settle_{n}")
        after = bench.lp.counts()
        n += 1
        workers = [k for k in after if k.startswith("worker")]
        if window.sustained and all(after[k] > before[k] for k in workers):
            return time.monotonic() - started
    raise SystemExit(f"the second processing worker took no images within {timeout:.0f} s")


def split_by_time(items: list[tuple[float, float]], parts: int) -> list[list[float]]:
    """Values of (time, value) pairs in ``parts`` consecutive equal spans of their times."""
    if not items:
        return [[] for _ in range(parts)]
    first = min(t for t, _ in items)
    span = (max(t for t, _ in items) - first) or 1.0
    out: list[list[float]] = [[] for _ in range(parts)]
    for t, value in items:
        out[min(parts - 1, int(parts * (t - first) / span))].append(value)
    return out


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


def rss_by_minute(rows: list[dict[str, float]], key: str) -> list[float]:
    """Median RSS of each whole minute of the run after the first (the steady level, one
    value per minute); for runs under 3 minutes, of each 30 s after the first quarter."""
    duration = rows[-1]["t"] if rows else 0.0
    span = 60.0 if duration >= 180 else 30.0
    start = span if duration >= 180 else duration / 4
    out = []
    while start + span <= duration + 1:
        values = [r[key] for r in rows if start <= r["t"] < start + span]
        if values:
            out.append(statistics.median(values))
        start += span
    return out


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
    parser.add_argument(
        "--sources",
        type=int,
        default=1,
        help="camera topics to publish over (default 1: the bare MQTT topic, one source, whose "
        "images the workers share by image id)",
    )
    args = parser.parse_args(argv)
    if args.sources < 1:
        parser.error("--sources must be at least 1")
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

    def fig(key: str, label: str, unit: str, value: float | list[float]) -> None:
        figures[key] = Figure(label, unit, value if isinstance(value, list) else [value])

    print(f"bench.e2e: starting a private stack and the pipeline ({name})", flush=True)
    with loaded_pipeline(name, extra_env) as lp:
        lp.sources = args.sources
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
        held: dict[str, Window] = {}
        for res in ("720p", "1080p"):
            ramps[res], top = bench.ramp(frames[res], f"{res}_ramp", RAMP_START[res])
            if top is None:
                raise SystemExit(f"{res}: not even {RAMP_START[res] / 4:.0f}/s was sustained")
            best[res] = top
            # The maximum held for three windows: repeated measurements of it and its CPU.
            held[res] = bench.measure(
                frames[res], top.offered, timing.hold_s, f"{res}_held_at_max", splits=3
            )
        # The profile: the first 720p rate above the maximum (the pipeline saturated).
        over = 1.1 * best["720p"].offered
        profile_dir = Path(tempfile.mkdtemp(prefix="bench-e2e-profile-"))
        spy_pids = {k: v for k, v in lp.pids().items() if k in ("worker", "bridge")}

        def during(left: float) -> None:
            profiles.update(profile(spy_pids, max(left - 1, 3), profile_dir))

        bench.measure(frames["720p"], over, timing.step_s + 4, "720p_profiled_110pct", during)
        bench.measure(
            frames["720p"], 0.25 * best["720p"].offered, timing.low_s, "720p_at_25pct", splits=3
        )

        # The steady run: 50 % of the 720p maximum, processes sampled throughout.
        steady_rate = 0.5 * best["720p"].offered
        sampler = Sampler(lp.pids(), timing.sample_s)
        sampler.start()
        print(f"  steady run: {steady_rate:.0f}/s for {timing.steady_s:.0f} s", flush=True)
        minutes = max(1, round(timing.steady_s / 60))
        steady = bench.measure(
            frames["720p"], steady_rate, timing.steady_s, "720p_steady_50pct", splits=minutes
        )
        samples = sampler.stop()

        # 1 vs 2 processing workers: a second one joins; once both take images (the newcomer
        # restored its share of the cache table), the 720p ramp again from 1 worker's maximum.
        lp.add_process_worker()
        settle_s = settle(bench, frames["720p"], 0.25 * best["720p"].offered)
        notes.append(f"2 workers: both processing {settle_s:.0f} s after the second one joined")
        ramps["720p_2w"], two = bench.ramp(
            frames["720p"], "720p_2_workers", best["720p"].offered, 1.3
        )
        if two is not None:
            bench.measure(
                frames["720p"], two.offered, timing.hold_s, "720p_2_workers_held", splits=3
            )
        published = len(lp.sent.at)
        lp.stop()
        rows = lp.rows()
        final = lp.final_count()

    # Latency per image: row inserted_at - publish time; the bridge's part: captured_at - publish.
    by_id = {image_id: (inserted, captured, n) for image_id, n, inserted, captured in rows}
    lost = [i for i in lp.sent.at if i not in by_id]
    duplicates = sum(n - 1 for _, n, _, _ in rows)
    latency: dict[str, list[tuple[float, float]]] = {}  # phase -> (publish time, ms)
    bridge_gap: dict[str, list[float]] = {}
    for image_id, (at, phase) in lp.sent.at.items():
        if image_id in by_id:
            inserted, captured, _ = by_id[image_id]
            latency.setdefault(phase, []).append((at, inserted - at * 1000))
            bridge_gap.setdefault(phase, []).append(captured - at * 1000)

    def lat(phase: str, q: float) -> float:
        return percentile([ms for _, ms in latency.get(phase, [])], q)

    def lat_parts(phase: str, q: float) -> list[float]:
        """The percentile in each part of a split phase (images by publish time)."""
        parts = split_by_time(latency.get(phase, []), len(bench.windows[phase].parts) or 1)
        return [percentile(part, q) for part in parts if part]

    def parts(phase: str, value: Any) -> list[float]:
        return [value(w) for w in bench.windows[phase].parts]

    for res in ("720p", "1080p"):
        top, hold = best[res], f"{res}_held_at_max"
        fig(f"{res}_max_images_per_s", f"{res} max sustained throughput (held, per window)",
            "images/s", parts(hold, lambda w: w.rows_per_s))  # fmt: skip
        fig(f"{res}_max_offered_images_per_s", f"{res} max sustained offered rate (ramp)",
            "images/s", top.offered)  # fmt: skip
        overloaded = ramps[res][-1]
        if not overloaded.sustained:
            fig(f"{res}_overloaded_images_per_s", f"{res} images/s when offered above the max",
                "images/s", overloaded.rows_per_s)  # fmt: skip
        fig(f"{res}_cpu_ms_per_image", f"{res} CPU of bridge+worker+sink per image at max", "ms",
            parts(hold, lambda w: w.cpu_ms_per_image))  # fmt: skip
        for role in top.cpu_ms:
            fig(f"{res}_cpu_ms_per_image_{role}", f"{res} CPU per image at max, {role}", "ms",
                parts(hold, lambda w, role=role: w.cpu_ms[role]))  # fmt: skip
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
            lat_parts(phase, 50))  # fmt: skip
        fig(f"720p_p99_ms_at_{pct}pct", f"720p publish-to-row p99 at {pct}% of max", "ms",
            lat_parts(phase, 99))  # fmt: skip
        fig(f"720p_bridge_p50_ms_at_{pct}pct", f"720p publish-to-bridge p50 at {pct}%", "ms",
            percentile(bridge_gap.get(phase, []), 50))  # fmt: skip
    fig("720p_cpu_ms_per_image_at_50pct", "720p CPU per image at 50% of max", "ms",
        parts("720p_steady_50pct", lambda w: w.cpu_ms_per_image))  # fmt: skip
    duration = samples[-1]["t"] if samples else 0.0
    for role, key in (("worker", "worker"), ("engine_owner", "sink"), ("bridge", "bridge")):
        _, growth = rss_growth(samples, f"{key}_rss_mb", duration)
        fig(f"rss_mb_{role}", f"RSS of the {role.replace('_', ' ')} (steady, per minute)", "MB",
            rss_by_minute(samples, f"{key}_rss_mb"))  # fmt: skip
        fig(f"rss_growth_pct_{role}", f"RSS growth of the {role.replace('_', ' ')}", "%", growth)
    fig("720p_1_worker_images_per_s", "720p max throughput, 1 processing worker", "images/s",
        parts("720p_held_at_max", lambda w: w.rows_per_s))  # fmt: skip
    # Whether a second worker had cores to use: the whole machine's CPU, every process.
    fig("720p_1_worker_machine_busy_pct", "machine CPU busy at 1 worker's max (all cores)", "%",
        parts("720p_held_at_max", lambda w: 100 * w.machine_busy))  # fmt: skip
    if two is not None:
        fig("720p_2_workers_images_per_s", "720p max throughput, 2 processing workers",
            "images/s", parts("720p_2_workers_held", lambda w: w.rows_per_s))  # fmt: skip
        fig("720p_2_workers_machine_busy_pct", "machine CPU busy at 2 workers' max (all cores)",
            "%", parts("720p_2_workers_held", lambda w: 100 * w.machine_busy))  # fmt: skip
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
        "repeated runs: each maximum is held for three consecutive windows after its ramp, the "
        "25% phase is three windows, the steady run one window per minute (latency of the "
        "images published in each window), RSS the median of each minute of the steady run; "
        "the ramps' maxima, the knees and the RSS growth are one run each. "
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
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)  # a fresh clone has none yet
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
        "sources": args.sources,
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
