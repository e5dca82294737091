"""`flowforge worker`: the worker's command (added to the flowforge CLI in one line), and its
wiring: Faust's own options passed through, the sink's ClickHouse client (and the HTTP interface
over an embedded engine), the changelog topics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowforge.core.settings import Settings, parse_agents, parse_port
from flowforge.core.urls import reachable_host

if TYPE_CHECKING:
    from streams.app import FlowForgeApp

# Faust, OpenCV and the ClickHouse engine are imported when the worker starts, not for every
# `flowforge` command (this module is part of the CLI's command tree).

log = logging.getLogger(__name__)


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
    epilog="""\b
Examples:
  flowforge worker                      process images.raw and sink images.metadata
  flowforge worker --web-port 6070 --agents process
                                        a second, processing-only worker on this machine
  flowforge worker --agents sink        only the sink (the first owns the embedded engine)
  flowforge worker --web-port 6071 --agents sink
                                        a second sink, writing through the owner's HTTP port
  flowforge worker --help               Faust's worker options
""",
)
@click.argument("faust_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def worker(ctx: click.Context, faust_args: tuple[str, ...]) -> None:
    """Run the Faust worker; Faust's worker options pass through.

    Agents (--agents or FLOWFORGE_WORKER_AGENTS, default process,sink): "process" decodes,
    scores and resizes images.raw; "sink" writes images.metadata to ClickHouse (with
    FLOWFORGE_SINK_MODE=kafka-engine the embedded engine's owner has ClickHouse consume it
    itself). The embedded ClickHouse engine has one owner, the first sink, which serves
    ClickHouse's HTTP interface over it; a further sink on the same engine writes through that
    interface. Each worker keeps its state under FLOWFORGE_HOME/worker-<web port>: give each
    worker on one machine its own --web-port.
    """
    from faust.cli.faust import cli as faust_cli

    from streams.worker import build_worker

    settings: Settings = ctx.find_root().obj.settings
    agents = _option_value(faust_args, "--agents")
    if agents is not None:
        try:
            roles = parse_agents(agents)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--agents") from None
        settings = dataclasses.replace(
            settings, worker=dataclasses.replace(settings.worker, agents=roles)
        )
        faust_args = _without_option(faust_args, "--agents")
    port = _option_value(faust_args, "--web-port")
    if port is not None:
        try:
            port_number = parse_port(port)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--web-port") from None
        derived = "FLOWFORGE_WORKER_DATA_DIR" not in os.environ
        settings = settings.with_worker_port(port_number, derive_data_dir=derived)
    client: Any = None
    http: Any = None
    wants_help = "-h" in faust_args or "--help" in faust_args
    if wants_help:
        click.echo(click.get_current_context().get_help())
        click.echo()
        # Faust prints its own options next; no agent needs to start for that.
        settings = dataclasses.replace(
            settings, worker=dataclasses.replace(settings.worker, agents=("process",))
        )
    else:
        _check_web_port(settings)
        if "sink" in settings.worker.agents and settings.sink.mode == "agent":
            settings = _through_owner(settings)
            client = _sink_client(settings)
            http = _serve_http(settings)
        elif "sink" in settings.worker.agents and settings.clickhouse.url.startswith("chdb://"):
            client = _kafka_engine_client(settings)
            http = _serve_http(settings)
    built = build_worker(settings, client)
    app = built.app
    app.finalize()
    if built.tables is not None and not wants_help:
        _create_changelogs(built.flow)
    app.worker_init()
    app.worker_init_post_autodiscover()
    args = ["worker", *faust_args]
    if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in faust_args):
        args[1:1] = ["--loglevel", _FAUST_LEVELS[settings.log_level]]
    if wants_help:
        _faust_help(faust_cli, args, app, settings)
        return
    try:
        faust_cli.main(args=args, prog_name="flowforge", app=app)
    finally:  # Faust has stopped the agents by now (or never started them)
        if http is not None:
            http.close()
        if built.sink is not None:
            built.sink.close()
        if built.engine is not None:
            built.engine.close()


def _faust_help(faust_cli: Any, args: list[str], app: Any, settings: Settings) -> None:
    """Faust's worker options, with the defaults FlowForge really uses: Faust's own help shows
    its defaults (web host 0.0.0.0, log level WARN) and `-h` for --web-host, which here is help."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        faust_cli.main(args=args, prog_name="flowforge", app=app)
    text = buffer.getvalue()
    worker = settings.worker
    text = text.replace("-h, --web-host", "    --web-host")
    text = re.sub(
        r"\(default:\s+0\.0\.0\.0\)",
        f"(default: {worker.web_bind}, FLOWFORGE_WORKER_WEB_BIND)",
        text,
    )
    text = re.sub(
        r"\(default:\s+6066\)",
        f"(default: {worker.web_port}, FLOWFORGE_WORKER_WEB_PORT)",
        text,
    )
    text = re.sub(
        r"\[default:\s+WARN\]",
        f"[default: {_FAUST_LEVELS[settings.log_level]}, FLOWFORGE_LOG_LEVEL]",
        text,
    )
    click.echo(text, nl=False)


def _check_web_port(settings: Settings) -> None:
    """Fail in one line, before Faust starts (whose own failure is a long traceback), when the
    web port is taken: name its holder and the command line for a second worker."""
    from flowforge.core.ports import ensure_free

    worker = settings.worker
    command = "flowforge worker --web-port 6070"
    if "sink" in worker.agents and settings.clickhouse.url.startswith("chdb://"):
        command += " --agents process"  # the embedded engine has one owner
    ensure_free(
        "the worker's web port",
        worker.web_bind,
        worker.web_port,
        f"to run another worker beside it, give it its own port: {command}",
    )


