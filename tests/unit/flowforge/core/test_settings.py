"""Settings: defaults, FLOWFORGE_ variables, seed aliases, secrets, errors naming the variable."""

from __future__ import annotations

import dataclasses
import logging
import os
import string
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowforge.core.errors import SettingsError
from flowforge.core.settings import MIB, SPECS, Secret, Settings, parse_duration, parse_size
from flowforge.sim.config import SimConfig


def test_defaults_match_the_architecture() -> None:
    """With an empty environment the settings are the documented local defaults."""
    s = Settings.from_env({})
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert (s.kafka.topic_raw, s.kafka.topic_processed) == ("images.raw", "images.processed")
    assert (s.kafka.topic_metadata, s.kafka.topic_dlq) == ("images.metadata", "images.dlq")
    assert s.kafka.partitions == 6
    assert s.kafka.max_message_bytes == 16 * MIB
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.topic) == ("127.0.0.1", 1883, "images/raw")
    home = Path.home() / ".local" / "state" / "flowforge"
    assert s.home == home
    assert s.clickhouse.url == f"chdb://{(home / 'clickhouse').resolve()}"
    assert s.stack.cache_dir == home / "cache"


def test_home_defaults_to_the_users_state_directory_whatever_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without FLOWFORGE_HOME the home is $XDG_STATE_HOME/flowforge (an absolute XDG_STATE_HOME
    only), else $HOME/.local/state/flowforge: the same absolute path from any directory."""
    monkeypatch.chdir(tmp_path)
    env = {"HOME": "/home/ann"}
    assert Settings.from_env(env).home == Path("/home/ann/.local/state/flowforge")
    xdg = {**env, "XDG_STATE_HOME": "/var/state/ann"}
    assert Settings.from_env(xdg).home == Path("/var/state/ann/flowforge")
    relative_xdg = {**env, "XDG_STATE_HOME": "state"}
    assert Settings.from_env(relative_xdg).home == Path("/home/ann/.local/state/flowforge")
    s = Settings.from_env(env)
    assert s.worker.data_dir == Path("/home/ann/.local/state/flowforge/worker-6066")
    assert s.clickhouse.url.startswith("chdb:///home/ann/.local/state/flowforge/clickhouse")


def test_a_relative_home_is_made_absolute_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit relative FLOWFORGE_HOME is anchored at the directory the command starts in,
    so every path derived from it (data, logs, checkpoints) stays put for that process."""
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"FLOWFORGE_HOME": "ff"})
    assert s.home == tmp_path / "ff"
    assert s.stack.cache_dir == tmp_path / "ff" / "cache"


def test_every_http_server_binds_to_loopback_by_default() -> None:
    """Each listening address setting (worker web, the bridges' web incl. the RTSP stream API,
    the simulator's RTSP server and API, the embedded engine's HTTP interface) defaults to
    127.0.0.1, in Settings and SimConfig."""
    binds = {spec.variable: spec.default for spec in SPECS if spec.variable.endswith("_BIND")}
    assert binds == {
        "FLOWFORGE_BRIDGE_WEB_BIND": "127.0.0.1",
        "FLOWFORGE_WORKER_WEB_BIND": "127.0.0.1",
        "FLOWFORGE_SIM_BIND": "127.0.0.1",
        "FLOWFORGE_CLICKHOUSE_HTTP_BIND": "127.0.0.1",
    }
    assert SimConfig().bind == "127.0.0.1"


def test_flowforge_variables_are_parsed_into_the_tree() -> None:
    """FLOWFORGE_<SECTION>_<FIELD> sets that field, parsed to its type."""
    s = Settings.from_env(
        {
            "FLOWFORGE_KAFKA_PARTITIONS": "12",
            "FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES": "8MiB",
            "FLOWFORGE_MQTT_TLS": "yes",
            "FLOWFORGE_HOME": "/tmp/ffhome",
            "FLOWFORGE_LOG_LEVEL": "WARN",
        }
    )
    assert s.kafka.partitions == 12
    assert s.kafka.max_message_bytes == 8 * MIB
    assert s.mqtt.tls is True
    assert s.home == Path("/tmp/ffhome")
    assert s.stack.cache_dir == Path("/tmp/ffhome/cache")
    assert s.log_level == "warning"


