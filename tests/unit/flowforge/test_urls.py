"""URL redaction: credentials never survive into logs, headers or settings output."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowforge.urls import redact_url, strip_credentials


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
