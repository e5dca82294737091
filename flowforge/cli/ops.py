"""Operator commands: `flowforge topics`, `tail`, `dlq replay` and `validate`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from flowforge.core.settings import Settings, parse_duration

EXIT_FAILURE = 1


def _settings() -> Settings:
    state = click.get_current_context().find_root().obj
    settings: Settings = state.settings
    return settings


def _topic_names(settings: Settings) -> list[str]:
    k = settings.kafka
    return [k.topic_raw, k.topic_processed, k.topic_metadata, k.topic_dlq]


@click.command(
    epilog="""\b
Examples:
  flowforge topics                       the four FlowForge topics, offsets and message counts
  flowforge topics --group flowforge     plus the worker group's committed offsets and lag
  flowforge topics --json | jq '.[].messages'
"""
)
@click.option("--group", help="Consumer group whose committed offsets and lag to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.argument("names", nargs=-1)
def topics(group: str | None, as_json: bool, names: tuple[str, ...]) -> None:
    """Each FlowForge topic (or NAMES): partitions, replication, retention, size limit, offsets.

    Exits 1 if a topic does not exist."""
    from flowforge.cli.topics import format_topics, inspect_topics

    settings = _settings()
    states = asyncio.run(
        inspect_topics(settings.kafka, list(names) or _topic_names(settings), group)
    )
    if as_json:
        click.echo(json.dumps([s.to_json() for s in states], indent=2))
    else:
        click.echo(format_topics(states, group=group))
    missing = [s.name for s in states if not s.exists]
    if missing:
        from flowforge.cli.errors import TopicMissing

        raise TopicMissing(
            f"no topic {', '.join(missing)} on {settings.kafka.bootstrap_servers} "
            "(`flowforge topics` with no names lists FlowForge's)"
        )


@click.command(
    epilog="""\b
Examples:
  flowforge tail images.metadata -n 5          the last 5 metadata records, then stop
  flowforge tail images.raw                    follow new images (Ctrl-C to stop)
  flowforge tail images.dlq --from-beginning --no-follow
  flowforge tail images.processed -n 20 --save /tmp/out   write the images, named by image id
"""
)
@click.argument("topic")
@click.option("-n", "last", type=click.IntRange(min=0), help="Print the last N records and stop.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record held.")
@click.option(
    "--follow/--no-follow", default=True, help="Keep waiting for new records (default), or stop."
)
@click.option(
    "--save",
    "save_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write image values to DIR/<image id>.<ext>.",
)
def tail(
    topic: str, last: int | None, from_beginning: bool, follow: bool, save_dir: Path | None
) -> None:
    """One line per record of TOPIC: time, partition/offset, key, envelope headers, and the value
    (image format and size, metadata as compact JSON, dead letters with their reason)."""
    from flowforge.cli.tail import format_record, read_topic, save_image

    settings = _settings()
    image = topic != settings.kafka.topic_metadata
    if save_dir is not None and not image:
        raise click.BadParameter(
            f"{topic} holds JSON metadata records, not images: nothing to save; --save "
            f"works with {settings.kafka.topic_raw}, {settings.kafka.topic_processed} or "
            f"{settings.kafka.topic_dlq}",
            param_hint="--save",
        )

    async def run() -> None:
        async for record in read_topic(
            settings.kafka,
            topic,
            last=last,
            from_beginning=from_beginning,
            follow=follow and last is None,
            on_ready=lambda: None,
        ):
            line = format_record(record, image=image)
            if save_dir is not None and image and record.value:
                line += f" -> {save_image(record, save_dir)}"
            click.echo(line)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@click.group(
    epilog="""\b
Examples:
  flowforge dlq replay --dry-run
  flowforge dlq replay --reason internal_error --since 2h
"""
)
def dlq() -> None:
    """The dead-letter topic (images.dlq)."""


def _time_bound(raw: str | None, name: str) -> int | None:
    """``--since``/``--until``: a duration ago (15m, 2h) or an ISO 8601 time, as epoch ms."""
    if raw is None:
        return None
    try:
        return int((datetime.now(tz=UTC).timestamp() - parse_duration(raw)) * 1000)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise click.BadParameter(
            "expected a duration (30s, 15m, 2h, 7d) or an ISO 8601 time", param_hint=name
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dlq.command(
    "replay",
    epilog="""\b
