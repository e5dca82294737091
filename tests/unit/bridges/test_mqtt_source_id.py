"""The MQTT bridge's pure logic: source id from topic, client id, content type."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridges.errors import PayloadRejected
from bridges.mqtt import content_type, default_client_id, source_id_for
from flowforge.core.settings import Settings


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("images/raw", "fallback"),
        ("images/raw/cam-01", "cam-01"),
        ("images/raw/site.a/cam_2", "site.a/cam_2"),
        ("images/raw/A/b/c/d", "A/b/c/d"),
    ],
)
def test_source_id_is_the_topic_suffix_or_the_default(topic: str, expected: str) -> None:
    """The source id is the part after the base topic, or the default for the base topic."""
    assert source_id_for(topic, "images/raw", "fallback") == expected


@pytest.mark.parametrize(
    "topic",
    [
        "images/raw/",
        "images/raw/bad id",
        "images/raw/-lead",
        "images/raw/a//b",
        "images/raw/a/b/c/d/e",
        "images/raw/" + "x" * 65,
        "images/rawcam",
        "other/cam-01",
        "images/raw/caméra",
    ],
)
def test_bad_source_ids_are_rejected_with_a_reason(topic: str) -> None:
    """A suffix that is not a clean 1-4 level id is rejected as bad_source_id."""
    with pytest.raises(PayloadRejected) as info:
        source_id_for(topic, "images/raw", "fallback")
    assert info.value.reason == "bad_source_id"


def test_default_client_id_is_stable_and_differs_per_home(tmp_path: Path) -> None:
    """The derived client id is the same on every start and differs between homes."""
    a = Settings.from_env({"FLOWFORGE_HOME": str(tmp_path / "a")})
    b = Settings.from_env({"FLOWFORGE_HOME": str(tmp_path / "b")})
    assert default_client_id(a) == default_client_id(a)
    assert default_client_id(a) != default_client_id(b)
    assert default_client_id(a).startswith("flowforge-mqtt-")


def test_content_type_comes_from_magic_bytes() -> None:
    """The content type is sniffed from the payload's magic bytes."""
    assert content_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert content_type(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert content_type(b"hello") == "application/octet-stream"
