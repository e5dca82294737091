"""The simulator's configuration: files, API bodies, defaults and one-line errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowforge.sim.config import (
    SimConfig,
    StreamConfig,
    brightness_at,
    load_file,
    parse_stream,
)
from flowforge.sim.errors import SimConfigError

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - only parsed, never bound


def test_toml_file_defines_streams_over_defaults(tmp_path: Path) -> None:
    """A TOML file's [defaults] fill in what each [[streams]] table leaves out."""
    path = tmp_path / "sim.toml"
    path.write_text(
        'rtsp_port = 18554\n[defaults]\nfps = 5\nsize = "320x240"\n'
        '[[streams]]\nname = "gate"\n[[streams]]\nname = "yard"\nfps = 12\nbitrate_kbps = 300\n',
        encoding="utf-8",
    )
    config = load_file(path, base=SimConfig())
    assert config.rtsp_port == 18554
    assert [(s.name, s.width, s.height, s.fps) for s in config.streams] == [
        ("gate", 320, 240, 5),
        ("yard", 320, 240, 12),
    ]
    assert config.streams[1].bitrate_kbps == 300


def test_defaults_alone_apply_to_the_base_streams(tmp_path: Path) -> None:
    """A file with only [defaults] changes the parameters of the streams from the settings."""
    path = tmp_path / "sim.toml"
    path.write_text("[defaults]\nfps = 7\n", encoding="utf-8")
    base = SimConfig(streams=(StreamConfig(name="cam1"), StreamConfig(name="cam2")))
    config = load_file(path, base=base)
    assert [(s.name, s.fps) for s in config.streams] == [("cam1", 7), ("cam2", 7)]


def test_json_file_and_stream_count(tmp_path: Path) -> None:
    """A JSON file may give the number of streams, named cam1..camN."""
    path = tmp_path / "sim.json"
    path.write_text(json.dumps({"streams": 2, "api_port": 19997}), encoding="utf-8")
    config = load_file(path, base=SimConfig())
    assert [s.name for s in config.streams] == ["cam1", "cam2"]
    assert config.api_port == 19997


def test_relative_video_file_is_found_next_to_the_config(tmp_path: Path) -> None:
    """A relative `source` is resolved against the config file's directory."""
    (tmp_path / "clip.mp4").write_bytes(b"not checked here")
    path = tmp_path / "sim.toml"
    path.write_text('[[streams]]\nname = "f"\nsource = "clip.mp4"\n', encoding="utf-8")
    (stream,) = load_file(path, base=SimConfig()).streams
    assert stream.is_file
    assert stream.source == str((tmp_path / "clip.mp4").resolve())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "a b"}, "name: expected 1-64 letters"),
        ({"name": "a", "encoder": "h265"}, "unknown encoder 'h265'; choose one of x264, openh264"),
        ({"name": "a", "source": "/no/such/clip.mp4"}, "video file '/no/such/clip.mp4' does not"),
        ({"name": "a", "fps": 0}, "fps: expected an integer 1-120, got 0"),
        ({"name": "a", "width": 321}, "width: must be even"),
        ({"name": "a", "size": "big"}, "size: expected WIDTHxHEIGHT"),
        ({"name": "a", "night_brightness": 0.5}, "night_brightness: expected a number -1-0"),
        ({"name": "a", "pattern": "nope"}, "unknown pattern 'nope'"),
        ({"name": "a", "colour": "red"}, "unknown key 'colour'"),
        ({"name": "a", "fps": True}, "fps: expected an integer"),
    ],
)
def test_bad_stream_parameters_are_one_clear_line(body: dict[str, object], message: str) -> None:
    """Each invalid stream parameter raises SimConfigError naming the stream and the key."""
    with pytest.raises(SimConfigError) as info:
        parse_stream(body)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert not info.value.retriable


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    """An error in a config file starts with the file's path."""
    path = tmp_path / "sim.toml"
    path.write_text('[[streams]]\nname = "a"\nencoder = "h265"\n', encoding="utf-8")
    with pytest.raises(SimConfigError, match=r"^.*sim\.toml: stream 'a': encoder"):
        load_file(path, base=SimConfig())


