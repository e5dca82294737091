"""`flowforge worker --help` shows FlowForge's defaults for Faust's options, not Faust's."""

from __future__ import annotations

import pytest

from flowforge.cli.main import main


def test_worker_help_shows_flowforges_web_host_and_log_level(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass-through options show the web host and log level the worker really uses
    (FLOWFORGE_WORKER_WEB_BIND, FLOWFORGE_LOG_LEVEL), not Faust's 0.0.0.0 and WARN, and no
    `-h` for --web-host (here -h is help)."""
    monkeypatch.delenv("FLOWFORGE_LOG_LEVEL", raising=False)
    monkeypatch.delenv("FLOWFORGE_WORKER_WEB_BIND", raising=False)
    code: object = 0
    try:
        main(["worker", "--help"])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr().out
    assert code in (0, None)
    assert "--web-host" in out
    assert "-h, --web-host" not in out
    assert "0.0.0.0" not in out  # noqa: S104 - the text checked, nothing binds
    assert "WARN" not in out
    assert "(default: 127.0.0.1, FLOWFORGE_WORKER_WEB_BIND)" in out
    assert "[default: info, FLOWFORGE_LOG_LEVEL]" in out
