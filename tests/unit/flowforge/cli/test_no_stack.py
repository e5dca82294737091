"""Commands run against a home where nothing of FlowForge's has run say so in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowforge.cli.main import main
from flowforge.cli.validate import Check, _clickhouse
from flowforge.core.settings import Settings


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FLOWFORGE_HOME pointing at a directory that does not exist."""
    home = tmp_path / "nothing-here"
    monkeypatch.setenv("FLOWFORGE_HOME", str(home))
    monkeypatch.delenv("FLOWFORGE_CLICKHOUSE_URL", raising=False)
    return home


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str, str]:
    code: object = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_without_a_stack_is_one_line_and_creates_nothing(
    empty_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`flowforge stats` under a home with no ClickHouse data exits 1 with one line naming the
    path and how to start the stack, and leaves no (empty) database behind."""
    code, out, err = run(["stats"], capsys)
    assert code == 1
    assert not out
    assert err.count("\n") == 1, err
    assert f"no ClickHouse data at {empty_home / 'clickhouse'}" in err
    assert "flowforge stack up --pipeline" in err
    assert not empty_home.exists()


def test_stack_status_without_a_stack_is_one_line(
    empty_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`flowforge stack status` under a home no stack ever ran in exits 1 with one line naming
    the home, instead of a table of services "not started by FlowForge"."""
    code, out, err = run(["stack", "status"], capsys)
    assert code == 1
    assert not out
    assert err.count("\n") == 1, err
    assert f"no FlowForge stack under FLOWFORGE_HOME={empty_home}" in err


def test_stack_down_without_a_stack_says_there_is_nothing_to_stop(
    empty_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`flowforge stack down` under a home no stack ever ran in says so in one line (exit 0)."""
    code, out, _err = run(["stack", "down"], capsys)
    assert code in (0, None)
    assert out == f"no FlowForge stack under FLOWFORGE_HOME={empty_home}: nothing to stop\n"


def test_validate_without_engine_data_names_the_home_not_a_migration(
    tmp_path: Path,
) -> None:
    """validate's ClickHouse check under a home with no embedded engine data fails saying so
    (not "schema version 0: run migrate", which would create a second, empty database)."""
    home = tmp_path / "nothing-here"
    checks: list[Check] = []
    _clickhouse(Settings.from_env({"FLOWFORGE_HOME": str(home)}), checks)
    assert [c.name for c in checks] == ["clickhouse"]
    assert not checks[0].ok
    assert f"no embedded ClickHouse at {home / 'clickhouse'}" in checks[0].detail
    assert "flowforge stack up --pipeline" in checks[0].fix
    assert not home.exists()


@pytest.mark.parametrize("table", ["images_metadata", "images_resent"])
def test_stats_on_a_database_without_the_table_says_how_the_schema_is_made(table: str) -> None:
    """A statistics query that fails for a missing table (none yet, or a schema older than the
    duplicates' view) becomes one line naming that table and saying that a worker applies the
    schema at start, or `flowforge clickhouse migrate` does."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from flowforge.core.stats import _query_failed

    error = DatabaseError(
        f"Code: 60. DB::Exception: Unknown table expression identifier '{table}' in "
        "scope SELECT ...\n(UNKNOWN_TABLE)"
    )
    settings = Settings.from_env({"FLOWFORGE_CLICKHOUSE_URL": "http://db:8123"})
    message = str(_query_failed(settings.clickhouse, error))
    assert "\n" not in message
    assert f"has no {table} table yet" in message
    assert "flowforge clickhouse migrate" in message
    assert "http://db:8123" in message
