"""Dead letters fit the topic limit: the original bytes when they fit, else headers and size."""

from __future__ import annotations

from flowforge.core.dead_letter import MAX_DETAIL, error_headers, fit, record_size


def test_a_dead_letter_that_fits_keeps_its_bytes() -> None:
    """Bytes and headers under the limit are sent as they are."""
    headers = error_headers("process", "undecodable", "cv2 returned None")
    value, out = fit(b"cam", b"x" * 1000, headers, limit=10_000)
    assert (value, out) == (b"x" * 1000, headers)


def test_a_dead_letter_over_the_limit_drops_its_value_and_says_how_many_bytes() -> None:
    """Over the limit: an empty value, every header kept, the dropped size first in the detail
    (so the 300-character cut never removes it), and the result fits."""
    headers = [("ff-image-id", b"abc"), *error_headers("process", "unknown_format", "d" * 500)]
    value, out = fit(b"cam", b"x" * 5000, headers, limit=5000)
    assert value == b""
    assert [name for name, _ in out] == [name for name, _ in headers]
    detail = dict(out)["ff-error-detail"].decode()
    assert detail.startswith("value of 5000 bytes dropped")
    assert len(detail) == MAX_DETAIL
    assert record_size(b"cam", value, out) <= 5000
