"""RTSP stream specs: ``[name=]URL`` entries, the source id derived from a URL, the URLs file."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flowforge.core.errors import SettingsError
from flowforge.core.settings import RtspSettings, check_rtsp_entry
from flowforge.core.urls import (
    MAX_NAME,
    is_source_name,
    redact_url,
    split_named_url,
    strip_credentials,
)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StreamSpec:
    """One stream to capture: its source id (the Kafka key) and URL (credentials included)."""

    source_id: str
    url: str = field(repr=False)

    @property
    def shown_url(self) -> str:
        """The URL for logs and the API: user-info replaced by ``***``."""
        return redact_url(self.url)

    @property
    def origin(self) -> str:
        """The URL for the ``ff-origin`` header: user-info removed."""
        return strip_credentials(self.url)

    def __repr__(self) -> str:
        return f"StreamSpec({self.source_id!r}, {self.shown_url!r})"


def derive_source_id(url: str) -> str:
    """The source id of an unnamed stream: its path (``rtsp://cam:554/live/cam1`` ->
    ``live-cam1``), or host[-port] when the path is empty; other characters become ``-``."""
    parts = urlsplit(strip_credentials(url))
    text = _UNSAFE.sub("-", unquote(parts.path)).strip("-._")
    if not text:
        host = parts.hostname or "stream"
        text = _UNSAFE.sub("-", f"{host}-{parts.port}" if parts.port else host).strip("-._")
    return text[-MAX_NAME:].lstrip("-._") or "stream"


def parse_entry(entry: str) -> StreamSpec:
    """A StreamSpec from ``name=URL`` or ``URL``; ValueError with a reason if it is not one."""
    check_rtsp_entry(entry)
    name, url = split_named_url(entry)
    source_id = name or derive_source_id(url)
    if not is_source_name(source_id):  # derived ids are sanitised; this guards the API's input
        raise ValueError(f"bad stream name {source_id!r}")
    return StreamSpec(source_id, url)


def read_urls_file(path: Path) -> list[str]:
    """The entries of a URLs file: one ``[name=]URL`` a line; blank lines and ``#`` comments
    are skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def check_unique(specs: Iterable[StreamSpec]) -> list[StreamSpec]:
    """``specs`` as a list; ValueError naming the first source id used twice."""
    seen: dict[str, StreamSpec] = {}
    for spec in specs:
        if spec.source_id in seen:
            raise ValueError(
                f"source id {spec.source_id!r} is used by {seen[spec.source_id].shown_url} and "
                f"{spec.shown_url}; name them: NAME=URL"
            )
        seen[spec.source_id] = spec
    return list(seen.values())


def load_specs(rtsp: RtspSettings) -> list[StreamSpec]:
    """The configured streams (FLOWFORGE_RTSP_URLS, then FLOWFORGE_RTSP_URLS_FILE), checked;
    a bad entry raises SettingsError naming the variable (and the file's line)."""
    specs = [parse_entry(entry) for entry in rtsp.urls]  # entries were checked by the parser
    if rtsp.urls_file:
        path = Path(rtsp.urls_file).expanduser()
        variable = "FLOWFORGE_RTSP_URLS_FILE"
        try:
            entries = read_urls_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(variable, f"cannot read {path}: {exc}") from None
        for number, entry in enumerate(entries, 1):
            try:
                specs.append(parse_entry(entry))
            except ValueError as exc:
                raise SettingsError(
                    variable, f"{path} entry {number} ({redact_url(entry)}): {exc}"
                ) from None
    try:
        return check_unique(specs)
    except ValueError as exc:
        raise SettingsError("FLOWFORGE_RTSP_URLS", str(exc)) from None
