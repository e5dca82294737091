"""docker-compose.yml, the Dockerfile and infra/ are valid and true to the native stack.

No Docker engine runs where FlowForge is built, so these tests check what compose, the images'
entrypoints and Grafana would check, and compare the compose stack with the local one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest

from flowforge.cli.main import cli
from flowforge.core.kafka_admin import flowforge_topics
from flowforge.core.settings import SPECS, Settings
from tests.deploy import (
    COMPOSE,
    COMPOSE_DEV,
    PROVISIONING,
    REPO,
    InterpolationError,
    compose,
    dashboard,
    env_example,
    filled_env,
    load_yaml,
    secrets,
    service_env,
    variables,
)

SCHEMA = REPO / "tests" / "data" / "compose-spec" / "compose-spec.json"
FLOWFORGE_IMAGES = ("flowforge:", "flowforge-sim:")
DATASOURCE_UID = "flowforge-clickhouse"
# Settings whose compose value differs from the local stack's default on purpose: container
# addresses, the compose users and database, and the simulator's cameras.
CONTAINER_SPECIFIC = {
    "FLOWFORGE_HOME",
    "FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS",
    "FLOWFORGE_MQTT_HOST",
    "FLOWFORGE_MQTT_USERNAME",
    "FLOWFORGE_MQTT_PASSWORD",
    "FLOWFORGE_MQTT_CLIENT_ID",
    "FLOWFORGE_CLICKHOUSE_URL",
    "FLOWFORGE_CLICKHOUSE_USERNAME",
    "FLOWFORGE_CLICKHOUSE_PASSWORD",
    "FLOWFORGE_CLICKHOUSE_DATABASE",
    "FLOWFORGE_RTSP_URLS",
    "FLOWFORGE_BRIDGE_WEB_BIND",
    "FLOWFORGE_WORKER_WEB_BIND",
    "FLOWFORGE_SIM_BIND",
    "FLOWFORGE_SIM_TOKEN",
    "FLOWFORGE_RTSP_API_TOKEN",
}
KNOWN_SETTINGS = {s.variable for s in SPECS} | {s.variable + "_FILE" for s in SPECS}


def services() -> dict[str, Any]:
    result: dict[str, Any] = compose()["services"]
    return result


def flowforge_services() -> dict[str, Any]:
    return {
        name: svc for name, svc in services().items() if svc["image"].startswith(FLOWFORGE_IMAGES)
    }


def test_compose_files_validate_against_the_compose_spec() -> None:
    """docker-compose.yml (and the dev override), interpolated with a filled .env, are valid
    Compose Specification documents."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for path in (COMPOSE, COMPOSE_DEV):
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(compose(path=path))
        ]
        assert not errors, f"{path.name}: {errors}"


@pytest.mark.parametrize("secret", secrets())
def test_compose_refuses_to_start_without_each_secret(secret: str) -> None:
    """With one secret left empty, interpolation fails with a message naming the variable."""
    env = filled_env() | {secret: ""}
    with pytest.raises(InterpolationError, match=secret):
        compose(env)


def test_env_example_lists_every_variable_with_the_compose_default() -> None:
    """Every variable docker-compose.yml reads is in .env.example, with the same default."""
    example = env_example()
    used = variables(COMPOSE.read_text(encoding="utf-8"))
    assert {name for name, _, _ in used} == set(example)
    for name, op, arg in used:
        if op.endswith("-"):
            assert example[name] == arg, f"{name}: .env.example {example[name]!r}, compose {arg!r}"


def test_no_default_passwords() -> None:
    """Secrets are empty in .env.example and compose only ever requires them (`:?`); no
    service environment carries a literal password or token."""
    example = env_example()
    secret_like = {n for n in example if re.search(r"PASSWORD|TOKEN", n)}
    assert secret_like == set(secrets())
    for name, op, _ in variables(COMPOSE.read_text(encoding="utf-8")):
        if name in secret_like:
            assert op == ":?", f"{name} must be required (${{{name}:?...}}), not defaulted"
    raw = load_yaml(COMPOSE)["services"]
    for service_name, svc in raw.items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN", key):
                assert str(value).startswith("${"), (service_name, key)
                assert ":?" in str(value), (service_name, key)


