"""The ``flowforge`` command: one entry point for operators (settings, local stack, ...)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from flowforge.core.errors import FlowForgeError, SettingsError
from flowforge.core.logs import setup_logging
from flowforge.core.settings import (
    Settings,
    parse_duration,
    settings_table_markdown,
)

log = logging.getLogger("flowforge")

T = TypeVar("T")

EXIT_FAILURE = 1
EXIT_USAGE = 2


class State:
    """What the root command hands to subcommands."""

    def __init__(self, settings: Settings, debug: bool) -> None:
        self.settings = settings
        self.debug = debug


pass_state = click.make_pass_decorator(State)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  flowforge stack up        start Kafka and Mosquitto locally, wait until they answer
  flowforge config          print the effective settings, secrets redacted
""",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level and show tracebacks.")
@click.option("--debug", is_flag=True, help="Same as --verbose.")
@click.version_option(package_name="flowforge", prog_name="flowforge")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, debug: bool) -> None:
    """FlowForge: images from MQTT, RTSP and directories through Kafka and Faust into ClickHouse.

    Settings come from FLOWFORGE_* environment variables (see `flowforge config`).
    """
    debug = debug or verbose
    level = "info"
    if not debug:
        # The level setting itself may be bad; that is reported below, naming the variable.
        level = os.environ.get("FLOWFORGE_LOG_LEVEL", "info").lower()
        level = level if level in {"debug", "info", "warning", "error", "critical"} else "info"
    setup_logging("debug" if debug else level)
    ctx.obj = State(Settings.from_env(os.environ), debug)


# --- config -------------------------------------------------------------------------------


