"""Per-source statistics from ClickHouse: the query behind `flowforge stats`."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError

from flowforge.core.clickhouse import connect, embedded_path, through_owner
from flowforge.core.errors import ClickHouseUnavailable, FlowForgeError, StackNotFound
from flowforge.core.settings import ClickHouseSettings
from flowforge.core.urls import redact_url

#: Columns of a statistics row, in order.
COLUMNS = (
    "source_id",
    "images",
    "processed",
    "dark",
    "low_quality",
    "rejected",
    "duplicates",
    "brightness_avg",
    "last_seen",
    "latency_p50_ms",
    "latency_p99_ms",
)

# FINAL collapses replays, so each image counts once. Latency is ingest to row: from the
# envelope's ingest time (when a bridge took the image in) to the row's arrival in ClickHouse;
# "last seen" and --since count in ingest time too (captured_at is the image's own clock).
# Duplicates are re-sends (images_resent: duplicate deliveries with an ingest time of their own,
# each once); a source with only re-sends in the window is listed with 0 images (the join fills
# the other side's figures with 0; no SETTINGS clause, so a read-only user may run it).
SQL = """
SELECT
    source_id,
    m.images AS images,
    m.processed AS processed,
    m.dark AS dark,
    m.low_quality AS low_quality,
    m.rejected AS rejected,
    d.resent AS duplicates,
    if(m.images = 0, nan, m.brightness_avg) AS brightness_avg,
    greatest(m.last_image, d.last_resent) AS last_seen,
    if(m.images = 0, nan, m.p50) AS p50,
    if(m.images = 0, nan, m.p99) AS p99
FROM
(
    SELECT
        source_id,
        count() AS images,
        countIf(status = 'processed') AS processed,
        countIf(status = 'skipped_dark') AS dark,
        countIf(status = 'skipped_low_quality') AS low_quality,
        countIf(status = 'rejected') AS rejected,
        round(avgIf(brightness, status != 'rejected'), 2) AS brightness_avg,
        max(ingested_at) AS last_image,
        round(quantile(0.5)(dateDiff('millisecond', ingested_at, inserted_at)), 1) AS p50,
        round(quantile(0.99)(dateDiff('millisecond', ingested_at, inserted_at)), 1) AS p99
    FROM images_metadata FINAL
    WHERE ingested_at >= now64(3) - toIntervalSecond({since_s:UInt64})
    GROUP BY source_id
) AS m
FULL OUTER JOIN
(
    SELECT source_id, count() AS resent, max(ingested_at) AS last_resent
    FROM images_resent
    WHERE ingested_at >= now64(3) - toIntervalSecond({since_s:UInt64})
    GROUP BY source_id
) AS d USING (source_id)
ORDER BY source_id
"""

#: ``--since`` default: everything (about 100 years).
ALL_TIME_S = 100 * 365 * 86400


def rows_to_dicts(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Query rows as JSON-ready dicts (times ISO 8601, NaN averages as None)."""
    result = []
    for row in rows:
        item = dict(zip(COLUMNS, row, strict=True))
        if isinstance(item["last_seen"], datetime):
            item["last_seen"] = item["last_seen"].isoformat()
        for name in ("brightness_avg", "latency_p50_ms", "latency_p99_ms"):
            value = item[name]
            item[name] = None if value is None or math.isnan(float(value)) else float(value)
        result.append(item)
    return result


def query(client: Any, since_s: int = ALL_TIME_S) -> list[dict[str, Any]]:
    """Run the statistics query on a clickhouse-connect client."""
    return rows_to_dicts(client.query(SQL, parameters={"since_s": since_s}).result_rows)


def fetch(settings: ClickHouseSettings, since_s: int = ALL_TIME_S) -> list[dict[str, Any]]:
    """Statistics from ClickHouse: a server, the embedded engine opened here, or, while a
    worker owns the engine, that worker's HTTP interface (see
    :func:`flowforge.core.clickhouse.through_owner`)."""
    reach = through_owner(settings)
    path = embedded_path(reach.url)
    if path is not None and not path.is_dir():
        raise StackNotFound(f"no ClickHouse data at {path} (nothing has run there)")
    client = connect(reach)
    try:
        return query(client, since_s)
    except ClickHouseError as exc:
        raise _query_failed(reach, exc) from exc
    finally:
        client.close()


def _query_failed(settings: ClickHouseSettings, exc: ClickHouseError) -> FlowForgeError:
    """One line for a failed statistics query: a missing table (or view, from a schema older
    than this FlowForge) is named, and how the schema is made."""
    where = redact_url(settings.url)
    if "UNKNOWN_TABLE" in str(exc) or "Code: 60." in str(exc):
        missing = next((t for t in ("images_resent", "images_duplicates") if t in str(exc)), None)
        return FlowForgeError(
            f"ClickHouse at {where} has no {missing or 'images_metadata'} table yet (database "
            f"{settings.database}): a worker applies the schema at start, or run "
            "`flowforge clickhouse migrate`"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ClickHouseUnavailable(f"ClickHouse at {where}: {first}")


def format_table(stats: list[dict[str, Any]]) -> str:
    """The statistics as an aligned text table."""
    headers: tuple[str, ...] = ("source", "images", "processed", "dark", "low_q", "rejected")
    headers += ("dups", "bright", "last seen (UTC)", "p50 ms", "p99 ms")
    lines: list[tuple[str, ...]] = [headers]
    for s in stats:
        lines.append(
            (
                str(s["source_id"]),
                str(s["images"]),
                str(s["processed"]),
                str(s["dark"]),
                str(s["low_quality"]),
                str(s["rejected"]),
                str(s["duplicates"]),
                _num(s["brightness_avg"]),
                str(s["last_seen"])[:19].replace("T", " "),
                _num(s["latency_p50_ms"]),
                _num(s["latency_p99_ms"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i in (0, 8) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
