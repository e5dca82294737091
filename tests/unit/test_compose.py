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
    SECRETS_DIR,
    InterpolationError,
    compose,
    dashboard,
    env_example,
    filled_env,
    granted_secrets,
    load_yaml,
    secret_values,
    secrets,
    service_env,
    variables,
    with_secret_files,
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
    """Secrets are empty in .env.example, compose only ever requires them (`:?`, in
    x-required-secrets) and creates each as a compose secret from .env; no service's
    environment, command or healthcheck carries a secret's value (what `docker inspect` shows
    holds only *_FILE paths to /run/secrets files the service is granted)."""
    example = env_example()
    secret_like = {n for n in example if re.search(r"PASSWORD|TOKEN", n)}
    assert secret_like == set(secrets())
    for name, op, _ in variables(COMPOSE.read_text(encoding="utf-8")):
        if name in secret_like:
            assert op == ":?", f"{name} must be required (${{{name}:?...}}), not defaulted"
    raw = load_yaml(COMPOSE)
    required = "\n".join(raw["x-required-secrets"])
    assert {name for name, _, _ in variables(required)} == secret_like
    for service_name, svc in raw["services"].items():
        text = json.dumps(svc)
        leaked = {name for name, _, _ in variables(text)} & secret_like
        assert not leaked, f"{service_name} interpolates secrets {leaked}"
    document = compose()
    values = secret_values(document)
    assert {spec["environment"] for spec in document["secrets"].values()} == secret_like
    for service_name, svc in document["services"].items():
        text = json.dumps(svc)
        for value in values.values():
            assert value not in text, f"{service_name} carries a secret's value"
        granted = granted_secrets(svc)
        for key, value in service_env(svc).items():
            if re.search(r"PASSWORD|TOKEN", key):
                assert key.endswith("_FILE"), f"{service_name}: {key} must be a *_FILE path"
                assert value.startswith(SECRETS_DIR), (service_name, key, value)
                assert value.removeprefix(SECRETS_DIR) in granted, (service_name, key)


