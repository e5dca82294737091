"""README.md stays true to the code: the settings table and the two quick-start commands."""

from __future__ import annotations

from pathlib import Path

from flowforge.cli.docs import render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_settings_table_is_current() -> None:
    """The README's settings table equals the one generated from the settings code (`make docs`)."""
    text = README.read_text(encoding="utf-8")
    assert render(text) == text


def test_quick_start_is_the_two_commands() -> None:
    """The README's first code block is exactly `make run` and `make test`."""
    text = README.read_text(encoding="utf-8")
    block = text.split("```", 2)[1]
    lines = [line for line in block.splitlines()[1:] if line.strip()]
    assert lines == ["make run", "make test"]
