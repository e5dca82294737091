"""The local Mosquitto's persistence directory is writable by the user the broker runs as."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from flowforge.stack import mosquitto


def _fake_user(monkeypatch: pytest.MonkeyPatch, euid: int) -> list[tuple[Path, int, int]]:
    calls: list[tuple[Path, int, int]] = []
    entry = pwd.struct_passwd(("mosquitto", "x", 102, 105, "", "/", "/bin/false"))
    monkeypatch.setattr(mosquitto.os, "geteuid", lambda: euid)
    monkeypatch.setattr(mosquitto.pwd, "getpwnam", lambda name: entry)
    monkeypatch.setattr(mosquitto.os, "chown", lambda p, u, g: calls.append((Path(p), u, g)))
    return calls


def test_as_root_the_data_directory_goes_to_the_broker_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started as root, the directory and a saved database are chowned to the mosquitto user
    (else every autosave fails and a restart loses the bridge's session)."""
    (tmp_path / "mosquitto.db").write_bytes(b"db")
    calls = _fake_user(monkeypatch, euid=0)
    mosquitto.give_to_broker_user(tmp_path)
    assert sorted(calls) == sorted([(tmp_path, 102, 105), (tmp_path / "mosquitto.db", 102, 105)])


def test_as_another_user_nothing_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started as an ordinary user, Mosquitto keeps that user, so nothing is chowned."""
    calls = _fake_user(monkeypatch, euid=os.geteuid() or 1000)
    mosquitto.give_to_broker_user(tmp_path)
    assert calls == []