def test_settings_are_frozen() -> None:
    """The tree cannot be modified after loading."""
    s = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.kafka.partitions = 3  # type: ignore[misc]


def test_seed_variables_are_honoured() -> None:
    """MQTT_HOST, MQTT_PORT, RTSP_URL, CLICKHOUSE_HOST and CLICKHOUSE_PORT work as in the seed."""
    s = Settings.from_env(
        {
            "MQTT_HOST": "mqtt-broker",
            "MQTT_PORT": "1884",
            "RTSP_URL": "rtsp://rtsp-simulator:8554/test",
            "CLICKHOUSE_HOST": "clickhouse-db",
            "CLICKHOUSE_PORT": "8124",
        }
    )
    assert (s.mqtt.host, s.mqtt.port) == ("mqtt-broker", 1884)
    assert s.rtsp.urls == ("rtsp://rtsp-simulator:8554/test",)
    assert s.clickhouse.url == "http://clickhouse-db:8124"


def test_flowforge_variable_wins_over_seed_alias() -> None:
    """When both are set, the FLOWFORGE_ variable is used."""
    s = Settings.from_env(
        {
            "MQTT_HOST": "seed",
            "FLOWFORGE_MQTT_HOST": "ours",
            "CLICKHOUSE_HOST": "seed",
            "FLOWFORGE_CLICKHOUSE_URL": "http://ours:8123",
        }
    )
    assert s.mqtt.host == "ours"
    assert s.clickhouse.url == "http://ours:8123"


def test_clickhouse_host_defaults_to_http_port() -> None:
    """CLICKHOUSE_HOST alone selects the server on the HTTP port 8123."""
    assert Settings.from_env({"CLICKHOUSE_HOST": "db"}).clickhouse.url == "http://db:8123"


def test_clickhouse_native_port_is_refused_with_advice() -> None:
    """CLICKHOUSE_PORT=9000 (the seed's native port) fails, saying FlowForge speaks HTTP."""
    with pytest.raises(SettingsError, match=r"CLICKHOUSE_PORT=9000.*HTTP \(8123"):
        Settings.from_env({"CLICKHOUSE_HOST": "db", "CLICKHOUSE_PORT": "9000"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FLOWFORGE_MQTT_PORT": "abc"}, "FLOWFORGE_MQTT_PORT='abc': expected a TCP port"),
        ({"MQTT_PORT": "70000"}, "MQTT_PORT='70000': expected a TCP port"),
        ({"FLOWFORGE_CLICKHOUSE_URL": "ftp://x"}, "unknown scheme ftp://"),
        ({"FLOWFORGE_CLICKHOUSE_URL": "chdb://"}, "expected a data directory"),
        ({"FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS": "kafka"}, "expected host:port"),
        ({"FLOWFORGE_KAFKA_PARTITIONS": "0"}, "expected an integer >= 1"),
        ({"FLOWFORGE_MQTT_TLS": "maybe"}, "expected true or false"),
        ({"FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES": "16 parsecs"}, "expected a size in bytes"),
        ({"RTSP_URL": "http://cam/x"}, "expected comma-separated [name=]rtsp://"),
        ({"FLOWFORGE_LOG_LEVEL": "loud"}, "expected one of debug, info"),
        ({"FLOWFORGE_HOME": "~no-such-user-0"}, "~USER names no known user"),
        ({"FLOWFORGE_HOME": "/tmp/a\x00b"}, "FLOWFORGE_HOME='/tmp/a\\x00b': contains a NUL byte"),
        ({"CLICKHOUSE_HOST": "db", "CLICKHOUSE_PORT": "x"}, "CLICKHOUSE_PORT='x'"),
    ],
)
def test_bad_value_names_the_variable_and_what_is_expected(
    env: dict[str, str], expected: str
) -> None:
    """A bad value raises SettingsError whose one-line message names the variable."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert info.value.variable.split("=")[0] in env


def test_secret_is_read_from_file_and_redacted(tmp_path: Path) -> None:
    """A *_FILE secret is read (trailing newline stripped) and never shown by repr or describe."""
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret-pw\n")
    secret_file.chmod(0o600)
    s = Settings.from_env({"FLOWFORGE_MQTT_PASSWORD_FILE": str(secret_file)})
    assert s.mqtt.password.reveal() == "s3cret-pw"
    assert "s3cret" not in repr(s)
    assert "s3cret" not in s.to_json()
    assert dict(s.describe())["FLOWFORGE_MQTT_PASSWORD"] == "***"


def test_missing_secret_file_is_a_settings_error(tmp_path: Path) -> None:
    """A *_FILE that cannot be read is reported naming the _FILE variable."""
    with pytest.raises(SettingsError, match="FLOWFORGE_CLICKHOUSE_PASSWORD_FILE: cannot read"):
        Settings.from_env({"FLOWFORGE_CLICKHOUSE_PASSWORD_FILE": str(tmp_path / "nope")})


def _fifo(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "fifo")
    return str(tmp_path / "fifo")


def _latin1(tmp_path: Path) -> str:
    (tmp_path / "latin1").write_bytes(b"caf\xe9")
    return str(tmp_path / "latin1")


def _huge(tmp_path: Path) -> str:
    (tmp_path / "huge").write_bytes(b"x" * (64 * 1024 + 1))
    return str(tmp_path / "huge")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda _: "/tmp/a\x00b", "contains a NUL byte"),
        (lambda _: "~no-such-user-0/pw", "~USER names no known user"),
        (lambda _: "/dev/zero", "is not a regular file"),
        (str, "is not a regular file"),
        (_fifo, "is not a regular file"),
        (_latin1, "is not UTF-8 text"),
        (_huge, "is larger than 64 KiB"),
    ],
)
def test_unusable_secret_files_are_settings_errors(
    tmp_path: Path, make: Callable[[Path], str], expected: str
) -> None:
    """A *_FILE naming a NUL path, an unknown ~user, a device, a directory, a FIFO (which would
    block), non-UTF-8 or over-64-KiB content is a SettingsError naming the _FILE variable, at
    once (before this fix: ValueError, RuntimeError, or a start that never ends)."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"FLOWFORGE_CLICKHOUSE_PASSWORD_FILE": make(tmp_path)})
    assert info.value.variable == "FLOWFORGE_CLICKHOUSE_PASSWORD_FILE"
    assert expected in str(info.value)


