"""The batch bridge's pure parts: patterns, containment in the root, the scan and safe reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridges.errors import FileRefused, FileTooLarge
from bridges.scan import (
    CHANGING,
    NOT_A_FILE,
    OUTSIDE_ROOT,
    UNREADABLE,
    Found,
    Refused,
    is_inside,
    matches,
    read_file,
    scan,
    source_id_for_root,
)
from flowforge.core.envelope import content_image_id
from flowforge.core.errors import SettingsError
from flowforge.core.settings import DEFAULT_BATCH_PATTERNS, Settings, parse_glob_patterns

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100


def found_and_refused(root: Path, *, recursive: bool = True) -> tuple[set[str], dict[str, str]]:
    items = list(scan(root, DEFAULT_BATCH_PATTERNS, recursive=recursive))
    found = {i.rel for i in items if isinstance(i, Found)}
    refused = {i.rel: i.reason for i in items if isinstance(i, Refused)}
    return found, refused


def test_containment_is_by_path_components() -> None:
    """A path is inside the root only at or below it: a sibling sharing a prefix is outside."""
    assert is_inside("/data/in", "/data/in")
    assert is_inside("/data/in/a/b.jpg", "/data/in")
    assert not is_inside("/data/in2/b.jpg", "/data/in")
    assert not is_inside("/data", "/data/in")
    assert is_inside("/x.jpg", "/")


def test_patterns_match_names_case_insensitively_or_paths_with_a_slash() -> None:
    """Name patterns ignore case and directories; a pattern with '/' matches the relative path."""
    assert matches("a/b/IMG_1.JPG", DEFAULT_BATCH_PATTERNS)
    assert matches("x.webp", DEFAULT_BATCH_PATTERNS)
    assert not matches("notes.txt", DEFAULT_BATCH_PATTERNS)
    assert matches("cams/c1/x.png", ("cams/*/*.png",))
    assert not matches("other/c1/x.png", ("cams/*/*.png",))


@pytest.mark.parametrize("pattern", ["../*.jpg", "a/../../*.jpg", "/etc/*", "..", "x/.."])
def test_patterns_leading_outside_the_root_are_refused(pattern: str) -> None:
    """A pattern that is absolute or has a '..' component is a settings error naming it."""
    with pytest.raises(ValueError, match="outside the root"):
        parse_glob_patterns(pattern)
    with pytest.raises(SettingsError, match="FLOWFORGE_BATCH_PATTERNS"):
        Settings.from_env({"FLOWFORGE_BATCH_PATTERNS": f"*.jpg,{pattern}"})


def test_source_id_is_the_root_name_reduced_to_safe_characters(tmp_path: Path) -> None:
    """The default source id is the root directory's name with other characters as '-'."""
    root = tmp_path / "My Photos (2024)"
    root.mkdir()
    assert source_id_for_root(root) == "My-Photos-2024"
    assert source_id_for_root(tmp_path / "cam-01" / "..") == tmp_path.name[:64]


def test_scan_finds_nested_matches_and_leaves_hidden_and_other_files(tmp_path: Path) -> None:
    """The scan yields matching regular files at any depth (top level only when not
    recursive) and leaves hidden entries and non-matching names out."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ("1.jpg", "a/2.PNG", "a/b/3.jpeg", "a/notes.txt", ".x.jpg", ".hidden/4.jpg"):
        (tmp_path / rel).write_bytes(JPEG)
    assert found_and_refused(tmp_path) == ({"1.jpg", "a/2.PNG", "a/b/3.jpeg"}, {})
    assert found_and_refused(tmp_path, recursive=False) == ({"1.jpg"}, {})


def test_symlinks_inside_are_followed_outside_are_refused(tmp_path: Path) -> None:
    """Links to files and directories inside the root are followed (a directory once); links
    leading outside it, directly or through '..', are refused as outside_root."""
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "in.jpg").write_bytes(JPEG)
    (tmp_path / "secret.jpg").write_bytes(JPEG)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "o.jpg").write_bytes(JPEG)
    os.symlink(root / "real" / "in.jpg", root / "link.jpg")
    os.symlink("real", root / "again")  # relative link to a directory inside
    os.symlink("../secret.jpg", root / "dotdot.jpg")
    os.symlink(tmp_path / "outside", root / "outdir")
    os.symlink(root, root / "real" / "loop")  # a cycle back to the root
    found, refused = found_and_refused(root)
    assert found == {"real/in.jpg", "link.jpg"}  # "again/" and "real/loop/" are entered once
    assert refused == {"dotdot.jpg": OUTSIDE_ROOT, "outdir": OUTSIDE_ROOT}


def test_broken_links_and_special_files_are_refused(tmp_path: Path) -> None:
    """A dangling link is unreadable and a FIFO named like an image is not a file."""
    os.symlink("missing.jpg", tmp_path / "broken.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    found, refused = found_and_refused(tmp_path)
    assert found == set()
    assert refused == {"broken.jpg": UNREADABLE, "pipe.jpg": NOT_A_FILE}


def only(root: Path, rel: str) -> Found:
    [item] = [i for i in scan(root, ("*",), recursive=True) if i.rel == rel]
    assert isinstance(item, Found)
    return item


def test_read_file_returns_the_bytes_untouched(tmp_path: Path) -> None:
    """A file is read whole, byte for byte."""
    (tmp_path / "a.jpg").write_bytes(JPEG)
    assert read_file(only(tmp_path, "a.jpg"), str(tmp_path.resolve()), 1000, "s") == JPEG


def test_read_file_refuses_a_file_swapped_for_an_outside_link(tmp_path: Path) -> None:
    """A file replaced by a link after the scan is not followed (O_NOFOLLOW): unreadable."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.jpg").write_bytes(JPEG)
    (tmp_path / "secret.jpg").write_bytes(JPEG)
    item = only(root, "a.jpg")
    (root / "a.jpg").unlink()
    os.symlink(tmp_path / "secret.jpg", root / "a.jpg")
    with pytest.raises(FileRefused) as info:
        read_file(item, str(root.resolve()), 1000, "s")
    assert info.value.reason == UNREADABLE


