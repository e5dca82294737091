"""The Faust app: built here and only here, from Settings, isolated from ambient variables."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import faust

from flowforge.core.cpus import available_cpus
from flowforge.core.partitioning import partition_for
from flowforge.core.settings import Settings
from streams.processing import ProcessingConfig
from streams.stores.sqlite import SQLiteTable
from streams.tables import Tables, create_tables
from streams.topics import Topics, create_topics
from streams.transport import Producer

# Images per pool thread in Faust's stream buffer, and the process agent's batch (one actor per
# thread): each holds its payload (tens to hundreds of KB). With 2 per thread one worker capped
# at about 24 images/s end to end on 2 busy cores, every actor waiting on acks (bench/e2e.py);
# 8 keeps the threads busy while the other actor's batch waits for Kafka.
IN_FLIGHT_PER_THREAD = 8


def processing_config(settings: Settings) -> ProcessingConfig:
    """The pure processing functions' configuration, from settings."""
    p = settings.processing
    return ProcessingConfig(
        max_bytes=settings.kafka.max_message_bytes,
        max_pixels=p.max_pixels,
        dark_threshold=p.dark_threshold,
        min_contrast=p.min_contrast,
        min_sharpness=p.min_sharpness,
        out_width=p.output_size[0],
        out_height=p.output_size[1],
        resize_policy=p.resize_policy,  # type: ignore[arg-type]
        jpeg_quality=p.jpeg_quality,
        fast_path=p.fast_path,
    )


@dataclass
class FlowForgeApp:
    """The Faust app with FlowForge's topics, tables, thread pool and processing config."""

    settings: Settings
    app: faust.App
    topics: Topics
    tables: Tables | None  # None when this worker does not run the process agent
    pool: ThreadPoolExecutor
    concurrency: int
    config: ProcessingConfig
    worker_name: str

    async def partition_of(self, topic: Any, image_id: str) -> int:
        """The partition of ``topic`` (a Faust topic) that image ``image_id`` goes to
        (flowforge.core.partitioning): the same for every send of the image."""
        producer = self.app.producer
        if not isinstance(producer, Producer):  # the transport is ours (broker flowforge://)
            raise TypeError(f"the worker's producer is {type(producer).__name__}, not ours")
        return await partition_for(producer, topic.get_topic_name(), image_id)


def _hold_flow_during_seek(app: faust.App) -> None:
    """Stop fetching from the end of table recovery until Faust has sought to committed offsets.

    Faust (0.15) resumes the stream partitions in ``Recovery.on_recovery_completed`` and only
    then awaits ``perform_seek()``, while the fetcher still runs from changelog recovery;
    messages fetched in that window race the seek that resets the read offsets, and were seen
    here to be acked without reaching the agent (4 of 150 images lost after a SIGKILL and
    restart). ``on_rebalance_complete`` fires just before that code: stopping the flow there
    makes the fetcher return nothing until Faust's own ``resume_flow()`` after the seek.
    """

    async def stop_flow_until_seeked(
        sender: Any, /, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        app.consumer.stop_flow()

    app.on_rebalance_complete.connect(stop_flow_until_seeked)


def consumer_group(settings: Settings) -> str:
    """The worker's Faust app id, which is the consumer group of its process agent.

    Workers running the process agent share ``<app id>``, which is how they scale out. A
    worker running only the sink has no Faust consumer; its app id is ``<app id>-sink``, as
    its sink's group.
    """
    app_id = settings.worker.app_id
    return app_id if "process" in settings.worker.agents else sink_group(settings)


def sink_group(settings: Settings) -> str:
    """The consumer group of every worker's sink (streams/agents/sink_consumer.py), whatever
    else the worker runs: ``<app id>-sink``. It is an aiokafka consumer of its own, and Kafka
    refuses two protocols in one group (InconsistentGroupProtocolError on join, seen with Kafka
    4.0), so it never shares Faust's group."""
    return f"{settings.worker.app_id}-sink"


def create_app(settings: Settings) -> FlowForgeApp:
    """The worker's Faust app with its topics, its tables (when it runs the process agent), its
    thread pool and processing config; no agents yet (``streams.worker`` registers them).

    Workers running the process agent share one consumer group; a sink-only worker has its
    own (see :func:`consumer_group`).
    """
    worker = settings.worker
    concurrency = worker.concurrency or available_cpus()
    # Our pool gives the parallelism; OpenCV's own threads would only oversubscribe the cores.
    cv2.setNumThreads(1)
    worker.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        consumer_group(settings),
        env={},  # Faust must not read BROKER_URL, WEB_PORT, ... from the environment
        autodiscover=False,
        # Faust's Kafka transport, surviving a transient group-join error (streams/transport.py).
        broker=[f"flowforge://{server}" for server in settings.kafka.bootstrap_servers.split(",")],
        store="sqlite://",
        Table=SQLiteTable,  # pairs each table write with its own changelog message
        datadir=str(worker.data_dir.resolve()),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        # Image payloads: Faust's default prefetch of 4,096 events per agent is gigabytes. With
        # this small stream buffer, what is held is bounded by it plus aiokafka's fetch buffer
        # (one fetch of at most consumer_max_fetch_size per partition). broker_max_poll_records
        # stays unset: capping it at N throttled the worker to about N images/s here (each
        # capped poll waits out Faust's 1 s getmany timeout before the next batch).
        stream_buffer_maxsize=IN_FLIGHT_PER_THREAD * concurrency,
        consumer_max_fetch_size=settings.kafka.request_bytes,
        producer_max_request_size=settings.kafka.request_bytes,
        producer_acks=-1,
        broker_commit_interval=worker.commit_interval_s,
        # A killed member keeps its partitions until its session expires: this bounds the
        # recovery after a crash. aiokafka heartbeats from its own task while images are
        # processed in the pool, so a long image does not starve them.
        broker_session_timeout=worker.session_timeout_s,
        broker_request_timeout=worker.request_timeout_s,
        broker_heartbeat_interval=min(3.0, worker.session_timeout_s / 3),
        table_standby_replicas=0,
        web_enabled=True,
        web_bind=worker.web_bind,
        web_port=worker.web_port,
        web_host=worker.web_bind,
    )
    flow = FlowForgeApp(
        settings=settings,
        app=app,
        topics=create_topics(app, settings),
        tables=create_tables(app, settings) if "process" in worker.agents else None,
        pool=ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ff-process"),
        concurrency=concurrency,
        config=processing_config(settings),
        worker_name=f"{socket.gethostname()}:{worker.web_port}",
    )
    if not consumes(settings):
        # No Faust agent to feed (a sink-only worker: its sink has its own consumer, or
        # ClickHouse consumes in kafka-engine mode): Faust's consumer would subscribe to no
        # topic, which aiokafka refuses ("You should provide either `topics` or `pattern`"),
        # ending the worker. Its producer runs for the sink's dead letters.
        sink_agent = settings.sink.mode == "agent"
        app.boot_strategy = app.BootStrategy(
            app, enable_kafka=sink_agent, enable_kafka_consumer=False
        )
    _hold_flow_during_seek(app)
    return flow


def consumes(settings: Settings) -> bool:
    """Whether Faust's consumer runs: only for the process agent (the sink consumes with its own,
    streams/agents/sink_consumer.py; in kafka-engine mode ClickHouse consumes the metadata)."""
    return "process" in settings.worker.agents