def test_unreadable_or_invalid_file_is_an_error(tmp_path: Path) -> None:
    """A missing file and invalid TOML are SimConfigErrors that say which file."""
    with pytest.raises(SimConfigError, match="cannot read simulator config"):
        load_file(tmp_path / "missing.toml", base=SimConfig())
    bad = tmp_path / "bad.toml"
    bad.write_text("streams = [", encoding="utf-8")
    with pytest.raises(SimConfigError, match=r"bad\.toml: not valid"):
        load_file(bad, base=SimConfig())


def test_token_is_refused_in_files(tmp_path: Path) -> None:
    """The API token may not be written into a config file (it belongs in a secret setting)."""
    path = tmp_path / "sim.toml"
    path.write_text('token = "s3cret"\n', encoding="utf-8")
    with pytest.raises(SimConfigError, match="FLOWFORGE_SIM_TOKEN"):
        load_file(path, base=SimConfig())


def test_non_loopback_bind_requires_a_token(tmp_path: Path) -> None:
    """Binding off loopback without a token is refused; with a token it is accepted."""
    path = tmp_path / "sim.toml"
    path.write_text('bind = "0.0.0.0"\n', encoding="utf-8")
    with pytest.raises(SimConfigError, match="not loopback: set FLOWFORGE_SIM_TOKEN"):
        load_file(path, base=SimConfig())
    assert load_file(path, base=SimConfig(token="t")).bind == ANY_ADDRESS


def test_duplicate_names_and_equal_ports_are_refused(tmp_path: Path) -> None:
    """Two streams with one name, or one port for RTSP and API, are configuration errors."""
    path = tmp_path / "sim.toml"
    path.write_text('[[streams]]\nname = "a"\n[[streams]]\nname = "a"\n', encoding="utf-8")
    with pytest.raises(SimConfigError, match="'a' is used twice"):
        load_file(path, base=SimConfig())
    path.write_text("rtsp_port = 9000\napi_port = 9000\n", encoding="utf-8")
    with pytest.raises(SimConfigError, match="both 9000"):
        load_file(path, base=SimConfig())


def test_json_round_trip_keeps_the_token_only_for_the_server() -> None:
    """to_json/from_json round-trips; the JSON for people says whether a token is set, not which."""
    config = SimConfig(token="s3cret", streams=(StreamConfig(name="cam1", fps=5),))
    assert SimConfig.from_json(config.to_json()) == config
    public = json.loads(config.to_json(with_token=False))
    assert "token" not in public
    assert public["token_required"] is True
    assert "s3cret" not in repr(config)


def test_brightness_cycle_goes_from_day_to_night_and_back() -> None:
    """Brightness is 0 at the start of a cycle, night_brightness at half, 0 again at the end."""
    stream = StreamConfig(name="c", day_night_period_s=10, night_brightness=-0.8)
    assert brightness_at(stream, 0) == pytest.approx(0)
    assert brightness_at(stream, 5) == pytest.approx(-0.8)
    assert brightness_at(stream, 10) == pytest.approx(0, abs=1e-9)
    assert -0.8 < brightness_at(stream, 2.5) < 0
    assert brightness_at(StreamConfig(name="c", day_night_period_s=0), 5) == 0


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=5,
)
_KEYS = st.sampled_from([*(f.name for f in dataclasses.fields(StreamConfig)), "size", "other"])


@given(st.dictionaries(_KEYS, _JSON_VALUES, max_size=6))
def test_any_api_body_is_a_stream_or_a_config_error(body: dict[str, object]) -> None:
    """Any JSON body POSTed to /v1/paths gives a StreamConfig or a SimConfigError, nothing else."""
    stream: StreamConfig | None = None
    message = ""
    try:
        stream = parse_stream(body)
    except SimConfigError as exc:
        message = str(exc)
    if stream is None:
        assert message.startswith("stream")
        assert "\n" not in message
    else:
        assert stream.width % 2 == 0
        assert 1 <= stream.fps <= 120