def test_flowforge_settings_in_compose_are_real_and_parse() -> None:
    """Every FLOWFORGE_* variable a FlowForge container gets is a known setting and the
    container's environment loads without error."""
    for name, svc in flowforge_services().items():
        env = service_env(svc)
        unknown = {k for k in env if k.startswith("FLOWFORGE_") and k not in KNOWN_SETTINGS}
        assert not unknown, f"{name}: unknown settings {unknown}"
        Settings.from_env(env)
    example = {k for k in env_example() if k.startswith("FLOWFORGE_")}
    assert example <= KNOWN_SETTINGS, example - KNOWN_SETTINGS


def test_compose_defaults_equal_the_native_defaults() -> None:
    """Apart from container addresses and compose's users, every FLOWFORGE_* default in
    .env.example means the same value as the local stack's default."""
    native = dict(Settings.from_env({}).describe(redact=False))
    for name, value in env_example().items():
        if not name.startswith("FLOWFORGE_") or name in CONTAINER_SPECIFIC:
            continue
        parsed = dict(Settings.from_env({name: value}).describe(redact=False))
        assert parsed[name] == native[name], f"{name}={value} differs from {native[name]}"


def test_every_bind_mounted_path_exists() -> None:
    """Every host path a service mounts exists in the repository; named volumes are declared."""
    document = compose()
    declared = set(document.get("volumes") or {})
    for path in (COMPOSE, COMPOSE_DEV):
        for name, svc in compose(path=path)["services"].items():
            for volume in svc.get("volumes", []):
                source = volume.split(":")[0]
                if ":" not in volume:
                    continue  # an anonymous volume (per worker replica)
                if source.startswith((".", "/")):
                    assert (REPO / source).exists(), f"{name}: {source} does not exist"
                else:
                    assert source in declared, f"{name}: volume {source} not declared"


def test_services_have_healthchecks_restarts_and_limits() -> None:
    """Long-running services have a healthcheck, a restart policy and CPU/memory limits; one-shot
    services are awaited by completion; every dependency waits for a condition."""
    all_services = services()
    one_shot = {n for n, s in all_services.items() if s.get("restart") == "no"}
    assert one_shot == {"kafka-init"}
    for name, svc in all_services.items():
        limits = svc["deploy"]["resources"]["limits"]
        assert limits.get("cpus"), name
        assert limits.get("memory"), name
        if name not in one_shot:
            assert svc["restart"] == "unless-stopped", name
            assert svc["healthcheck"]["test"], name
        for dependency, spec in (svc.get("depends_on") or {}).items():
            wanted = (
                "service_completed_successfully" if dependency in one_shot else "service_healthy"
            )
            assert spec["condition"] == wanted, (name, dependency)
    expected = {
        "mqtt-broker",
        "kafka",
        "kafka-init",
        "clickhouse-db",
        "grafana",
        "rtsp-simulator",
        "bridge-mqtt",
        "bridge-rtsp",
        "bridge-batch",
        "worker",
    }
    assert set(all_services) == expected


def test_seed_ports_are_published() -> None:
    """MQTT 1883, ClickHouse 8123, Grafana 3000 and RTSP 8554 are published on the same host
    ports, bound to PUBLISH_ADDRESS (127.0.0.1 unless changed)."""
    published = {}
    for name, svc in services().items():
        for port in svc.get("ports", []):
            address, host, container = port.split(":")
            assert address == "127.0.0.1"
            published[int(host)] = (name, int(container))
    assert published[1883] == ("mqtt-broker", 1883)
    assert published[8123] == ("clickhouse-db", 8123)
    assert published[3000] == ("grafana", 3000)
    assert published[8554] == ("rtsp-simulator", 8554)