def _create_changelogs(flow: FlowForgeApp) -> None:
    """Create the tables' changelog topics before Faust starts (see changelog_specs); if Kafka
    cannot be reached now, Faust creates them itself once it can."""
    from flowforge.core.errors import ServiceUnhealthy
    from flowforge.core.kafka_admin import ensure_topics
    from streams.tables import changelog_specs

    specs = changelog_specs(flow.app, flow.settings)
    try:
        asyncio.run(ensure_topics(flow.settings.kafka, specs))
    except ServiceUnhealthy as exc:
        log.warning("changelog topics not created before start (Faust will): %s", exc)


_FAUST_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warning": "warn",
    "error": "error",
    "critical": "crit",
}


def _through_owner(settings: Settings) -> Settings:
    """A sink on an embedded engine that another worker owns writes through that worker's HTTP
    interface, as a client of a ClickHouse server (so sinks scale out on one machine); an owner
    serving no HTTP interface is an error naming it."""
    from flowforge.core.clickhouse import embedded_path, through_owner
    from flowforge.core.errors import EngineLocked
    from flowforge.core.urls import redact_url

    ch = settings.clickhouse
    try:
        reach = through_owner(ch)
    except EngineLocked as exc:
        raise EngineLocked(f"{exc}; or run this worker with --agents process") from exc
    if reach is ch:
        return settings
    log.info(
        "clickhouse: the embedded engine at %s is owned by another worker; this sink writes "
        "through its HTTP interface %s",
        embedded_path(ch.url),
        redact_url(reach.url),
    )
    return dataclasses.replace(settings, clickhouse=reach)


def _sink_client(settings: Settings) -> Any:
    """Open ClickHouse for the sink: owner check, schema, fault drills (if configured).

    A ClickHouse server (or another worker's HTTP interface) that is down at start does not stop
    the worker: its client connects (and applies the schema) once it answers, and rows spool
    till then.
    """
    from flowforge.core import kafka_engine
    from flowforge.core.clickhouse import ServerClient
    from flowforge.core.errors import ClickHouseUnavailable
    from flowforge.core.faults import FaultInjectingClient

    ch = settings.clickhouse
    client: Any
    if ch.url.startswith("chdb://"):
        client = _embedded_client(settings)
        kafka_engine.drop_embedded(client, settings)  # the views and the agent never both write
    else:
        client = ServerClient(ch, migrate_schema=settings.sink.migrate_on_start)
        try:
            client.connected()
        except ClickHouseUnavailable as exc:
            log.warning("%s; processing goes on, rows spool until it answers", exc)
    if settings.sink.fault_file:
        log.warning("fault drills enabled: %s", settings.sink.fault_file)
        client = FaultInjectingClient(client, Path(settings.sink.fault_file))
    return client


def _embedded_client(settings: Settings) -> Any:
    """Open the embedded engine as its owner (the owner record names its HTTP interface) and
    apply the schema if configured."""
    from flowforge.core.clickhouse import connect, embedded_path, migrate
    from flowforge.core.errors import EngineLocked

    ch = settings.clickhouse
    owner = {}
    if ch.http_port and embedded_path(ch.url) is not None:
        owner["http"] = f"http://{reachable_host(ch.http_bind)}:{ch.http_port}"
    try:
        client = connect(ch, owner=owner)
    except EngineLocked as exc:
        raise EngineLocked(f"{exc}; or run this worker with --agents process") from exc
    if settings.sink.migrate_on_start:
        migrate(client, ttl_days=ch.ttl_days)
    return client


def _kafka_engine_client(settings: Settings) -> Any:
    """FLOWFORGE_SINK_MODE=kafka-engine on the embedded engine: open it as its owner, apply the
    schema, and have its Kafka table consume images.metadata (created at every start, see
    flowforge/core/kafka_engine.py); it consumes while the first client stays open."""
    from flowforge.core import kafka_engine

    client = _embedded_client(settings)
    kafka_engine.start_embedded(client, settings)
    return client


def _serve_http(settings: Settings) -> Any:
    """Serve ClickHouse's HTTP interface over the embedded engine this worker owns (None for a
    ClickHouse server, ``chdb://memory`` or FLOWFORGE_CLICKHOUSE_HTTP_PORT=0)."""
    from flowforge.core.clickhouse import embedded_path
    from flowforge.core.clickhouse_http import ClickHouseHttpServer, HttpUser

    ch = settings.clickhouse
    path = embedded_path(ch.url)
    if path is None or ch.http_port == 0:
        return None
    users = [HttpUser(ch.username, ch.password.reveal())]
    if ch.http_readonly_password and ch.http_readonly_user != ch.username:
        users.append(
            HttpUser(ch.http_readonly_user, ch.http_readonly_password.reveal(), readonly=True)
        )
    server = ClickHouseHttpServer(
        path,
        bind=ch.http_bind,
        port=ch.http_port,
        database=ch.database,
        users=tuple(users),
        max_queries=ch.http_max_queries,
        max_execution_s=ch.http_max_execution_s,
        max_result_bytes=ch.http_max_result_bytes,
        query_threads=ch.http_query_threads,
        query_nice=ch.http_query_nice,
    )
    server.start()
    return server


def _without_option(args: tuple[str, ...], name: str) -> tuple[str, ...]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return tuple(out)


def _option_value(args: tuple[str, ...], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