def _container_users() -> dict[str, str]:
    """The uid each image's process runs as, where it is not root: FlowForge's (Dockerfile's
    useradd) and Grafana's (infra/grafana/Dockerfile's USER)."""
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"useradd --system --uid (\d+)", dockerfile)
    assert match
    grafana = (REPO / "infra" / "grafana" / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER (\S+)", grafana, re.MULTILINE)
    return {"flowforge": match.group(1), "grafana": users[-1]}


def test_every_secret_file_is_granted_and_readable_by_its_reader() -> None:
    """Each *_FILE a service reads names a secret granted to it, mode 0400, owned by the user
    that reads it: FlowForge's uid for FlowForge containers, Grafana's for Grafana, root (the
    default owner) for the root entrypoints of mqtt-broker and clickhouse-db."""
    users = _container_users()
    owner = {name: users["flowforge"] for name in flowforge_services()} | {
        "grafana": users["grafana"],
        "mqtt-broker": None,
        "clickhouse-db": None,
    }
    for name, svc in services().items():
        granted = granted_secrets(svc)
        reads = {
            value.removeprefix(SECRETS_DIR)
            for key, value in service_env(svc).items()
            if key.endswith("_FILE") and value.startswith(SECRETS_DIR)
        }
        assert reads == set(granted), (name, reads, set(granted))
        for secret, entry in granted.items():
            assert str(entry.get("mode")) in ("0o400", "256"), (name, secret)
            assert entry.get("uid") == owner[name], (name, secret, entry.get("uid"))


def test_flowforge_settings_in_compose_are_real_and_parse(tmp_path: Path) -> None:
    """Every FLOWFORGE_* variable a FlowForge container gets is a known setting and the
    container's environment loads without error."""
    for name, svc in flowforge_services().items():
        env = service_env(svc)
        unknown = {k for k in env if k.startswith("FLOWFORGE_") and k not in KNOWN_SETTINGS}
        assert not unknown, f"{name}: unknown settings {unknown}"
        Settings.from_env(with_secret_files(svc, tmp_path / name))
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


def _published(env: dict[str, str] | None = None) -> dict[int, tuple[str, int, str]]:
    result = {}
    for name, svc in compose(env)["services"].items():
        for port in svc.get("ports", []):
            address, host, container = port.split(":")
            result[int(host)] = (name, int(container), address)
    return result


def test_seed_ports_are_published() -> None:
    """MQTT 1883, Kafka 9092, ClickHouse 8123, Grafana 3000 and RTSP 8554 are published on the
    same host ports, all bound to 127.0.0.1 by default."""
    published = _published()
    assert published == {
        1883: ("mqtt-broker", 1883, "127.0.0.1"),
        9092: ("kafka", 9092, "127.0.0.1"),
        8123: ("clickhouse-db", 8123, "127.0.0.1"),
        3000: ("grafana", 3000, "127.0.0.1"),
        8554: ("rtsp-simulator", 8554, "127.0.0.1"),
    }


def test_opening_camera_ports_exposes_nothing_else() -> None:
    """CAMERA_PUBLISH_ADDRESS=0.0.0.0 opens MQTT 1883 and RTSP 8554 to the network and leaves
    Kafka, ClickHouse and Grafana on 127.0.0.1; each of those opens only through its own
    variable (no one address publishes everything)."""
    opened = _published(filled_env() | {"CAMERA_PUBLISH_ADDRESS": "0.0.0.0"})  # noqa: S104
    assert {port for port, (_, _, address) in opened.items() if address != "127.0.0.1"} == {
        1883,
        8554,
    }
    own = {
        9092: "KAFKA_PUBLISH_ADDRESS",
        8123: "CLICKHOUSE_PUBLISH_ADDRESS",
        3000: "GRAFANA_PUBLISH_ADDRESS",
    }
    for port, variable in own.items():
        moved = _published(filled_env() | {variable: "192.0.2.7"})
        assert {p for p, (_, _, a) in moved.items() if a != "127.0.0.1"} == {port}, variable
    assert "PUBLISH_ADDRESS" not in env_example()


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
    # Addresses and paths differ by design; the group and restart tuning do not.
    local_only = {
        "controller.quorum.voters",
        "listeners",
        "advertised.listeners",
        "inter.broker.listener.name",
        "listener.security.protocol.map",
        "log.dirs",
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
    assert checked >= 13


def test_kafka_healthcheck_probe_runs_in_a_small_heap() -> None:
    """The Kafka healthcheck's probe JVM sets its own small KAFKA_HEAP_OPTS (at most 128 MiB)
    rather than inheriting the broker's 512 MB heap inside the broker's memory limit."""
    kafka = services()["kafka"]
    command = " ".join(kafka["healthcheck"]["test"][1:])
    match = re.search(r"KAFKA_HEAP_OPTS='([^']*)'\s+/opt/kafka/bin/kafka-broker-api", command)
    assert match, command
    heap = re.search(r"-Xmx(\d+)m", match.group(1))
    assert heap, match.group(1)
    assert int(heap.group(1)) <= 128, match.group(1)
    assert "-Xmx512m" in service_env(kafka)["KAFKA_HEAP_OPTS"]


def test_cpu_limits_are_variables_a_two_cpu_host_can_meet() -> None:
    """Every service's CPU limit is a `${<SERVICE>_CPUS:-n}` variable (Docker refuses a limit
    above the host's CPUs) with a default of at most 2, listed in .env.example; the worker's
    concurrency defaults to 0, which follows that quota."""
    raw = load_yaml(COMPOSE)["services"]
    example = env_example()
    for name, svc in raw.items():
        cpus = str(svc["deploy"]["resources"]["limits"]["cpus"])
        variable = name.upper().replace("-", "_") + "_CPUS"
        match = re.fullmatch(r"\$\{(\w+):-([0-9.]+)\}", cpus)
        assert match, f"{name}: cpus {cpus!r} is not ${{{variable}:-n}}"
        assert match.group(1) == variable, (name, match.group(1))
        assert 0 < float(match.group(2)) <= 2, (name, match.group(2))
        assert example[variable] == match.group(2)
    lowered = compose(filled_env() | {"WORKER_CPUS": "1"})["services"]["worker"]
    assert lowered["deploy"]["resources"]["limits"]["cpus"] == "1"
    assert service_env(services()["worker"])["FLOWFORGE_WORKER_CONCURRENCY"] == "0"


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
    bridge = service_env(services()["bridge-mqtt"])
    assert env["MQTT_BRIDGE_USERNAME"] == bridge["FLOWFORGE_MQTT_USERNAME"]
    # The same secret file: the broker's password for the bridge user is the bridge's.
    assert env["MQTT_BRIDGE_PASSWORD_FILE"] == bridge["FLOWFORGE_MQTT_PASSWORD_FILE"]
    dev = (mosquitto / "dev.conf").read_text(encoding="utf-8")
    assert "allow_anonymous true" in dev
    assert "dev.conf" not in COMPOSE.read_text(encoding="utf-8")


MOSQUITTO = REPO / "infra" / "mosquitto"
QUEUE_OPTIONS = (
    "persistence",
    "autosave_interval",
    "max_queued_messages",
    "max_queued_bytes",
    "max_inflight_messages",
    "max_inflight_bytes",
)


def _conf_options(text: str) -> dict[str, str]:
    return dict(
        line.split(None, 1) for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def _bytes(size: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    return int(size[:-1]) * units[size[-1].upper()] if size[-1].isalpha() else int(size)


def test_mosquitto_queue_is_bounded_in_bytes_below_its_memory_limit() -> None:
    """Every Mosquitto config (compose, development, native) bounds each client's queued and
    unacknowledged QoS 1 messages in bytes with the same values, and the broker's memory limit
    holds both bounds plus four of the largest images (received, or one over the bound) and
    64 MiB for the broker itself, so a bridge or Kafka outage cannot get it OOM-killed."""
    configs = {
        name: _conf_options((MOSQUITTO / name).read_text(encoding="utf-8"))
        for name in ("mosquitto.conf", "dev.conf", "local.conf")
    }
    reference = {key: configs["mosquitto.conf"][key] for key in QUEUE_OPTIONS}
    for name, options in configs.items():
        assert {key: options.get(key) for key in QUEUE_OPTIONS} == reference, name
    queued, inflight = int(reference["max_queued_bytes"]), int(reference["max_inflight_bytes"])
    largest = Settings.from_env({}).kafka.max_message_bytes
    assert queued >= 4 * largest, "the queue should hold a few of the largest images"
    assert inflight >= largest
    limit = _bytes(services()["mqtt-broker"]["deploy"]["resources"]["limits"]["memory"])
    assert limit >= queued + inflight + 4 * largest + 64 * 1024**2, limit
    # Autosave stays time-based (one write per interval, bounded by the queue), never per change.
    assert reference["autosave_interval"] == "1"
    assert all("autosave_on_changes" not in options for options in configs.values())


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(0o755)


def _run_broker_entrypoint(
    tmp_path: Path, compose_env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """mqtt-broker's entrypoint with its compose environment and secret files, its commands
    (mosquitto_passwd, chown, id, mosquitto) replaced by stubs that record their arguments."""
    calls = tmp_path / "calls.jsonl"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = f"import json, sys\nopen({str(calls)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n"
    for name in ("mosquitto_passwd", "chown", "mosquitto"):
        _stub(bin_dir, name, record)
    _stub(bin_dir, "id", record + "print(0) if sys.argv[1:] == ['-u'] else None\n")
    (tmp_path / "data").mkdir()
    broker = compose(compose_env)["services"]["mqtt-broker"]
    env = with_secret_files(broker, tmp_path / "secrets", compose(compose_env)) | {
        "MOSQUITTO_CONF": str(MOSQUITTO / "mosquitto.conf"),
        "MOSQUITTO_RUN_DIR": str(tmp_path / "run"),
        "MOSQUITTO_ACL_TEMPLATE": str(MOSQUITTO / "acl.template"),
        "MOSQUITTO_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["sh", str(MOSQUITTO / "entrypoint.sh")], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    lines = calls.read_text(encoding="utf-8").splitlines() if calls.exists() else []
    return result, [[Path(a[0]).name, *a[1:]] for a in map(json.loads, lines)]


def test_mosquitto_entrypoint_reads_secret_files_and_follows_the_kafka_limit(
    tmp_path: Path,
) -> None:
    """mqtt-broker's entrypoint takes both passwords from their secret files, writes
    Mosquitto's message_size_limit from FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES (not a fixed 16 MiB),
    gives the data directory to the mosquitto user as the image's own entrypoint would (a bind
    mount is otherwise unwritable after mosquitto drops root), and runs the rendered config."""
    env = filled_env() | {"FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES": "33554432"}
    result, calls = _run_broker_entrypoint(tmp_path, env)
    assert result.returncode == 0, result.stderr
    values = secret_values(compose(env))
    passwd = [c[2:] for c in calls if c[0] == "mosquitto_passwd"]
    assert passwd == [
        [str(tmp_path / "run" / "passwd"), "flowforge-bridge", values["mqtt_bridge_password"]],
        [str(tmp_path / "run" / "passwd"), "camera", values["mqtt_publisher_password"]],
    ]
    assert ["chown", "-R", "mosquitto:mosquitto", str(tmp_path / "data")] in calls
    rendered = tmp_path / "run" / "mosquitto.conf"
    assert calls[-1] == ["mosquitto", "-c", str(rendered)]
    options = _conf_options(rendered.read_text(encoding="utf-8"))
    assert options["message_size_limit"] == "33554432"
    assert (
        options["max_queued_bytes"]
        == _conf_options((MOSQUITTO / "mosquitto.conf").read_text(encoding="utf-8"))[
            "max_queued_bytes"
        ]
    )


def test_mosquitto_entrypoint_refuses_an_empty_secret(tmp_path: Path) -> None:
    """An empty bridge password file stops the broker's start with a message naming it."""
    env = filled_env()
    broker = compose(env)["services"]["mqtt-broker"]
    secret_dir = tmp_path / "secrets"
    with_secret_files(broker, secret_dir)
    (secret_dir / "mqtt_bridge_password").chmod(0o600)
    (secret_dir / "mqtt_bridge_password").write_text("", encoding="utf-8")
    result = subprocess.run(
        ["sh", str(MOSQUITTO / "entrypoint.sh")],
        env={
            "PATH": os.environ["PATH"],
            "MQTT_BRIDGE_USERNAME": "b",
            "MQTT_PUBLISHER_USERNAME": "c",
            "MQTT_BRIDGE_PASSWORD_FILE": str(secret_dir / "mqtt_bridge_password"),
            "MQTT_PUBLISHER_PASSWORD_FILE": str(secret_dir / "mqtt_publisher_password"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MQTT_BRIDGE_PASSWORD" in result.stderr


GRAFANA_DOCKERFILE = REPO / "infra" / "grafana" / "Dockerfile"


def _grafana_plugin() -> tuple[str, str, str]:
    """(base image, plugin id, plugin version) the Grafana image is built with."""
    text = GRAFANA_DOCKERFILE.read_text(encoding="utf-8")
    base = re.search(r"^ARG GRAFANA_IMAGE=(\S+)", text, re.MULTILINE)
    version = re.search(r"^ARG CLICKHOUSE_PLUGIN_VERSION=(\S+)", text, re.MULTILINE)
    install = re.search(r"plugins install (\S+) \"\$CLICKHOUSE_PLUGIN_VERSION\"", text)
    assert base, text
    assert version, text
    assert install, text
    return base.group(1), install.group(1), version.group(1)


def test_grafana_starts_offline_with_the_pinned_plugin() -> None:
    """Grafana's image is built from grafana 11.6.0 with the ClickHouse plugin at a pinned
    version installed outside the data volume, so nothing is downloaded at start (no
    GF_INSTALL_PLUGINS / GF_PLUGINS_PREINSTALL); the datasource and every dashboard query name
    that plugin and version, so Grafana does not migrate the queries on load."""
    grafana = services()["grafana"]
    env = service_env(grafana)
    assert not {k for k in env if k.startswith(("GF_INSTALL_PLUGINS", "GF_PLUGINS_PREINSTALL"))}
    assert grafana["build"]["context"] == "./infra/grafana"
    assert grafana["image"].startswith("flowforge-grafana:")
    base, plugin, version = _grafana_plugin()
    assert base == "grafana/grafana:11.6.0"
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin an exact version"
    assert version == "4.20.0"
    text = GRAFANA_DOCKERFILE.read_text(encoding="utf-8")
    plugins_dir = re.search(r"^ENV GF_PATHS_PLUGINS=(\S+)", text, re.MULTILINE)
    assert plugins_dir
    for mount in grafana["volumes"]:
        target = mount.split(":")[1]
        assert not plugins_dir.group(1).startswith(target.rstrip("/") + "/"), mount
    (source,) = load_yaml(PROVISIONING / "datasources" / "clickhouse.yaml")["datasources"]
    assert source["type"] == plugin
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["type"] == plugin, panel["title"]
            assert target["pluginVersion"] == version, panel["title"]
            assert target["editorType"] == "sql"
            assert target["queryType"] not in ("sql", "builder")  # v3 values are migrated


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
    assert source["type"] == _grafana_plugin()[1]
    assert source["jsonData"]["host"] == "clickhouse-db"
    assert source["jsonData"]["port"] == 8123
    assert source["jsonData"]["username"] == "grafana"
    # $VARIABLES in provisioning come from Grafana's environment, where run.sh turns each
    # GF_*__FILE into GF_* (the secret's content); secrets only from files.
    text = (PROVISIONING / "datasources" / "clickhouse.yaml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    provided = set(env) | {k.removesuffix("__FILE") for k in env if k.startswith("GF_")}
    for name in re.findall(r"\$\{?([A-Z_]+)", "\n".join(lines)):
        assert name in provided, name
    assert source["secureJsonData"]["password"] == "$GF_FLOWFORGE_CLICKHOUSE_PASSWORD"
    secret_file = SECRETS_DIR + "clickhouse_grafana_password"
    assert env["GF_FLOWFORGE_CLICKHOUSE_PASSWORD__FILE"] == secret_file
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
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == SECRETS_DIR + "grafana_admin_password"
    assert (
        secret_values(compose())["grafana_admin_password"]
        == (filled_env()["GRAFANA_ADMIN_PASSWORD"])
    )


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
    assert service_env(services()["clickhouse-db"])["CLICKHOUSE_GRAFANA_PASSWORD_FILE"] == (
        SECRETS_DIR + "clickhouse_grafana_password"
    )


CLICKHOUSE = REPO / "infra" / "clickhouse"


def test_clickhouse_entrypoint_exports_the_passwords_from_their_files(tmp_path: Path) -> None:
    """clickhouse-db's entrypoint puts the application and Grafana passwords from their secret
    files into the environment the image's entrypoint and server inherit (users.d reads
    CLICKHOUSE_GRAFANA_PASSWORD), and refuses to start without one."""
    service = services()["clickhouse-db"]
    assert service["entrypoint"] == ["/bin/bash", "/flowforge/clickhouse/entrypoint.sh"]
    env = with_secret_files(service, tmp_path / "secrets")
    dump = tmp_path / "image-entrypoint"
    dump.write_text(f"#!{sys.executable}\nimport json, os\nprint(json.dumps(dict(os.environ)))\n")
    dump.chmod(0o755)
    run_env = env | {"PATH": os.environ["PATH"], "CLICKHOUSE_ENTRYPOINT": str(dump)}
    result = subprocess.run(
        ["bash", str(CLICKHOUSE / "entrypoint.sh")], env=run_env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    values = secret_values(compose())
    assert seen["CLICKHOUSE_PASSWORD"] == values["clickhouse_password"]
    assert seen["CLICKHOUSE_GRAFANA_PASSWORD"] == values["clickhouse_grafana_password"]
    missing = run_env | {"CLICKHOUSE_GRAFANA_PASSWORD_FILE": str(tmp_path / "absent")}
    result = subprocess.run(
        ["bash", str(CLICKHOUSE / "entrypoint.sh")], env=missing, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "CLICKHOUSE_GRAFANA_PASSWORD_FILE" in result.stderr


def test_clickhouse_init_reruns_and_health_waits_for_the_real_server() -> None:
    """clickhouse-db runs init.sh at every start (CLICKHOUSE_ALWAYS_RUN_INITDB_SCRIPTS, so a
    failed init is retried), its healthcheck probes the service address (the entrypoint's
    temporary init server listens on 127.0.0.1 only), and SQL access management is off."""
    service = services()["clickhouse-db"]
    env = service_env(service)
    assert env["CLICKHOUSE_ALWAYS_RUN_INITDB_SCRIPTS"] == "1"
    assert env["CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT"] == "0"
    mounts = dict(v.split(":")[:2] for v in service["volumes"])
    assert mounts["./infra/clickhouse/init.sh"].startswith("/docker-entrypoint-initdb.d/")
    probe = " ".join(service["healthcheck"]["test"])
    assert "http://clickhouse-db:8123/ping" in probe
    assert "127.0.0.1" not in probe
    assert "localhost" not in probe


# The image entrypoint's initdb loop (ClickHouse's docker/server/entrypoint.sh): an executable
# *.sh is run, any other is sourced, in a shell with `set -eo pipefail`.
INITDB_LOOP = """
set -eo pipefail
shopt -s nullglob
for f in "$INITDB"/*; do
    case "$f" in
        *.sh) if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
    esac
done
echo "after init: options=$- url=${url:-unset} mode=${mode:-unset}"
"""


@pytest.mark.parametrize("executable", [True, False], ids=["executable", "lost-exec-bit"])
def test_init_script_works_with_or_without_its_execute_bit(
    tmp_path: Path, executable: bool
) -> None:
    """Run or sourced by the image's entrypoint (a download that lost the execute bit),
    init.sh does its work in a shell of its own: the entrypoint's options and variables are
    untouched and it carries on; a failing init (bad sink mode) still stops the entrypoint."""
    initdb = tmp_path / "initdb"
    initdb.mkdir()
    script = initdb / "10-flowforge.sh"
    script.write_bytes((CLICKHOUSE / "init.sh").read_bytes())
    script.chmod(0o755 if executable else 0o644)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A stand-in for wget posting to ClickHouse (this test is about the entrypoint's shell;
    # tests/integration/test_deploy.py runs init.sh against the real HTTP interface): it
    # answers the one SELECT with 0.
    _stub(bin_dir, "wget", "import sys\n"
          "q = next(a for a in sys.argv if a.startswith('--post-data='))[12:]\n"
          "print(0) if q.startswith('SELECT') else None\n")  # fmt: skip
    env = with_secret_files(services()["clickhouse-db"], tmp_path / "secrets") | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "INITDB": str(initdb),
        "FLOWFORGE_CLICKHOUSE_SQL_DIR": str(CLICKHOUSE),
    }
    ok = subprocess.run(
        ["bash", "-c", INITDB_LOOP], env=env, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    after = ok.stdout.strip().splitlines()[-1]
    assert "url=unset mode=unset" in after, after
    options = after.split("options=")[1].split()[0]
    assert "u" not in options, f"init.sh turned on nounset in the entrypoint: {options}"
    assert "sink mode agent" in ok.stdout
    bad = subprocess.run(
        ["bash", "-c", INITDB_LOOP], env=env | {"FLOWFORGE_SINK_MODE": "bogus"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "after init" not in bad.stdout


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


def test_each_flowforge_service_environment_loads_and_passes_start_up_checks(
    tmp_path: Path,
) -> None:
    """Every FlowForge service's compose environment, with its secret files mounted, is valid
    settings holding the secrets' values, and the RTSP bridge, bound to the compose network,
    has the token its stream API then requires."""
    from bridges.rtsp.bridge import check_api_security
    from flowforge.core.settings import Settings

    values = secret_values(compose())
    for name, service in flowforge_services().items():
        env = with_secret_files(service, tmp_path / name)
        settings = Settings.from_env(env)  # raises SettingsError naming a bad one
        if name == "bridge-mqtt":
            assert settings.mqtt.password.reveal() == values["mqtt_bridge_password"]
        if name == "worker":
            assert settings.clickhouse.password.reveal() == values["clickhouse_password"]
        if name == "bridge-rtsp":
            assert settings.bridge.web_bind == "0.0.0.0"  # noqa: S104 - what compose sets
            check_api_security(settings.bridge.web_bind, settings.rtsp.api_token)
