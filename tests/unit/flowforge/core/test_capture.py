"""Opening an RTSP stream: the port probed first, and errors that name it."""

from __future__ import annotations

import pytest

from flowforge.core.capture import open_capture
from flowforge.core.errors import CaptureUnavailable


@pytest.mark.parametrize(("scheme", "port"), [("rtsp", 554), ("rtsps", 322)])
def test_a_url_without_a_port_is_probed_on_its_schemes_registered_port(
    scheme: str, port: int
) -> None:
    """rtsp:// without a port is tried on 554 and rtsps:// on 322 (RTSP over TLS), and the
    connection error names the port tried (nothing listens on either here)."""
    with pytest.raises(CaptureUnavailable, match=rf"cannot connect to 127\.0\.0\.1:{port} "):
        open_capture(f"{scheme}://127.0.0.1/cam", open_timeout_s=1.0, read_timeout_s=1.0)


def test_a_url_that_is_not_rtsp_is_refused_as_not_retriable() -> None:
    """An http:// URL is refused before any connection, and retrying cannot help."""
    with pytest.raises(CaptureUnavailable, match="expected an rtsp:// URL") as info:
        open_capture("http://127.0.0.1/cam", open_timeout_s=1.0, read_timeout_s=1.0)
    assert info.value.retriable is False