@given(
    st.sampled_from([spec.variable + "_FILE" for spec in SPECS if spec.is_secret]),
    st.text(alphabet=string.printable + "~é\x00", max_size=30),
)
def test_any_secret_file_path_loads_or_raises_settings_error(variable: str, path: str) -> None:
    """Any text as a *_FILE path loads a secret or raises SettingsError naming the variable."""
    outcome = _load_or_error({variable: path})
    if isinstance(outcome, SettingsError):
        assert outcome.variable == variable


@pytest.mark.parametrize(
    ("mode", "warns"), [(0o644, True), (0o604, True), (0o640, False), (0o600, False)]
)
def test_world_readable_secret_file_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warns: bool
) -> None:
    """A secret file others can read is used but logged as a warning naming the variable and
    the path (never the secret); owner- or group-only files load silently."""
    secret_file = tmp_path / "pw"
    secret_file.write_text("pw-Zq9-marker")
    secret_file.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="flowforge.core.settings"):
        loaded = Settings.from_env({"FLOWFORGE_MQTT_PASSWORD_FILE": str(secret_file)})
    assert loaded.mqtt.password.reveal() == "pw-Zq9-marker"
    assert ("world-readable" in caplog.text) == warns
    if warns:
        assert "FLOWFORGE_MQTT_PASSWORD_FILE" in caplog.text
        assert str(secret_file) in caplog.text
    assert "Zq9" not in caplog.text