Examples:
  flowforge dlq replay --dry-run                      count what would be replayed, by reason
  flowforge dlq replay --reason internal_error        replay the images a bug rejected
  flowforge dlq replay --source cam-03 --since 2h --until 2026-11-24T10:00:00Z
""",
)
@click.option("--reason", "reasons", multiple=True, help="Only this reason code (repeatable).")
@click.option("--source", "sources", multiple=True, help="Only this source id (repeatable).")
@click.option("--since", help="Only dead letters newer than this: 30m, 2h, or an ISO time.")
@click.option("--until", help="Only dead letters older than this: 30m, 2h, or an ISO time.")
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; publish nothing.")
def dlq_replay(
    reasons: tuple[str, ...],
    sources: tuple[str, ...],
    since: str | None,
    until: str | None,
    dry_run: bool,
) -> None:
    """Re-publish dead-lettered images to images.raw with their original envelope.

    Only images are replayed (stages bridge, envelope and process); the sink's dead letters are
    metadata records, and images whose source id the bridge refused (bad_source_id) would become
    rows under that id: both are counted apart, never replayed. The worker processes a replayed
    image again.
    """
    from flowforge.cli.dlq import ReplayFilter, replay

    _check_reasons(reasons)
    settings = _settings()
    wanted = ReplayFilter(
        reasons=frozenset(reasons),
        sources=frozenset(sources),
        since_ms=_time_bound(since, "--since"),
        until_ms=_time_bound(until, "--until"),
    )
    bar: Any = None
    if sys.stderr.isatty():  # progress on a terminal only; pipes and CI get the summary line
        from flowforge.cli.topics import inspect_topics

        [state] = asyncio.run(inspect_topics(settings.kafka, [settings.kafka.topic_dlq]))
        bar = click.progressbar(
            length=max(state.messages, 1), label=f"reading {state.name}", file=sys.stderr
        )

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n)

    report = asyncio.run(replay(settings.kafka, wanted, dry_run=dry_run, progress=progress))
    if bar is not None:
        bar.render_finish()
    verb = "would replay" if dry_run else "replayed"
    by_reason = ", ".join(f"{reason}={n}" for reason, n in sorted(report.replayed.items()))
    click.echo(
        f"{verb} {report.total} of {report.scanned} dead letters to {settings.kafka.topic_raw}"
        + (f" ({by_reason})" if by_reason else "")
        + f"; filtered out {report.filtered_out}"
        + "".join(f"; {why}: {n}" for why, n in sorted(report.not_replayable.items()))
    )


def _check_reasons(reasons: tuple[str, ...]) -> None:
    """Refuse an unknown ``--reason`` (listing the known codes) and a reason never replayed."""
    from flowforge.core.dead_letter import KNOWN_REASONS, NOT_REPLAYABLE

    for reason in reasons:
        if reason in NOT_REPLAYABLE:
            raise click.BadParameter(
                f"{reason} dead letters are not replayed: the bridge refused their source id, "
                "and a replay would make rows of them; fix the publisher's topic instead",
                param_hint="--reason",
            )
        if reason not in KNOWN_REASONS:
            known = ", ".join(sorted(KNOWN_REASONS - NOT_REPLAYABLE.keys()))
            raise click.BadParameter(
                f"unknown reason code {reason!r}; known: {known}", param_hint="--reason"
            )


@click.command(
    epilog="""\b
Examples:
  flowforge validate            check the running stack against the settings
  FLOWFORGE_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 flowforge validate
"""
)
def validate() -> None:
    """Check settings, Kafka, the topics (existence, partitions, size limit), MQTT, ClickHouse
    and the schema version; print PASS/FAIL with what to do; exit 1 if anything failed."""
    from flowforge.cli.validate import format_checks, run_checks

    checks = run_checks(_settings())
    click.echo(format_checks(checks))
    if not all(c.ok for c in checks):
        raise SystemExit(EXIT_FAILURE)
