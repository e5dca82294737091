"""URL and address helpers shared by settings, logs and bridges: credentials never leave a URL
unredacted; loopback and wildcard addresses are told apart in one place."""

from __future__ import annotations

import ipaddress
from typing import Final

REDACTED = "***"
LOOPBACK_NAMES: Final = frozenset({"localhost"})
# Binds that listen on every interface: a client on this machine reaches them on 127.0.0.1.
WILDCARD_BINDS: Final = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reachable_host(bind: str) -> str:
    """The address to reach a server bound to ``bind`` from this machine."""
    return "127.0.0.1" if bind in WILDCARD_BINDS else bind


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


def redact_value(text: str) -> str:
    """``text`` with the user-info of each comma-separated item hidden, for error messages that
    echo a raw setting (``rtsp://***@cam/x``, and ``***@host`` for an item without a scheme)."""
    return ",".join(_redact_item(item) for item in text.split(","))


def _redact_item(item: str) -> str:
    if "://" in item:
        return redact_url(item)
    return f"{REDACTED}@{item.rsplit('@', 1)[1]}" if "@" in item else item


def strip_credentials(url: str) -> str:
    """Return ``url`` without its user-info at all (``rtsp://cam/x``), for headers and ids."""
    split = _split_userinfo(url)
    return url if split is None else f"{split[0]}{split[1]}"


_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_NAME = 64


def is_source_name(text: str) -> bool:
    """Whether ``text`` is a valid stream name: 1-64 of letters, digits, ``.``, ``_``, ``-``,
    starting with a letter or digit."""
    return (
        0 < len(text) <= MAX_NAME and text[0].isascii() and text[0].isalnum()
        and set(text) <= _NAME_CHARS
    )  # fmt: skip


def split_named_url(entry: str) -> tuple[str, str]:
    """``(name, url)`` from ``name=url`` or ``("", url)`` from a bare URL.

    The text before the first ``=`` is a name only if it is a valid stream name and no ``://``
    precedes the ``=`` (a URL's query may hold ``=`` too: ``rtsp://cam/live?channel=1``).
    """
    name, sep, rest = entry.partition("=")
    if sep and "://" not in name and is_source_name(name.strip()):
        return name.strip(), rest.strip()
    return "", entry.strip()
