"""ClickHouse access: one client for chdb:// (embedded) or http(s)://, and the versioned schema.

The embedded engine (clickhouse-connect's chdb backend) runs the real ClickHouse in-process and
locks its data directory to one process; the process that opens it records itself (and the
address of the HTTP interface it serves) in ``<dir>/flowforge-owner.json``, so every other
process is a client of that interface (:func:`through_owner`), or is told who holds the engine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
import psutil
from clickhouse_connect.driver.exceptions import ClickHouseError

from flowforge.core.errors import (
    ClickHouseUnavailable,
    EngineLocked,
    FlowForgeError,
    MigrationFailed,
)
from flowforge.core.resources import infra_dir
from flowforge.core.settings import ClickHouseSettings
from flowforge.core.urls import redact_url

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "flowforge_schema_migrations"
OWNER_FILE = "flowforge-owner.json"
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)


def embedded_path(url: str) -> Path | None:
    """The data directory of a ``chdb://`` URL (None for a server or ``chdb://memory``)."""
    if not url.startswith("chdb://"):
        return None
    rest = url.removeprefix("chdb://")
    return None if rest in ("", "memory", ":memory:") else Path(rest)


def connect(
    settings: ClickHouseSettings,
    *,
    database: str | None = None,
    owner: Mapping[str, str] | None = None,
) -> Any:
    """A clickhouse-connect client for the configured URL and database (created if missing).

    For the embedded engine, ``owner`` adds to the owner record (the address of the HTTP
    interface the owning worker serves, through which every other process is its client: see
    :func:`through_owner`).
    """
    db = database or settings.database
    path = embedded_path(settings.url)
    if settings.url.startswith("chdb://"):
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
        client = _open_embedded(settings.url, path, owner=owner)
        if db != "default":
            try:
                client.command(f"CREATE DATABASE IF NOT EXISTS {_ident(db)}")
            finally:
                client.close()  # the engine stays up for the client opened next
            client = _open_embedded(settings.url, path, database=db)
        return client
    parts = urlsplit(settings.url)
    try:
        client = clickhouse_connect.get_client(
            host=parts.hostname,
            port=parts.port or (8443 if parts.scheme == "https" else 8123),
            username=settings.username,
            password=settings.password.reveal(),
            secure=parts.scheme == "https",
        )
        if db != "default":
            client.command(f"CREATE DATABASE IF NOT EXISTS {_ident(db)}")
            client.database = db
    except (ClickHouseError, OSError) as exc:
        raise ClickHouseUnavailable(f"ClickHouse at {_safe(settings.url)}: {exc}") from exc
    return client


def _open_embedded(
    url: str,
    path: Path | None,
    database: str | None = None,
    owner: Mapping[str, str] | None = None,
) -> Any:
    try:
        if database:
            client = clickhouse_connect.get_client(dsn=url, database=database)
        else:
            client = clickhouse_connect.get_client(dsn=url)
    except (ClickHouseError, OSError) as exc:
        text = str(exc)
        # chdb words a held directory variously ("Cannot lock file", "Error initializing
        # EmbeddedServer"); our owner record naming another live process is the reliable sign.
        if path is not None and (_other_owner_alive(path) or "Cannot lock file" in text):
            raise EngineLocked(
                f"the embedded ClickHouse at {path} is in use by {_owner(path)}; only one process "
                "can own it: stop that one, or use a ClickHouse server (FLOWFORGE_CLICKHOUSE_URL="
                "http://HOST:8123)"
            ) from exc
        raise ClickHouseUnavailable(
            f"cannot open the embedded ClickHouse at {url}: {text}"
        ) from exc
    if path is not None and database is None:
        _record_owner(path, owner or {})
    return client


def _record_owner(path: Path, extra: Mapping[str, str]) -> None:
    record = {**extra, "pid": os.getpid(), "argv": sys.argv[:6], "since": time.time()}
    (path / OWNER_FILE).write_text(json.dumps(record), encoding="utf-8")


def live_owner(path: Path) -> dict[str, Any] | None:
    """The owner record of an embedded engine directory if another live process holds it."""
    try:
        record = json.loads((path / OWNER_FILE).read_text(encoding="utf-8"))
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not psutil.pid_exists(pid):
        return None
    return dict(record)


def through_owner(settings: ClickHouseSettings) -> ClickHouseSettings:
    """The settings to reach the data with: for an embedded engine that another live process
    owns, that owner's HTTP interface (the address in its owner record), taken as a ClickHouse
    server with the same user, password and database; otherwise ``settings`` unchanged.

    EngineLocked if the owner serves no HTTP interface (not a worker, or its HTTP port is 0).
    """
    path = embedded_path(settings.url)
    owner = live_owner(path) if path is not None else None
    if path is None or owner is None:
        return settings
    http = owner.get("http")
    if not isinstance(http, str) or not http.startswith("http://"):
        raise EngineLocked(
            f"the embedded ClickHouse at {path} is in use by {_owner(path)}, which serves no "
            "HTTP interface for other clients; only one process can own it: stop that one and "
            "run this again"
        )
    return dataclasses.replace(settings, url=http)


def _other_owner_alive(path: Path) -> bool:
    return live_owner(path) is not None


