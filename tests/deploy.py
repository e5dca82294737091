"""Test helpers for the docker compose deployment: compose interpolation and Grafana's macros.

No Docker engine runs where FlowForge is built, so the tests read the files compose and Grafana
would read and do the little they would do with them: compose's `${VAR:-default}` /
`${VAR:?message}` interpolation, and the ClickHouse datasource plugin's SQL macros.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_DEV = REPO / "docker-compose.dev.yml"
ENV_EXAMPLE = REPO / ".env.example"
DASHBOARD = REPO / "infra" / "grafana" / "dashboards" / "flowforge.json"
PROVISIONING = REPO / "infra" / "grafana" / "provisioning"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class InterpolationError(ValueError):
    """A required variable is missing (compose would refuse to start)."""


def load_yaml(path: Path) -> Any:
    """A YAML file as compose reads it (anchors and merge keys resolved)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def env_example() -> dict[str, str]:
    """`.env.example` as a dict (comments and blank lines dropped)."""
    env = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            env[key.strip()] = value
    return env


def variables(text: str) -> list[tuple[str, str, str]]:
    """Every `${...}` reference in a compose text: (name, operator, default-or-message)."""
    return [(m.group(1), m.group(2) or "", m.group(3) or "") for m in _VARIABLE.finditer(text)]


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one string (`$$` is a literal `$`)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = env.get(name)
        missing = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and missing:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        if op.endswith("-") and missing:
            return arg
        return value or ""

    parts = text.split("$$")
    return "$".join(_VARIABLE.sub(one, part) for part in parts)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string in a loaded compose document."""
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def secrets() -> list[str]:
    """The variables .env.example leaves empty: the secrets the user must set."""
    return [name for name, value in env_example().items() if value == ""]


def filled_env() -> dict[str, str]:
    """.env.example with every secret given a (test) value: what a user's .env looks like."""
    return {k: v or f"test-{k.lower()}" for k, v in env_example().items()}


def compose(env: Mapping[str, str] | None = None, *, path: Path = COMPOSE) -> dict[str, Any]:
    """docker-compose.yml loaded and interpolated with ``env`` (default: a filled .env)."""
    document: dict[str, Any] = interpolate(load_yaml(path), filled_env() if env is None else env)
    return document


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as strings (compose passes every value as a string)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: "" if v is None else str(v) for k, v in raw.items()}


SECRETS_DIR = "/run/secrets/"


def granted_secrets(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The secrets a service is granted: ``{name: long-syntax entry}`` (short syntax expanded)."""
    result = {}
    for entry in service.get("secrets") or []:
        item = {"source": entry} if isinstance(entry, str) else dict(entry)
        result[item["source"]] = item
    return result


def secret_values(
    document: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What each top-level secret holds: the value of its ``environment`` variable in ``env``
    (default: a filled .env), as compose creates it."""
    env = filled_env() if env is None else env
    values = {}
    for name, spec in (document.get("secrets") or {}).items():
        assert set(spec) == {"environment"}, f"secret {name}: only `environment` sources: {spec}"
        values[name] = env[spec["environment"]]
    return values


def with_secret_files(
    service: Mapping[str, Any], directory: Path, document: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The service's environment as the container would see it, with each /run/secrets/NAME
    path moved to ``directory`` where the secret's file is written, as compose would mount it
    (only the secrets the service is granted)."""
    document = compose() if document is None else document
    values = secret_values(document)
    directory.mkdir(parents=True, exist_ok=True)
    for name in granted_secrets(service):
        (directory / name).write_text(values[name], encoding="utf-8")
        (directory / name).chmod(0o400)
    return {
        key: str(directory / value.removeprefix(SECRETS_DIR))
        if value.startswith(SECRETS_DIR)
        else value
        for key, value in service_env(service).items()
    }


# --- Grafana's ClickHouse datasource macros ----------------------------------------------------

MACROS = ("$__timeFilter", "$__timeInterval", "$__interval_s", "${source:singlequote}")


def expand_macros(
    sql: str, *, start: datetime, end: datetime, interval_s: int, sources: list[str]
) -> str:
    """The panel SQL as the grafana-clickhouse-datasource plugin sends it, for a fixed range.

    Expands the macros the FlowForge dashboard uses, as the plugin (v4) defines them:
    ``$__timeFilter(c)`` -> ``c >= toDateTime(FROM) AND c <= toDateTime(TO)`` (epoch seconds),
    ``$__timeInterval(c)`` -> ``toStartOfInterval(toDateTime(c), INTERVAL N second)``,
    ``$__interval_s`` -> N, and Grafana's ``${source:singlequote}`` -> ``'a','b'``.
    Anything else left starting with ``$`` fails, so a panel cannot use an untested macro.
    """
    frm, to = int(start.timestamp()), int(end.timestamp())
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m.group(1)} >= toDateTime({frm}) AND {m.group(1)} <= toDateTime({to})",
        sql,
    )
    sql = re.sub(
        r"\$__timeInterval\(([^)]+)\)",
        lambda m: f"toStartOfInterval(toDateTime({m.group(1)}), INTERVAL {interval_s} second)",
        sql,
    )
    sql = sql.replace("$__interval_s", str(interval_s))
    sql = sql.replace("${source:singlequote}", ",".join(f"'{s}'" for s in sources))
    leftover = re.findall(r"\$\S+", sql)
    assert not leftover, f"macros the test helper does not expand: {leftover}"
    return sql


def dashboard() -> dict[str, Any]:
    """The FlowForge dashboard JSON."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data
