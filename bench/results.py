"""The benchmarks' one result format: figures with min/median/max over repeated runs, written as
JSON under ``bench/results/`` (one file per benchmark) for ``make bench`` to tabulate.

    {"name": "e2e", "date": "2026-11-24T05:10:00+00:00", "command": "...",
     "machine": {...}, "params": {...},
     "figures": {"720p_max_images_per_s": {"label": "...", "unit": "images/s",
                                           "runs": [..], "min": .., "median": .., "max": ..}},
     "notes": ["..."]}
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One measured quantity over repeated runs."""

    label: str
    unit: str
    runs: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.runs.append(float(value))

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def as_dict(self) -> dict[str, Any]:
        if not self.runs:
            raise ValueError(f"figure {self.label!r} has no runs")
        return {
            "label": self.label,
            "unit": self.unit,
            "runs": self.runs,
            "min": min(self.runs),
            "median": self.median,
            "max": max(self.runs),
        }

    def line(self) -> str:
        """``label  min / median / max unit`` for the console."""
        return (
            f"{self.label:<48} {_fmt(min(self.runs))} / {_fmt(self.median)} / "
            f"{_fmt(max(self.runs))} {self.unit}"
        )


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    os_name = platform.system()
    try:
        release = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
        os_name = release.get("PRETTY_NAME", os_name).strip('"')
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "memory_gib": round(mem_kib / 2**20),
        "os": os_name,
        "python": platform.python_version(),
    }


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['cores']} cores ({info['arch']}), {info['memory_gib']} GiB, {info['os']}, "
        f"Python {info['python']}"
    )


def write(
    name: str,
    figures: dict[str, Figure],
    params: dict[str, Any] | None = None,
    notes: list[str] | None = None,
    directory: Path = RESULTS_DIR,
) -> Path:
    """Write ``<directory>/<name>.json`` with the figures and the command that produced them."""
    directory.mkdir(parents=True, exist_ok=True)
    result = {
        "name": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv])
        if not sys.argv[0].endswith(".py")
        else shlex.join(["python", "-m", _module_of(sys.argv[0]), *sys.argv[1:]]),
        "machine": machine(),
        "params": params or {},
        "figures": {key: figure.as_dict() for key, figure in figures.items()},
        "notes": notes or [],
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def _module_of(script: str) -> str:
    path = Path(script).resolve()
    try:
        rel = path.relative_to(Path(__file__).resolve().parent.parent)
    except ValueError:
        return path.stem
    return ".".join(rel.with_suffix("").parts)


def read(name: str, directory: Path = RESULTS_DIR) -> dict[str, Any] | None:
    """The last result of benchmark ``name``, or None if it has not run."""
    path = directory / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def description(doc: str | None) -> str:
    """A module docstring's first paragraph on one line: the benchmark's ``--help`` text."""
    return " ".join((doc or "").split("\n\n")[0].split())