def test_bad_secret_value_is_not_echoed() -> None:
    """An error about a secret setting names the variable but never repeats its value."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"FLOWFORGE_MQTT_PASSWORD": "hunter2\x00"})
    assert str(info.value) == "FLOWFORGE_MQTT_PASSWORD: contains a NUL byte"
    assert "hunter2" not in repr(info.value)
    assert str(Secret("hunter2")) == "***"
    assert "hunter2" not in repr(Secret("hunter2"))


def test_url_credentials_are_redacted_in_describe() -> None:
    """RTSP URLs with user-info are shown with *** instead of it."""
    s = Settings.from_env({"RTSP_URL": "rtsp://admin:pw123@cam1:554/live"})
    shown = dict(s.describe())
    assert shown["FLOWFORGE_RTSP_URLS"] == "rtsp://***@cam1:554/live"
    assert "pw123" not in s.to_json()
    assert "pw123" not in repr(s)


@pytest.mark.parametrize(
    "env",
    [
        {"FLOWFORGE_CLICKHOUSE_URL": "https://app:pw456@ch:8443"},
        {"FLOWFORGE_CLICKHOUSE_URL": "http://app@ch:8123"},
        {"CLICKHOUSE_HOST": "app:pw456@ch"},
    ],
)
def test_clickhouse_url_credentials_are_refused_unshown(env: dict[str, str]) -> None:
    """User-info in the ClickHouse URL (which the client would ignore, logging in as the
    configured user) is refused, pointing at the user and password settings, without
    showing the password."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert "FLOWFORGE_CLICKHOUSE_PASSWORD" in str(info.value)
    assert "***@ch" in str(info.value)
    assert "pw456" not in str(info.value)


def test_unknown_flowforge_variable_warns_with_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    """A misspelt FLOWFORGE_ variable is reported with the closest real name."""
    with caplog.at_level(logging.WARNING, logger="flowforge.core.settings"):
        Settings.from_env({"FLOWFORGE_MQTT_PROT": "1884"})
    assert "FLOWFORGE_MQTT_PROT" in caplog.text
    assert "did you mean FLOWFORGE_MQTT_PORT" in caplog.text


def test_every_setting_has_a_doc_and_a_unique_variable() -> None:
    """Each declared setting is documented, and no two share an environment variable."""
    assert all(spec.doc.strip() for spec in SPECS)
    variables = [spec.variable for spec in SPECS]
    assert len(variables) == len(set(variables))


@pytest.mark.parametrize(
    ("text", "value"), [("1", 1), ("16MiB", 16 * MIB), ("512 KiB", 512 * 1024), ("2MB", 2_000_000)]
)
def test_parse_size_units(text: str, value: int) -> None:
    """Sizes accept bytes or a binary/decimal unit."""
    assert parse_size(text) == value


_env_values = st.text(alphabet=string.printable + "é€\x00", max_size=40)


@given(
    st.dictionaries(
        st.sampled_from(
            [spec.variable for spec in SPECS if not spec.is_secret]
            + ["MQTT_HOST", "MQTT_PORT", "RTSP_URL", "CLICKHOUSE_HOST", "CLICKHOUSE_PORT"]
        ),
        _env_values,
        max_size=6,
    )
)
def test_any_environment_loads_or_raises_settings_error(env: dict[str, str]) -> None:
    """Arbitrary values for any setting either load or raise SettingsError, never another error."""
    error: SettingsError | None = None
    try:
        Settings.from_env(env)
    except SettingsError as exc:
        error = exc
    if error is not None:
        assert error.variable.split("=")[0] in env


def _load_or_error(env: dict[str, str]) -> Settings | SettingsError:
    try:
        return Settings.from_env(env)
    except SettingsError as exc:
        return exc


_URL_VARIABLES = (
    "FLOWFORGE_CLICKHOUSE_URL",
    "FLOWFORGE_RTSP_URLS",
    "RTSP_URL",
    "CLICKHOUSE_HOST",
    "FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS",
)


@given(
    st.sampled_from(_URL_VARIABLES),
    st.sampled_from(["", "http://", "https://", "rtsp://", "chdb://", "ftp://", "cam=rtsp://"]),
    st.text(st.characters(blacklist_characters=",\x00"), min_size=1, max_size=10),
    st.text(alphabet=string.printable, max_size=20),
)
def test_url_settings_never_leak_their_password(
    variable: str, scheme: str, password: str, rest: str
) -> None:
    """A URL-like setting with user:PASSWORD@ either loads, showing no password in repr,
    describe or JSON, or raises SettingsError whose message does not contain it."""
    marker = f"Zq9{password}"
    env = {variable: f"{scheme}user:{marker}@{rest.replace(',', '')}"}
    outcome = _load_or_error(env)
    if isinstance(outcome, SettingsError):
        assert outcome.variable.split("=")[0] == variable
        assert marker not in str(outcome)
    else:
        assert marker not in repr(outcome)
        assert marker not in outcome.to_json()


