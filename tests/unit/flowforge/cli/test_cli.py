"""The `flowforge` command: help with examples, settings output, one-line errors and exit codes."""

from __future__ import annotations

import json

import pytest

from flowforge.cli.main import cli, main
from flowforge.core.settings import SPECS

COMMANDS = [
    [],
    ["config"],
    ["worker"],
    ["clickhouse"],
    ["clickhouse", "migrate"],
    ["clickhouse", "kafka-engine-sql"],
    ["stats"],
    ["topics"],
    ["tail"],
    ["dlq"],
    ["dlq", "replay"],
    ["validate"],
    ["stack"],
    ["stack", "up"],
    ["stack", "down"],
    ["stack", "status"],
    ["sim"],
    ["sim", "rtsp"],
    ["sim", "video"],
    ["sim", "check"],
    ["bridge"],
    ["bridge", "mqtt"],
    ["bridge", "rtsp"],
    ["bridge", "batch"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "flowforge")
def test_every_command_has_help_with_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--help` succeeds and shows at least one example line."""
    code: object = 0
    try:
        main([*command, "--help"])
    except SystemExit as exc:  # `worker --help` ends in Faust's own CLI, which exits
        code = exc.code
    assert code in (0, None)
    assert "Example" in capsys.readouterr().out


def test_help_covers_every_registered_command() -> None:
    """The parametrised help test above lists every command the CLI registers."""
    registered = {name for name in cli.commands}  # type: ignore[attr-defined]
    assert registered <= {c[0] for c in COMMANDS if c}


@pytest.mark.parametrize("as_json", [False, True])
def test_config_prints_every_setting_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    """`flowforge config` (lines or --json) shows every secret as *** and URL credentials as
    ***@: no marker value set in a secret or an RTSP URL's user-info is printed."""
    markers = {}
    for spec in SPECS:
        if spec.is_secret:
            markers[spec.variable] = f"mk{len(markers)}-Zq9"
            monkeypatch.setenv(spec.variable, markers[spec.variable])
    monkeypatch.setenv("RTSP_URL", "rtsp://admin:camsecret-Zq9@cam/1")
    main(["config", "--json"] if as_json else ["config"])
    out = capsys.readouterr().out
    shown = json.loads(out) if as_json else dict(line.split("=", 1) for line in out.splitlines())
    assert {variable: shown[variable] for variable in markers} == dict.fromkeys(markers, "***")
    assert shown["FLOWFORGE_RTSP_URLS"] == "rtsp://***@cam/1"
    assert "Zq9" not in out


def test_bad_setting_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad value exits 2 with a single stderr line naming the variable and what is expected."""
    monkeypatch.setenv("FLOWFORGE_MQTT_PORT", "abc")
    with pytest.raises(SystemExit) as info:
        main(["config"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "flowforge: bad setting FLOWFORGE_MQTT_PORT='abc': expected a TCP port number 1-65535"
    ]


def test_unknown_clickhouse_scheme_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown URL scheme is a bad setting naming FLOWFORGE_CLICKHOUSE_URL."""
    monkeypatch.setenv("FLOWFORGE_CLICKHOUSE_URL", "mysql://db")
    with pytest.raises(SystemExit) as info:
        main(["config"])
    assert info.value.code == 2
    assert (
        "FLOWFORGE_CLICKHOUSE_URL='mysql://db': unknown scheme mysql://" in capsys.readouterr().err
    )


def test_config_markdown_is_the_settings_table(capsys: pytest.CaptureFixture[str]) -> None:
    """`flowforge config --markdown` prints the reference table the README embeds."""
    main(["config", "--markdown"])
    out = capsys.readouterr().out
    assert out.startswith("| variable | default | description |")
    assert "`FLOWFORGE_MQTT_PORT` (or `MQTT_PORT`)" in out


@pytest.mark.parametrize("flag", ["--debug", "-v", "--verbose"])
def test_debug_flag_works_after_the_subcommand(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`flowforge config --debug` (the flag after the subcommand, where the "run with --debug"
    hint leads users to put it) runs the command instead of failing as an unknown option."""
    code: object = 0
    try:
        main(["config", flag])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, None), err
    assert "FLOWFORGE_HOME=" in out
