"""The sink agent's threads: the worker's read queries never wait behind an insert."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from flowforge.core.settings import Settings
from streams.agents.sink import SinkAgent
from streams.app import create_app
from streams.records import metadata_row
from tests.support.pipeline import metadata_record


class SlowInserts:
    """A client whose inserts block until released (a slow or stuck ClickHouse insert)."""

    def __init__(self) -> None:
        self.inserting = threading.Event()
        self.release = threading.Event()

    def insert(self, *args: Any, **kwargs: Any) -> None:
        self.inserting.set()
        self.release.wait(timeout=30)

    def query(self, *args: Any, **kwargs: Any) -> str:
        return "answer"

    def close(self) -> None:
        self.release.set()


class Answers:
    def query(self, *args: Any, **kwargs: Any) -> str:
        return "answer"

    def close(self) -> None:
        pass


def test_a_query_is_answered_while_an_insert_is_in_progress(tmp_path: Path) -> None:
    """/clickhouse/stats' query runs on its own client and thread: answered within 5 s while
    the sink thread is inside a blocked insert."""
    settings = Settings.from_env({"FLOWFORGE_HOME": str(tmp_path)})
    inserts = SlowInserts()
    agent = SinkAgent(create_app(settings), inserts, Answers())

    async def scenario() -> str:
        rows = [metadata_row(metadata_record(0))]
        storing = asyncio.ensure_future(agent._store(rows))
        await asyncio.to_thread(inserts.inserting.wait, 10)
        try:
            return str(await asyncio.wait_for(agent.query("SELECT 1"), timeout=5))
        finally:
            inserts.release.set()
            await storing

    try:
        assert asyncio.run(scenario()) == "answer"
    finally:
        agent.close()