@cli.command(
    epilog="""\b
Examples:
  flowforge config
  flowforge config --json | jq .FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS
  FLOWFORGE_MQTT_PORT=abc flowforge config     # exits 2: names the variable
"""
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of lines.")
@click.option("--markdown", is_flag=True, help="Print the settings reference table (README).")
@pass_state
def config(state: State, as_json: bool, markdown: bool) -> None:
    """Print the effective settings (VARIABLE=value), secrets and URL credentials redacted."""
    if markdown:
        click.echo(settings_table_markdown(), nl=False)
    elif as_json:
        click.echo(state.settings.to_json())
    else:
        for variable, value in state.settings.describe():
            click.echo(f"{variable}={value}")


# --- clickhouse ---------------------------------------------------------------------------


@cli.group(
    epilog="""\b
Examples:
  flowforge clickhouse migrate
  FLOWFORGE_CLICKHOUSE_URL=http://db:8123 flowforge clickhouse migrate
"""
)
def clickhouse() -> None:
    """The ClickHouse schema (infra/clickhouse/migrations), embedded engine or server."""


@clickhouse.command("migrate", epilog="Example:\n\n  flowforge clickhouse migrate")
@pass_state
def clickhouse_migrate(state: State) -> None:
    """Apply the schema files not yet applied (idempotent), then the configured row TTL.

    While a worker owns the embedded engine (a running stack), this runs them through that
    worker's ClickHouse HTTP interface, as against a server."""
    from flowforge.core.clickhouse import (
        connect,
        embedded_path,
        migrate,
        schema_version,
        through_owner,
    )

    ch = state.settings.clickhouse
    reach = through_owner(ch)
    if reach is not ch:
        click.echo(
            f"the embedded ClickHouse at {embedded_path(ch.url)} is owned by a running worker: "
            f"migrating through the HTTP interface of the worker owning it ({reach.url})"
        )
    client = connect(reach)
    try:
        applied = migrate(client, ttl_days=ch.ttl_days)
        for name in applied:
            click.echo(f"applied {name}")
        ttl = f"{ch.ttl_days} days" if ch.ttl_days else "none"
        version = schema_version(client)
    finally:
        client.close()
    click.echo(f"schema version {version} (database {ch.database}, row TTL {ttl})")


@clickhouse.command(
    "kafka-engine-sql",
    epilog="""\b
Example:
  flowforge clickhouse kafka-engine-sql --brokers kafka:9092 | clickhouse-client -n
""",
)
@click.option("--brokers", help="Broker list as ClickHouse sees it (default: the settings').")
@pass_state
def clickhouse_kafka_engine_sql(state: State, brokers: str | None) -> None:
    """Print the Kafka-engine tables and views (server mode; apply after `migrate`)."""
    from flowforge.core.kafka_engine import consumer_group, kafka_engine_sql

    kafka = state.settings.kafka
    for statement in kafka_engine_sql(
        brokers=brokers or kafka.bootstrap_servers,
        topic=kafka.topic_metadata,
        group=consumer_group(state.settings.worker.app_id),
        database=state.settings.clickhouse.database,
    ):
        click.echo(f"{statement};\n")


# --- stats --------------------------------------------------------------------------------


@cli.command(
    epilog="""\b
Examples:
  flowforge stats                 every source, all time
  flowforge stats --since 15m     the last 15 minutes
  flowforge stats --json | jq '.[] | select(.rejected > 0)'
  flowforge stats --json | jq '.[] | {source_id, duplicates}'
"""
)
@click.option(
    "--since",
    "since",
    default=None,
    help="Only images (and re-sends) received in this window: 30s, 15m, 2h, 7d.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_state
def stats(state: State, since: str | None, as_json: bool) -> None:
    """Per-source counts, brightness, last seen and ingest-to-row latency, from ClickHouse.

    Counts are of distinct images by outcome, plus duplicates: images sent again within the
    worker's dedup window (each re-send once; they add no image row).

    While a worker owns the embedded engine, this asks it through its ClickHouse HTTP interface.
    """
    from flowforge.core import stats as statistics

    since_s = statistics.ALL_TIME_S
    if since is not None:
        try:
            since_s = parse_duration(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    rows = statistics.fetch(state.settings.clickhouse, since_s)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("no images in ClickHouse yet" + (f" in the last {since}" if since else ""))
    else:
        click.echo(statistics.format_table(rows))


# --- stack --------------------------------------------------------------------------------


@cli.group(
    epilog="""\b
Examples:
  flowforge stack up && flowforge stack status
  FLOWFORGE_HOME=/tmp/ff FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 flowforge stack up
  flowforge stack down
"""
)
def stack() -> None:
    """The local services (Kafka, Mosquitto; ClickHouse is embedded), without Docker.

    Data, logs (logs/*.log) and PID files live under FLOWFORGE_HOME (default
    $XDG_STATE_HOME/flowforge or ~/.local/state/flowforge, whatever the current directory).
    """


@stack.command(
    "up",
    epilog="""\b
Examples:
  flowforge stack up                   Kafka and Mosquitto
  flowforge stack up --pipeline        and the worker and the MQTT bridge, in the background
  flowforge stack up --demo            and a demo feed: two simulated cameras via the RTSP bridge
""",
)
@click.option(
    "--pipeline", is_flag=True, help="Also start the worker and the MQTT bridge in the background."
)
@click.option(
    "--demo",
    is_flag=True,
    help="--pipeline plus the RTSP simulator and the RTSP bridge reading it (make run).",
)
@pass_state
def stack_up(state: State, pipeline: bool, demo: bool) -> None:
    """Start Kafka (KRaft) and Mosquitto unless running; wait until each answers; create topics."""
    from flowforge.stack import Stack

    run_async(Stack(state.settings, pipeline=pipeline, demo=demo).up(report=_echo_nonempty))


@stack.command("down", epilog="Example:\n\n  flowforge stack down")
@pass_state
def stack_down(state: State) -> None:
    """Stop what this home's stack started (by PID), pipeline included; leave others alone."""
    from flowforge.stack import Stack

    stack = Stack(state.settings)
    if not stack.found():
        click.echo(
            f"no FlowForge stack under FLOWFORGE_HOME={state.settings.home}: nothing to stop"
        )
        return
    stack.down(report=_echo_nonempty)


@stack.command("status", epilog="Example:\n\n  flowforge stack status --json")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def stack_status(state: State, as_json: bool) -> None:
    """Show each service's state, PID, address and health; exit 1 if any is unhealthy."""
    from flowforge.core.errors import StackNotFound
    from flowforge.stack import Stack

    stack = Stack(state.settings)
    if not as_json and not stack.found():
        raise StackNotFound(f"no FlowForge stack under FLOWFORGE_HOME={state.settings.home}")
    statuses = run_async(stack.status())
    if as_json:
        click.echo(json.dumps([s.__dict__ | {"healthy": s.healthy} for s in statuses], indent=2))
    else:
        click.echo(f"{'SERVICE':<14} {'STATE':<10} {'PID':>7}  {'ADDRESS':<22} DETAIL")
        for s in statuses:
            pid = str(s.pid) if s.pid else "-"
            click.echo(f"{s.name:<14} {s.state:<10} {pid:>7}  {s.address:<22} {s.detail}")
    if not all(s.healthy for s in statuses):
        raise SystemExit(EXIT_FAILURE)


def _echo_nonempty(line: str) -> None:
    if line:
        click.echo(line)


# --- sim -----------------------------------------------------------------------------------

from flowforge.sim.cli import sim  # noqa: E402 - its own module keeps this file small

cli.add_command(sim)
# --- worker (streams/cli.py) and bridges (bridges/cli.py) ---------------------------------

from bridges.cli import bridge  # noqa: E402 - the bridges' group lives with the bridges
from streams.cli import worker  # noqa: E402 - the worker's command lives with the worker

cli.add_command(worker)
cli.add_command(bridge)


# --- operators: topics, tail, dlq, validate (flowforge/cli/ops.py) -----------------------

from flowforge.cli.ops import dlq, tail, topics, validate  # noqa: E402 - kept in their module

for _command in (topics, tail, dlq, validate):
    cli.add_command(_command)


# --- entry point --------------------------------------------------------------------------


DEBUG_FLAGS = ("-v", "--verbose", "--debug")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the command; turn FlowForge errors into one clear line."""
    args = hoist_debug(list(sys.argv[1:] if argv is None else argv))
    debug = any(flag in args for flag in DEBUG_FLAGS)
    _run(
        lambda: _exit_on_error(cli.main(args=args, prog_name="flowforge", standalone_mode=False)),
        debug,
    )


def hoist_debug(args: list[str]) -> list[str]:
    """``--debug`` (``-v``, ``--verbose``) anywhere before ``--`` moves to the front, where the
    root command takes it, so `flowforge stats --debug` works as the error lines suggest. The
    worker's arguments are left alone: they pass through to Faust, which has its own --debug."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command == "worker":
        return args
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in DEBUG_FLAGS]
    rest = [a for a in args[:end] if a not in DEBUG_FLAGS]
    return [*flags, *rest, *args[end:]]


def _exit_on_error(result: object) -> None:
    if isinstance(result, int) and result != 0:
        raise SystemExit(result)


def _run(command: Callable[[], object], debug: bool) -> None:
    try:
        command()
    except click.exceptions.Abort:
        click.echo("flowforge: aborted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except SettingsError as exc:
        if debug:
            log.exception("bad setting")
        click.echo(f"flowforge: bad setting {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    except FlowForgeError as exc:
        if debug:
            log.exception("failed")
        click.echo(f"flowforge: error: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if debug:
            log.exception("unexpected error")
        else:
            click.echo(
                f"flowforge: unexpected error: {type(exc).__name__}: {exc} "
                "(run with --debug for the traceback)",
                err=True,
            )
        raise SystemExit(EXIT_FAILURE) from None
