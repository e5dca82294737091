"""`make bench`: every benchmark in turn on the test stack, then BENCHMARKS.md's table.

    .venv/bin/python -m bench.run [--quick] [--only decode_limit,naive,...]

Starts the test stack (tests/stack.env) once for all steps (stopped at the end if started here),
then runs each benchmark as its own process with a time limit, in order: decode_limit, naive,
e2e, then the components at their quick sizes. A step that fails, times out or is missing is
recorded and the run goes on; the exit code is 1 if any step did not succeed. Each step's output
goes to the console and to bench/results/logs/<step>.log; the steps' outcomes to
bench/results/run.json; then bench/report.py rewrites BENCHMARKS.md's generated part.
``--quick`` also shortens decode_limit, naive and e2e (for trying the harness, not for figures).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import write_report
from bench.results import RESULTS_DIR, description, machine
from tests.support.stack import lock_shared_with_children, running_stack

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Step:
    """One benchmark module, its arguments and its time limit (seconds)."""

    name: str
    module: str
    timeout: float
    args: list[str] = field(default_factory=list)
    quick_args: list[str] = field(default_factory=list)


STEPS = (
    Step("decode_limit", "bench.decode_limit", 240, quick_args=["--quick"]),
    Step("naive", "bench.naive", 180, quick_args=["--quick"]),
    Step("e2e", "bench.e2e", 1260, quick_args=["--quick"]),
    Step("mqtt_bridge", "bench.mqtt_bridge", 180, args=["--quick"]),
    Step("sink_throughput", "bench.sink_throughput", 240, args=["--quick"]),
    Step("batch_bridge", "bench.batch_bridge", 180, args=["--quick"]),
)


def run_step(
    step: Step, quick: bool, results: Path, env_extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one step (its environment ours plus ``env_extra``); its outcome: status ok | failed |
    timeout | missing, seconds, detail."""
    outcome: dict[str, Any] = {"name": step.name, "seconds": 0.0, "detail": ""}
    (results / f"{step.name}.json").unlink(missing_ok=True)  # no stale figures for a failed step
    if importlib.util.find_spec(step.module) is None:
        print(f"== {step.name}: {step.module} is missing, not run", flush=True)
        return {**outcome, "status": "missing", "detail": f"no module {step.module}"}
    command = [sys.executable, "-m", step.module, *step.args, *(step.quick_args if quick else [])]
    env = dict(os.environ) | (env_extra or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    logs = results / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"== {step.name}: {shlex.join(command[1:])} (limit {step.timeout:.0f} s)", flush=True)
    started = time.monotonic()
    with (logs / f"{step.name}.log").open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None
        stream = process.stdout

        def copy() -> None:
            for line in stream:
                sys.stdout.write(f"   {line}")
                sys.stdout.flush()
                log.write(line)

        copier = threading.Thread(target=copy, daemon=True)
        copier.start()
        try:
            code = process.wait(timeout=step.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            code = None
        copier.join(timeout=5)
    outcome["seconds"] = time.monotonic() - started
    if code is None:
        outcome.update(status="timeout", detail=f"over {step.timeout:.0f} s")
    elif code != 0:
        outcome.update(status="failed", detail=f"exit code {code}")
    elif not (results / f"{step.name}.json").exists():
        outcome.update(status="failed", detail="no result written")
    else:
        outcome["status"] = "ok"
    print(f"== {step.name}: {outcome['status']} in {outcome['seconds']:.0f} s", flush=True)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--quick", action="store_true", help="short decode_limit, naive, e2e")
    parser.add_argument("--only", default="", help="comma-separated step names (default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    wanted = set(filter(None, args.only.split(",")))
    unknown = wanted - {step.name for step in STEPS}
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    steps = [step for step in STEPS if not wanted or step.name in wanted]
    args.results.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcomes: list[dict[str, Any]] = []
    with contextlib.ExitStack() as services:
        # The steps start the same stack: they work under this process's hold of its ports
        # (each would otherwise wait for it, to its time limit).
        shared: dict[str, str] = {}
        try:
            services.enter_context(running_stack())
            shared = lock_shared_with_children()
        except Exception as exc:  # noqa: BLE001 - recorded; the steps that need it fail alone
            detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
            outcomes.append({"name": "stack", "status": "failed", "seconds": 0.0, "detail": detail})
        outcomes += [run_step(step, args.quick, args.results, shared) for step in steps]
    run = {
        "name": "run",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench.run", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "total_seconds": time.monotonic() - started,
        "steps": outcomes,
    }
    (args.results / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {write_report(args.results)}")
    failed = [o["name"] for o in outcomes if o["status"] != "ok"]
    total = run["total_seconds"]
    print(f"make bench: {len(outcomes) - len(failed)} of {len(outcomes)} steps ok in {total:.0f} s")
    if failed:
        print(f"not ok: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
