"""The worker's web pages: /livez, /readyz, /metrics (Prometheus text) and /stats (JSON)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics
from streams.app import consumes

if TYPE_CHECKING:
    from streams.agents.process import ImageProcessor
    from streams.agents.sink import SinkAgent
    from streams.app import FlowForgeApp
    from streams.kafka_engine import KafkaEngineOwner

# Not ready when messages wait on assigned partitions and none was finished for this long.
STALL_SECONDS = 30.0


def lag(flow: FlowForgeApp) -> int:
    """Messages on the assigned images.raw partitions that the worker has not read yet."""
    consumer = flow.app.consumer
    total = 0
    for tp in consumer.assignment():
        if tp.topic != flow.settings.kafka.topic_raw:
            continue
        highwater = consumer.highwater(tp)
        read = getattr(consumer, "_read_offset", {}).get(tp)  # Faust has no public getter
        if highwater is not None and highwater > 0:
            total += max(0, highwater - (read + 1 if read is not None else 0))
    return total


def _consuming(flow: FlowForgeApp) -> bool:
    """Whether the worker's Kafka consumer runs and has partitions (a worker whose ClickHouse
    consumes images.metadata itself runs none, see streams.app.consumes)."""
    consumer = flow.app.consumer
    return consumes(flow.settings) and bool(consumer) and bool(consumer.assignment())


def readiness(
    flow: FlowForgeApp,
    processor: ImageProcessor | None,
    sink: SinkAgent | KafkaEngineOwner | None,
) -> tuple[bool, str]:
    """Ready means making progress: processing not stuck, and the sink (or the Kafka engine
    this worker owns) not degraded."""
    ready, why = _processing_readiness(flow, processor)
    if sink is not None:
        sink_ready, sink_why = sink.readiness()
        return ready and sink_ready, f"{why}; {sink_why}"
    return ready, why


def _processing_readiness(flow: FlowForgeApp, processor: ImageProcessor | None) -> tuple[bool, str]:
    """Not recovering tables, and not stuck with work waiting."""
    app = flow.app
    if not _consuming(flow):
        return True, "no partitions assigned"
    if app.in_recovery or app.rebalancing:
        return False, "recovering tables / rebalancing"
    waiting = lag(flow)
    metrics.LAG.set(waiting)
    if processor is None:
        return True, "no process agent"
    failing = processor.retrying.describe()
    if failing is not None:
        return False, failing
    idle = time.monotonic() - processor.progress.last_progress
    if waiting and idle > STALL_SECONDS:
        return False, f"{waiting} messages waiting, no progress for {idle:.0f}s"
    return True, f"lag {waiting}"


def register(
    flow: FlowForgeApp,
    processor: ImageProcessor | None,
    sink: SinkAgent | None,
    engine: KafkaEngineOwner | None = None,
) -> None:
    """Add the pages to the Faust app's web server; they read the worker's processor and sink,
    or the Kafka engine it owns in kafka-engine mode (any may be None: a worker without that
    role)."""
    app = flow.app
    owner = sink or engine  # whichever holds ClickHouse in this worker

    @app.page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        return web.text("ok\n")

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready, why = readiness(flow, processor, owner)
        text = f"{'ready' if ready else 'not ready'}: {why}\n"
        return web.text(text, status=200 if ready else 503)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        if _consuming(flow):
            metrics.LAG.set(lag(flow))
        for table in (flow.tables.seen,) if flow.tables else ():
            replayed = getattr(table.data, "changelog_events_applied", 0)
            metrics.CHANGELOG_REPLAYED.labels(table=table.name).set(replayed)
        if sink is not None:
            metrics.SPOOL_OLDEST_AGE.set(sink.core.spool.oldest_age_s())
        if engine is not None:
            await engine.refresh()
        # aiohttp refuses a charset inside content_type=, so the header is set directly.
        body = generate_latest(metrics.REGISTRY)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        if processor is None:
            return web.json({})
        return web.json(processor.counts.as_json(flow.worker_name))
