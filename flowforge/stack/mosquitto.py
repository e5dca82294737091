"""The local Mosquitto broker (Debian's ``mosquitto``), probed by an MQTT round trip."""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Sequence
from pathlib import Path
from string import Template

from flowforge.core.mqtt import mqtt_round_trip
from flowforge.core.resources import infra_dir
from flowforge.stack.service import LOCAL_HOSTS, LocalService, find_program, read_text


def current_user() -> str:
    """The user this process runs as: Mosquitto's ``user``, so that, started as root, it does
    not drop to the ``mosquitto`` user, which cannot write a persistence directory under a
    root-owned (often 0700) home: every autosave then failed ("Error: Permission denied"),
    and a restart lost the bridge's persistent session with the QoS 1 messages queued in it.
    Started as anyone else, Mosquitto ignores the option."""
    return pwd.getpwuid(os.geteuid()).pw_name


class MosquittoService(LocalService):
    """Mosquitto on 127.0.0.1 with infra/mosquitto/local.conf."""

    name = "mosquitto"

    @property
    def local(self) -> bool:
        return self.settings.mqtt.host in LOCAL_HOSTS

    @property
    def port(self) -> int:
        return self.settings.mqtt.port

    @property
    def address(self) -> str:
        return f"{self.settings.mqtt.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.settings.home / "mosquitto" / "mosquitto.conf"

    def render_config(self) -> str:
        template = Template((infra_dir() / "mosquitto" / "local.conf").read_text("utf-8"))
        return template.substitute(
            port=self.port,
            data_dir=(self.settings.home / "mosquitto" / "data").resolve(),
            user=current_user(),
        )

    def prepare(self) -> Sequence[str]:
        binary = find_program("mosquitto", "Debian's mosquitto package")
        text = self.render_config()
        (self.settings.home / "mosquitto" / "data").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text, encoding="utf-8")
        return [binary, "-c", str(self.config_path.resolve())]

    def adopt(self, holder_cmdline: Sequence[str]) -> bool:
        """Reuse a Mosquitto already on our port only if it runs exactly our configuration."""
        if not holder_cmdline or not Path(holder_cmdline[0]).name.startswith("mosquitto"):
            return False
        args = list(holder_cmdline)
        if "-c" not in args or args.index("-c") + 1 >= len(args):
            return False
        their_config = read_text(Path(args[args.index("-c") + 1]))
        return bool(their_config) and their_config == self.render_config()

    async def probe(self) -> None:
        await asyncio.to_thread(mqtt_round_trip, self.settings.mqtt, 3.0)