def test_worker_scales_without_shared_state_or_ports() -> None:
    """The worker publishes no ports, has no container name and keeps its state in a
    per-replica volume, so `--scale worker=N` starts N independent replicas."""
    worker = services()["worker"]
    assert "ports" not in worker
    assert "container_name" not in worker
    assert worker["volumes"] == ["/var/lib/flowforge"]
    assert service_env(worker)["FLOWFORGE_HOME"] == "/var/lib/flowforge"
    assert service_env(worker)["FLOWFORGE_CLICKHOUSE_URL"].startswith("http://clickhouse-db:")


def _commands() -> list[tuple[str, list[str]]]:
    return [
        (name, list(svc["command"]))
        for name, svc in sorted(flowforge_services().items())
        if svc.get("command")
    ]


@pytest.mark.parametrize(("service", "command"), _commands(), ids=[n for n, _ in _commands()])
def test_service_commands_are_real_flowforge_subcommands(service: str, command: list[str]) -> None:
    """Each FlowForge service's command names a real `flowforge` subcommand whose `--help`
    exits 0 and lists every option the service passes."""
    assert command[0] == "flowforge", f"{service}: {shlex.join(command)}"
    group: click.Command = cli
    path: list[str] = []
    rest = command[1:]
    while isinstance(group, click.Group) and rest and not rest[0].startswith("-"):
        sub = group.commands.get(rest[0])
        assert sub is not None, (
            f"{service}: `flowforge {' '.join(path)}` has no command {rest[0]!r} "
            f"(docker-compose.yml runs `{shlex.join(command)}`)"
        )
        group, path, rest = sub, [*path, rest[0]], rest[1:]
    assert not isinstance(group, click.Group), f"{service}: `flowforge {' '.join(path)}` is a group"
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", *path, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLOWFORGE_HOME": str(REPO / ".flowforge" / "compose-help")},
    )
    assert result.returncode == 0, result.stderr
    for option in (arg.split("=")[0] for arg in rest if arg.startswith("--")):
        assert option in result.stdout, f"{service}: {option} not in `flowforge {path} --help`"


def test_kafka_broker_matches_the_local_server_properties() -> None:
    """The compose broker sets every server.properties key of the local stack that is not about
    addresses to the same value (KAFKA_* environment), for the default settings."""
    settings = Settings.from_env({})
    kafka = settings.kafka
    values = {
        "partitions": str(kafka.partitions),
        "max_message_bytes": str(kafka.max_message_bytes),
        "socket_request_max_bytes": str(max(kafka.max_message_bytes * 2, 104_857_600)),
        "retention_hours": str(kafka.retention_hours),
    }
    template = (REPO / "infra" / "kafka" / "server.properties").read_text(encoding="utf-8")
    env = service_env(services()["kafka"])
    # Addresses, paths and the local stack's fast-restart tuning differ by design.
    local_only = {
        "controller.quorum.voters",
        "listeners",
        "advertised.listeners",
        "inter.broker.listener.name",
        "listener.security.protocol.map",
        "log.dirs",
        "group.initial.rebalance.delay.ms",
        "broker.heartbeat.interval.ms",
        "broker.session.timeout.ms",
    }
    checked = 0
    for line in template.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if key in local_only:
            continue
        value = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], value)
        variable = "KAFKA_" + key.upper().replace(".", "_")
        assert env.get(variable) == value, (
            f"{variable}: compose {env.get(variable)!r}, local {value}"
        )
        checked += 1
    assert checked >= 10


