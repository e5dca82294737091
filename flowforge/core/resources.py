"""Where FlowForge's shipped files live: the repository's ``infra/`` directory."""

from __future__ import annotations

from pathlib import Path

from flowforge.core.errors import PrerequisiteMissing

REPO_ROOT = Path(__file__).resolve().parents[2]


def infra_dir() -> Path:
    """The ``infra/`` directory (pom, configs, schema) next to the installed packages."""
    path = REPO_ROOT / "infra"
    if not path.is_dir():
        raise PrerequisiteMissing(
            f"infra/ not found at {path}; run FlowForge from its source checkout (pip install -e .)"
        )
    return path
