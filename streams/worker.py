"""The worker: the Faust app with the agents of its roles and its web pages, wired together."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from flowforge.core.settings import Settings
from streams import kafka_engine, web
from streams.agents import process, sink
from streams.agents.process import ImageProcessor
from streams.agents.sink import SinkAgent
from streams.app import FlowForgeApp, create_app
from streams.kafka_engine import KafkaEngineOwner
from streams.tables import Tables


@dataclass
class Worker:
    """A built worker: the app context, its agents by name, and the objects its pages read."""

    flow: FlowForgeApp
    agents: dict[str, Any] = field(default_factory=dict)
    processor: ImageProcessor | None = None  # None when it does not run the process agent
    sink: SinkAgent | None = None  # None without the sink agent (or in kafka-engine mode)
    engine: KafkaEngineOwner | None = None  # the embedded engine's owner in kafka-engine mode

    @property
    def app(self) -> faust.App:
        return self.flow.app

    @property
    def settings(self) -> Settings:
        return self.flow.settings

    @property
    def tables(self) -> Tables | None:
        return self.flow.tables


def build_worker(settings: Settings, clickhouse: Any = None) -> Worker:
    """Build the worker's Faust app with the agents of its roles, and its web pages.

    Roles (``settings.worker.agents``): ``process`` consumes images.raw (with the tables);
    ``sink`` consumes images.metadata into ClickHouse through ``clickhouse`` (a client, required
    then). In kafka-engine mode ClickHouse consumes the topic itself and no sink agent runs; a
    ``clickhouse`` client then is the embedded engine this worker owns, whose Kafka table
    consumes while it stays open (none with a ClickHouse server).
    """
    sink_role = "sink" in settings.worker.agents
    run_sink = sink_role and settings.sink.mode == "agent"
    if run_sink and clickhouse is None:
        raise ValueError("the sink agent needs a ClickHouse client")
    built = Worker(create_app(settings))
    if "process" in settings.worker.agents:
        built.agents["process"], built.processor = process.register(built.flow)
    if run_sink:
        built.agents["sink"], built.sink = sink.register(built.flow, clickhouse)
    elif sink_role and clickhouse is not None:
        built.engine = kafka_engine.register(built.flow, clickhouse)
    web.register(built.flow, built.processor, built.sink, built.engine)
    return built
