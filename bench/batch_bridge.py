"""Batch bridge throughput (one-shot) into the real Kafka, against reading the files alone.

    .venv/bin/python -m bench.batch_bridge [--files 1000] [--repeat 3]

Starts the test stack (tests/stack.env) unless it is running, and stops what it started. Makes
``--files`` distinct 1280x720 JPEGs (about 60 KiB each) once; per run, a fresh
`flowforge bridge batch DIR` (new checkpoint, private topics) as a user runs it, timed from
process start to exit (start-up included). Baseline in the same run: reading and hashing the
same files (SHA-256), what any publisher has to do. Not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.stack import running_test_stack
from tests.conftest import stack_env
from tests.images import jpeg, scene
from tests.integration.bridge_harness import bridge_env


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


def bridge_run(root: Path, count: int, work: Path) -> float:
    env = bridge_env(f"bench.batch.{uuid.uuid4().hex[:8]}", stack_env(), work)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", "bridge", "batch", str(root)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if result.returncode != 0 or f"published {count}," not in result.stdout:
        raise SystemExit(f"batch run failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with running_test_stack(), tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "frames"
        root.mkdir()
        make_files(root, args.files)
        size = sum(p.stat().st_size for p in root.iterdir()) / args.files
        results = []
        for run in range(args.repeat):
            work = Path(tmp) / f"run-{run}"
            work.mkdir()
            results.append((read_alone(root), bridge_run(root, args.files, work)))
    print(f"{args.files} JPEGs 1280x720, {size / 1024:.0f} KiB average, {args.repeat} runs")
    for label, rates in (
        ("read + hash alone", [r for r, _ in results]),
        ("one-shot bridge run", [b for _, b in results]),
    ):
        print(
            f"{label:<20} files/s min/median/max: "
            f"{min(rates):.0f} / {statistics.median(rates):.0f} / {max(rates):.0f}"
        )
    ratio = statistics.median(b for _, b in results) / statistics.median(r for r, _ in results)
    print(f"bridge / read alone: {ratio:.3f}")


if __name__ == "__main__":
    main()
