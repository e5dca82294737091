"""The local Apache Kafka broker: jars fetched with Maven, run with ``java`` in KRaft mode."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from string import Template

from flowforge.core.errors import ServiceStartFailed
from flowforge.core.kafka_admin import describe_cluster, ensure_topics, flowforge_topics
from flowforge.core.resources import infra_dir
from flowforge.stack.service import (
    LOCAL_HOSTS,
    LocalService,
    find_program,
    read_text,
    tcp_accepts,
)

log = logging.getLogger(__name__)

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, URL-safe base64, never starting with '-'.

    Like Kafka's own ``Uuid.randomUuid()``: an id starting with '-' would be read as an option by
    the storage tool's argument parser (1 in 64 ids would, failing `stack up` at random).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaService(LocalService):
    """Apache Kafka, single node, KRaft, on 127.0.0.1."""

    name = "kafka"

    @property
    def host_port(self) -> tuple[str, int]:
        first = self.settings.kafka.bootstrap_servers.split(",")[0]
        host, _, port = first.rpartition(":")
        return host, int(port)

    @property
    def local(self) -> bool:
        servers = self.settings.kafka.bootstrap_servers.split(",")
        return len(servers) == 1 and self.host_port[0] in LOCAL_HOSTS

    @property
    def port(self) -> int:
        return self.host_port[1]

    @property
    def address(self) -> str:
        return self.settings.kafka.bootstrap_servers

    @property
    def kafka_dir(self) -> Path:
        return self.settings.home / "kafka"

    @property
    def jars_dir(self) -> Path:
        return self.settings.stack.cache_dir / "kafka-jars"

    def prepare(self) -> Sequence[str]:
        java = find_program("java", "a Java 17+ runtime (Debian: openjdk-17-jre-headless)")
        jars = self.fetch_jars()
        config = self.render_config()
        self.format_storage(java, jars, config)
        stack = self.settings.stack
        return [
            java,
            f"-Xmx{stack.kafka_heap}",
            f"-Xms{stack.kafka_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={infra_dir() / 'kafka' / 'log4j2.properties'}",
            "-cp",
            f"{jars}/*",
            KAFKA_MAIN,
            str(config),
        ]

    def fetch_jars(self) -> Path:
        """Copy the broker's jars from Maven into the cache (once per pom); return the directory."""
        pom = infra_dir() / "kafka" / "pom.xml"
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
        stamp = self.jars_dir / ".complete"
        if read_text(stamp).strip() == digest:
            return self.jars_dir
        mvn = find_program("mvn", "Apache Maven (Debian: maven)")
        if self.jars_dir.exists():
            shutil.rmtree(self.jars_dir)
        self.jars_dir.mkdir(parents=True)
        mvn_log = self.settings.home / "logs" / "maven.log"
        mvn_log.parent.mkdir(parents=True, exist_ok=True)
        log.info("kafka: fetching broker jars with Maven into %s", self.jars_dir)
        with mvn_log.open("wb") as out:
            result = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={self.jars_dir.resolve()}",
                    "-DincludeScope=runtime",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0 or not any(self.jars_dir.glob("kafka_2.13-*.jar")):
            raise ServiceStartFailed(
                f"kafka: fetching the broker jars with Maven failed (exit {result.returncode}; "
                f"offline or no access to Maven Central?); read {mvn_log}"
            )
        stamp.write_text(digest, encoding="utf-8")
        return self.jars_dir

    def render_config(self) -> Path:
        """Render infra/kafka/server.properties for this home and these settings."""
        kafka = self.settings.kafka
        template = Template((infra_dir() / "kafka" / "server.properties").read_text("utf-8"))
        text = template.substitute(
            port=self.port,
            controller_port=self.settings.stack.kafka_controller_port,
            data_dir=(self.kafka_dir / "data").resolve(),
            partitions=kafka.partitions,
            max_message_bytes=kafka.max_message_bytes,
            # Requests carry a whole batch of image-sized messages plus framing.
            socket_request_max_bytes=max(kafka.max_message_bytes * 2, 104_857_600),
            retention_hours=kafka.retention_hours,
        )
        config = self.kafka_dir / "server.properties"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(text, encoding="utf-8")
        return config

    def format_storage(self, java: str, jars: Path, config: Path) -> None:
        """Format the KRaft log directory once (a fresh cluster id); later starts reuse it."""
        data = self.kafka_dir / "data"
        if (data / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        result = subprocess.run(
            [java, "-cp", f"{jars}/*", STORAGE_TOOL, "format", "-t", cluster_id, "-c", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise ServiceStartFailed(f"kafka: formatting {data} failed: {' '.join(tail)}")

    def adopt(self, holder_cmdline: Sequence[str]) -> bool:
        # Another FlowForge broker with this very config file (e.g. a PID file lost with a
        # deleted run/ directory) is ours to reuse.
        config = str((self.kafka_dir / "server.properties").resolve())
        return KAFKA_MAIN in holder_cmdline and config in holder_cmdline

    async def probe(self) -> None:
        host, port = self.host_port
        await asyncio.to_thread(tcp_accepts, host, port)  # before aiokafka, which logs each refusal
        await describe_cluster(self.settings.kafka, timeout_ms=3_000)

    async def after_start(self) -> None:
        await ensure_topics(self.settings.kafka, flowforge_topics(self.settings.kafka))
