"""Batch bridge throughput (one-shot) into the real Kafka, against reading the files alone.

    .venv/bin/python -m bench.batch_bridge [--files 1000] [--repeat 3] [--quick]

Starts the test stack (tests/stack.env) unless it is running, and stops what it started. Makes
``--files`` distinct 1280x720 JPEGs (about 60 KiB each) once; per run, a fresh
`flowforge bridge batch DIR` (new checkpoint, private topics) as a user runs it, timed from
process start to exit (start-up included), and by its own summary line (from its scan to the
last acknowledgement: the rate a long backfill runs at). Baseline in the same run: reading and
hashing the same files (SHA-256), what any publisher has to do. Writes
bench/results/batch_bridge.json:
``read_hash_files_per_s``, ``bridge_files_per_s``, ``bridge_own_files_per_s`` and the per-run
ratio ``bridge_over_read``.
``--quick``: 500 files, 2 runs (what `make bench` runs). Not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.results import Figure, description, write
from tests.support.bridges import bridge_env
from tests.support.images import jpeg, scene
from tests.support.stack import running_stack, stack_env


def make_files(root: Path, count: int) -> None:
    bases = [scene(1280, 720, seed=s) for s in range(4)]
    for i in range(count):
        image = bases[i % 4].copy()
        for bit in range(12):
            image[0:16, bit * 16 : (bit + 1) * 16] = 255 if i >> bit & 1 else 0
        (root / f"frame-{i:05d}.jpg").write_bytes(jpeg(image))


def read_alone(root: Path) -> float:
    started = time.monotonic()
    files = sorted(root.glob("*.jpg"))
    for path in files:
        hashlib.sha256(path.read_bytes()).hexdigest()
    return len(files) / (time.monotonic() - started)


def bridge_run(root: Path, count: int, work: Path) -> tuple[float, float]:
    env = bridge_env(f"bench.batch.{uuid.uuid4().hex[:8]}", stack_env(), work)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", "bridge", "batch", str(root)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if result.returncode != 0 or f"published {count}," not in result.stdout:
        raise SystemExit(f"batch run failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    # Its summary line's rate: from the scan to the last acknowledgement, start-up excluded.
    own = re.search(r"\(([0-9.]+) files/s\)", result.stdout)
    if own is None:
        raise SystemExit(f"no rate in the batch run's summary:\n{result.stdout}")
    return count / elapsed, float(own.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="500 files, 2 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.repeat = 500, 2
    with running_stack(), tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "frames"
        root.mkdir()
        make_files(root, args.files)
        size = sum(p.stat().st_size for p in root.iterdir()) / args.files
        results = []
        for run in range(args.repeat):
            work = Path(tmp) / f"run-{run}"
            work.mkdir()
            results.append((read_alone(root), *bridge_run(root, args.files, work)))
    figures = {
        "read_hash_files_per_s": Figure("read + hash alone", "files/s", [r for r, _, _ in results]),
        "bridge_files_per_s": Figure("one-shot bridge run", "files/s", [b for _, b, _ in results]),
        "bridge_own_files_per_s": Figure(
            "one-shot bridge, scan to last ack (its summary)", "files/s", [o for _, _, o in results]
        ),
        "bridge_over_read": Figure("bridge / read alone", "x", [b / r for r, b, _ in results]),
    }
    print(f"{args.files} JPEGs 1280x720, {size / 1024:.0f} KiB average, {args.repeat} runs")
    for figure in figures.values():
        print(figure.line())
    params = {"files": args.files, "repeat": args.repeat, "mean_kib": round(size / 1024, 1)}
    print(f"wrote {write('batch_bridge', figures, params)}")


if __name__ == "__main__":
    main()
