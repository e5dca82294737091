"""Directory scanning for the batch bridge: patterns, containment in the root, safe reads."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bridges.errors import FileRefused, FileTooLarge

# Reasons a file is refused before it could be read (reported and counted, never published to
# Kafka, not checkpointed: the next run looks at it again).
OUTSIDE_ROOT = "outside_root"
UNREADABLE = "unreadable"
NOT_A_FILE = "not_a_file"
CHANGING = "changing"

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Found:
    """A regular file under the root that matched the patterns, as one scan saw it."""

    rel: str  # POSIX path relative to the root, as found (the link's path for a link)
    real: str  # the resolved path, checked to be inside the resolved root
    size: int
    mtime_ns: int

    @property
    def signature(self) -> tuple[int, int]:
        """What a change of the file changes: (size, mtime in ns)."""
        return self.size, self.mtime_ns


@dataclass(frozen=True)
class Refused:
    """A path the scan did not follow or could not look at, with the reason and a detail."""

    rel: str
    reason: str
    detail: str


def is_inside(path: str, root: str) -> bool:
    """Whether the resolved ``path`` is ``root`` or below it (both absolute, resolved)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def matches(rel: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``rel`` (POSIX, relative to the root) matches a pattern, case-insensitively: a
    pattern with a '/' is matched against the whole relative path, others against the name."""
    name = rel.rsplit("/", 1)[-1].lower()
    lowered = rel.lower()
    for pattern in patterns:
        target = lowered if "/" in pattern else name
        if fnmatch.fnmatchcase(target, pattern.lower()):
            return True
    return False


def source_id_for_root(root: Path) -> str:
    """The default source id of a root: its directory name, reduced to [A-Za-z0-9._-]."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", root.resolve().name).strip("-.")[:64]
    return name or "batch"


def scan(root: Path, patterns: tuple[str, ...], *, recursive: bool) -> Iterator[Found | Refused]:
    """Walk ``root`` (hidden entries left out) and yield the matching regular files and the
    paths refused. A symlink (to a file or a directory) is followed only when its target
    resolves inside the root; a directory is entered once, by its real path when it has one
    under the root, so link cycles end. A file or directory deleted while the scan runs is left
    out (gone, not refused)."""
    real_root = os.path.realpath(root)
    visited = {real_root}
    pending: list[tuple[str, str]] = [(real_root, "")]
    linked: list[tuple[str, str]] = []  # directories reached through links: after the rest
    while pending or linked:
        if pending:
            directory, prefix = pending.pop()
        else:
            directory, prefix = linked.pop(0)
            if directory in visited:
                continue
            visited.add(directory)
        try:
            with os.scandir(directory) as entries:
                listed = sorted(entries, key=lambda e: e.name)
        except FileNotFoundError as exc:
            if prefix:  # a directory deleted since its parent was listed: gone, not refused
                continue
            yield Refused(".", UNREADABLE, _why(exc))
            continue
        except OSError as exc:
            yield Refused(prefix.rstrip("/") or ".", UNREADABLE, _why(exc))
            continue
        for entry in listed:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            yield from _look_at(
                entry, rel, real_root, patterns, recursive, visited, pending, linked
            )


def _look_at(
    entry: os.DirEntry[str],
    rel: str,
    real_root: str,
    patterns: tuple[str, ...],
    recursive: bool,
    visited: set[str],
    pending: list[tuple[str, str]],
    linked: list[tuple[str, str]],
) -> Iterator[Found | Refused]:
    try:
        is_link = entry.is_symlink()
        is_dir = entry.is_dir(follow_symlinks=False)
    except OSError as exc:
        yield Refused(rel, UNREADABLE, _why(exc))
        return
    if is_dir:  # a real directory: its parent is resolved and it is no link, so is it
        if recursive and entry.path not in visited:
            visited.add(entry.path)
            pending.append((entry.path, rel + "/"))
        return
    if not is_link and not matches(rel, patterns):
        return
    real = os.path.realpath(entry.path) if is_link else entry.path
    if is_link:
        if not is_inside(real, real_root):
            if recursive or matches(rel, patterns):
                yield Refused(rel, OUTSIDE_ROOT, "symlink leading outside the root, not followed")
            return
        try:
            target = os.stat(real)
        except OSError as exc:
            if matches(rel, patterns):
                yield Refused(rel, UNREADABLE, f"broken symlink: {_why(exc)}")
            return
        if stat.S_ISDIR(target.st_mode):
            if recursive:
                linked.append((real, rel + "/"))
            return
        if not matches(rel, patterns):
            return
    else:
        try:
            target = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return  # deleted since the directory was listed: gone, not refused
        except OSError as exc:
            yield Refused(rel, UNREADABLE, _why(exc))
            return
    if not stat.S_ISREG(target.st_mode):
        yield Refused(rel, NOT_A_FILE, "not a regular file")
        return
    yield Found(rel, real, target.st_size, target.st_mtime_ns)


def read_file(found: Found, real_root: str, limit: int, source_id: str) -> bytes:
    """The bytes of ``found``, read safely: the final component is opened without following a
    link, the opened file is checked to be inside ``real_root`` and to be the regular file the
    scan saw, unchanged while read. Raise FileRefused, or FileTooLarge above ``limit`` bytes."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(found.real, flags)
    except OSError as exc:
        raise FileRefused(UNREADABLE, _why(exc)) from exc
    with os.fdopen(fd, "rb") as handle:
        opened = _opened_path(fd, found.real)
        if not is_inside(opened, real_root):
            raise FileRefused(OUTSIDE_ROOT, "the opened file is outside the root")
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise FileRefused(NOT_A_FILE, "not a regular file")
        if (before.st_size, before.st_mtime_ns) != found.signature:
            raise FileRefused(CHANGING, "the file changed since the scan")
        if before.st_size > limit:
            raise FileTooLarge(before.st_size, _streamed_digest(handle, source_id))
        try:
            data = handle.read(before.st_size + 1)  # one byte more shows a file growing
        except OSError as exc:
            raise FileRefused(UNREADABLE, _why(exc)) from exc
        after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or len(
        data
    ) != before.st_size:
        raise FileRefused(CHANGING, "the file changed while it was read")
    return data


def _opened_path(fd: int, fallback: str) -> str:
    """Where the open file really is (Linux /proc), so a link swapped in after the scan is seen."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return fallback


def _streamed_digest(handle: BinaryIO, source_id: str) -> str:
    """flowforge.core.envelope.content_digest of a file, computed in chunks."""
    digest = hashlib.sha256(source_id.encode("utf-8", errors="replace") + b"\0")
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