@given(
    st.dictionaries(
        st.sampled_from([spec.variable for spec in SPECS if spec.is_secret]),
        _env_values.map(lambda text: f"Zq9{text}"),
        min_size=1,
        max_size=4,
    )
)
def test_any_secret_value_loads_or_raises_without_echoing_it(env: dict[str, str]) -> None:
    """Arbitrary secret values load (hidden from repr and JSON) or raise SettingsError naming
    the variable without its value."""
    outcome = _load_or_error(env)
    if isinstance(outcome, SettingsError):
        assert outcome.variable in env
        assert all(value not in str(outcome) for value in env.values())
    else:
        text = repr(outcome) + outcome.to_json()
        assert all(value.rstrip("\r\n") not in text for value in env.values())


def test_from_env_reads_only_the_mapping_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the mapping passed in, not from the process environment."""
    monkeypatch.setenv("FLOWFORGE_KAFKA_PARTITIONS", "99")
    assert Settings.from_env({}).kafka.partitions == 6
    assert Settings.from_env(os.environ).kafka.partitions == 99


@pytest.mark.parametrize(
    ("raw", "roles"),
    [
        ("process,sink", ("process", "sink")),
        (" SINK ", ("sink",)),
        ("process,process", ("process",)),
    ],
)
def test_worker_agents_parse_to_known_roles(raw: str, roles: tuple[str, ...]) -> None:
    """FLOWFORGE_WORKER_AGENTS accepts a comma list of process/sink, case and repeats ignored."""
    assert Settings.from_env({"FLOWFORGE_WORKER_AGENTS": raw}).worker.agents == roles


@pytest.mark.parametrize("raw", ["", "ingest", "process,ingest", ","])
def test_unknown_or_empty_worker_agents_are_refused(raw: str) -> None:
    """An empty list or an unknown role stops start-up naming the variable."""
    with pytest.raises(SettingsError, match="FLOWFORGE_WORKER_AGENTS"):
        Settings.from_env({"FLOWFORGE_WORKER_AGENTS": raw})


def test_sink_spool_follows_the_worker_data_dir() -> None:
    """The spool lives in the worker's data directory unless set, and follows a --web-port."""
    settings = Settings.from_env({"FLOWFORGE_HOME": "/srv/ff"})
    assert settings.sink.spool_path == Path("/srv/ff/worker-6066/sink-spool.sqlite")
    moved = settings.with_worker_port(6070, derive_data_dir=True)
    assert moved.sink.spool_path == Path("/srv/ff/worker-6070/sink-spool.sqlite")
    fixed = Settings.from_env({"FLOWFORGE_SINK_SPOOL_PATH": "/var/spool/ff.sqlite"})
    assert fixed.with_worker_port(6070, derive_data_dir=True).sink.spool_path == Path(
        "/var/spool/ff.sqlite"
    )


@pytest.mark.parametrize(
    ("raw", "seconds"), [("90", 90), ("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800)]
)
def test_durations_parse_to_seconds(raw: str, seconds: int) -> None:
    """`--since` style durations: plain seconds or a number with s, m, h or d."""
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "0", "-5m", "1.5h", "ten minutes", "5w"])
def test_bad_durations_are_refused(raw: str) -> None:
    """Anything but a positive whole number with an optional unit is refused with the format."""
    with pytest.raises(ValueError, match="30s, 15m, 2h or 7d"):
        parse_duration(raw)


def test_a_request_timeout_under_the_session_timeout_is_refused_naming_both() -> None:
    """Faust refuses a session longer than its request timeout at start; the settings say so
    first, naming both variables."""
    env = {"FLOWFORGE_WORKER_REQUEST_TIMEOUT_S": "10", "FLOWFORGE_WORKER_SESSION_TIMEOUT_S": "15"}
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert "FLOWFORGE_WORKER_REQUEST_TIMEOUT_S=10" in str(info.value)
    assert "FLOWFORGE_WORKER_SESSION_TIMEOUT_S (15)" in str(info.value)
    assert (
        Settings.from_env({"FLOWFORGE_WORKER_REQUEST_TIMEOUT_S": "20"}).worker.request_timeout_s
        == 20
    )
