"""URL redaction: credentials never survive into logs, headers or settings output."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowforge.core.urls import (
    is_loopback,
    is_source_name,
    reachable_host,
    redact_url,
    redact_value,
    split_named_url,
    strip_credentials,
)

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - only parsed, never bound


@pytest.mark.parametrize(
    ("url", "redacted", "stripped"),
    [
        ("rtsp://u:p@cam:554/x", "rtsp://***@cam:554/x", "rtsp://cam:554/x"),
        ("rtsp://cam/x", "rtsp://cam/x", "rtsp://cam/x"),
        ("https://a:b@h:8443/?q=1", "https://***@h:8443/?q=1", "https://h:8443/?q=1"),
        ("rtsp://u:p@ss@cam/x", "rtsp://***@cam/x", "rtsp://cam/x"),
        ("rtsp://u:p?w/d#x@cam/x", "rtsp://***@cam/x", "rtsp://cam/x"),
        ("not a url", "not a url", "not a url"),
    ],
)
def test_redact_and_strip(url: str, redacted: str, stripped: str) -> None:
    """User-info becomes *** (for logs) or disappears (for headers); other URLs are unchanged."""
    assert redact_url(url) == redacted
    assert strip_credentials(url) == stripped


@given(st.text(min_size=1, max_size=12))
def test_password_never_survives_redaction(password: str) -> None:
    """Whatever characters the password holds, none of it is left in either form."""
    url = f"rtsp://user:{password}@camera.example:554/stream"
    assert redact_url(url) == "rtsp://***@camera.example:554/stream"
    assert strip_credentials(url) == "rtsp://camera.example:554/stream"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://u:p@cam/x,door=rtsp://a:b@d/y", "rtsp://***@cam/x,door=rtsp://***@d/y"),
        ("user:secret@broker:9092,other:9092", "***@broker:9092,other:9092"),
        ("plain text", "plain text"),
    ],
)
def test_redact_value_hides_each_items_user_info(text: str, shown: str) -> None:
    """Raw setting values echoed in errors lose the user-info of every comma-separated item."""
    assert redact_value(text) == shown


@given(
    st.text(max_size=20),
    st.text(st.characters(blacklist_characters=","), min_size=1, max_size=12),
    st.text(max_size=20),
)
def test_redact_value_never_shows_a_password(before: str, password: str, after: str) -> None:
    """Any text around a user:password@ item keeps none of the password (commas aside: they
    separate items)."""
    marker = f"Zq9{password}"
    shown = redact_value(f"{before},rtsp://user:{marker}@host{after.replace(',', '')}")
    assert marker not in shown


@given(st.text(max_size=60))
def test_any_entry_splits_into_a_valid_name_or_none(entry: str) -> None:
    """Any text splits without error into "" or a valid stream name, and a URL that is the
    entry or its tail after ``name=``."""
    name, url = split_named_url(entry)
    assert name == "" or is_source_name(name)
    assert url == entry.strip() or url == entry.partition("=")[2].strip()
    assert strip_credentials(url).count("@") <= url.count("@")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), (ANY_ADDRESS, False), ("cam", False)],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    """Only loopback addresses and `localhost` count as local-only binds."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("bind", "host"),
    [(ANY_ADDRESS, "127.0.0.1"), ("::", "127.0.0.1"), ("", "127.0.0.1"), ("10.0.0.5", "10.0.0.5")],
)
def test_a_wildcard_bind_is_reached_on_loopback(bind: str, host: str) -> None:
    """A server bound to every interface is reached on 127.0.0.1; a specific bind as itself."""
    assert reachable_host(bind) == host
