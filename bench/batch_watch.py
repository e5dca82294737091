"""The batch bridge in --watch mode under churn: RSS and event-loop responsiveness (real Kafka).

    .venv/bin/python -m bench.batch_watch [--files 100000] [--wave 1000] [--quick]

Starts the test stack (tests/stack.env) unless it is running, and stops what it started. Runs
`flowforge bridge batch DIR --watch` as a user runs it (private topics, new checkpoint) and
creates ``--files`` small files (1 KB) in DIR in waves of ``--wave``: each wave is waited for
until published, then deleted (tests/support/watch_churn.py). Reports the bridge's RSS after
each tenth of the run, its growth after the first quarter, the slowest answer of /livez (polled
every 20 ms; served by the bridge's event loop) and files/s. Writes
bench/results/batch_watch.json. ``--quick``: 10,000 files in waves of 500. Not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

from bench.results import Figure, description, write
from tests.support.bridges import BridgeProcess, bridge_env
from tests.support.stack import running_stack, stack_env
from tests.support.watch_churn import QUICK_WATCH, churn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--wave", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="10,000 files in waves of 500")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.wave = 10_000, 500
    with running_stack(), tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "inbox"
        root.mkdir()
        env = {**bridge_env(f"bench.watch.{uuid.uuid4().hex[:8]}", stack_env(), work)}
        bridge = BridgeProcess(
            ["bridge", "batch", str(root), "--watch"], {**env, **QUICK_WATCH}, work
        )
        bridge.start()
        try:
            seen = churn(bridge, root, args.files, args.wave)
        finally:
            bridge.stop()
    waves = len(seen.rss_mib)
    warm_up = max(1, waves // 4)
    tenths = [seen.rss_mib[max(0, waves * k // 10 - 1)] for k in range(1, 11)]
    print(f"{args.files} files of 1 KB in {waves} waves of {args.wave}, {seen.seconds:.0f} s")
    print("RSS (MiB) after each tenth: " + ", ".join(f"{r:.1f}" for r in tenths))
    figures = {
        "rss_start_mib": Figure(f"RSS after wave {warm_up}", "MiB", [seen.rss_mib[warm_up - 1]]),
        "rss_end_mib": Figure("RSS at the end", "MiB", [seen.rss_mib[-1]]),
        "rss_growth_mib": Figure("RSS growth after warm-up", "MiB", [seen.growth_mib(warm_up)]),
        "slowest_livez_ms": Figure("slowest /livez", "ms", [seen.slowest_livez_s * 1000]),
        "files_per_s": Figure("files created, published, deleted", "files/s", [seen.files_per_s]),
    }
    for figure in figures.values():
        print(figure.line())
    params = {"files": args.files, "wave": args.wave, "livez_answers": seen.livez_answers}
    print(f"wrote {write('batch_watch', figures, params)}")


if __name__ == "__main__":
    main()