def test_create_topics_script_creates_the_native_topics(tmp_path: Path) -> None:
    """kafka-init's script asks kafka-topics.sh for the same topics, partitions, replication and
    configs as the local stack's topic specs (flowforge/core/kafka_admin.py)."""
    calls = tmp_path / "calls.jsonl"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n",
        encoding="utf-8",
    )
    stub.chmod(0o755)
    env = service_env(services()["kafka-init"])
    result = subprocess.run(
        ["sh", str(REPO / "infra" / "kafka" / "create-topics.sh")],
        env={**env, "PATH": os.environ["PATH"], "KAFKA_TOPICS_CMD": str(stub)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    created = []
    for line in calls.read_text(encoding="utf-8").splitlines():
        args = json.loads(line)
        options: dict[str, Any] = {}
        for flag, value in zip(args, [*args[1:], None], strict=True):
            if flag == "--config":
                key, _, config_value = str(value).partition("=")
                options.setdefault("configs", {})[key] = config_value
            elif flag.startswith("--") and value is not None and not value.startswith("--"):
                options[flag] = value
        assert "--create" in args
        assert "--if-not-exists" in args
        assert options["--bootstrap-server"] == "kafka:29092"
        created.append(
            (options["--topic"], int(options["--partitions"]),
             int(options["--replication-factor"]), options["configs"])
        )  # fmt: skip
    expected = [
        (t.name, t.partitions, t.replication_factor, t.configs)
        for t in flowforge_topics(Settings.from_env(env).kafka)
    ]
    assert created == expected


def test_dockerfile_is_multi_stage_non_root_without_build_tools() -> None:
    """The Dockerfile builds in a `build` stage, and its runtime and sim targets (the ones
    compose uses) run as a non-root user with no compilers installed."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    stages: dict[str, list[str]] = {}
    parents: dict[str, str] = {}
    current = ""
    for line in re.sub(r"\\\n", " ", text).splitlines():
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line)
        if match:
            current = match.group(2)
            parents[current] = match.group(1)
            stages[current] = []
        elif current and line.strip() and not line.startswith("#"):
            stages[current].append(line.strip())
    assert list(stages)[-1] == "runtime", "runtime must be the default (last) target"
    assert {"build", "base", "sim", "runtime"} <= set(stages)
    targets = {svc["build"]["target"] for svc in flowforge_services().values()}
    assert targets == {"runtime", "sim"}
    for target in targets:
        chain, stage = [], target
        while stage in stages:
            chain.append(stage)
            stage = parents[stage]
        assert "build" not in chain
        body = " ".join(line for s in chain for line in stages[s])
        assert not re.search(r"build-essential|\bgcc\b|\bg\+\+|\bmake\b", body), target
        users = [line.split()[1] for line in stages[target] if line.startswith("USER ")]
        assert users, target
        assert users[-1] not in ("root", "0"), target
    for line in stages["build"]:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source


def test_mosquitto_requires_passwords_and_an_acl() -> None:
    """The compose broker's config allows no anonymous clients, reads the password file and ACL
    the entrypoint writes, and the ACL lets the bridge read and publishers write images/raw/#."""
    mosquitto = REPO / "infra" / "mosquitto"
    conf = dict(
        line.split(None, 1)
        for line in (mosquitto / "mosquitto.conf").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["allow_anonymous"] == "false"
    entrypoint = (mosquitto / "entrypoint.sh").read_text(encoding="utf-8")
    assert conf["password_file"] == "/mosquitto/run/passwd"
    assert conf["acl_file"] == "/mosquitto/run/acl"
    assert '"$run_dir/passwd"' in entrypoint
    assert '> "$run_dir/acl"' in entrypoint
    acl = (mosquitto / "acl.template").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"^user (\S+)\n((?:(?!user ).*\n)*)", acl, re.MULTILINE))
    assert "topic read images/raw/#" in blocks["${bridge_user}"]
    assert "topic write images/raw/#" in blocks["${publisher_user}"]
    assert "read" not in blocks["${publisher_user}"].replace("# ", "")
    broker = services()["mqtt-broker"]
    env = service_env(broker)
    assert (
        env["MQTT_BRIDGE_USERNAME"]
        == service_env(services()["bridge-mqtt"])["FLOWFORGE_MQTT_USERNAME"]
    )
    assert (
        env["MQTT_BRIDGE_PASSWORD"]
        == service_env(services()["bridge-mqtt"])["FLOWFORGE_MQTT_PASSWORD"]
    )
    dev = (mosquitto / "dev.conf").read_text(encoding="utf-8")
    assert "allow_anonymous true" in dev
    assert "dev.conf" not in COMPOSE.read_text(encoding="utf-8")


def test_grafana_provisioning_has_the_required_keys() -> None:
    """The datasource and dashboard-provider files carry the keys Grafana requires, name the
    installed plugin, and point at the mounted dashboards directory."""
    grafana = services()["grafana"]
    env = service_env(grafana)
    datasources = load_yaml(PROVISIONING / "datasources" / "clickhouse.yaml")
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert {"name", "type", "uid", "access", "jsonData"} <= set(source)
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] in env["GF_INSTALL_PLUGINS"].split(",")
    assert source["jsonData"]["host"] == "clickhouse-db"
    assert source["jsonData"]["port"] == 8123
    assert source["jsonData"]["username"] == "grafana"
    # $VARIABLES in provisioning come from Grafana's environment; secrets only from there.
    text = (PROVISIONING / "datasources" / "clickhouse.yaml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    for name in re.findall(r"\$\{?([A-Z_]+)", "\n".join(lines)):
        assert name in env, name
    assert source["secureJsonData"]["password"] == "$CLICKHOUSE_GRAFANA_PASSWORD"
    providers = load_yaml(PROVISIONING / "dashboards" / "flowforge.yaml")
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert {"name", "type", "options"} <= set(provider)
    assert provider["type"] == "file"
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./infra/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/flowforge.json"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == filled_env()["GRAFANA_ADMIN_PASSWORD"]


def test_grafana_reads_clickhouse_as_a_read_only_user() -> None:
    """The `grafana` ClickHouse user takes its password and database from the environment and
    is read-only."""
    import xml.etree.ElementTree as ET

    # Our own file from the repository, not untrusted input.
    path = REPO / "infra" / "clickhouse" / "users.d" / "grafana.xml"
    root = ET.parse(path).getroot()  # noqa: S314
    user = root.find("users/grafana")
    assert user is not None
    password = user.find("password")
    assert password is not None
    assert password.get("from_env") == "CLICKHOUSE_GRAFANA_PASSWORD"
    assert not password.text
    profile = root.find(f"profiles/{user.findtext('profile')}")
    assert profile is not None
    assert profile.findtext("readonly") in ("1", "2")
    database = user.find("allow_databases/database")
    assert database is not None
    assert database.get("from_env") == "CLICKHOUSE_DB"
    assert "CLICKHOUSE_GRAFANA_PASSWORD" in service_env(services()["clickhouse-db"])


def test_dashboard_panels_name_the_datasource_and_have_unique_ids() -> None:
    """Panel ids are unique, and every panel, query and the source variable use the
    provisioned ClickHouse datasource."""
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert target["rawSql"].strip(), panel["title"]
    (variable,) = board["templating"]["list"]
    assert variable["name"] == "source"
    assert variable["datasource"]["uid"] == DATASOURCE_UID
    assert variable["multi"]
    assert variable["includeAll"]
    uses_source = [
        p for p in board["panels"] if "${source:singlequote}" in p["targets"][0]["rawSql"]
    ]
    assert len(uses_source) == len(board["panels"])


def test_each_flowforge_service_environment_loads_and_passes_start_up_checks() -> None:
    """Every FlowForge service's compose environment (secrets filled) is valid settings, and the
    RTSP bridge, bound to the compose network, has the token its stream API then requires."""
    from bridges.rtsp.bridge import check_api_security
    from flowforge.core.settings import Settings

    for name, service in flowforge_services().items():
        settings = Settings.from_env(service_env(service))  # raises SettingsError naming a bad one
        if name == "bridge-rtsp":
            assert settings.bridge.web_bind == "0.0.0.0"  # noqa: S104 - what compose sets
            check_api_security(settings.bridge.web_bind, settings.rtsp.api_token)
