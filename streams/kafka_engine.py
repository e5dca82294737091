"""The worker owning the embedded engine in kafka-engine mode: ClickHouse consumes images.metadata
itself (flowforge/core/kafka_engine.py); this keeps the engine open and reports its state on
/readyz and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from flowforge.core import kafka_engine
from flowforge.core.kafka_engine import EngineState
from streams import metrics
from streams.threads import in_thread

if TYPE_CHECKING:
    from streams.app import FlowForgeApp

log = logging.getLogger(__name__)

# How often the engine's state (records read, refused, last error) is read for the pages.
REFRESH_S = 5.0


class KafkaEngineOwner:
    """Holds the engine's client open (the Kafka table consumes while it is) and reads the
    engine's state on a thread of its own."""

    def __init__(self, flow: FlowForgeApp, client: Any) -> None:
        self.flow = flow
        self.client = client
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ff-query")
        self.state: EngineState | None = None
        self.error = ""  # why the state could not be read, if it could not
        self._reported_error = ""

    async def refresh(self) -> None:
        """Read the engine's state into the metrics; a failure is reported, never raised."""
        try:
            settings = self.flow.settings
            state = await in_thread(self.thread, kafka_engine.state, self.client, settings)
        except Exception as exc:  # noqa: BLE001 - shown on /readyz, the worker goes on
            self.error = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
            metrics.KAFKA_ENGINE_UP.set(0)
            log.warning("kafka engine: state not readable: %s", self.error)
            return
        self.state, self.error = state, ""
        metrics.KAFKA_ENGINE_REFUSED.set(state.refused)
        metrics.KAFKA_ENGINE_READ.set(state.messages_read)
        metrics.KAFKA_ENGINE_UP.set(1 if state.consuming else 0)
        if state.last_error and state.last_error != self._reported_error:
            log.warning("kafka engine: its consumer reports: %s", state.last_error[:300])
        self._reported_error = state.last_error

    async def refresh_forever(self) -> None:
        """Refresh the state now and every REFRESH_S, until the worker stops."""
        while True:
            await self.refresh()
            await asyncio.sleep(REFRESH_S)

    def readiness(self) -> tuple[bool, str]:
        """Not ready until the state was read, or while the Kafka table is gone or unreadable."""
        if self.error:
            return False, f"kafka engine: state not readable ({self.error})"
        state = self.state
        if state is None:
            return False, "kafka engine: starting"
        if not state.consuming:
            return False, "kafka engine: its Kafka table is gone"
        text = f"kafka engine: {state.messages_read} records read, {state.refused} refused"
        if state.last_error:
            text += f" (consumer's last error: {state.last_error[:120]})"
        return True, text

    def close(self) -> None:
        """Once the worker has stopped: finish the thread's work and close the client (the
        engine, and its Kafka consumption, stop with it)."""
        self.thread.shutdown(wait=True)
        with contextlib.suppress(Exception):  # closing must not stop the shutdown
            self.client.close()
        log.info("kafka engine: stopped; ClickHouse client closed")


def register(flow: FlowForgeApp, client: Any) -> KafkaEngineOwner:
    """The owner of an engine whose Kafka table consumes images.metadata (created before, by
    :func:`flowforge.core.kafka_engine.start_embedded`), its state read every REFRESH_S."""
    owner = KafkaEngineOwner(flow, client)
    flow.app.task(owner.refresh_forever)
    return owner
