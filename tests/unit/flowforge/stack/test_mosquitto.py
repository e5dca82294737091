"""The local Mosquitto runs as the user who started the stack, so it can save its sessions."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from flowforge.core.settings import Settings
from flowforge.stack import mosquitto
from flowforge.stack.mosquitto import MosquittoService


def test_config_names_the_current_user_so_root_does_not_drop_to_mosquitto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started as root the config says `user root` (dropping to `mosquitto`, every autosave
    failed and a restart lost the bridge's session); otherwise it names the current user."""
    settings = Settings.from_env({"FLOWFORGE_HOME": str(tmp_path)})
    text = MosquittoService(settings).render_config()
    assert f"\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n" in text
    monkeypatch.setattr(mosquitto.os, "geteuid", lambda: 0)
    assert "\nuser root\n" in MosquittoService(settings).render_config()
    assert "\npersistence true\n" in text


def test_config_saves_sessions_every_second(tmp_path: Path) -> None:
    """The local Mosquitto autosaves every second, so a crash cannot lose a bridge session
    older than that (at 10 s a SIGKILL lost a 3 s old session and the images sent meanwhile)."""
    text = MosquittoService(Settings.from_env({"FLOWFORGE_HOME": str(tmp_path)})).render_config()
    assert "\nautosave_interval 1\n" in text
    assert "autosave_on_changes" not in text  # time-based: not a full save per message
