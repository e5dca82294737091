"""`flowforge sim rtsp` before the server starts: settings, file and options; port checks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from flowforge.cli.main import main
from flowforge.core.settings import Settings
from flowforge.sim.config import StreamConfig
from flowforge.sim.errors import SimPortBusy
from flowforge.sim.launcher import build_config, check_ports, server_env
from flowforge.sim.server import media_launch, player_launch


def test_settings_give_the_streams_and_ports() -> None:
    """FLOWFORGE_SIM_* settings define N streams with their defaults, ports and token."""
    settings = Settings.from_env(
        {
            "FLOWFORGE_SIM_STREAMS": "2",
            "FLOWFORGE_SIM_SIZE": "320x240",
            "FLOWFORGE_SIM_FPS": "5",
            "FLOWFORGE_SIM_RTSP_PORT": "18554",
            "FLOWFORGE_SIM_TOKEN": "tok",
        }
    )
    config = build_config(settings)
    assert [(s.name, s.width, s.height, s.fps) for s in config.streams] == [
        ("cam1", 320, 240, 5),
        ("cam2", 320, 240, 5),
    ]
    assert (config.rtsp_port, config.api_port, config.token) == (18554, 9997, "tok")


def test_file_overrides_settings_and_options_override_both(tmp_path: Path) -> None:
    """A config file overrides the settings; command-line options override the file."""
    path = tmp_path / "sim.toml"
    path.write_text("rtsp_port = 18554\napi_port = 19997\n", encoding="utf-8")
    settings = Settings.from_env({"FLOWFORGE_SIM_CONFIG": str(path), "FLOWFORGE_SIM_FPS": "9"})
    config = build_config(settings, api_port=29997, streams=1)
    assert (config.rtsp_port, config.api_port) == (18554, 29997)
    assert [(s.name, s.fps) for s in config.streams] == [("cam1", 9)]


def test_busy_port_names_the_holder() -> None:
    """A port held by another process is a SimPortBusy naming the port and its holder."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = build_config(Settings.from_env({}), rtsp_port=port, api_port=port - 1)
        with pytest.raises(SimPortBusy, match=rf"RTSP port {port} on 127.0.0.1 is in use by pid"):
            check_ports(config)


def test_cli_refuses_non_loopback_without_token(capsys: pytest.CaptureFixture[str]) -> None:
    """`sim rtsp --bind 0.0.0.0` without a token exits 1 with one line naming the setting."""
    with pytest.raises(SystemExit) as info:
        main(["sim", "rtsp", "--bind", "0.0.0.0"])  # noqa: S104 - refused before binding
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "FLOWFORGE_SIM_TOKEN" in err[0]


def test_cli_unknown_encoder_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown encoder in the settings exits 2 with one line naming the variable."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWFORGE_SIM_ENCODER", "h265")
        with pytest.raises(SystemExit) as info:
            main(["sim", "rtsp", "--print-config"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "flowforge: bad setting FLOWFORGE_SIM_ENCODER='h265': expected one of x264, openh264"
    ]


def test_print_config_hides_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    """`--print-config` prints the effective config as JSON without the token."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWFORGE_SIM_TOKEN", "s3cret")
        main(["sim", "rtsp", "--print-config", "--streams", "1"])
    out = capsys.readouterr().out
    assert '"token_required": true' in out
    assert "s3cret" not in out


def test_server_sees_the_flowforge_source() -> None:
    """The server's environment puts FlowForge's source first on PYTHONPATH, keeping others."""
    env = server_env({"PYTHONPATH": "/extra"})
    first, rest = env["PYTHONPATH"].split(":", 1)
    assert (Path(first) / "flowforge" / "sim" / "server.py").is_file()
    assert rest == "/extra"


def test_launch_lines_use_the_configured_parameters() -> None:
    """The media pipeline carries the stream's size, fps, bitrate, brightness and payloader."""
    line = media_launch(StreamConfig(name="c", width=320, height=240, fps=10, bitrate_kbps=400))
    assert "width=320,height=240,framerate=10/1" in line
    assert "bitrate=400" in line
    assert "key-int-max=10" in line
    assert "videobalance name=balance" in line
    assert "rtph264pay name=pay0" in line
    file_line = media_launch(StreamConfig(name="f", source="/v/a b.mp4"))
    assert file_line.startswith("( appsrc name=src")
    assert 'location="/v/a b.mp4"' in player_launch(StreamConfig(name="f", source="/v/a b.mp4"))
