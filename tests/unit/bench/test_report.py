"""bench/report.py: the headline's medians, ratios and verdicts, and BENCHMARKS.md's markers."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import BEGIN, END, headline, load, render, update, write_report
from bench.results import Figure, write

MACHINE_RUN = {
    "name": "run",
    "date": "2026-11-24T06:00:00+00:00",
    "command": "python -m bench.run",
    "machine": {
        "cores": 2,
        "arch": "x86_64",
        "memory_gib": 24,
        "os": "Debian 12",
        "python": "3.11",
    },
    "total_seconds": 1000.0,
    "steps": [
        {"name": "decode_limit", "status": "ok", "seconds": 40.0, "detail": ""},
        {"name": "e2e", "status": "missing", "seconds": 0.0, "detail": "no module bench.e2e"},
    ],
}


def _write(directory: Path, name: str, figures: dict[str, list[float]]) -> None:
    write(name, {key: Figure(key, "u", runs) for key, runs in figures.items()}, directory=directory)


def _results(tmp_path: Path) -> Path:
    _write(
        tmp_path,
        "decode_limit",
        {
            "720p_baseline_images_per_s": [300.0, 320.0, 310.0],
            "720p_baseline_cpu_ms_per_image": [3.0, 3.4, 3.2],
            "720p_ratio": [0.90, 0.99, 0.97],
            "1080p_ratio": [0.80, 0.85, 0.90],
        },
    )
    _write(
        tmp_path,
        "e2e",
        {
            "720p_max_images_per_s": [190.0, 200.0, 210.0],
            "1080p_max_images_per_s": [95.0],
            "720p_cpu_ms_per_image": [4.0],
            "720p_p50_ms_at_25pct": [100.0, 120.0, 140.0],
            "720p_p99_ms_at_25pct": [600.0],
            "rss_mb_worker": [200.0],
            "rss_growth_pct_worker": [7.5],
            "720p_1_worker_images_per_s": [100.0],
            "720p_2_workers_images_per_s": [180.0],
            "720p_1_worker_machine_busy_pct": [97.0, 98.0, 99.0],
        },
    )
    _write(tmp_path, "naive", {"720p_images_per_s": [38.0, 40.0, 45.0]})
    (tmp_path / "run.json").write_text(json.dumps(MACHINE_RUN), encoding="utf-8")
    return tmp_path


def _rows(tmp_path: Path) -> dict[str, tuple[str, str, str]]:
    results, _ = load(_results(tmp_path))
    return {row.what: (row.value, row.target, row.verdict) for row in headline(results)}


def test_medians_with_ranges_and_verdicts(tmp_path: Path) -> None:
    """A row shows the median with (min-max) and meets or misses its target by the median."""
    rows = _rows(tmp_path)
    assert rows["Decode limit 720p, one core"] == ("310 (300-320) images/s", "-", "-")
    assert rows["Processing core / decode limit, 720p (per CPU-second)"] == (
        "0.970 (0.900-0.990)",
        ">= 0.95",
        "met",
    )
    assert rows["Processing core / decode limit, 1080p (per CPU-second)"][2] == "**not met**"
    assert rows["End to end max throughput 720p (MQTT -> ClickHouse row)"][1:] == (
        ">= 250 per worker core",
        "**not met**",
    )
    assert rows["End to end max throughput 1080p (MQTT -> ClickHouse row)"] == (
        "95.0 images/s",
        ">= 90 per worker core",
        "met",
    )
    assert rows["Latency p50 publish -> row at 25% of max, 720p"][2] == "met"
    assert rows["Latency p99 publish -> row at 25% of max, 720p"][2] == "**not met**"
    assert rows["RSS, processing worker"][2] == "met"
    assert rows["RSS growth over the run, processing worker"][2] == "**not met**"


def test_ratios_of_medians_across_benchmarks(tmp_path: Path) -> None:
    """Overhead, 2-vs-1 workers and the naive multiple are ratios of the two medians; the
    machine's CPU beside the workers' figures is shown, or "not run"."""
    rows = _rows(tmp_path)
    overhead = rows["Overhead ratio 720p: CPU per image, all FlowForge processes / decode limit"]
    assert overhead == ("1.25 (4.00 / 3.20 ms)", "<= 1.3", "met")
    two = rows["2 workers / 1 worker, 720p, one source"]
    assert two[0].startswith("1.80 ")
    assert two[1:] == (">= 1.3", "met")
    assert rows["FlowForge end to end / naive pipeline, 720p max throughput"][0] == (
        "5.00 (200 / 40.0 images/s)"
    )
    assert rows["machine CPU busy, 720p max with 1 worker"][0] == "98.0 (97.0-99.0) %"
    assert rows["machine CPU busy, 720p max with 2 workers"][0] == "not run"


def test_missing_results_read_not_run(tmp_path: Path) -> None:
    """Figures of a benchmark that did not run (or a missing figure) say "not run"."""
    rows = _rows(tmp_path)
    assert rows["Knee 720p"] == ("not run", "-", "not run")
    assert rows["MQTT bridge -> Kafka, 100 KB at QoS 1"][2] == "not run"
    assert rows["Overhead ratio 1080p: CPU per image, all FlowForge processes / decode limit"][
        2
    ] == ("not run")


def test_render_has_machine_command_date_and_steps(tmp_path: Path) -> None:
    """The block names the machine, `make bench`, the date, and each step's status."""
    results, run = load(_results(tmp_path))
    block = render(results, run)
    assert block.startswith(BEGIN)
    assert block.endswith(END)
    assert "2 cores (x86_64), 24 GiB, Debian 12, Python 3.11" in block
    assert "`make bench`" in block
    assert "2026-11-24T06:00:00+00:00" in block
    assert "| e2e | **missing** (no module bench.e2e) | 0 |" in block


def test_update_keeps_text_outside_the_markers(tmp_path: Path) -> None:
    """Re-running replaces only the generated block; the hand-written text around it stays."""
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(
        f"# Title\n\nintro\n\n{BEGIN}\nold table\n{END}\n\n## Analysis\n\nhand-written\n",
        encoding="utf-8",
    )
    write_report(_results(tmp_path / "results"), out)
    first = out.read_text(encoding="utf-8")
    assert "old table" not in first
    assert first.startswith("# Title\n\nintro\n\n" + BEGIN)
    assert first.endswith(f"{END}\n\n## Analysis\n\nhand-written\n")
    write_report(tmp_path / "results", out)
    assert out.read_text(encoding="utf-8") == first


def test_update_inserts_the_block_after_the_introduction() -> None:
    """A file without markers gets the block before its first section, the rest unchanged."""
    text = "# Title\n\nintro\n\n## Component\n\nprose\n"
    updated = update(text, f"{BEGIN}\nX\n{END}")
    assert updated == f"# Title\n\nintro\n\n{BEGIN}\nX\n{END}\n\n## Component\n\nprose\n"