def _owner(path: Path) -> str:
    try:
        record = json.loads((path / OWNER_FILE).read_text(encoding="utf-8"))
        return f"pid {record['pid']} ({' '.join(record['argv'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise FlowForgeError(f"not a plain ClickHouse identifier: {name!r}")
    return name


def _safe(url: str) -> str:
    return redact_url(url)


@dataclass(frozen=True)
class Migration:
    """One versioned schema file: ``NNN_name.sql``."""

    version: int
    name: str
    path: Path

    def statements(self) -> list[str]:
        """The file's statements: ``--`` comment lines dropped, split at ``;`` ending a line."""
        return self.statements_of(self.path.read_text(encoding="utf-8"))

    @staticmethod
    def statements_of(sql: str) -> list[str]:
        """Statements of an SQL text, by the same rule as :meth:`statements`."""
        text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in _STATEMENT_END.split(text) if s.strip()]


def migrations(directory: Path | None = None) -> list[Migration]:
    """The schema files in version order (infra/clickhouse/migrations by default)."""
    directory = directory or infra_dir() / "clickhouse" / "migrations"
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationFailed(f"{path.name}: schema files are named NNN_lowercase_name.sql")
        found.append(Migration(int(match.group(1)), path.stem, path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationFailed(f"duplicate schema versions in {directory}")
    return found


def schema_version(client: Any) -> int:
    """The highest applied schema version (0 for an empty database)."""
    _ensure_migrations_table(client)
    rows = client.query(f"SELECT max(version) FROM {MIGRATIONS_TABLE}").result_rows  # noqa: S608
    return int(rows[0][0] or 0)


def migrate(client: Any, *, ttl_days: int, directory: Path | None = None) -> list[str]:
    """Apply the schema files not yet recorded, then the table TTL; return the files applied.

    Every statement is idempotent (IF NOT EXISTS), so a run interrupted half-way is simply
    run again.
    """
    applied_now = []
    current = schema_version(client)
    for migration in migrations(directory):
        if migration.version <= current:
            continue
        for statement in migration.statements():
            try:
                client.command(statement)
            except ClickHouseError as exc:
                first_line = str(exc).strip().splitlines()[0][:300]
                raise MigrationFailed(f"{migration.path.name}: {first_line}") from exc
        client.insert(
            MIGRATIONS_TABLE,
            [(migration.version, migration.name)],
            column_names=["version", "name"],
        )
        applied_now.append(migration.path.name)
        log.info("clickhouse: applied %s", migration.path.name)
    apply_ttl(client, ttl_days)
    return applied_now


#: The tables whose rows expire ``ttl_days`` after their ingest time.
TTL_TABLES = ("images_metadata", "images_duplicates")


def apply_ttl(client: Any, ttl_days: int) -> None:
    """Set (or remove, for 0) the row TTL on ingested_at of each table of :data:`TTL_TABLES`
    that exists, if it differs (a TTL on captured_at, from schemas before 004, is replaced)."""
    for table in TTL_TABLES:
        rows = client.query(
            "SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
            "AND name = {table:String}",
            parameters={"table": table},
        ).result_rows
        if not rows:
            continue
        engine = str(rows[0][0])
        has_ttl = " TTL " in f" {engine} "
        wanted = f"TTL toDateTime(ingested_at) + toIntervalDay({ttl_days})"
        if ttl_days > 0 and wanted not in engine:
            ttl = f"toDateTime(ingested_at) + INTERVAL {ttl_days:d} DAY"
            client.command(f"ALTER TABLE {table} MODIFY TTL {ttl}")
        elif ttl_days == 0 and has_ttl:
            client.command(f"ALTER TABLE {table} REMOVE TTL")


def _ensure_migrations_table(client: Any) -> None:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
    )


class ServerClient:
    """A ClickHouse server's client that survives the server being down: it connects (and
    applies the schema, if ``migrate_schema``) on its first call that finds the server up, and
    until then every call raises ClickHouseUnavailable, which the sink treats as an outage
    (rows spool). So a worker started while ClickHouse is down still processes images.

    Not for the embedded engine: opening it either works at start or is a configuration error.
    """

    def __init__(self, settings: ClickHouseSettings, *, migrate_schema: bool) -> None:
        self._settings = settings
        self._migrate = migrate_schema
        self._client: Any = None
        self._lock = threading.Lock()

    def connected(self) -> Any:
        """The connected client, connecting now if need be: ClickHouseUnavailable while the
        server is down, MigrationFailed if it refuses the schema."""
        with self._lock:
            if self._client is None:
                client = connect(self._settings)
                if self._migrate:
                    try:
                        migrate(client, ttl_days=self._settings.ttl_days)
                    except (ClickHouseError, OSError) as exc:
                        client.close()
                        raise ClickHouseUnavailable(
                            f"ClickHouse at {_safe(self._settings.url)}: {exc}"
                        ) from exc
                    except MigrationFailed:
                        client.close()
                        raise
                self._client = client
                log.info("clickhouse: connected to %s", _safe(self._settings.url))
            return self._client

    def _call(self) -> Any:
        try:
            return self.connected()
        except MigrationFailed as exc:  # retried as an outage: the rows wait in the spool
            raise ClickHouseUnavailable(f"ClickHouse refuses the schema: {exc}") from exc

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        return self._call().insert(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self._call().query(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self._call().command(*args, **kwargs)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
