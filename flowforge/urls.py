"""URL helpers shared by settings, logs and bridges: credentials never leave a URL unredacted."""

from __future__ import annotations

REDACTED = "***"


def _split_userinfo(url: str) -> tuple[str, str] | None:
    """``(scheme://, rest after the user-info)`` if ``url`` has user-info, else None.

    The user-info ends at the *last* ``@``: passwords pasted into camera URLs often hold raw
    ``?``, ``/``, ``#`` or ``@``, which a standard URL parser would take for the path or query
    (and so leave part of the password in view). An ``@`` later in a path or query is rare; it
    makes this hide too much, never too little.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    return scheme + sep, rest.rsplit("@", 1)[1]


def redact_url(url: str) -> str:
    """Return ``url`` with any user-info replaced by ``***`` (``rtsp://***@cam/x``), for logs."""
    split = _split_userinfo(url)
    return url if split is None else f"{split[0]}{REDACTED}@{split[1]}"


def strip_credentials(url: str) -> str:
    """Return ``url`` without its user-info at all (``rtsp://cam/x``), for headers and ids."""
    split = _split_userinfo(url)
    return url if split is None else f"{split[0]}{split[1]}"
