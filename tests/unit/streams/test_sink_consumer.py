"""The sink's own Kafka consumer: batches by size or age, offsets only once a batch is durable.

Kafka is stood in for by a consumer object answering ``getmany``/``commit`` from a script (the
real broker is in tests/integration/test_sink.py and the reliability drills); the sink's
storage by an object whose ``handle_batch`` can be held, to look inside the window between a
batch taken and a batch durable.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError, KafkaError

from flowforge.core.settings import Settings
from streams.agents.sink_consumer import SinkConsumer

TOPIC = "images.metadata"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def record(tp: TopicPartition, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset, value=b"{}")


class ScriptedKafka:
    """``getmany`` answers from ``polls`` (a dict per call; {} once they run out, after the
    poll's timeout); ``commit`` records what it is given, or raises ``commit_error`` once."""

    def __init__(self, polls: list[dict[TopicPartition, list[Any]]]) -> None:
        self.polls = polls
        self.commits: list[dict[TopicPartition, int]] = []
        self.commit_error: Exception | None = None
        self.assigned = {TP0, TP1}
        self._fetcher = SimpleNamespace(_fetch_min_bytes=1, _fetch_max_wait_ms=1500)
        self.paces: list[tuple[int, int]] = []
        self.stopped = False
        self.starts_refused = 0

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        if self.starts_refused:
            self.starts_refused -= 1
            raise KafkaConnectionError("refused")

    async def stop(self) -> None:
        self.stopped = True

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if self.polls:
            got = self.polls.pop(0)
            await asyncio.sleep(0)
        else:
            got = {}
            await asyncio.sleep(min(timeout_ms, 50) / 1000)
        assert sum(len(v) for v in got.values()) <= max_records
        self.paces.append((self._fetcher._fetch_min_bytes, self._fetcher._fetch_max_wait_ms))
        return got

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_error is not None:
            error, self.commit_error = self.commit_error, None
            raise error
        self.commits.append(dict(offsets))


class HeldSink:
    """Takes batches; while ``hold`` is clear, a batch is not durable yet."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.taking = asyncio.Event()
        self.stopping = False

    async def handle_batch(self, records: list[Any]) -> None:
        self.taking.set()
        await self.hold.wait()
        self.batches.append([r.offset for r in records])

    def stop_waiting_for_room(self) -> None:
        self.stopping = True


def _consumer(tmp_path: Path, kafka: ScriptedKafka, sink: HeldSink, **env: str) -> SinkConsumer:
    settings = Settings.from_env({"FLOWFORGE_HOME": str(tmp_path), **env})
    owner = SinkConsumer(SimpleNamespace(settings=settings), sink, "flowforge-sink")  # type: ignore[arg-type]
    owner.new_consumer = lambda: kafka  # type: ignore[method-assign,assignment,return-value]
    return owner


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _stop(owner: SinkConsumer) -> None:
    await owner.on_stop()


def test_a_batch_ends_at_the_batch_size_or_the_flush_age(tmp_path: Path) -> None:
    """Records are gathered over polls until FLOWFORGE_SINK_BATCH_SIZE (3 here) are in hand, or
    FLOWFORGE_SINK_FLUSH_S (0.2 s) after the first one, whichever comes first."""
    kafka = ScriptedKafka([{TP0: [record(TP0, 0), record(TP0, 1)]}, {TP1: [record(TP1, 0)]}])
    kafka.polls += [{TP0: [record(TP0, 2)]}]  # then nothing: this one waits out the age

    async def scenario() -> float:
        sink = HeldSink()
        owner = _consumer(
            tmp_path, kafka, sink, FLOWFORGE_SINK_BATCH_SIZE="3", FLOWFORGE_SINK_FLUSH_S="0.2"
        )
        await owner.on_started()
        await _until(lambda: len(sink.batches) == 1)
        started = time.monotonic()
        await _until(lambda: len(sink.batches) == 2)
        waited = time.monotonic() - started
        await _stop(owner)
        assert sink.batches == [[0, 1, 0], [2]]
        return waited

    waited = asyncio.run(scenario())
    assert 0.15 < waited < 1.0, f"the lone record was written after {waited:.2f} s"


def test_offsets_are_committed_only_once_their_batch_is_durable(tmp_path: Path) -> None:
    """While a batch's storage is held, no commit covers it, even past the commit interval;
    once stored, the next offset of each of its partitions is committed."""
    kafka = ScriptedKafka([{TP0: [record(TP0, 5), record(TP0, 6)], TP1: [record(TP1, 9)]}])

    async def scenario() -> None:
        sink = HeldSink()
        sink.hold.clear()
        owner = _consumer(
            tmp_path,
            kafka,
            sink,
            FLOWFORGE_WORKER_COMMIT_INTERVAL_S="0.01",
            FLOWFORGE_SINK_FLUSH_S="0.05",
        )
        await owner.on_started()
        await _until(sink.taking.is_set)
        await asyncio.sleep(0.2)
        assert kafka.commits == []
        sink.hold.set()
        await _until(lambda: kafka.commits != [])
        assert kafka.commits == [{TP0: 7, TP1: 10}]
        await asyncio.sleep(0.1)
        await _stop(owner)
        assert kafka.commits == [{TP0: 7, TP1: 10}], "committed again with nothing new"
        assert kafka.stopped

    asyncio.run(scenario())


def test_a_revocation_waits_for_the_batch_in_hand_and_commits_it_first(tmp_path: Path) -> None:
    """Partitions revoked while their batch is being stored: the revocation returns only once
    the batch is durable and the revoked partitions' offsets are committed (so their next owner
    starts after those rows); a partition kept is committed later, on the commit interval."""
    kafka = ScriptedKafka([{TP0: [record(TP0, 0)], TP1: [record(TP1, 3)]}])

    async def scenario() -> None:
        sink = HeldSink()
        sink.hold.clear()
        owner = _consumer(tmp_path, kafka, sink, FLOWFORGE_SINK_FLUSH_S="0.05")
        await owner.on_started()
        await _until(sink.taking.is_set)
        revocation = asyncio.ensure_future(kafka.listener.on_partitions_revoked({TP0}))
        await asyncio.sleep(0.2)
        assert not revocation.done(), "the revocation did not wait for the batch in hand"
        sink.hold.set()
        await asyncio.wait_for(revocation, 5)
        assert kafka.commits == [{TP0: 1}]
        kafka.assigned = {TP1}
        await _stop(owner)
        assert kafka.commits == [{TP0: 1}, {TP1: 4}]

    asyncio.run(scenario())


def test_a_commit_the_group_refuses_is_dropped_and_a_failed_one_retried(tmp_path: Path) -> None:
    """CommitFailedError (the group rebalanced away): those offsets are forgotten, the next
    owner replays them. Any other Kafka error: the same offsets are committed on the next try."""
    kafka = ScriptedKafka([{TP0: [record(TP0, 0)]}])

    async def scenario() -> None:
        sink = HeldSink()
        owner = _consumer(tmp_path, kafka, sink, FLOWFORGE_SINK_FLUSH_S="0.05")
        await owner.on_started()
        await _until(lambda: sink.batches != [])
        kafka.commit_error = CommitFailedError("rebalanced")
        await owner._commit(kafka)  # type: ignore[arg-type]
        await owner._commit(kafka)  # type: ignore[arg-type]
        assert kafka.commits == []
        kafka.polls.append({TP0: [record(TP0, 1)]})
        await _until(lambda: len(sink.batches) == 2)
        kafka.commit_error = KafkaError("coordinator away")
        await owner._commit(kafka)  # type: ignore[arg-type]
        assert kafka.commits == []
        await owner._commit(kafka)  # type: ignore[arg-type]
        assert kafka.commits == [{TP0: 2}]
        await _stop(owner)

    asyncio.run(scenario())


@pytest.mark.parametrize(("wait", "batching"), [("50", (64 * 1024, 50)), ("0", (1, 1500))])
def test_fetches_wait_for_a_batch_while_records_flow_and_long_poll_when_idle(
    tmp_path: Path, wait: str, batching: tuple[int, int]
) -> None:
    """After a poll that found records the next fetches wait for 64 KiB or
    FLOWFORGE_SINK_FETCH_WAIT_MS (0: one byte, fetched as soon as it is there); after an idle
    poll they long-poll (one byte, 1.5 s), so an idle sink does not fetch every few
    milliseconds and the first record after a pause is not held."""
    kafka = ScriptedKafka([{TP0: [record(TP0, 0)]}])

    async def scenario() -> None:
        sink = HeldSink()
        owner = _consumer(
            tmp_path, kafka, sink, FLOWFORGE_SINK_FETCH_WAIT_MS=wait, FLOWFORGE_SINK_FLUSH_S="0.05"
        )
        await owner.on_started()
        await _until(lambda: sink.batches != [])
        polls = len(kafka.paces)
        await _until(lambda: len(kafka.paces) >= polls + 2)  # idle polls after the batch
        await _stop(owner)

    asyncio.run(scenario())
    assert kafka.paces[1] == batching  # the poll after the one that found a record
    assert kafka.paces[-1] == (1, 1500)


def test_kafka_away_at_start_is_waited_for_and_a_stop_ends_the_wait(tmp_path: Path) -> None:
    """A consumer Kafka refuses at start is tried again (with the sink's backoff) until it
    starts; a worker stopping meanwhile ends the wait without a consumer."""
    kafka = ScriptedKafka([{TP0: [record(TP0, 0)]}])
    kafka.starts_refused = 2

    async def scenario() -> None:
        sink = HeldSink()
        owner = _consumer(
            tmp_path,
            kafka,
            sink,
            FLOWFORGE_SINK_RETRY_INITIAL_S="0.01",
            FLOWFORGE_SINK_FLUSH_S="0.05",
        )
        await owner.on_started()
        await _until(lambda: sink.batches == [[0]])
        await _stop(owner)
        kafka.starts_refused = 1_000
        again = _consumer(tmp_path, kafka, HeldSink(), FLOWFORGE_SINK_RETRY_INITIAL_S="0.05")
        await again.on_started()
        await asyncio.sleep(0.2)
        await asyncio.wait_for(_stop(again), 5)
        assert again.consumer is None

    asyncio.run(scenario())
