"""The simulator's configuration: streams and server, parsed from files, JSON and the API."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from flowforge.core.settings import ENCODERS
from flowforge.core.urls import is_loopback
from flowforge.sim.errors import SimConfigError

# videotestsrc patterns that move (horizontal-speed scrolls them) and are not mostly black.
PATTERNS: Final = ("smpte", "snow", "ball", "colors", "checkers-8", "circular", "pinwheel")
SOURCE_PATTERN: Final = "pattern"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class StreamConfig:
    """One simulated camera: a mount ``/NAME`` and how its frames are made."""

    name: str
    width: int = 640
    height: int = 360
    fps: int = 15
    bitrate_kbps: int = 1000
    # "pattern" (a moving test pattern) or the path of a video file, looped.
    source: str = SOURCE_PATTERN
    pattern: str = "smpte"
    encoder: str = "x264"
    # Seconds of one day/night brightness cycle; 0 keeps it day.
    day_night_period_s: float = 120.0
    # videobalance brightness at the darkest point of the night (-1 black .. 0 unchanged).
    night_brightness: float = -0.75

    @property
    def is_file(self) -> bool:
        return self.source != SOURCE_PATTERN

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SimConfig:
    """The whole simulator: where it listens, the API token, and its initial streams."""

    bind: str = "127.0.0.1"
    rtsp_port: int = 8554
    api_port: int = 9997
    token: str = field(default="", repr=False)
    log_level: str = "info"
    streams: tuple[StreamConfig, ...] = ()

    @property
    def token_required(self) -> bool:
        return bool(self.token)

    def to_json(self, *, with_token: bool = True) -> str:
        """JSON for the server process (``with_token``) or for people (token left out)."""
        data = dataclasses.asdict(self)
        data["streams"] = [s.to_dict() for s in self.streams]
        if not with_token:
            del data["token"]
            data["token_required"] = self.token_required
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> SimConfig:
        """The inverse of :meth:`to_json` (the server reads its config this way)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SimConfigError(f"simulator config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SimConfigError("simulator config must be a JSON object")
        return parse_config(data, base=cls(), where="simulator config")


def brightness_at(stream: StreamConfig, seconds: float) -> float:
    """The day/night brightness offset (videobalance, -1..0) ``seconds`` into the cycle.

    Day at 0 s, darkest (``night_brightness``) at half a period, smooth (cosine) in between.
    """
    if stream.day_night_period_s <= 0:
        return 0.0
    phase = 2 * math.pi * seconds / stream.day_night_period_s
    return stream.night_brightness * (1 - math.cos(phase)) / 2


# --- parsing ------------------------------------------------------------------------------

_STREAM_FIELDS: Final = {f.name for f in dataclasses.fields(StreamConfig)}
_SERVER_KEYS: Final = {"bind", "rtsp_port", "api_port", "log_level", "streams", "defaults"}
_LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")


def _int(where: str, key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SimConfigError(f"{where}: {key}: expected an integer {low}-{high}, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise SimConfigError(
            f"{where}: {key}: expected an integer {low}-{high}, got {value!r}"
        ) from None
    if not low <= number <= high:
        raise SimConfigError(f"{where}: {key}: expected an integer {low}-{high}, got {number}")
    return number


def _float(where: str, key: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SimConfigError(f"{where}: {key}: expected a number {low:g}-{high:g}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise SimConfigError(
            f"{where}: {key}: expected a number {low:g}-{high:g}, got {value!r}"
        ) from None
    if not low <= number <= high:
        raise SimConfigError(f"{where}: {key}: expected a number {low:g}-{high:g}, got {value!r}")
    return number


def _str(where: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SimConfigError(f"{where}: {key}: expected a non-empty string, got {value!r}")
    return value.strip()


def parse_size(where: str, value: object) -> tuple[int, int]:
    """``"640x360"`` -> (640, 360), each side 16-4096 and even (H.264 4:2:0)."""
    text = str(value).strip().lower()
    width, sep, height = text.partition("x")
    if not sep:
        raise SimConfigError(f"{where}: size: expected WIDTHxHEIGHT (e.g. 640x360), got {value!r}")
    return (
        _even(where, "width", _int(where, "width", width, 16, 4096)),
        _even(where, "height", _int(where, "height", height, 16, 4096)),
    )


def _even(where: str, key: str, value: int) -> int:
    if value % 2:
        raise SimConfigError(f"{where}: {key}: must be even for H.264 (4:2:0), got {value}")
    return value


def parse_stream(
    data: Mapping[str, Any],
    *,
    defaults: StreamConfig | None = None,
    name: str | None = None,
    base_dir: Path | None = None,
) -> StreamConfig:
    """One stream from a mapping (file table, JSON body): unknown keys and bad values are errors.

    ``defaults`` supplies missing fields; a relative video file path is taken from ``base_dir``.
    The video file must exist.
    """
    raw_name = data.get("name", name)
    where = f"stream {raw_name!r}" if raw_name is not None else "stream"
    if not isinstance(raw_name, str) or not _NAME.match(raw_name):
        raise SimConfigError(
            f"{where}: name: expected 1-64 letters, digits, '-' or '_' (the mount is /NAME)"
        )
    where = f"stream {raw_name!r}"
    unknown = sorted(set(data) - _STREAM_FIELDS - {"size"})
    if unknown:
        raise SimConfigError(
            f"{where}: unknown key {unknown[0]!r}; known: size, {', '.join(sorted(_STREAM_FIELDS))}"
        )
    values: dict[str, Any] = dataclasses.asdict(defaults) if defaults else {}
    values["name"] = raw_name
    if "size" in data:
        values["width"], values["height"] = parse_size(where, data["size"])
    if "width" in data:
        values["width"] = _even(where, "width", _int(where, "width", data["width"], 16, 4096))
    if "height" in data:
        values["height"] = _even(where, "height", _int(where, "height", data["height"], 16, 4096))
    if "fps" in data:
        values["fps"] = _int(where, "fps", data["fps"], 1, 120)
    if "bitrate_kbps" in data:
        values["bitrate_kbps"] = _int(where, "bitrate_kbps", data["bitrate_kbps"], 16, 100_000)
    if "pattern" in data:
        pattern = _str(where, "pattern", data["pattern"])
        if pattern not in PATTERNS:
            raise SimConfigError(
                f"{where}: pattern: unknown pattern {pattern!r}; "
                f"choose one of {', '.join(PATTERNS)}"
            )
        values["pattern"] = pattern
    if "encoder" in data:
        encoder = _str(where, "encoder", data["encoder"])
        if encoder not in ENCODERS:
            raise SimConfigError(
                f"{where}: encoder: unknown encoder {encoder!r}; choose one of "
                f"{', '.join(ENCODERS)}"
            )
        values["encoder"] = encoder
    if "day_night_period_s" in data:
        values["day_night_period_s"] = _float(
            where, "day_night_period_s", data["day_night_period_s"], 0, 86_400
        )
    if "night_brightness" in data:
        values["night_brightness"] = _float(
            where, "night_brightness", data["night_brightness"], -1, 0
        )
    if "source" in data:
        values["source"] = _source(where, data["source"], base_dir)
    return StreamConfig(**values)


def _source(where: str, value: object, base_dir: Path | None) -> str:
    source = _str(where, "source", value)
    if source == SOURCE_PATTERN:
        return source
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise SimConfigError(
            f"{where}: source: video file {str(path)!r} does not exist "
            f"(use 'pattern' or an existing file; `flowforge sim video` writes one)"
        )
    return str(path.resolve())


def default_streams(count: int, defaults: StreamConfig) -> tuple[StreamConfig, ...]:
    """``count`` streams /cam1../camN with the ``defaults``' parameters."""
    return tuple(dataclasses.replace(defaults, name=f"cam{i}") for i in range(1, count + 1))


def parse_config(
    data: Mapping[str, Any],
    *,
    base: SimConfig,
    where: str,
    base_dir: Path | None = None,
    stream_defaults: StreamConfig | None = None,
) -> SimConfig:
    """A SimConfig from a mapping (a TOML/JSON file's), over ``base``; validated as a whole."""
    unknown = sorted(set(data) - _SERVER_KEYS - {"token"})
    if unknown:
        raise SimConfigError(
            f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(_SERVER_KEYS))}"
        )
    values: dict[str, Any] = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    if "bind" in data:
        values["bind"] = _str(where, "bind", data["bind"])
    for key in ("rtsp_port", "api_port"):
        if key in data:
            values[key] = _int(where, key, data[key], 1, 65535)
    if "token" in data:  # only the JSON handed to the server process carries it
        values["token"] = str(data["token"])
    if "log_level" in data:
        level = _str(where, "log_level", data["log_level"]).lower()
        if level not in _LOG_LEVELS:
            raise SimConfigError(f"{where}: log_level: expected one of {', '.join(_LOG_LEVELS)}")
        values["log_level"] = level
    defaults = stream_defaults or StreamConfig(name="default")
    if "defaults" in data:
        table = data["defaults"]
        if not isinstance(table, Mapping):
            raise SimConfigError(f"{where}: defaults: expected a table of stream parameters")
        defaults = parse_stream(table, defaults=defaults, name="default", base_dir=base_dir)
    if "streams" in data:
        values["streams"] = _streams(where, data["streams"], defaults, base_dir)
    elif "defaults" in data:
        values["streams"] = tuple(dataclasses.replace(defaults, name=s.name) for s in base.streams)
    config = SimConfig(**values)
    validate(config)
    return config


def _streams(
    where: str, value: object, defaults: StreamConfig, base_dir: Path | None
) -> tuple[StreamConfig, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return default_streams(_int(where, "streams", value, 0, 64), defaults)
    if not isinstance(value, list) or not all(isinstance(s, Mapping) for s in value):
        raise SimConfigError(f"{where}: streams: expected a count or a list of stream tables")
    streams = []
    for i, table in enumerate(value, start=1):
        streams.append(
            parse_stream(
                table, defaults=defaults, name=table.get("name", f"cam{i}"), base_dir=base_dir
            )
        )
    return tuple(streams)


def validate(config: SimConfig) -> None:
    """Checks on the whole config: distinct names and ports, a token off loopback."""
    names = [s.name for s in config.streams]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SimConfigError(f"stream name {dupes[0]!r} is used twice; mounts must be unique")
    if config.rtsp_port == config.api_port:
        raise SimConfigError(
            f"RTSP and API ports are both {config.rtsp_port}; give them different ports"
        )
    if not is_loopback(config.bind) and not config.token:
        raise SimConfigError(
            f"the simulator binds to {config.bind}, not loopback: set FLOWFORGE_SIM_TOKEN "
            "(or FLOWFORGE_SIM_TOKEN_FILE) so its runtime-control API requires a token"
        )


def load_file(
    path: Path, *, base: SimConfig, stream_defaults: StreamConfig | None = None
) -> SimConfig:
    """A config file (``.toml`` or ``.json``) over ``base``; errors name the file."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimConfigError(f"cannot read simulator config {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SimConfigError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise SimConfigError(f"{path}: expected a table/object at the top level")
    if "token" in data:
        raise SimConfigError(
            f"{path}: token: keep the API token out of config files; "
            "use FLOWFORGE_SIM_TOKEN or FLOWFORGE_SIM_TOKEN_FILE"
        )
    try:
        return parse_config(
            data,
            base=base,
            where=where,
            base_dir=path.resolve().parent,
            stream_defaults=stream_defaults,
        )
    except SimConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise SimConfigError(f"{where}: {exc}") from exc
