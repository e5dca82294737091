"""No secret is committed: tracked files hold no private key, known token or password value."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Built from pieces so that this file does not match its own rules.
PRIVATE_KEY = re.compile("-" * 5 + r"BEGIN [A-Z ]*PRIVATE KEY" + "-" * 5)
KNOWN_TOKENS = re.compile(
    r"\b(AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab personal access token
    r"|sk-[A-Za-z0-9]{32,})"  # API secret keys of the sk- form
)
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|password|secret|token)"
# VAR=value / key: value in configuration files (env, compose, YAML, properties, shell...).
CONFIG_ASSIGNMENT = re.compile(
    rf"^\s*(?:export\s+)?(?:-\s+)?({_SECRET_NAME}[A-Za-z0-9_.-]*)\s*[=:]\s*(?P<value>.*)$"
)
# name = "literal" in the application's Python code (tests hold deliberate markers).
PYTHON_ASSIGNMENT = re.compile(
    rf"({_SECRET_NAME}[A-Za-z0-9_]*)\s*(?::\s*str\s*)?=\s*[\"'](?P<value>[^\"']+)[\"']"
)


def _is_reference_or_empty(name: str, value: str) -> bool:
    """Empty values (.env.example's placeholders), references to the environment, and the
    absolute path a ``*_FILE`` variable names (where a secret is read from, not the secret)."""
    value = value.strip().strip("\"'")
    if name.upper().endswith("_FILE") and value.startswith("/"):
        return True
    return not value or value.startswith(("$", "#", "{{"))


def findings(path: str, text: str) -> list[str]:
    """Lines of ``text`` (the file at ``path``) that look like a committed secret."""
    found = []
    python = path.endswith(".py")
    config = not python and not path.endswith(".md")
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}: {line.strip()[:100]}"
        if PRIVATE_KEY.search(line) or KNOWN_TOKENS.search(line):
            found.append(where)
        elif config and (match := CONFIG_ASSIGNMENT.match(line)):
            if not _is_reference_or_empty(match[1], match["value"]):
                found.append(where)
        elif python and not path.startswith("tests/") and (match := PYTHON_ASSIGNMENT.search(line)):
            found.append(where)
    return found


def test_no_tracked_file_holds_a_secret() -> None:
    """Every file `git ls-files` lists is free of private keys, known token formats, and secret
    variables assigned a literal value (.env.example's empty placeholders are allowed)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    problems = []
    scanned = 0
    for path in filter(None, listed.split("\0")):
        try:
            text = (REPO / path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue  # binary files and files deleted in the working tree
        scanned += 1
        problems += findings(path, text)
    assert scanned > 100  # really scanned the repository
    assert problems == []


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("deploy/key.pem", "-" * 5 + "BEGIN OPENSSH PRIVATE KEY" + "-" * 5),
        (".env", "FLOWFORGE_MQTT_PASSWORD=hunter2"),
        ("docker-compose.yml", "      FLOWFORGE_SIM_TOKEN: abc123"),
        ("infra/x.yaml", "  password: 's3cret'"),
        ("docker-compose.yml", "      FLOWFORGE_MQTT_PASSWORD_FILE: hunter2"),
        ("notes.txt", "token AKIA" + "ABCDEFGHIJKLMNOP"),
        ("flowforge/x.py", 'API_TOKEN = "' + "t0ken" + '"'),
    ],
)
def test_the_rules_catch_secrets(path: str, line: str) -> None:
    """Each rule fires on a typical committed secret (the scan above can fail)."""
    assert findings(path, line)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (".env.example", "FLOWFORGE_MQTT_PASSWORD="),
        ("docker-compose.yml", "  FLOWFORGE_SIM_TOKEN: ${FLOWFORGE_SIM_TOKEN:?set it}"),
        ("infra/grafana/x.yaml", "      password: $CLICKHOUSE_GRAFANA_PASSWORD"),
        ("tests/unit/x.py", 'PASSWORD = "marker-for-a-test"'),
        ("README.md", "FLOWFORGE_RTSP_API_TOKEN=... (see below)"),
        ("docker-compose.yml", "      CLICKHOUSE_PASSWORD_FILE: /run/secrets/clickhouse_password"),
    ],
)
def test_the_rules_allow_placeholders_and_references(path: str, line: str) -> None:
    """Empty placeholders, ${VAR} references, test markers and the secret-file path of a
    *_FILE variable are not findings."""
    assert findings(path, line) == []