def test_read_file_refuses_a_directory_swapped_for_an_outside_link(tmp_path: Path) -> None:
    """A directory replaced by a link leading outside after the scan (O_NOFOLLOW guards only
    the last component) is caught by where the opened file really is: outside_root."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.jpg").write_bytes(JPEG)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "a.jpg").write_bytes(JPEG)
    item = only(root, "sub/a.jpg")
    (root / "sub" / "a.jpg").unlink()
    (root / "sub").rmdir()
    os.symlink(tmp_path / "outside", root / "sub")
    with pytest.raises(FileRefused) as info:
        read_file(item, str(root.resolve()), 1000, "s")
    assert info.value.reason == OUTSIDE_ROOT


def test_read_file_refuses_a_file_outside_the_root(tmp_path: Path) -> None:
    """A found path that resolves outside the given root is refused after opening it."""
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "x.jpg").write_bytes(JPEG)
    item = only(tmp_path, "x.jpg")
    with pytest.raises(FileRefused) as info:
        read_file(item, str(root.resolve()), 1000, "s")
    assert info.value.reason == OUTSIDE_ROOT


def test_read_file_refuses_a_file_that_changed_since_the_scan(tmp_path: Path) -> None:
    """A file whose size differs from what the scan saw is refused as changing."""
    (tmp_path / "a.jpg").write_bytes(JPEG)
    item = only(tmp_path, "a.jpg")
    with (tmp_path / "a.jpg").open("ab") as handle:
        handle.write(b"more")
    with pytest.raises(FileRefused) as info:
        read_file(item, str(tmp_path.resolve()), 1000, "s")
    assert info.value.reason == CHANGING


def test_read_file_refuses_a_vanished_file(tmp_path: Path) -> None:
    """A file deleted between scan and read is unreadable, with the OS's words."""
    (tmp_path / "a.jpg").write_bytes(JPEG)
    item = only(tmp_path, "a.jpg")
    (tmp_path / "a.jpg").unlink()
    with pytest.raises(FileRefused, match="No such file") as info:
        read_file(item, str(tmp_path.resolve()), 1000, "s")
    assert info.value.reason == UNREADABLE


def test_an_oversized_file_is_hashed_to_the_same_image_id(tmp_path: Path) -> None:
    """Over the limit, the file is not returned; its streamed image id equals
    content_image_id of its bytes."""
    data = JPEG * 50_000
    (tmp_path / "big.jpg").write_bytes(data)
    with pytest.raises(FileTooLarge) as info:
        read_file(only(tmp_path, "big.jpg"), str(tmp_path.resolve()), 1000, "cam")
    assert info.value.size == len(data)
    assert info.value.image_id == content_image_id("cam", data)


def test_a_file_or_directory_deleted_during_a_scan_is_gone_not_refused(tmp_path: Path) -> None:
    """A file listed but deleted before the scan looked at it, and a directory deleted before
    the scan entered it, are simply not there: no `unreadable` refusal (a dangling link still
    is one)."""
    (tmp_path / "a.jpg").write_bytes(JPEG)
    (tmp_path / "b.jpg").write_bytes(JPEG)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.jpg").write_bytes(JPEG)
    os.symlink("missing.jpg", tmp_path / "d.jpg")
    found = scan(tmp_path, ("*.jpg",), recursive=True)
    first = next(found)
    assert first.rel == "a.jpg"
    (tmp_path / "b.jpg").unlink()
    (tmp_path / "sub" / "c.jpg").unlink()
    (tmp_path / "sub").rmdir()
    rest = list(found)
    assert [(i.rel, getattr(i, "reason", None)) for i in rest] == [("d.jpg", UNREADABLE)]
