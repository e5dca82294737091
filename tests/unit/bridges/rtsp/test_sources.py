"""RTSP stream specs, source ids, the URLs file, the stream API's input and the frame envelope."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridges.errors import ApiError
from bridges.rtsp.api import spec_from_body
from bridges.rtsp.bridge import Frame, check_api_security, frame_message
from bridges.rtsp.sources import derive_source_id, load_specs, parse_entry
from flowforge.core.envelope import frame_image_id
from flowforge.core.errors import SettingsError
from flowforge.core.settings import Secret, Settings


@pytest.mark.parametrize(
    ("url", "source_id"),
    [
        ("rtsp://127.0.0.1:8554/cam1", "cam1"),
        ("rtsp://u:p@cam.local/live/ch 1", "live-ch-1"),
        ("rtsp://10.0.0.7:554/Streaming/Channels/101?transport=tcp", "Streaming-Channels-101"),
        ("rtsp://10.0.0.7:8554", "10.0.0.7-8554"),
        ("rtsp://admin:pw@doorbell/", "doorbell"),
    ],
)
def test_source_id_is_derived_from_the_path_or_host(url: str, source_id: str) -> None:
    """An unnamed stream's source id is its path (or host-port), never its credentials."""
    assert derive_source_id(url) == source_id


def test_named_entry_sets_the_source_id_and_keeps_query_equals() -> None:
    """NAME=URL names the stream; an = inside a URL's query is not taken for a name."""
    named = parse_entry("yard=rtsp://u:pw@cam/live")
    assert (named.source_id, named.url) == ("yard", "rtsp://u:pw@cam/live")
    bare = parse_entry("rtsp://cam/live?channel=1")
    assert (bare.source_id, bare.url) == ("live", "rtsp://cam/live?channel=1")


def test_spec_never_shows_its_password() -> None:
    """repr, shown_url and origin of a spec hide or drop the user-info."""
    spec = parse_entry("rtsp://admin:hunter2@cam/x")
    assert "hunter2" not in repr(spec)
    assert spec.shown_url == "rtsp://***@cam/x"
    assert spec.origin == "rtsp://cam/x"


def test_urls_and_file_are_combined_and_duplicates_refused(tmp_path: Path) -> None:
    """Streams come from the URLs setting then the file (comments skipped); a repeated id fails."""
    urls_file = tmp_path / "cams.txt"
    urls_file.write_text("# cameras\n\nrtsp://h/cam2\n  door=rtsp://u:pw@h/x  \n", "utf-8")
    env = {"FLOWFORGE_RTSP_URLS": "rtsp://h/cam1", "FLOWFORGE_RTSP_URLS_FILE": str(urls_file)}
    specs = load_specs(Settings.from_env(env).rtsp)
    assert [s.source_id for s in specs] == ["cam1", "cam2", "door"]
    env["FLOWFORGE_RTSP_URLS"] = "rtsp://other:pw@h2/cam2"
    with pytest.raises(SettingsError, match="source id 'cam2' is used by") as info:
        load_specs(Settings.from_env(env).rtsp)
    assert "pw" not in str(info.value).replace("***", "")


def test_bad_file_entry_names_the_variable_and_line(tmp_path: Path) -> None:
    """A non-RTSP line in the URLs file fails naming FLOWFORGE_RTSP_URLS_FILE and the entry."""
    urls_file = tmp_path / "cams.txt"
    urls_file.write_text("rtsp://h/a\nhttp://u:secret@h/b\n", "utf-8")
    env = {"FLOWFORGE_RTSP_URLS_FILE": str(urls_file)}
    with pytest.raises(SettingsError, match=r"FLOWFORGE_RTSP_URLS_FILE: .* entry 2") as info:
        load_specs(Settings.from_env(env).rtsp)
    assert "secret" not in str(info.value)


def test_missing_urls_file_is_a_setting_error(tmp_path: Path) -> None:
    """A URLs file that cannot be read is a SettingsError naming the variable."""
    env = {"FLOWFORGE_RTSP_URLS_FILE": str(tmp_path / "nope.txt")}
    with pytest.raises(SettingsError, match="FLOWFORGE_RTSP_URLS_FILE: cannot read"):
        load_specs(Settings.from_env(env).rtsp)


def test_api_body_becomes_a_spec_or_a_400() -> None:
    """POST bodies give a spec (name optional); bad ones a 400 that never echoes the URL."""
    assert spec_from_body({"url": "rtsp://h/cam9"}).source_id == "cam9"
    assert spec_from_body({"url": "rtsp://h/x", "name": "gate"}).source_id == "gate"
    for body in ([], {"url": 5}, {"url": "http://u:secret@h/x"}, {"url": "rtsp://h/x", "x": 1}):
        with pytest.raises(ApiError) as info:
            spec_from_body(body)
        assert info.value.status == 400
        assert "secret" not in info.value.message


def test_api_off_loopback_needs_a_token() -> None:
    """Binding the web server off loopback without FLOWFORGE_RTSP_API_TOKEN is refused."""
    check_api_security("127.0.0.1", Secret(""))
    check_api_security("0.0.0.0", Secret("t"))  # noqa: S104 - the case under test
    with pytest.raises(SettingsError, match="FLOWFORGE_RTSP_API_TOKEN"):
        check_api_security("0.0.0.0", Secret(""))  # noqa: S104


def test_frame_message_has_the_rtsp_envelope() -> None:
    """A frame's record: key = source id, id = hash(stream id, time), origin without user-info,
    ingested now."""
    spec = parse_entry("yard=rtsp://u:pw@cam:554/live")
    frame = Frame("yard", b"\xff\xd8jpeg", 1_700_000_000_123, 5.0, 320, 240)
    before = int(time.time() * 1000)
    headers = dict(frame_message(spec, frame).envelope().headers())
    ingested = int(headers.pop("ff-ingested-at"))
    assert before <= ingested <= int(time.time() * 1000)
    assert headers == {
        "ff-image-id": frame_image_id("yard", 1_700_000_000_123).encode(),
        "ff-source-type": b"rtsp",
        "ff-source-id": b"yard",
        "ff-captured-at": b"1700000000123",
        "ff-content-type": b"image/jpeg",
        "ff-origin": b"rtsp://cam:554/live",
    }


def test_a_password_with_a_slash_never_reaches_the_connection_error() -> None:
    """A password holding '/' is not mistaken for the host: the connect error names the real
    host and port, and no part of the password."""
    import socket

    from bridges.errors import SourceUnavailable
    from bridges.rtsp.bridge import open_stream

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = parse_entry(f"cam9=rtsp://admin:se/cr#et@127.0.0.1:{port}/live")
    with pytest.raises(SourceUnavailable) as info:
        open_stream(spec, open_timeout_s=2.0, read_timeout_s=2.0)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "se/cr" not in str(info.value)
    assert "cr#et" not in str(info.value)
